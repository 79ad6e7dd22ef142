//! Help, init and the global flags. Help uses no database.

use crate::{Scratch, run};

#[test]
fn help_lists_every_command() {
    let s = Scratch::new();
    let out = run(s.am().arg("--help"));
    assert_eq!(out.code, 0);
    insta::assert_snapshot!(out.snapshot());
}

#[test]
fn every_command_has_help() {
    let s = Scratch::new();
    for args in [
        vec!["init"],
        vec!["demo"],
        vec!["generate"],
        vec!["import"],
        vec!["rules"],
        vec!["rules", "add"],
        vec!["rules", "list"],
        vec!["rules", "show"],
        vec!["rules", "edit"],
        vec!["rules", "delete"],
        vec!["rules", "explain"],
        vec!["rules", "validate"],
        vec!["run"],
        vec!["segments"],
        vec!["segments", "list"],
        vec!["segments", "show"],
        vec!["segments", "sample"],
        vec!["segments", "export"],
        vec!["segments", "diff"],
        vec!["serve"],
    ] {
        let out = run(s.am().args(&args).arg("--help"));
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains("Usage: am"), "{args:?}: {}", out.stdout);
    }
    insta::assert_snapshot!(run(s.am().args(["rules", "--help"])).snapshot());
}

// SQLite only, as the next: about the file `init` creates and the names of files (a server's
// database exists before `init`, which then reports it up to date).
#[test]
fn init_creates_then_is_safe_to_run_again() {
    let s = Scratch::new();
    let first = run(s.am().arg("init"));
    let again = run(s.am().arg("init"));
    let json = run(s.am().args(["--json", "init"]));
    insta::assert_snapshot!(format!(
        "{}{}{}",
        first.snapshot(),
        again.snapshot(),
        json.snapshot()
    ));
    assert!(s.path("audience.db").exists());
}

#[test]
fn the_database_comes_from_db_or_am_db() {
    let s = Scratch::new();
    assert_eq!(run(s.am().args(["--db", "one.db", "init"])).code, 0);
    assert!(s.path("one.db").exists());
    assert_eq!(run(s.am().env("AM_DB", "two.db").arg("init")).code, 0);
    assert!(s.path("two.db").exists());
    assert!(!s.path("audience.db").exists());
}
