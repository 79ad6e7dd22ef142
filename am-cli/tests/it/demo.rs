//! The demo, then run, explain and segments on what it built.

use crate::{Engine, Scratch, on_every_engine, run};

fn small_demo(s: &Scratch, db: &str) -> crate::Outcome {
    run(s
        .am_db(db)
        .args(["demo", "--users", "400", "--transactions", "8000"]))
}

on_every_engine!(demo_builds_every_segment_and_shows_reuse);
fn demo_builds_every_segment_and_shows_reuse(engine: Engine) {
    let s = Scratch::on(engine);
    let out = small_demo(&s, "audience.db");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reused = match engine {
        // The planner's reuse for the two stricter rules, which SQLite's refresh did not read.
        Engine::Sqlite => {
            "2 of 12 segments were answered from other segments by the DependencyFinder (REUSED FROM).\nIt found 4; for the other 2, reading the segment costs more"
        }
        // PostgreSQL reads every segment the planner chose.
        #[cfg(feature = "postgres")]
        Engine::Postgres => {
            "4 of 12 segments were answered from other segments by the DependencyFinder (REUSED FROM).\nDemo finished"
        }
    };
    for line in [
        "Creating 12 example rules ...",
        reused,
        "http://127.0.0.1:8080",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in {}", out.stdout);
    }
    // The next steps name the database as `am` was given it, as one shell word.
    let serve = match engine {
        Engine::Sqlite => "  am serve ".to_string(),
        #[cfg(feature = "postgres")]
        Engine::Postgres => format!("  am --db '{}' serve ", s.location()),
    };
    assert!(out.stdout.contains(&serve), "{serve:?} in {}", out.stdout);

    // Which segments each rule was computed from. The finder also answers the two stricter
    // rules (#1, #3) from a looser one, but those hold a third of the users or more, so
    // SQLite's refresh evaluates them from their own conditions (cheaper than a lookup per
    // member); PostgreSQL reads them as planned.
    let list = run(s.am().args(["--json", "segments", "list"]));
    assert_eq!(list.code, 0, "{}", list.stderr);
    let segments: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
    let segments = segments.as_array().expect("a list");
    assert_eq!(segments.len(), 12);
    let name_of = |id: &serde_json::Value| {
        segments
            .iter()
            .find(|s| s["rule_id"] == *id)
            .and_then(|s| s["segment_name"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut by_id: Vec<&serde_json::Value> = segments.iter().collect();
    by_id.sort_by_key(|s| s["rule_id"].as_i64());
    let mut reuse = String::new();
    for seg in by_id {
        let from: Vec<String> = seg["reused_from"]
            .as_array()
            .expect("reused_from")
            .iter()
            .map(name_of)
            .collect();
        reuse.push_str(&format!(
            "#{} {}: {}\n",
            seg["rule_id"],
            seg["segment_name"].as_str().unwrap_or("?"),
            if from.is_empty() {
                "-".into()
            } else {
                from.join(", ")
            }
        ));
    }
    insta::assert_snapshot!(reuse);

    // Running the demo again replaces its own data.
    let again = small_demo(&s, "audience.db");
    assert_eq!(again.code, 0, "{}", again.stderr);
}

on_every_engine!(demo_refuses_a_database_with_other_rules);
fn demo_refuses_a_database_with_other_rules(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    let add = run(s.am().args(["rules", "add", "-"]).write_stdin(
        r#"{"rule_name": "Mine", "conditions": {"field": "city_tier", "operator": "=", "value": 1}}"#,
    ));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let out = small_demo(&s, "audience.db");
    assert_eq!(out.code, 1);
    insta::assert_snapshot!(s.neutral(out.snapshot()));
}

on_every_engine!(run_explain_and_segments_after_the_demo);
fn run_explain_and_segments_after_the_demo(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(small_demo(&s, "demo.db").code, 0);
    let am = || s.am_db("demo.db");

    let stale = run(am().args(["run", "--stale"]));
    assert_eq!(stale.code, 0, "{}", stale.stderr);
    let one = run(am().args([
        "--json",
        "run",
        "Very big spenders",
        "--as-of",
        "2025-06-30",
    ]));
    assert_eq!(one.code, 0, "{}", one.stderr);
    let report: serde_json::Value = serde_json::from_str(&one.stdout).expect("json");
    assert_eq!(report["as_of"], "2025-06-30T23:59:59Z");
    let nodes = report["nodes"].as_array().expect("nodes");
    assert!(
        nodes
            .iter()
            .any(|n| n["rule_name"] == "Very big spenders" && n["status"] == "succeeded")
    );
    let unknown = run(am().args(["run", "Nobody"]));
    assert_eq!(unknown.code, 1);
    assert_eq!(
        unknown.stderr,
        "am: no rule with id or name \"Nobody\" (see `am rules list`)\n"
    );

    let explain = run(am().args(["rules", "explain", "Tier 1 big spenders"]));
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain
            .stdout
            .contains("plan for #5 \"Tier 1 big spenders\"")
    );
    assert!(explain.stdout.contains("sql of #5 Tier 1 big spenders"));
    assert!(explain.stdout.contains("SELECT"));
    let dot = run(am().args(["rules", "explain", "5", "--dot"]));
    assert_eq!(dot.code, 0);
    assert!(dot.stdout.starts_with("digraph plan {"), "{}", dot.stdout);
    assert!(dot.stdout.contains("style=dashed"), "{}", dot.stdout);

    let show = run(am().args(["segments", "show", "Big spenders"]));
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("segment_output_2"));
    let sample = run(am().args(["--json", "segments", "sample", "2", "-n", "3"]));
    let v: serde_json::Value = serde_json::from_str(&sample.stdout).expect("json");
    assert_eq!(
        v["columns"],
        serde_json::json!(["user_id", "name", "email"])
    );
    assert_eq!(v["data"].as_array().map(Vec::len), Some(3));

    let csv = run(am().args(["segments", "export", "Big spenders", "--format", "csv"]));
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let json = run(am().args([
        "segments", "export", "2", "--format", "json", "-o", "big.json",
    ]));
    assert_eq!(json.code, 0, "{}", json.stderr);
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("big.json")).expect("written"))
            .expect("json");
    let rows = exported.as_array().expect("array");
    assert_eq!(
        csv.stdout.lines().count(),
        rows.len() + 1,
        "header + members"
    );
    assert_eq!(csv.stdout.lines().next(), Some("user_id,name,email"));
    let members: serde_json::Value =
        serde_json::from_str(&run(am().args(["--json", "segments", "show", "2"])).stdout)
            .expect("json");
    assert_eq!(members["row_count"].as_u64(), Some(rows.len() as u64));

    // Without --format the file's extension decides; a contradicting one is refused and
    // writes nothing.
    let by_name = run(am().args(["segments", "export", "2", "-o", "named.json"]));
    assert_eq!(by_name.code, 0, "{}", by_name.stderr);
    let named: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("named.json")).expect("written"))
            .expect("named.json is JSON");
    assert_eq!(named, exported);
    let upper = run(am().args(["segments", "export", "2", "-o", "NAMED.CSV"]));
    assert_eq!(upper.code, 0, "{}", upper.stderr);
    let upper = std::fs::read_to_string(s.path("NAMED.CSV")).expect("written");
    assert_eq!(upper, csv.stdout);
    let clash = run(am().args([
        "segments",
        "export",
        "2",
        "--format",
        "csv",
        "-o",
        "clash.json",
    ]));
    assert_eq!(clash.code, 1);
    assert!(
        clash
            .stderr
            .contains("--format csv does not match the file name")
            && clash.stderr.contains("clash.json"),
        "{}",
        clash.stderr
    );
    assert!(!s.path("clash.json").exists());

    // After the first build every member entered, and nobody left.
    let diff = run(am().args(["--json", "segments", "diff", "Big spenders", "-n", "3"]));
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    let diff: serde_json::Value = serde_json::from_str(&diff.stdout).expect("json");
    assert_eq!(diff["entered"], diff["members"]);
    assert_eq!(diff["left"], 0);
    assert_eq!(diff["entered_ids"].as_array().map(Vec::len), Some(3));
    assert_eq!(diff["left_ids"], serde_json::json!([]));
    let text = run(am().args(["segments", "diff", "Big spenders", "-n", "2"]));
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains(" more\n"), "{}", text.stdout);
    assert!(text.stdout.contains("left    0\n"), "{}", text.stdout);
}
