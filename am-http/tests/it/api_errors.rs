//! Errors every endpoint shares: malformed bodies, size, content type, unknown ids and paths.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Engine, TestServer, assert_error, on_every_engine, rule};

async fn raw_post(
    s: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = s.client.post(s.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status();
    (status, resp.json().await.expect("JSON error body"))
}

on_every_engine!(malformed_oversize_and_untyped_bodies);
async fn malformed_oversize_and_untyped_bodies(engine: Engine) {
    let s = TestServer::start_with(engine, |c| c.body_limit = 4096, 50, 200).await;
    let (status, body) = raw_post(
        &s,
        "/api/rules",
        Some("application/json"),
        b"{\"rule_name\": ".to_vec(),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = raw_post(
        &s,
        "/api/rules",
        Some("application/json"),
        b"not json".to_vec(),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    let mut big = rule("big");
    big["description"] = json!("x".repeat(10_000));
    let (status, body) = s.post_json("/api/rules", &big).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let (status, body) = raw_post(
        &s,
        "/api/rules",
        Some("text/plain"),
        rule("plain").to_string().into_bytes(),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, body) = raw_post(
        &s,
        "/api/rules",
        None,
        rule("none").to_string().into_bytes(),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, body) = raw_post(
        &s,
        "/api/rules",
        Some("application/json"),
        b"[1, 2]".to_vec(),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    s.stop().await;
}

on_every_engine!(unknown_ids_paths_and_methods);
async fn unknown_ids_paths_and_methods(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 50, 200).await;
    for path in [
        "/api/rules/9999",
        "/api/segments/9999",
        "/api/segments/9999/sample_data",
        "/api/segments/9999/lineage",
        "/api/segments/9999/export",
        "/api/runs/9999",
        "/api/no/such/endpoint",
    ] {
        let (status, body) = s.get_json(path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (status, body) = s.post_json("/api/rules/9999/trigger", &json!({})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = s.get_json("/api/rules/abc").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = s.get_json("/api/runs?status=bogus").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = s.get_json("/api/runs?limit=0").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let resp = s
        .client
        .patch(s.url("/api/rules"))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    s.stop().await;
}

on_every_engine!(meta_endpoints);
async fn meta_endpoints(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 40, 400).await;
    let (status, health) = s.get_json("/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok"}));

    let (status, summary) = s.get_json("/api/analytics/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(summary["total_users"], 40);
    assert_eq!(summary["total_transactions"], 400);
    assert!(
        summary["total_spend"].as_f64().is_some_and(|t| t > 0.0),
        "{summary}"
    );

    let (status, fields) = s.get_json("/api/fields").await;
    assert_eq!(status, StatusCode::OK);
    let spend = fields
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "total_spend"))
        .expect("total_spend in the catalog");
    assert_eq!(spend["kind"], "aggregate");
    assert_eq!(spend["type"], "money");
    assert!(
        spend["operators"]
            .as_array()
            .is_some_and(|o| o.contains(&json!(">=")))
    );

    let (status, described) = s
        .get_json("/api/schedules/describe?schedule=0%200%20*%20*%20*")
        .await;
    assert_eq!(status, StatusCode::OK, "{described}");
    assert!(
        described["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(described["next_runs"].as_array().map(Vec::len), Some(5));
    let (status, body) = s
        .get_json("/api/schedules/describe?schedule=nonsense")
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    let (status, body) = s.get_json("/api/schedules/describe").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    let (status, doc) = s.get_json("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    for path in [
        "/api/rules",
        "/api/rules/{id}/trigger",
        "/api/segments/{id}/export",
        "/api/runs",
        "/api/rules/preview",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    s.stop().await;
}
