//! A load measurement of the read endpoints on loopback: serves a temporary database with
//! generated data and built segments, then fires GETs from many concurrent connections and
//! prints requests per second and latency percentiles per endpoint.
//!
//! `cargo run --release -p am-http --example load -- [users] [transactions] [concurrency] [seconds]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use am_http::{ServerConfig, SystemClock};
use am_sql::Store;
use am_sql::datagen::GenerateOptions;
use chrono::NaiveDate;
use serde_json::json;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users = arg(1, 10_000);
    let transactions = arg(2, 200_000);
    let concurrency = arg(3, 32) as usize;
    let seconds = arg(4, 5);

    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("load.db"))?;
    let end = NaiveDate::from_ymd_opt(2025, 6, 30).ok_or("bad date")?;
    store.generate(
        &GenerateOptions::new(users, transactions, end),
        &am_sql::NoProgress,
    )?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        addr,
        ..ServerConfig::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(am_http::serve_on(
        listener,
        store.clone(),
        config,
        Arc::new(SystemClock),
        async {
            let _ = rx.await;
        },
    ));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    // Ten rules, built once, so the segment endpoints have something to read.
    let mut last_run = 0;
    let mut rule_ids = Vec::new();
    for i in 0..10 {
        let body = json!({
            "rule_name": format!("spend over {}", i * 1000),
            "conditions": [{"field": "total_spend", "operator": ">", "value": i * 1000}],
        });
        let created: serde_json::Value = client
            .post(format!("{base}/api/rules"))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let id = created["rule_id"].as_i64().ok_or("no rule id")?;
        rule_ids.push(id);
        let run: serde_json::Value = client
            .post(format!("{base}/api/rules/{id}/trigger"))
            .send()
            .await?
            .json()
            .await?;
        last_run = run["run_id"].as_i64().ok_or("no run id")?;
    }
    loop {
        let run: serde_json::Value = client
            .get(format!("{base}/api/runs/{last_run}"))
            .send()
            .await?
            .json()
            .await?;
        if run["status"] == "succeeded" || run["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let endpoints = [
        "/api/health".to_string(),
        "/api/rules?page=1&per_page=10".to_string(),
        format!("/api/rules/{}", rule_ids[0]),
        "/api/segments?page=1&per_page=10".to_string(),
        "/api/segments/1".to_string(),
        "/api/segments/1/sample_data".to_string(),
        "/api/analytics/summary".to_string(),
        "/api/runs?limit=20".to_string(),
    ];
    println!(
        "data: {users} users, {transactions} transactions; {concurrency} connections, {seconds} s per endpoint"
    );
    println!("| endpoint | requests/s | p50 | p90 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    for path in endpoints {
        let url = Arc::new(format!("{base}{path}"));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let client = client.clone();
            let url = Arc::clone(&url);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match client.get(url.as_str()).send().await {
                        Ok(resp) if resp.status().is_success() => {
                            let _ = resp.bytes().await;
                            lat.push(t.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await?;
            all.extend(lat);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort();
        println!(
            "| `GET {path}` | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {errors} |",
            all.len() as f64 / elapsed,
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.90).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
        );
    }
    let _ = tx.send(());
    server.await??;
    Ok(())
}
