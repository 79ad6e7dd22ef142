//! `am --engine sc://...`: segments computed on Spark (am-testkit's throwaway server), kept in
//! the SQLite store, and served by `am serve` like any other.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::{Scratch, run};

/// A store with generated data and two rules, built once on SQLite.
fn built_on_sqlite() -> Scratch {
    let s = Scratch::new();
    s.write(
        "tier.json",
        r#"{"rule_name": "Tier 1 spenders", "conditions": [{"field": "city_tier", "operator": "=", "value": 1}, {"field": "total_spend", "operator": ">", "value": 500}]}"#,
    );
    s.write(
        "travel.json",
        r#"{"rule_name": "Travellers", "conditions": [{"field": "category", "operator": "=", "value": "Travel"}], "start_date": "2025-01-01", "end_date": "2025-06-30"}"#,
    );
    for args in [
        vec!["init"],
        vec!["rules", "add", "tier.json"],
        vec!["rules", "add", "travel.json"],
        vec![
            "generate",
            "--users",
            "300",
            "--transactions",
            "6000",
            "--end",
            "2025-06-30",
        ],
        vec!["run", "--all", "--as-of", "2025-06-30T12:00:00Z"],
    ] {
        let out = run(s.am().args(&args));
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    s
}

#[test]
fn run_on_spark_gives_the_same_members_and_the_server_serves_them() {
    let s = built_on_sqlite();
    let before: Vec<i64> = (1..=2)
        .map(|id| {
            s.store()
                .segment_for_rule(id)
                .expect("segment")
                .expect("built")
                .row_count
        })
        .collect();
    assert!(before.iter().all(|&n| n > 0), "{before:?}");

    let url = am_testkit::spark::server().url();
    let out = run(s.am().args([
        "--engine",
        &url,
        "--spark-source",
        "jdbc",
        "run",
        "--all",
        "--as-of",
        "2025-06-30T12:00:00Z",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (id, &count) in (1..=2).zip(&before) {
        let segment = s
            .store()
            .segment_for_rule(id)
            .expect("segment")
            .expect("built");
        assert_eq!(segment.engine, "spark");
        assert_eq!(
            (segment.row_count, segment.entered, segment.left),
            (count, 0, 0),
            "rule {id}: Spark's members are SQLite's"
        );
        assert!(
            segment.sql_query.contains('`'),
            "Spark SQL: {}",
            segment.sql_query
        );
    }

    // Preview on Spark counts what the refresh built.
    let out = run(s.am().args([
        "--engine",
        &url,
        "--spark-source",
        "jdbc",
        "--json",
        "rules",
        "preview",
        "tier.json",
        "--as-of",
        "2025-06-30T12:00:00Z",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let previewed: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(previewed["audience_size"].as_i64(), Some(before[0]));
    assert!(
        previewed["sql"].as_str().is_some_and(|q| q.contains('`')),
        "Spark SQL: {previewed}"
    );

    // The server needs no engine to serve what Spark built.
    let mut server = Command::new(assert_cmd::cargo::cargo_bin("am"))
        .current_dir(s.dir.path())
        .env_remove("AM_DB")
        .env_remove("AM_API_TOKEN")
        .env_remove("AM_ENGINE")
        .env("RUST_LOG", "off")
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start am serve");
    let mut line = String::new();
    if let Some(stderr) = server.stderr.take() {
        BufReader::new(stderr).read_line(&mut line).expect("read");
    }
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let mut stream = TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "GET /api/segments HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let _ = server.kill();
    let _ = server.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for count in before {
        assert!(
            response.contains(&format!("\"row_count\":{count}")),
            "{count} in {response}"
        );
    }
}

#[test]
fn a_spark_that_is_down_is_one_line_and_the_segments_stay() {
    let s = built_on_sqlite();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = run(s.am().args([
        "--engine",
        &format!("sc://127.0.0.1:{port}"),
        "run",
        "--all",
    ]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(&port.to_string()), "{}", out.stderr);
    let segment = s
        .store()
        .segment_for_rule(1)
        .expect("segment")
        .expect("built");
    assert_eq!(segment.engine, "sqlite");
}

#[test]
fn bad_engine_settings_are_named() {
    let s = built_on_sqlite();
    let out = run(s
        .am()
        .args(["--engine", "http://spark:15002", "run", "--all"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("sc://HOST:PORT"), "{}", out.stderr);
    let out = run(s.am().args([
        "--engine",
        "sc://127.0.0.1:15002",
        "--spark-source",
        "parquet",
        "run",
        "--all",
    ]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("expected catalog, catalog:DATABASE or jdbc"),
        "{}",
        out.stderr
    );
}
