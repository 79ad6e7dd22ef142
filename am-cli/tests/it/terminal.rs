//! Names and other text from users reach the terminal escaped: no control or bidirectional
//! character is printed raw, and `--json` stays valid JSON with the exact text.

use sea_query::{Expr, ExprTrait, Query};

use crate::{Engine, Scratch, on_every_engine, run};

/// A name as an API client could store it: NUL, BEL, a title-setting and a screen-clearing
/// escape sequence, a right-to-left override, an isolate, DEL, a C1 control, a line break
/// that would forge a row, a tab and a carriage return.
const NASTY: &str =
    "Evil\0\u{7}\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}exe.txt\u{2066}\u{7f}\u{85}\nfake row\ttab\r";

/// [`NASTY`] as the engine can store it: PostgreSQL text cannot hold NUL.
fn nasty(engine: Engine) -> String {
    match engine {
        Engine::Sqlite => NASTY.to_string(),
        #[cfg(feature = "postgres")]
        Engine::Postgres => NASTY.replace('\0', ""),
    }
}

/// The start of [`nasty`] as `am` shows it, escaped.
fn shown(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => r"Evil\u{0}\u{7}\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}exe.txt",
        #[cfg(feature = "postgres")]
        Engine::Postgres => r"Evil\u{7}\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}exe.txt",
    }
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Two rules whose names, descriptions, segment names, members and a condition value carry
/// [`nasty`], written straight into the store as an old or careless writer could.
fn nasty_store(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    let nasty = nasty(engine);
    s.write(
        "tier.json",
        r#"{"rule_name": "Tier 1", "conditions": [{"field": "city_tier", "operator": "=", "value": 1}]}"#,
    );
    s.write(
        "uses.json",
        r#"{"rule_name": "Uses tier 1", "depends_on": [1], "operation": "UNION"}"#,
    );
    for args in [
        vec!["init"],
        vec!["rules", "add", "tier.json"],
        vec!["rules", "add", "uses.json"],
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
    let mut conn = s.store().connection().expect("connection");
    let conditions = serde_json::json!([
        {"field": "city_tier", "operator": "=", "value": 1},
        {"field": "name", "operator": "!=", "value": nasty},
    ])
    .to_string();
    for id in [1, 2] {
        let mut update = Query::update();
        update
            .table("rule_table")
            .values([
                ("rule_name", Expr::val(format!("{nasty}{id}"))),
                ("description", Expr::val(nasty.as_str())),
            ])
            .and_where(Expr::col("id").eq(id));
        if id == 1 {
            update.value("conditions", conditions.as_str());
        }
        assert_eq!(conn.exec(&update).expect("rename rules"), 1);
    }
    let users = Query::select().column("user_id").from("users").to_owned();
    let ids = conn.rows(&users).expect("read users");
    assert_eq!(ids.len(), 50);
    for row in ids {
        let id = row.i64(0).expect("a user id");
        let update = Query::update()
            .table("users")
            .values([
                ("name", Expr::val(format!("{nasty}{id}"))),
                ("email", Expr::val(format!("{nasty}@example.com"))),
            ])
            .and_where(Expr::col("user_id").eq(id))
            .to_owned();
        conn.exec(&update).expect("rename users");
    }
    let out = run(s.am().args(["run", "--all"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_clean("run --all", &out);
    let describe = Query::update()
        .table("segment_catalog")
        .value("description", nasty.as_str())
        .to_owned();
    conn.exec(&describe).expect("describe segments");
    s
}

fn assert_clean(what: &str, out: &crate::Outcome) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw: Vec<char> = text.chars().filter(|c| is_unsafe(*c)).collect();
        assert!(
            raw.is_empty(),
            "am {what} printed {raw:?} raw on {stream}:\n{text}"
        );
    }
}

on_every_engine!(tables_and_messages_escape_control_and_bidi_characters);
fn tables_and_messages_escape_control_and_bidi_characters(engine: Engine) {
    let s = nasty_store(engine);
    let printing_names: &[&[&str]] = &[
        &["rules", "list"],
        &["rules", "show", "1"],
        &["rules", "show", "2"],
        &["rules", "explain", "1"],
        &["segments", "list"],
        &["segments", "show", "1"],
        &["segments", "sample", "1"],
        &["segments", "diff", "1"],
        &["run", "1"],
    ];
    for args in printing_names {
        let out = run(s.am().args(*args));
        let what = args.join(" ");
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert_clean(&what, &out);
        assert!(
            out.stdout.contains(shown(engine)),
            "am {what} does not show the name escaped:\n{}",
            out.stdout
        );
    }
    // A name with a line break cannot forge a row of a table.
    let list = run(s.am().args(["rules", "list"]));
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    assert!(
        list.stdout
            .contains(r"\u{2066}\u{7f}\u{85}\u{a}fake row\u{9}tab\u{d}1"),
        "{}",
        list.stdout
    );

    // An error that names the rules: the dependant holds rule 1.
    let refused = run(s.am().args(["rules", "delete", "1"]));
    assert_eq!(refused.code, 1);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert_clean("rules delete 1", &refused);

    // A file written with --output says where, naming the segment.
    let export = run(s.am().args([
        "segments", "export", "1", "--format", "json", "-o", "out.json",
    ]));
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert_clean("segments export -o", &export);
}

on_every_engine!(json_output_stays_valid_with_the_exact_text);
fn json_output_stays_valid_with_the_exact_text(engine: Engine) {
    let s = nasty_store(engine);
    for args in [
        &["--json", "rules", "list"][..],
        &["--json", "rules", "show", "1"],
        &["--json", "segments", "list"],
        &["--json", "segments", "sample", "1"],
        &["segments", "export", "1", "--format", "json"],
    ] {
        let out = run(s.am().args(args));
        let what = args.join(" ");
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert_clean(&what, &out);
        let value: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("am {what} is not JSON ({e}):\n{}", out.stdout));
        let text = value.to_string();
        let exact = serde_json::to_string(&nasty(engine)).expect("json");
        assert!(
            text.contains(exact.trim_matches('"')),
            "am {what} lost the text:\n{text}"
        );
    }
}
