//! Segments, runs, lineage and export after real refreshes.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Engine, TestServer, count_of_sql, on_every_engine, rule};

on_every_engine!(a_triggered_rule_builds_a_segment_with_sample_export_and_lineage);
async fn a_triggered_rule_builds_a_segment_with_sample_export_and_lineage(engine: Engine) {
    let s = TestServer::start(engine).await;
    let base = s.create_rule(&rule("Spenders")).await;
    let mut tier = rule("Tier-1 spenders");
    tier["depends_on"] = json!([base]);
    tier["conditions"] = json!([{"field": "city_tier", "operator": "=", "value": 1}]);
    let child = s.create_rule(&tier).await;

    // Triggering the child refreshes its stale upstream first.
    let run_id = s.trigger(child).await;
    let run = s.wait_run(run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rule_id"], child);
    assert_eq!(run["trigger"], "api");
    assert!(
        run["started_at"].is_string() && run["finished_at"].is_string(),
        "{run}"
    );
    assert!(run["error"].is_null());

    let (_, runs) = s.get_json(&format!("/api/runs?rule_id={base}")).await;
    let upstream = &runs["items"][0];
    assert_eq!(upstream["status"], "succeeded", "{runs}");
    assert_eq!(upstream["trigger"], "upstream");

    let (status, segments) = s.get_json("/api/segments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(segments["total"], 2);
    let items = segments["items"].as_array().expect("items");
    assert!(items.iter().any(|i| i["rule_id"] == base));

    let (_, rule_view) = s.get_json(&format!("/api/rules/{child}")).await;
    assert_eq!(rule_view["last_run"]["id"], run_id);
    let seg_id = rule_view["segment_id"].as_i64().expect("segment id");

    let (status, seg) = s.get_json(&format!("/api/segments/{seg_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seg["rule"],
        json!({"id": child, "rule_name": "Tier-1 spenders"})
    );
    assert_eq!(seg["rule_id"], child);
    assert_eq!(
        seg["depends_on"],
        json!([{"id": base, "rule_name": "Spenders"}])
    );
    assert!(
        seg["sql_query"]
            .as_str()
            .is_some_and(|q| q.contains("SELECT"))
    );
    let row_count = seg["row_count"].as_i64().expect("row_count");

    // The members are exactly what the stored SQL returns.
    let expected = count_of_sql(&s.store, seg["sql_query"].as_str().unwrap_or(""));
    assert_eq!(row_count, expected);

    let (_, sample) = s
        .get_json(&format!("/api/segments/{seg_id}/sample_data"))
        .await;
    assert_eq!(sample["columns"], json!(["user_id", "name", "email"]));
    let data = sample["data"].as_array().expect("data");
    assert_eq!(data.len() as i64, row_count.min(100));
    assert!(
        data.iter()
            .all(|row| row.as_array().map(Vec::len) == Some(3))
    );

    let resp = s.get(&format!("/api/segments/{seg_id}/export")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/csv"))
    );
    let csv = resp.text().await.expect("csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("user_id,name,email"));
    assert_eq!(lines.count() as i64, row_count);

    let (status, lineage) = s.get_json(&format!("/api/segments/{seg_id}/lineage")).await;
    assert_eq!(status, StatusCode::OK, "{lineage}");
    let nodes = lineage["nodes"].as_array().expect("nodes");
    assert!(
        nodes
            .iter()
            .any(|n| n["rule_id"] == child && n["role"] == "target"),
        "{lineage}"
    );
    assert!(
        nodes
            .iter()
            .any(|n| n["rule_id"] == base && n["role"] == "upstream"),
        "{lineage}"
    );
    assert!(
        lineage["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .any(|e| e["from"] == base
                && e["to"] == child
                && e["kind"] == "depends_on"
                && e["operation"] == "INTERSECTION"),
        "{lineage}"
    );

    let (_, recent) = s.get_json("/api/runs?status=succeeded&limit=1").await;
    assert_eq!(recent["items"].as_array().map(Vec::len), Some(1));
    s.stop().await;
}
