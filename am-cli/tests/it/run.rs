//! `am run`: the result table, failures and the summary line.

use am_sql::runs::{RunFilter, RunStatus};
use sea_query::Table;

use crate::{Engine, Scratch, on_every_engine, run};

/// A database with two rules, "Tier 1" (on `city_tier`) and "Spenders", and a little data.
fn two_rules(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
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

/// Whether `error` is the engine's report of the column the test renamed away.
fn names_the_missing_column(engine: Engine, error: &str) -> bool {
    match engine {
        Engine::Sqlite => error.contains("no such column: users.city_tier"),
        #[cfg(feature = "postgres")]
        Engine::Postgres => error.contains("city_tier") && error.contains("does not exist"),
    }
}

on_every_engine!(a_failed_rule_is_one_short_line_and_not_counted_as_refreshed);
fn a_failed_rule_is_one_short_line_and_not_counted_as_refreshed(engine: Engine) {
    let s = two_rules(engine);
    // Someone else's migration renames a column the rule reads.
    let mut conn = s.store().connection().expect("connection");
    let rename = Table::alter()
        .table("users")
        .rename_column("city_tier", "tier")
        .to_owned();
    let sql = conn.dialect().table(&rename);
    conn.batch(&sql).expect("rename");
    drop(conn);
    let out = run(s
        .am()
        .args(["run", "--all", "--as-of", "2025-06-30 12:00:00"]));
    assert_eq!(out.code, 1);
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        assert!(line.chars().count() <= 240, "long line: {line}");
    }
    match engine {
        // The whole output; the engine's own words for the error differ.
        Engine::Sqlite => insta::assert_snapshot!(out.snapshot()),
        #[cfg(feature = "postgres")]
        Engine::Postgres => {
            let error_line = out.stdout.lines().find(|l| l.starts_with("#1 Tier 1: "));
            assert!(
                error_line.is_some_and(|l| names_the_missing_column(engine, l)),
                "{}",
                out.stdout
            );
            assert!(
                crate::redact(&out.stdout)
                    .contains("\nrefreshed 1 of 2 segments as of [time] UTC; 1 failed\n"),
                "{}",
                out.stdout
            );
            assert_eq!(out.stderr, "am: 1 of 2 rules did not refresh\n");
        }
    }

    // The run history keeps the same short error.
    let failed = s
        .store()
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        })
        .expect("runs");
    let [failed] = failed.as_slice() else {
        panic!("one failed run: {failed:?}");
    };
    let error = failed.error.as_deref().expect("an error");
    assert!(error.chars().count() <= 240, "{error}");
    assert!(names_the_missing_column(engine, error), "{error}");
}

on_every_engine!(json_as_of_is_utc_with_a_z);
fn json_as_of_is_utc_with_a_z(engine: Engine) {
    let s = two_rules(engine);
    let out = run(s
        .am()
        .args(["--json", "run", "--all", "--as-of", "2025-06-30 12:00:00"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["as_of"], "2025-06-30T12:00:00Z");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));
}

/// The rule ids a `--json` run refreshed.
fn refreshed(out: &crate::Outcome) -> Vec<i64> {
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let mut ids: Vec<i64> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["rule_id"].as_i64().expect("rule_id"))
        .collect();
    ids.sort_unstable();
    ids
}

on_every_engine!(selectors_add_what_a_rule_is_built_from_or_what_is_built_from_it);
fn selectors_add_what_a_rule_is_built_from_or_what_is_built_from_it(engine: Engine) {
    let s = two_rules(engine);
    s.write(
        "both.json",
        r#"{"rule_name": "Tier spenders", "depends_on": ["Tier 1", "Spenders"]}"#,
    );
    s.write(
        "top.json",
        r#"{"rule_name": "Top", "depends_on": ["Tier spenders"], "conditions": [{"field": "total_spend", "operator": ">", "value": 100}]}"#,
    );
    // A rule whose own name ends with `+` is that rule, not a selector.
    s.write(
        "plus.json",
        r#"{"rule_name": "Spenders+", "conditions": [{"field": "city_tier", "operator": "=", "value": 2}]}"#,
    );
    for file in ["both.json", "top.json", "plus.json"] {
        let out = run(s.am().args(["rules", "add", file]));
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let json_run = |selector: &str| run(s.am().args(["--json", "run", selector]));
    // Ids: 1 Tier 1, 2 Spenders, 3 Tier spenders (1 and 2), 4 Top (3), 5 "Spenders+".
    assert_eq!(refreshed(&json_run("+Top")), [1, 2, 3, 4]);
    assert_eq!(refreshed(&json_run("Tier 1+")), [1, 3, 4]);
    assert_eq!(refreshed(&json_run("+Tier spenders+")), [1, 2, 3, 4]);
    // Everything is fresh now: a plain name refreshes that rule alone.
    assert_eq!(refreshed(&json_run("Tier spenders")), [3]);
    assert_eq!(refreshed(&json_run("Spenders+")), [5]);
    assert_eq!(refreshed(&json_run("+2+")), [2, 3, 4]);

    let unknown = run(s.am().args(["run", "Nobody+"]));
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("\"Nobody\""), "{}", unknown.stderr);
    for bare in ["+", "++"] {
        let out = run(s.am().args(["run", bare]));
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("names no rule"), "{}", out.stderr);
    }
}

#[test]
fn run_without_rules_says_how_to_choose_them() {
    let s = Scratch::on(Engine::Sqlite);
    let out = run(s.am().args(["run"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    for hint in ["--all", "--stale", "+RULE", "RULE+"] {
        assert!(out.stderr.contains(hint), "{hint}: {}", out.stderr);
    }
}
