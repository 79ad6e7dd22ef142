//! The API token and the embedded web UI.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Engine, TestServer, assert_error, on_every_engine, rule};

on_every_engine!(a_configured_token_guards_every_api_call);
async fn a_configured_token_guards_every_api_call(engine: Engine) {
    let s =
        TestServer::start_with(engine, |c| c.token = Some("s3cret-token".into()), 20, 100).await;
    for path in ["/api/health", "/api/rules", "/api/segments", "/api/runs"] {
        let (status, body) = s.get_json(path).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let resp = s
        .client
        .post(s.url("/api/rules"))
        .json(&rule("x"))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .client
        .post(s.url("/api/rules"))
        .bearer_auth("wrong-token")
        .json(&rule("x"))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .client
        .post(s.url("/api/rules"))
        .bearer_auth("s3cret-token")
        .json(&rule("x"))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .client
        .get(s.url("/api/rules"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let page: Value = resp.json().await.expect("JSON");
    assert_eq!(page["total"], 1);
    // The UI itself loads without the token; it asks for it on the first 401.
    assert_eq!(s.get("/").await.status(), StatusCode::OK);
    s.stop().await;
}

on_every_engine!(the_ui_is_served_with_spa_fallback);
async fn the_ui_is_served_with_spa_fallback(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 10, 50).await;
    for path in [
        "/",
        "/rules",
        "/rules/new",
        "/rules/edit/3",
        "/segments",
        "/segments/7",
    ] {
        let resp = s.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(resp.text().await.expect("body").contains("<html"), "{path}");
    }
    let resp = s.get("/assets/app.js").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/javascript; charset=utf-8")
    );
    let resp = s.get("/assets/styles.css").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        s.get("/assets/nope.js").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/assets/README.md").await.status(),
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}
