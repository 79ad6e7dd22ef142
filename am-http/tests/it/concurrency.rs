//! Many simultaneous triggers, and reads during refreshes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Engine, TestServer, count_of_sql, on_every_engine, rule};

on_every_engine!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    fifty_triggers_of_one_rule_share_runs_and_all_succeed
);
async fn fifty_triggers_of_one_rule_share_runs_and_all_succeed(engine: Engine) {
    let s = Arc::new(TestServer::start(engine).await);
    let id = s.create_rule(&rule("Hot rule")).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move { s.trigger(id).await }));
    }
    let mut run_ids = HashSet::new();
    for t in tasks {
        run_ids.insert(t.await.expect("trigger task"));
    }
    for run in &run_ids {
        let run = s.wait_run(*run).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    // Runs of one rule never overlap: each started after the previous one finished.
    let (_, runs) = s
        .get_json(&format!("/api/runs?rule_id={id}&limit=100"))
        .await;
    let mut spans: Vec<(String, String)> = runs["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            (
                r["started_at"].as_str().unwrap_or_default().to_string(),
                r["finished_at"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        spans.len(),
        run_ids.len(),
        "every trigger got one of the recorded runs"
    );
    assert!(spans.len() < 50, "concurrent triggers joined active runs");
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped: {pair:?}");
    }
    let (_, view) = s.get_json(&format!("/api/rules/{id}")).await;
    let seg = view["segment_id"].as_i64().expect("segment");
    let (_, seg) = s.get_json(&format!("/api/segments/{seg}")).await;
    let expected = count_of_sql(&s.store, seg["sql_query"].as_str().unwrap_or(""));
    assert_eq!(seg["row_count"], expected);
    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => unreachable!("all tasks joined"),
    }
}

on_every_engine!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    fifty_triggers_of_different_rules_and_reads_keep_answering
);
async fn fifty_triggers_of_different_rules_and_reads_keep_answering(engine: Engine) {
    let s = Arc::new(TestServer::start_with(engine, |_| {}, 2000, 40_000).await);
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut body = rule(&format!("Spend over {}", i * 500));
        body["conditions"] = json!([{"field": "total_spend", "operator": ">", "value": i * 500}]);
        body["schedule"] = json!(null);
        ids.push(s.create_rule(&body).await);
    }
    let mut tasks = Vec::new();
    for n in 0..50 {
        let s = Arc::clone(&s);
        let id = ids[n % ids.len()];
        tasks.push(tokio::spawn(async move { (id, s.trigger(id).await) }));
    }
    // Reads while the refreshes run.
    let reader = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..40 {
                for path in ["/api/health", "/api/rules", "/api/segments", "/api/runs"] {
                    let resp = s.get(path).await;
                    assert_eq!(resp.status(), StatusCode::OK, "{path}");
                    answered += 1;
                }
            }
            answered
        })
    };
    let mut runs_by_rule: HashMap<i64, HashSet<i64>> = HashMap::new();
    for t in tasks {
        let (id, run) = t.await.expect("trigger task");
        runs_by_rule.entry(id).or_default().insert(run);
    }
    assert_eq!(reader.await.expect("reader"), 160);
    for (rule_id, runs) in &runs_by_rule {
        for run in runs {
            let run = s.wait_run(*run).await;
            assert_eq!(run["status"], "succeeded", "{run}");
            assert_eq!(run["rule_id"], *rule_id);
        }
    }
    assert_eq!(runs_by_rule.len(), 10);
    let (_, failed) = s.get_json("/api/runs?status=failed").await;
    assert_eq!(failed["items"], json!([]));
    // Each segment matches its own stored SQL, and the thresholds nest.
    let mut counts = Vec::new();
    for id in &ids {
        let (_, view) = s.get_json(&format!("/api/rules/{id}")).await;
        let seg = view["segment_id"].as_i64().expect("segment");
        let (_, seg) = s.get_json(&format!("/api/segments/{seg}")).await;
        counts.push(seg["row_count"].as_i64().expect("row_count"));
    }
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => unreachable!("all tasks joined"),
    }
}
