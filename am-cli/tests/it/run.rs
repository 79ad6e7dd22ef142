//! `am run`: the result table, failures and the summary line.

use crate::{Scratch, run};

/// A database with two rules, "Tier 1" (on `city_tier`) and "Spenders", and a little data.
fn two_rules() -> Scratch {
    let s = Scratch::new();
    s.write(
        "tier.json",
        r#"{"rule_name": "Tier 1", "conditions": [{"field": "city_tier", "operator": "=", "value": 1}]}"#,
    );
    s.write(
        "spenders.json",
        r#"{"rule_name": "Spenders", "conditions": [{"field": "total_spend", "operator": ">", "value": 0}]}"#,
    );
    for args in [
        vec!["init"],
        vec!["rules", "add", "tier.json"],
        vec!["rules", "add", "spenders.json"],
        vec![
            "generate",
            "--users",
            "50",
            "--transactions",
            "300",
            "--end",
            "2025-06-30",
        ],
    ] {
        let out = run(s.am().args(&args));
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    s
}

#[test]
fn a_failed_rule_is_one_short_line_and_not_counted_as_refreshed() {
    let s = two_rules();
    // Someone else's migration renames a column the rule reads.
    rusqlite::Connection::open(s.path("audience.db"))
        .expect("open")
        .execute_batch("ALTER TABLE users RENAME COLUMN city_tier TO tier")
        .expect("rename");
    let out = run(s
        .am()
        .args(["run", "--all", "--as-of", "2025-06-30 12:00:00"]));
    assert_eq!(out.code, 1);
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        assert!(line.chars().count() <= 240, "long line: {line}");
    }
    insta::assert_snapshot!(out.snapshot());

    // The run history keeps the same short error.
    let conn = rusqlite::Connection::open(s.path("audience.db")).expect("open");
    let error: String = conn
        .query_row(
            "SELECT error FROM refresh_runs WHERE status = 'failed'",
            [],
            |r| r.get(0),
        )
        .expect("a failed run");
    assert!(error.chars().count() <= 240, "{error}");
    assert!(error.contains("no such column"), "{error}");
}

#[test]
fn json_as_of_is_utc_with_a_z() {
    let s = two_rules();
    let out = run(s
        .am()
        .args(["--json", "run", "--all", "--as-of", "2025-06-30 12:00:00"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["as_of"], "2025-06-30T12:00:00Z");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));
}
