//! The server's configuration: where it listens, the API token, CORS and the body limit.

use std::net::SocketAddr;

/// The default address: loopback only, so nothing outside this machine reaches the API
/// unless the operator asks for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The default request body limit (1 MiB): far above any rule, far below harm.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How `serve` and `app` behave.
#[derive(Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// When set, every `/api` request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Origins allowed to call the API from a browser; empty means CORS is off.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            cors_origins: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
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
            .field("cors_origins", &self.cors_origins)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}
