//! Rules: validate, add, list, show, edit, delete.

use crate::{Engine, Scratch, data_dir, on_every_engine, run};

#[test]
fn validate_lists_every_problem_with_its_path_and_exits_with_three() {
    let s = Scratch::new();
    let out = run(s
        .am()
        .args(["rules", "validate", "invalid.json"])
        .current_dir(data_dir()));
    assert_eq!(out.code, 3);
    insta::assert_snapshot!(out.snapshot());
    let json = run(s
        .am()
        .args(["--json", "rules", "validate", "invalid.json"])
        .current_dir(data_dir()));
    assert_eq!(json.code, 3);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["valid"], false);
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    for path in [
        "conditions[0].field",
        "conditions[1].operator",
        "conditions[2].value",
        "schedule",
        "operation",
    ] {
        assert!(paths.contains(&path), "{path} in {paths:?}");
    }
}

#[test]
fn validate_accepts_a_good_rule_from_a_file_or_stdin() {
    let s = Scratch::new();
    let out = run(s
        .am()
        .args(["rules", "validate", "high_value.json"])
        .current_dir(data_dir()));
    assert_eq!(out.code, 0);
    let text = std::fs::read_to_string(data_dir().join("high_value.json")).expect("read");
    let stdin = run(s.am().args(["rules", "validate", "-"]).write_stdin(text));
    assert_eq!(stdin.code, 0);
    insta::assert_snapshot!(format!("{}{}", out.snapshot(), stdin.snapshot()));
}

on_every_engine!(add_list_show_edit_delete);
fn add_list_show_edit_delete(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    for name in ["high_value.json", "invalid.json"] {
        let text = std::fs::read_to_string(data_dir().join(name)).expect("test data");
        s.write(name, &text);
    }
    let add = run(s.am().args(["rules", "add", "high_value.json"]));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let tier1 = run(s.am().args(["rules", "add", "-"]).write_stdin(
        r#"{"rule_name": "Tier 1", "conditions": {"field": "city_tier", "operator": "=", "value": 1}}"#,
    ));
    assert_eq!(tier1.code, 0, "{}", tier1.stderr);
    s.write(
        "union.json",
        r#"{"rule_name": "Travellers or tier 1", "depends_on": ["High value travellers", 2], "operation": "UNION"}"#,
    );
    let add2 = run(s.am().args(["rules", "add", "union.json"]));
    assert_eq!(add2.code, 0, "{}", add2.stderr);
    let dup = run(s.am().args(["rules", "add", "high_value.json"]));
    assert_eq!(dup.code, 1);
    let invalid = run(s.am().args(["rules", "add", "invalid.json"]));
    assert_eq!(invalid.code, 3);
    let lines: Vec<&str> = invalid.stderr.lines().collect();
    assert_eq!(lines.len(), 7, "six problems and the summary");
    assert!(lines[..6].iter().all(|l| l.starts_with("invalid.json: ")));
    assert_eq!(
        lines[6],
        "am: invalid.json is not a valid rule (6 problems); no rule was added"
    );
    let list = run(s.am().args(["rules", "list"]));
    let show = run(s.am().args(["rules", "show", "High value travellers"]));
    let in_use = run(s.am().args(["rules", "delete", "1"]));
    assert_eq!(in_use.code, 1);
    insta::assert_snapshot!(
        s.neutral(
            [&add, &tier1, &add2, &dup, &invalid, &list, &show, &in_use]
                .iter()
                .map(|o| o.snapshot())
                .collect::<String>()
        )
    );

    s.write(
        "edited.json",
        r#"{"rule_name": "Travel fans", "conditions": [{"field": "category", "operator": "=", "value": "Travel"}]}"#,
    );
    let edit = run(s.am().args(["rules", "edit", "#1", "edited.json"]));
    assert_eq!(edit.code, 0, "{}", edit.stderr);
    let shown = run(s.am().args(["--json", "rules", "show", "Travel fans"]));
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert_eq!(v["id"], 1);
    assert_eq!(v["version"], 2);
    assert_eq!(v["conditions"][0]["value"], "Travel");

    assert_eq!(
        run(s.am().args(["rules", "delete", "Travellers or tier 1"])).code,
        0
    );
    assert_eq!(run(s.am().args(["rules", "delete", "1"])).code, 0);
    assert_eq!(run(s.am().args(["rules", "delete", "Tier 1"])).code, 0);
    let empty = run(s.am().args(["rules", "list"]));
    assert_eq!(
        empty.stdout,
        "no rules yet: add one with `am rules add FILE.json` (or try `am demo`)\n"
    );
    let json = run(s.am().args(["--json", "rules", "list"]));
    assert_eq!(json.stdout.trim(), "[]");
}

/// A database with the rule "High value travellers" (#1) and five users.
fn store_with_one_rule(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    let text = std::fs::read_to_string(data_dir().join("high_value.json")).expect("test data");
    s.write("high_value.json", &text);
    assert_eq!(
        run(s.am().args(["rules", "add", "high_value.json"])).code,
        0
    );
    let users = run(s
        .am()
        .args(["generate", "--users", "5", "--transactions", "0"]));
    assert_eq!(users.code, 0, "{}", users.stderr);
    s
}

on_every_engine!(validate_and_add_accept_exactly_the_same_files);
fn validate_and_add_accept_exactly_the_same_files(engine: Engine) {
    let s = store_with_one_rule(engine);
    let tier1 = r#"[{"field": "city_tier", "operator": "=", "value": 1}]"#;
    let files = [
        (
            "named.json",
            r#"{"rule_name": "Named", "depends_on": ["High value travellers"], "operation": "UNION"}"#
                .to_string(),
            0,
        ),
        (
            "typo.json",
            format!(r#"{{"rule_name": "Typo", "condition": {tier1}}}"#),
            3,
        ),
        ("none.json", r#"{"rule_name": "None"}"#.to_string(), 3),
        (
            "everyone.json",
            r#"{"rule_name": "Everyone", "conditions": []}"#.to_string(),
            0,
        ),
        (
            "twice.json",
            r#"{"rule_name": "Twice", "depends_on": ["High value travellers", "High value travellers"]}"#
                .to_string(),
            3,
        ),
        (
            "nested.json",
            r#"{"rule_name": "Nested", "conditions": [{"field": "total_spend", "operator": ">", "valeu": 1}]}"#
                .to_string(),
            3,
        ),
    ];
    for (name, text, code) in &files {
        s.write(name, text);
        let validate = run(s.am().args(["rules", "validate", name]));
        assert_eq!(
            validate.code,
            *code,
            "validate {name}: {}",
            validate.snapshot()
        );
        let add = run(s.am().args(["rules", "add", name]));
        assert_eq!(add.code, *code, "add {name}: {}", add.snapshot());
    }
    let validate = run(s.am().args(["rules", "validate", "named.json"]));
    assert_eq!(
        validate.stdout,
        "named.json: rule \"Named\" is valid\n  depends on \"High value travellers\" (checked against the database by `am rules add`)\n"
    );
    let typo = run(s.am().args(["rules", "validate", "typo.json"]));
    assert_eq!(
        typo.stdout,
        "typo.json: condition: unknown key; did you mean conditions?\n"
    );
    let none = run(s.am().args(["rules", "add", "none.json"]));
    assert_eq!(
        none.stderr,
        "none.json: conditions: is required when depends_on is empty; write \"conditions\": [] to select every user\n\
         am: none.json is not a valid rule (1 problem); no rule was added\n"
    );
    let twice = run(s.am().args(["rules", "validate", "twice.json"]));
    assert_eq!(
        twice.stdout,
        "twice.json: depends_on[1]: rule \"High value travellers\" is listed more than once\n"
    );
    // The name was saved as the rule's id; "Everyone" is every user, explicitly.
    let named = run(s.am().args(["--json", "rules", "show", "Named"]));
    let v: serde_json::Value = serde_json::from_str(&named.stdout).expect("json");
    assert_eq!(v["depends_on"], serde_json::json!([1]));
    let list = run(s.am().args(["rules", "list"]));
    assert!(
        list.stdout
            .lines()
            .any(|l| l.contains("Everyone") && l.contains("every user")),
        "{}",
        list.stdout
    );
    assert_eq!(run(s.am().args(["run", "Everyone"])).code, 0);
    let shown = run(s.am().args(["--json", "rules", "show", "Everyone"]));
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert_eq!(v["segment"]["row_count"], 5);
}

on_every_engine!(add_and_edit_print_each_problem_on_its_own_line_with_the_file);
fn add_and_edit_print_each_problem_on_its_own_line_with_the_file(engine: Engine) {
    let s = store_with_one_rule(engine);
    s.write(
        "bad.json",
        r#"{"rule_name": "Bad", "conditions": [{"field": "total_spend", "operator": ">", "value": 0.001},
                                              {"field": "total_spend", "value": 1}],
            "depends_on": ["Nobody", 1], "operation": "XOR"}"#,
    );
    let problems = "\
bad.json: depends_on[0]: no rule with id or name \"Nobody\" (see `am rules list`)
bad.json: operation: unknown operation \"XOR\"; allowed: INTERSECTION, UNION, DIFFERENCE
bad.json: conditions[0].value: total_spend needs an amount with at most 2 decimal places, got 0.001
bad.json: conditions[1].operator: is required; allowed for total_spend (money): =, !=, >, >=, <, <=, in, not_in, between, is_null, is_not_null
";
    let add = run(s.am().args(["rules", "add", "bad.json"]));
    assert_eq!(add.code, 3);
    assert_eq!(add.stdout, "");
    assert_eq!(
        add.stderr,
        format!("{problems}am: bad.json is not a valid rule (4 problems); no rule was added\n")
    );
    let edit = run(s.am().args(["rules", "edit", "1", "bad.json"]));
    assert_eq!(edit.code, 3);
    assert_eq!(
        edit.stderr,
        format!(
            "{problems}am: bad.json is not a valid rule (4 problems); rule #1 was not changed\n"
        )
    );
    // An unknown rule id is found by the store, and reported the same way.
    s.write(
        "missing.json",
        r#"{"rule_name": "Missing", "depends_on": [1, 99, 98]}"#,
    );
    let missing = run(s.am().args(["rules", "add", "missing.json"]));
    assert_eq!(missing.code, 3);
    assert_eq!(
        missing.stderr,
        "missing.json: depends_on[1]: no rule with id 99\n\
         missing.json: depends_on[2]: no rule with id 98\n\
         am: missing.json is not a valid rule (2 problems); no rule was added\n"
    );
    let list = run(s.am().args(["--json", "rules", "list"]));
    let v: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "nothing was added");
}

on_every_engine!(preview_counts_a_rule_file_and_saves_nothing);
fn preview_counts_a_rule_file_and_saves_nothing(engine: Engine) {
    let s = Scratch::on(engine);
    s.write(
        "spenders.json",
        r#"{"rule_name": "Spenders", "conditions": [{"field": "total_spend", "operator": ">", "value": 1000}]}"#,
    );
    for args in [
        vec!["init"],
        vec![
            "generate",
            "--users",
            "100",
            "--transactions",
            "1000",
            "--end",
            "2025-06-30",
        ],
    ] {
        let out = run(s.am().args(&args));
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let out = run(s.am().args(["--json", "rules", "preview", "spenders.json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let previewed: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let size = previewed["audience_size"].as_i64().expect("size");
    assert!(
        previewed["sql"]
            .as_str()
            .is_some_and(|q| q.starts_with("SELECT"))
    );
    assert_eq!(s.count("rule_table"), 0, "nothing saved");

    // The same rule, saved and built, has exactly the members the preview counted.
    assert_eq!(run(s.am().args(["rules", "add", "spenders.json"])).code, 0);
    assert_eq!(run(s.am().args(["run", "--all"])).code, 0);
    assert_eq!(s.count("segment_output_1"), size);
    let out = run(s.am().args(["rules", "preview", "spenders.json"]));
    assert!(
        out.stdout
            .starts_with(&format!("\"Spenders\" would have {size} member")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("reuse: same condition as rule #1"),
        "{}",
        out.stdout
    );

    s.write("typo.json", r#"{"rule_name": "x", "conditons": []}"#);
    let out = run(s.am().args(["rules", "preview", "typo.json"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("typo.json: conditons: unknown key; did you mean conditions?"),
        "{}",
        out.stderr
    );
}
