//! Bad input ends with one line on stderr and a meaningful exit code, never a panic.

use crate::{Engine, Scratch, on_every_engine, run};

fn one_line_error(out: &crate::Outcome) {
    assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr.starts_with("am: "), "{:?}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{:?}", out.stderr);
    assert!(!out.stderr.contains("backtrace"), "{:?}", out.stderr);
}

// SQLite only, as the three below: about files (the default name, what else is in a file).
#[test]
fn a_missing_database_is_not_created_by_readers() {
    let s = Scratch::new();
    for args in [
        vec!["rules", "list"],
        vec!["segments", "list"],
        vec!["rules", "show", "1"],
        vec!["serve"],
    ] {
        let out = run(s.am().args(&args));
        assert_eq!(out.code, 1, "{args:?}");
        one_line_error(&out);
        assert_eq!(
            out.stderr,
            "am: cannot open database audience.db: no database at audience.db (run `am init`)\n"
        );
    }
    assert!(!s.path("audience.db").exists());
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let s = Scratch::new();
    s.write("notes.db", "these are my notes, not a database\n");
    let out = run(s.am().args(["--db", "notes.db", "init"]));
    assert_eq!(out.code, 1);
    one_line_error(&out);
    insta::assert_snapshot!(out.snapshot());
    let content = std::fs::read_to_string(s.path("notes.db")).expect("still there");
    assert_eq!(content, "these are my notes, not a database\n");
}

#[test]
fn a_database_of_another_program_is_refused() {
    let s = Scratch::new();
    let conn = rusqlite::Connection::open(s.path("other.db")).expect("sqlite");
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .expect("create");
    drop(conn);
    let before = std::fs::read(s.path("other.db")).expect("read");
    for args in [
        vec!["init"],
        vec!["rules", "list"],
        vec!["segments", "list"],
        vec!["demo"],
    ] {
        let out = run(s.am().args(["--db", "other.db"]).args(&args));
        assert_eq!(out.code, 1, "{args:?}");
        one_line_error(&out);
        assert!(
            out.stderr
                .contains("other.db is not an Audience Manager database"),
            "{args:?}: {}",
            out.stderr
        );
        // The other program's file is left byte for byte as it was, journal mode included.
        let after = std::fs::read(s.path("other.db")).expect("read");
        assert!(after == before, "{args:?} changed other.db");
        assert!(!s.path("other.db-wal").exists(), "{args:?}");
        assert!(!s.path("other.db-shm").exists(), "{args:?}");
        assert!(!s.path("other.db-journal").exists(), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_with_two() {
    let s = Scratch::new();
    let out = run(s.am().arg("frobnicate"));
    assert_eq!(out.code, 2);
    let out = run(s.am().args(["run"]));
    assert_eq!(out.code, 2);
    let out = run(s.am().args(["serve", "--addr", "not-an-address"]));
    assert_eq!(out.code, 2);
    let out = run(s.am().args(["import", "accounts", "x.csv"]));
    assert_eq!(out.code, 2);
}

on_every_engine!(missing_and_malformed_rule_files);
fn missing_and_malformed_rule_files(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    s.write(
        "broken.json",
        "{\"rule_name\": \"x\",\n  \"conditions\": [\n",
    );
    let missing = run(s.am().args(["rules", "add", "nope.json"]));
    let broken = run(s.am().args(["rules", "add", "broken.json"]));
    let validate_broken = run(s.am().args(["rules", "validate", "broken.json"]));
    for out in [&missing, &broken, &validate_broken] {
        assert_eq!(out.code, 1);
        one_line_error(out);
    }
    insta::assert_snapshot!(s.neutral(format!(
        "{}{}{}",
        missing.snapshot(),
        broken.snapshot(),
        validate_broken.snapshot()
    )));
}

on_every_engine!(unknown_rules_and_segments);
fn unknown_rules_and_segments(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    let outs = [
        run(s.am().args(["rules", "show", "42"])),
        run(s.am().args(["rules", "delete", "Nobody"])),
        run(s.am().args(["rules", "explain", "Nobody"])),
        run(s.am().args(["segments", "show", "Nobody"])),
        run(s.am().args(["segments", "export", "7"])),
    ];
    let mut text = String::new();
    for out in &outs {
        assert_eq!(out.code, 1);
        one_line_error(out);
        text.push_str(&out.snapshot());
    }
    insta::assert_snapshot!(s.neutral(text));
}

on_every_engine!(edit_without_a_file_off_a_terminal_does_not_wait_for_an_editor);
fn edit_without_a_file_off_a_terminal_does_not_wait_for_an_editor(engine: Engine) {
    let s = Scratch::on(engine);
    assert_eq!(run(s.am().arg("init")).code, 0);
    s.write(
        "r.json",
        r#"{"rule_name": "Tier 1", "conditions": [{"field": "city_tier", "operator": "=", "value": 1}]}"#,
    );
    assert_eq!(run(s.am().args(["rules", "add", "r.json"])).code, 0);
    let out = run(s.am().args(["rules", "edit", "Tier 1"]).write_stdin(""));
    assert_eq!(out.code, 1);
    one_line_error(&out);
    assert_eq!(
        out.stderr,
        "am: no FILE given and not on a terminal: pass a rule file, or - to read standard input\n"
    );
}
