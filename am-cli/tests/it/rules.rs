//! Rules: validate, add, list, show, edit, delete.

use crate::{Scratch, data_dir, run};

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

#[test]
fn add_list_show_edit_delete() {
    let s = Scratch::new();
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
    assert_eq!(invalid.stderr.lines().count(), 1);
    let list = run(s.am().args(["rules", "list"]));
    let show = run(s.am().args(["rules", "show", "High value travellers"]));
    let in_use = run(s.am().args(["rules", "delete", "1"]));
    assert_eq!(in_use.code, 1);
    insta::assert_snapshot!(
        [&add, &tier1, &add2, &dup, &invalid, &list, &show, &in_use]
            .iter()
            .map(|o| o.snapshot())
            .collect::<String>()
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
