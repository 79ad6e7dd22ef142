//! The server's configuration: where it listens, the API token, the hosts and origins it
//! answers, the body limit, and the timeouts and connection limit that keep slow or idle
//! clients from holding it.

use std::net::SocketAddr;
use std::time::Duration;

/// The default address: loopback only, so nothing outside this machine reaches the API
/// unless the operator asks for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The default request body limit (1 MiB): far above any rule, far below harm.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How long a client may take to send a request's headers, and how long an idle
/// keep-alive connection stays open waiting for the next request.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a whole request body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections are served at once; further ones wait until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How `serve` and `app` behave.
#[derive(Clone)]
pub struct ServerConfig {
    /// The address to listen on; the server also answers only requests whose `Host` names
    /// it (see [`crate::guard`]). `serve_on` replaces it with the address actually bound.
    pub addr: SocketAddr,
    /// When set, every `/api` request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Further `Host` values the server answers, for names it is reached by (`am.example`
    /// any port, `am.example:8080` that port only; `*` turns the check off).
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to call the API from a browser; empty means CORS is off.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`DEFAULT_BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ServerConfig {
    /// The configuration for `addr`, with the token taken from `AM_API_TOKEN` when set and
    /// not empty (an explicit token given later overrides it).
    pub fn from_env(addr: SocketAddr) -> ServerConfig {
        let token = std::env::var("AM_API_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        ServerConfig {
            addr,
            token,
            ..ServerConfig::default()
        }
    }
}

// The token never appears in logs or debug output.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("cors_origins", &self.cors_origins)
            .field("body_limit", &self.body_limit)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}
