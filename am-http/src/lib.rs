//! Audience Manager's HTTP server: the REST API of contract section 3 (docs/api.md), the
//! scheduler that refreshes rules at their schedule and on demand, and the web UI's static
//! files embedded in the binary.
//!
//! [`app`] builds the router from an [`AppState`] and does no I/O, so tests can drive it
//! directly; [`serve`] binds, starts the scheduler and serves until its shutdown future
//! completes, then lets the refresh in progress finish.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod scheduler;
pub mod state;
pub mod ui;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use am_sql::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use config::{DEFAULT_ADDR, DEFAULT_BODY_LIMIT, ServerConfig};
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
/// assets under `/assets`, and the UI's pages everywhere else.
pub fn app(state: AppState) -> Router {
    let (api, _) = api::routes();
    let api = api
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let mut router = Router::new()
        .merge(api)
        .route("/assets/{*path}", get(ui::asset))
        .fallback(ui::fallback)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .with_state(state.clone());
    if let Some(cors) = cors(&state.config.cors_origins) {
        router = router.layer(cors);
    }
    router.layer(TraceLayer::new_for_http())
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

/// Serves on a bound listener with the given clock: starts the scheduler (failing runs a
/// crash left active, firing schedules), answers requests until `shutdown` completes, then
/// stops taking work, lets in-flight requests and the refresh in progress finish, and returns.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    store: Store,
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    if config.token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback without an API token: anyone who can reach this address can change rules");
    }
    let scheduler = Scheduler::start(store.clone(), clock).await?;
    scheduler.spawn_ticker();
    let state = AppState::new(store, scheduler.clone(), config);
    tracing::info!(%addr, "serving");
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("shutting down: finishing the refresh in progress");
    scheduler.shutdown().await;
    result.map_err(ServeError::Io)
}
