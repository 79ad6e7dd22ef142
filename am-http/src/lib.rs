//! Audience Manager's HTTP server: the REST API of contract section 3 (docs/api.md), the
//! scheduler that refreshes rules at their schedule and on demand, and the web UI's static
//! files embedded in the binary.
//!
//! [`app`] builds the router from an [`AppState`] and does no I/O, so tests can drive it
//! directly; [`Server::start`] checks the database is writable and starts the scheduler on a
//! bound listener, and [`Server::run`] serves until its shutdown future completes, then lets
//! the refresh in progress finish. [`serve_on`] does both.

pub mod api;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod extract;
pub mod guard;
mod listen;
pub use am_sql::scheduler;
pub mod state;
pub mod ui;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use am_sql::Store;
use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use config::{
    DEFAULT_ADDR, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, ServerConfig,
};
pub use error::ApiError;
pub use scheduler::{Clock, Scheduler, SchedulerError, SystemClock, Triggered};
pub use state::AppState;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    #[error(
        "the database {0} is read-only: the server writes runs and segments, so it needs a \
         writable database (for SQLite, a writable file and directory, for its -wal and -shm \
         files; for PostgreSQL, a role that may write)"
    )]
    ReadOnly(String),
    #[error("database: {0}")]
    Store(#[from] am_sql::Error),
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring a CORS origin that is not a valid header value");
                None
            }
        })
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
    )
}

/// The whole application: `/api` (behind the token when one is configured), the UI's
/// assets under `/assets`, and the UI's pages everywhere else; in front of it all the
/// [`guard`] (foreign hosts, cross-site writes) and the body limit.
pub fn app(state: AppState) -> Router {
    let (api, _) = api::routes();
    let api = api
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let config = &state.config;
    let guard = Arc::new(guard::Guard::new(
        config.addr,
        &config.allowed_hosts,
        &config.cors_origins,
    ));
    let mut router = Router::new()
        .merge(api)
        .route("/assets/{*path}", get(ui::asset))
        .fallback(ui::fallback)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body::refuse_oversized,
        ));
    if let Some(cors) = cors(&config.cors_origins) {
        router = router.layer(cors);
    }
    router
        .layer(middleware::from_fn_with_state(guard, guard::refuse_foreign))
        .layer(TraceLayer::new_for_http())
}

/// Binds `config.addr` and serves until `shutdown` completes (see [`serve_on`]).
pub async fn serve(
    store: Store,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
    serve_on(listener, store, config, Arc::new(SystemClock), shutdown).await
}

/// Serves on a bound listener with the given clock: [`Server::start`], then [`Server::run`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    store: Store,
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::start(listener, store, config, clock)
        .await?
        .run(shutdown)
        .await
}

/// A server that is listening, has checked its database and started its scheduler: what
/// could stop it from serving has been tried, so it can be announced.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Refuses a read-only database, then starts the scheduler (failing runs a crash left
    /// active, firing schedules). `config.addr` becomes the address actually bound.
    pub async fn start(
        listener: tokio::net::TcpListener,
        store: Store,
        mut config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServeError> {
        config.addr = listener.local_addr()?;
        let probe = store.clone();
        tokio::task::spawn_blocking(move || check_writable(&probe))
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
        if config.token.is_none() && !config.addr.ip().is_loopback() {
            tracing::warn!(addr = %config.addr, "listening beyond loopback without an API token: anyone who can reach this address can change rules");
        }
        if config.addr.ip().is_unspecified() && config.allowed_hosts.is_empty() {
            tracing::warn!(addr = %config.addr, "listening on all interfaces: requests naming this machine by a host name other than localhost are refused unless it is an allowed host");
        }
        let scheduler = Scheduler::start(store.clone(), clock).await?;
        scheduler.spawn_ticker();
        Ok(Server {
            listener,
            state: AppState::new(store, scheduler, config),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.state.config.addr
    }

    /// Answers requests until `shutdown` completes, then stops taking work, lets in-flight
    /// requests and the refresh in progress finish, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server { listener, state } = self;
        tracing::info!(addr = %state.config.addr, "serving");
        listen::serve_connections(listener, app(state.clone()), &state.config, shutdown).await;
        tracing::info!("shutting down: finishing the refresh in progress");
        state.scheduler.shutdown().await;
        Ok(())
    }
}

/// Whether the server will be able to write: a read-only file (permissions, a read-only
/// mount, a file SQLite marks read-only) fails here rather than after the server started.
fn check_writable(store: &Store) -> Result<(), ServeError> {
    match store.check_writable() {
        Ok(()) => Ok(()),
        Err(am_sql::Error::ReadOnly { .. }) => {
            Err(ServeError::ReadOnly(store.location().to_string()))
        }
        Err(e) => Err(ServeError::Store(e)),
    }
}
