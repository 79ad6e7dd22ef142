//! Refuses what a web page on another site could make a browser send (docs/operations.md,
//! "What the server refuses"):
//!
//! - a `Host` that is not an address this server is reached by. A page on `evil.example`
//!   that re-points its own name at 127.0.0.1 (DNS rebinding) reads our answers as its own,
//!   but its requests still say `Host: evil.example`;
//! - a state-changing request (POST, PUT, PATCH, DELETE) from a page of another origin:
//!   an `Origin` that is neither this server nor a configured CORS origin, or, without
//!   `Origin`, `Sec-Fetch-Site: cross-site`. Clients that are not browsers (curl, scripts)
//!   send neither header and are not affected.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The hosts and origins a server answers.
#[derive(Debug, Clone)]
pub struct Guard {
    bound: SocketAddr,
    /// Operator-listed hosts: a canonical host name or IP, and the port if one was given.
    allowed: Vec<(String, Option<u16>)>,
    /// `*` was listed: every host is accepted.
    any_host: bool,
    cors_origins: Vec<String>,
}

/// `host` or `host:port` (IPv6 in brackets) split into a canonical host and the port.
fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    let authority: axum::http::uri::Authority = text.trim().parse().ok()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    Some((canonical_host(authority.host()), authority.port_u16()))
}

/// IP literals in their standard form (so `[0:0::1]` is `::1`), names in lower case without
/// a trailing dot.
fn canonical_host(host: &str) -> String {
    match ip_literal(host) {
        Some(ip) => ip.to_string(),
        None => host.trim_end_matches('.').to_ascii_lowercase(),
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Whether `entry` can be an allowed host: `HOST`, `HOST:PORT` or `*`.
pub fn is_allowed_host_entry(entry: &str) -> bool {
    entry.trim() == "*" || split_authority(entry).is_some()
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Guard {
    /// The guard of a server bound to `bound`, also answering `allowed_hosts` and taking
    /// state-changing requests from `cors_origins`. Unparsable host entries are skipped
    /// with a warning (the CLI checks them first).
    pub fn new(bound: SocketAddr, allowed_hosts: &[String], cors_origins: &[String]) -> Guard {
        let mut allowed = Vec::new();
        let mut any_host = false;
        for entry in allowed_hosts {
            if entry.trim() == "*" {
                any_host = true;
            } else if let Some(parsed) = split_authority(entry) {
                allowed.push(parsed);
            } else {
                tracing::warn!(host = %entry, "ignoring an allowed host that is not HOST or HOST:PORT");
            }
        }
        Guard {
            bound,
            allowed,
            any_host,
            cors_origins: cors_origins.iter().map(|o| normalize_origin(o)).collect(),
        }
    }

    /// Whether a request naming `host` (a `Host` header value) is for this server: the
    /// bound address; on loopback also `localhost` and the loopback addresses; bound to all
    /// interfaces, `localhost` and any IP address (a rebinding attack needs a name); and
    /// the listed hosts. Without a port, the port is 80.
    pub fn allows_host(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        let Some((name, port)) = split_authority(host) else {
            return false;
        };
        let port = port.unwrap_or(80);
        let listed = self
            .allowed
            .iter()
            .any(|(h, p)| *h == name && p.is_none_or(|p| p == port));
        if listed {
            return true;
        }
        if port != self.bound.port() {
            return false;
        }
        let ip = self.bound.ip();
        match ip_literal(&name) {
            Some(asked) => {
                asked == ip || ip.is_unspecified() || (ip.is_loopback() && asked.is_loopback())
            }
            None => name == "localhost" && (ip.is_loopback() || ip.is_unspecified()),
        }
    }

    /// Whether a state-changing request with these headers may proceed; `host` is the
    /// request's (already allowed) host.
    fn allows_write(&self, headers: &HeaderMap, host: &str) -> Result<(), ApiError> {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if same_origin(origin, host) || self.cors_origins.contains(&normalize_origin(origin)) {
                return Ok(());
            }
            return Err(ApiError::forbidden(format!(
                "cross-site request refused: Origin {origin:?} is not this server ({host}) \
                 nor an allowed CORS origin"
            )));
        }
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if site.eq_ignore_ascii_case("cross-site") {
            return Err(ApiError::forbidden(
                "cross-site request refused: Sec-Fetch-Site is cross-site",
            ));
        }
        Ok(())
    }

    /// Checks one request: its host, and for a state-changing method its origin.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        // An absolute-form request target names the host itself; it wins over `Host`.
        let host = match uri.authority() {
            Some(authority) => authority.as_str().to_string(),
            None => match headers.get(HOST).map(|h| h.to_str()) {
                Some(Ok(h)) => h.to_string(),
                Some(Err(_)) => return Err(ApiError::bad_request("the Host header is not text")),
                None => return Err(ApiError::bad_request("the request has no Host header")),
            },
        };
        if !self.allows_host(&host) {
            return Err(ApiError::forbidden(format!(
                "the Host {host:?} is not an address this server answers; an operator can allow \
                 it with `am serve --allowed-host`"
            )));
        }
        let writes = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if writes {
            self.allows_write(headers, &host)?;
        }
        Ok(())
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin a page served from `host` has.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    if authority.contains('/') {
        return false;
    }
    match (split_authority(authority), split_authority(host)) {
        (Some((oh, op)), Some((hh, hp))) => {
            oh == hh && op.unwrap_or(default_port) == hp.unwrap_or(default_port)
        }
        _ => false,
    }
}

/// Middleware: answers 403 (400 without a host) for requests the guard refuses.
pub async fn refuse_foreign(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match guard.check(req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard(bound: &str, allowed: &[&str]) -> Guard {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Guard::new(
            bound.parse().expect("address"),
            &allowed,
            &["https://dash.example".to_string()],
        )
    }

    #[test]
    fn loopback_answers_its_own_names_only() {
        let g = guard("127.0.0.1:8080", &[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]:8080",
        ] {
            assert!(g.allows_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost:9090",
            "localhost",
            "192.168.1.5:8080",
            "",
            "user@localhost:8080",
        ] {
            assert!(!g.allows_host(bad), "{bad}");
        }
    }

    #[test]
    fn all_interfaces_answer_ip_addresses_and_listed_names() {
        let g = guard("0.0.0.0:8080", &["am.example", "other.example:9000"]);
        for ok in [
            "192.168.1.5:8080",
            "127.0.0.1:8080",
            "localhost:8080",
            "am.example",
            "am.example:443",
            "AM.example.:8080",
            "other.example:9000",
        ] {
            assert!(g.allows_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "192.168.1.5:9090",
            "other.example:8080",
        ] {
            assert!(!g.allows_host(bad), "{bad}");
        }
        assert!(guard("0.0.0.0:8080", &["*"]).allows_host("anything.example:1"));
    }

    #[test]
    fn writes_need_this_origin_or_a_cors_origin() {
        let g = guard("127.0.0.1:8080", &[]);
        let check = |headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            map.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
            for (k, v) in headers {
                map.insert(*k, HeaderValue::from_static(v));
            }
            g.check(&Method::POST, &Uri::from_static("/api/rules"), &map)
                .is_ok()
        };
        assert!(check(&[]));
        assert!(check(&[("origin", "http://127.0.0.1:8080")]));
        assert!(check(&[("origin", "https://dash.example/")]));
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        assert!(!check(&[("origin", "http://evil.example")]));
        assert!(!check(&[("origin", "http://localhost:8080")]));
        assert!(!check(&[("origin", "null")]));
        assert!(!check(&[("sec-fetch-site", "cross-site")]));
    }

    #[test]
    fn a_request_without_a_host_is_a_bad_request() {
        let g = guard("127.0.0.1:8080", &[]);
        let err = g
            .check(
                &Method::GET,
                &Uri::from_static("/api/rules"),
                &HeaderMap::new(),
            )
            .expect_err("no host");
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        // An absolute request target names the host itself.
        let absolute = Uri::from_static("http://evil.example:8080/api/rules");
        assert!(g.check(&Method::GET, &absolute, &HeaderMap::new()).is_err());
        let own = Uri::from_static("http://localhost:8080/api/rules");
        assert!(g.check(&Method::GET, &own, &HeaderMap::new()).is_ok());
    }
}
