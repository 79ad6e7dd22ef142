//! Requests a web page on another site could make a browser send are refused: a `Host` that
//! is not this server (DNS rebinding) and state-changing requests from another origin. The
//! server's own names, same-origin pages and clients without `Origin` (curl) are served.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    Engine, RawResponse, TestServer, get_with_host, on_every_engine, raw_request, rule,
};

fn assert_forbidden(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.head);
    let body = r.json();
    assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

on_every_engine!(a_foreign_host_is_refused_and_the_servers_own_names_are_served);
async fn a_foreign_host_is_refused_and_the_servers_own_names_are_served(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 20, 100).await;
    s.create_rule(&rule("members")).await;
    let port = s.addr.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost:{}", port.wrapping_add(1)),
        format!("192.0.2.7:{port}"),
    ] {
        for path in ["/api/rules", "/api/segments", "/"] {
            let r = get_with_host(s.addr, path, &host).await;
            assert_forbidden(&r, &format!("{host} {path}"));
        }
    }
    let r = get_with_host(s.addr, "/api/rules", &format!("evil.example:{port}")).await;
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("evil.example") && m.contains("--allowed-host")),
        "{}",
        r.json()
    );
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = get_with_host(s.addr, "/api/rules", &host).await;
        assert_eq!(r.status, 200, "{host}: {}", r.head);
        assert_eq!(r.json()["total"], 1, "{host}");
    }
    s.stop().await;
}

on_every_engine!(hosts_the_operator_lists_are_served);
async fn hosts_the_operator_lists_are_served(engine: Engine) {
    let s = TestServer::start_with(
        engine,
        |c| c.allowed_hosts = vec!["am.example".into(), "other.example:9443".into()],
        10,
        50,
    )
    .await;
    for host in ["am.example", "am.example:443", "other.example:9443"] {
        let r = get_with_host(s.addr, "/api/health", host).await;
        assert_eq!(r.status, 200, "{host}: {}", r.head);
    }
    for host in ["evil.example", "other.example:9444"] {
        assert_forbidden(&get_with_host(s.addr, "/api/health", host).await, host);
    }
    s.stop().await;
}

on_every_engine!(all_interfaces_serve_ip_addresses_and_refuse_unlisted_names);
async fn all_interfaces_serve_ip_addresses_and_refuse_unlisted_names(engine: Engine) {
    let s = TestServer::start_on(engine, "0.0.0.0:0", |_| {}, 10, 50).await;
    let port = s.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("192.0.2.7:{port}"),
        format!("localhost:{port}"),
    ] {
        let r = get_with_host(s.addr, "/api/health", &host).await;
        assert_eq!(r.status, 200, "{host}: {}", r.head);
    }
    let host = format!("am.example:{port}");
    assert_forbidden(&get_with_host(s.addr, "/api/health", &host).await, &host);
    s.stop().await;
}

/// A POST with the given extra header lines and no body.
async fn post_with(s: &TestServer, path: &str, headers: &str) -> RawResponse {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n",
        s.addr
    );
    raw_request(s.addr, request.as_bytes()).await
}

async fn run_count(s: &TestServer, rule_id: i64) -> usize {
    let (status, runs) = s.get_json(&format!("/api/runs?rule_id={rule_id}")).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    runs["items"].as_array().map(Vec::len).unwrap_or(0)
}

on_every_engine!(cross_site_writes_are_refused_and_same_origin_ones_served);
async fn cross_site_writes_are_refused_and_same_origin_ones_served(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 20, 100).await;
    let id = s.create_rule(&rule("target")).await;
    let trigger = format!("/api/rules/{id}/trigger");
    // The request: a "simple" cross-origin POST a form or fetch on any page can send.
    let r = post_with(
        &s,
        &trigger,
        "Content-Type: text/plain\r\nOrigin: http://evil.example\r\n",
    )
    .await;
    assert_forbidden(&r, "foreign Origin");
    let r = post_with(&s, &trigger, "Sec-Fetch-Site: cross-site\r\n").await;
    assert_forbidden(&r, "Sec-Fetch-Site: cross-site");
    let r = post_with(&s, &trigger, "Origin: null\r\n").await;
    assert_forbidden(&r, "Origin: null");
    let delete = format!(
        "DELETE /api/rules/{id} HTTP/1.1\r\nHost: {}\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n",
        s.addr
    );
    assert_forbidden(
        &raw_request(s.addr, delete.as_bytes()).await,
        "cross-site DELETE",
    );
    assert_eq!(run_count(&s, id).await, 0, "a refused trigger queued a run");
    let (status, _) = s.get_json(&format!("/api/rules/{id}")).await;
    assert_eq!(status, StatusCode::OK, "a refused delete deleted the rule");

    // The web UI (same origin) and curl (no Origin) still write.
    let origin = format!(
        "Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\n",
        s.addr
    );
    let r = post_with(&s, &trigger, &origin).await;
    assert_eq!(r.status, 202, "{}", r.head);
    let run = r.json()["run_id"].as_i64().expect("run_id");
    s.wait_run(run).await;
    s.trigger(id).await;
    // Reads from another origin are not writes; CORS decides whether a page may read them.
    let read = format!(
        "GET /api/rules/{id} HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
        s.addr
    );
    assert_eq!(raw_request(s.addr, read.as_bytes()).await.status, 200);
    s.stop().await;
}

on_every_engine!(configured_cors_origins_may_write);
async fn configured_cors_origins_may_write(engine: Engine) {
    let s = TestServer::start_with(
        engine,
        |c| c.cors_origins = vec!["https://dash.example".into()],
        20,
        100,
    )
    .await;
    let id = s.create_rule(&rule("target")).await;
    let r = post_with(
        &s,
        &format!("/api/rules/{id}/trigger"),
        "Origin: https://dash.example\r\nSec-Fetch-Site: cross-site\r\n",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.head);
    let body: Value = r.json();
    s.wait_run(body["run_id"].as_i64().expect("run_id")).await;
    s.stop().await;
}
