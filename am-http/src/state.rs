//! What every handler shares: the store, the scheduler and the server's configuration.

use std::sync::Arc;

use am_sql::Store;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::scheduler::Scheduler;

/// Shared state of the router; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub scheduler: Scheduler,
    pub config: Arc<ServerConfig>,
}

impl AppState {
    pub fn new(store: Store, scheduler: Scheduler, config: ServerConfig) -> AppState {
        AppState {
            store,
            scheduler,
            config: Arc::new(config),
        }
    }

    /// Runs blocking store work off the async threads: every SQLite call goes through here,
    /// so a long query never stalls the server's other requests.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }
}
