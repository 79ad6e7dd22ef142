//! The schema, the rule store, the catalog, run history and the summary, against a real
//! database file.

use am_core::error::PlanError;
use am_core::rule::RuleSpec;
use am_sql::catalog::{self, SegmentRecord};
use am_sql::db;
use am_sql::error::Error;
use am_sql::runs::{self, RunFilter, RunStatus, RunTrigger};
use am_sql::store::Store;
use rusqlite::Connection;
use tempfile::TempDir;

fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("am.db")).unwrap();
    (dir, store)
}

fn tier_rule(name: &str, tier: i64) -> String {
    format!(
        r#"{{"rule_name": "{name}", "conditions": [{{"field": "city_tier", "operator": "=", "value": {tier}}}]}}"#
    )
}

fn union_rule(name: &str, deps: &[i64]) -> String {
    format!(r#"{{"rule_name": "{name}", "depends_on": {deps:?}, "operation": "UNION"}}"#)
}

#[test]
fn opening_twice_migrates_once_and_sets_the_connection_up() {
    let (dir, store) = temp_store();
    let again = Store::open(store.path()).unwrap();
    let conn = again.connection().unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, db::schema_version());
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "credit_card_transactions",
            "data_version",
            "refresh_runs",
            "rule_table",
            "segment_catalog",
            "upi_transactions",
            "users"
        ]
    );
    drop(dir);
}

#[test]
fn open_existing_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let err = Store::open_existing(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no database at {} (run `am init`)", path.display())
    );
    assert!(!path.exists());
}

#[test]
fn files_of_other_programs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not sqlite, just some words padding it out ".repeat(20),
    )
    .unwrap();
    let err = Store::open(&text).unwrap_err();
    assert!(matches!(err, Error::NotOurDatabase(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} is not an Audience Manager database", text.display())
    );

    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY); PRAGMA user_version = 3;")
        .unwrap();
    let err = Store::open(&other).unwrap_err();
    assert!(matches!(err, Error::NotOurDatabase(_)), "{err:?}");
    // Nothing of ours was written into it.
    let count: i64 = Connection::open(&other)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn rule_crud_with_unique_names_and_versions() {
    let (_dir, store) = temp_store();
    let a = store.create_rule_json(&tier_rule("Tier one", 1)).unwrap();
    let stored = store.rule(a).unwrap();
    assert_eq!(stored.spec.rule_name, "Tier one");
    assert_eq!(stored.version, 1);
    assert_eq!(store.rule_by_name("Tier one").unwrap().id, a);
    assert_eq!(store.resolve_rule(&a.to_string()).unwrap().id, a);
    assert_eq!(store.resolve_rule(&format!("#{a}")).unwrap().id, a);
    assert_eq!(store.resolve_rule("Tier one").unwrap().id, a);

    let err = store
        .create_rule_json(&tier_rule("Tier one", 2))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(err.to_string(), "a rule named \"Tier one\" already exists");

    let b = store.create_rule_json(&tier_rule("Tier two", 2)).unwrap();
    let err = store
        .update_rule_json(b, &tier_rule("Tier one", 2))
        .unwrap_err();
    assert_eq!(err.to_string(), "a rule named \"Tier one\" already exists");

    store.update_rule_json(a, &tier_rule("Tier 1", 1)).unwrap();
    let updated = store.rule(a).unwrap();
    assert_eq!(updated.spec.rule_name, "Tier 1");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at, stored.created_at);

    let err = store.rule(999).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    assert_eq!(err.to_string(), "rule #999 not found");
    let err = store.update_rule_json(999, &tier_rule("X", 1)).unwrap_err();
    assert_eq!(err.to_string(), "rule #999 not found");
    assert_eq!(
        store.rule_by_name("nobody").unwrap_err().to_string(),
        "rule \"nobody\" not found"
    );

    store.delete_rule(b).unwrap();
    assert!(matches!(store.rule(b), Err(Error::NotFound { .. })));
    assert_eq!(store.all_rules().unwrap().len(), 1);
}

#[test]
fn invalid_rules_are_refused_with_their_paths() {
    let (_dir, store) = temp_store();
    let err = store
        .create_rule_json(r#"{"rule_name": "Bad", "conditions": [{"field": "city_tier", "operator": "~", "value": 1}]}"#)
        .unwrap_err();
    let Error::Invalid(problems) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(
        problems
            .0
            .iter()
            .any(|p| p.path == "conditions[0].operator"),
        "{problems:?}"
    );
    let err = store.create_rule_json("{not json").unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(store.all_rules().unwrap().is_empty());
}

#[test]
fn conditions_are_stored_byte_for_byte() {
    let (_dir, store) = temp_store();
    let conditions = r#"[ {"value": 1000.50, "operator": ">",  "field": "total_spend"},
        {"field":"city_tier","operator":"in","value":[1, 2]} ]"#;
    let body =
        format!(r#"{{"rule_name": "Spenders", "conditions": {conditions}, "depends_on": []}}"#);
    let id = store.create_rule_json(&body).unwrap();
    let stored = store.rule(id).unwrap();
    assert_eq!(stored.conditions_text.as_deref(), Some(conditions));
    let raw: String = store
        .connection()
        .unwrap()
        .query_row(
            "SELECT conditions FROM rule_table WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, conditions);
    assert_eq!(
        stored.spec.conditions,
        serde_json::from_str::<serde_json::Value>(conditions).unwrap()
    );
    stored.checked().unwrap();

    // A spec built in code keeps its value; a rule without conditions stores NULL.
    let spec = RuleSpec {
        rule_name: "Union".into(),
        depends_on: vec![id],
        operation: Some("UNION".into()),
        ..RuleSpec::default()
    };
    let u = store.create_rule(&spec).unwrap();
    let stored = store.rule(u).unwrap();
    assert_eq!(stored.conditions_text, None);
    assert_eq!(stored.spec, spec);
}

#[test]
fn pagination_counts_pages() {
    let (_dir, store) = temp_store();
    for i in 0..7 {
        store
            .create_rule_json(&tier_rule(&format!("R{i}"), 1))
            .unwrap();
    }
    let page = store.list_rules(2, 3).unwrap();
    assert_eq!((page.total, page.page, page.pages), (7, 2, 3));
    let names: Vec<_> = page
        .items
        .iter()
        .map(|r| r.spec.rule_name.as_str())
        .collect();
    assert_eq!(names, ["R3", "R4", "R5"]);
    let last = store.list_rules(3, 3).unwrap();
    assert_eq!(last.items.len(), 1);
    assert!(store.list_rules(4, 3).unwrap().items.is_empty());
    let empty = temp_store().1.list_rules(1, 10).unwrap();
    assert_eq!((empty.total, empty.pages), (0, 0));
}

#[test]
fn dependencies_must_exist_and_form_no_cycle() {
    let (_dir, store) = temp_store();
    let a = store.create_rule_json(&tier_rule("A", 1)).unwrap();
    let b = store.create_rule_json(&union_rule("B", &[a])).unwrap();
    let c = store.create_rule_json(&union_rule("C", &[b])).unwrap();

    let err = store
        .create_rule_json(&union_rule("D", &[a, 77]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid rule: depends_on[1]: no rule with id 77"
    );
    assert!(store.rule_by_name("D").is_err(), "nothing was written");

    let err = store
        .update_rule_json(a, &union_rule("A", &[c]))
        .unwrap_err();
    let Error::Plan(PlanError::Cycle { rules }) = &err else {
        panic!("expected a cycle, got {err:?}");
    };
    let ids: Vec<_> = rules.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [a, c, b, a]);
    assert_eq!(
        err.to_string(),
        "dependency cycle: A (#1) -> C (#3) -> B (#2) -> A (#1)"
    );
    // The failed update changed nothing.
    let a_now = store.rule(a).unwrap();
    assert_eq!(a_now.version, 1);
    assert!(a_now.spec.depends_on.is_empty());
}

#[test]
fn deleting_a_rule_others_depend_on_is_refused() {
    let (_dir, store) = temp_store();
    let a = store.create_rule_json(&tier_rule("Base", 1)).unwrap();
    let b = store.create_rule_json(&union_rule("Y", &[a])).unwrap();
    let c = store.create_rule_json(&union_rule("Z", &[a])).unwrap();
    let err = store.delete_rule(a).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)));
    assert_eq!(
        err.to_string(),
        format!("rule #{a} \"Base\" is used by #{b} \"Y\", #{c} \"Z\"")
    );
    assert_eq!(store.dependants_of(a).unwrap().len(), 2);
    store.delete_rule(c).unwrap();
    store.delete_rule(b).unwrap();
    store.delete_rule(a).unwrap();
    assert!(store.all_rules().unwrap().is_empty());
}

fn record(rule_id: i64) -> SegmentRecord {
    SegmentRecord {
        rule_id,
        segment_name: "Tier one".into(),
        description: Some("tier 1 users".into()),
        row_count: 2,
        sql_query: "SELECT user_id FROM users WHERE city_tier = 1".into(),
        rule_version: 1,
        data_version: 5,
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap(),
        entered: 2,
        left: 0,
        duration_ms: 12,
        reused_from: vec![],
    }
}

fn add_users(conn: &Connection) {
    conn.execute_batch(
        "INSERT INTO users VALUES (1, 'Asha Rao', 'asha@example.com', 1, '2025-01-01 00:00:00');
         INSERT INTO users VALUES (2, 'Ben Li', NULL, 2, '2025-01-01 00:00:00');
         INSERT INTO users VALUES (3, 'Cy Das', 'cy@example.com', 1, '2025-01-01 00:00:00');",
    )
    .unwrap();
}

#[test]
fn catalog_rows_samples_and_deletion() {
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    add_users(&conn);
    let rule = store.create_rule_json(&tier_rule("Tier one", 1)).unwrap();
    assert_eq!(
        catalog::segment_table_name(rule),
        format!("segment_output_{rule}")
    );
    assert!(catalog::segment_for_rule(&conn, rule).unwrap().is_none());

    conn.execute_batch(&format!(
        "CREATE TABLE segment_output_{rule} (user_id INTEGER PRIMARY KEY);
         INSERT INTO segment_output_{rule} VALUES (3), (1);"
    ))
    .unwrap();
    let id = catalog::upsert_segment(&conn, &record(rule)).unwrap();
    let mut second = record(rule);
    second.entered = 1;
    second.reused_from = vec![rule];
    assert_eq!(
        catalog::upsert_segment(&conn, &second).unwrap(),
        id,
        "one row per rule"
    );

    let seg = catalog::segment(&conn, id).unwrap();
    assert_eq!(seg.table_name, format!("segment_output_{rule}"));
    assert_eq!((seg.row_count, seg.entered, seg.left), (2, 1, 0));
    assert_eq!(seg.reused_from, vec![rule]);
    assert_eq!(seg.as_of, record(rule).as_of);
    assert_eq!(catalog::list_segments(&conn, 1, 10).unwrap().total, 1);

    let sample = catalog::sample(&conn, id, 10).unwrap();
    assert_eq!(
        sample,
        vec![
            (
                1,
                Some("Asha Rao".to_string()),
                Some("asha@example.com".to_string())
            ),
            (
                3,
                Some("Cy Das".to_string()),
                Some("cy@example.com".to_string())
            ),
        ]
    );
    let mut members = Vec::new();
    catalog::for_each_member(&conn, id, |uid, name, _| {
        members.push((uid, name.map(str::to_owned)));
        Ok::<_, ()>(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(members.len(), 2);
    assert!(matches!(
        catalog::segment(&conn, id + 1),
        Err(Error::NotFound {
            what: "segment",
            ..
        })
    ));

    store.delete_rule(rule).unwrap();
    assert!(matches!(
        catalog::segment(&conn, id),
        Err(Error::NotFound { .. })
    ));
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [format!("segment_output_{rule}")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the segment table is dropped with its rule");
}

#[test]
fn data_version_counts_plain_sql_writes() {
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    let v0 = db::data_version(&conn).unwrap();
    add_users(&conn);
    let v1 = db::data_version(&conn).unwrap();
    assert!(v1 > v0);
    conn.execute(
        "INSERT INTO upi_transactions VALUES (1, 1, 12.5, 'Cab ride', 'Travel', '2025-02-01 10:00:00')",
        [],
    )
    .unwrap();
    let v2 = db::data_version(&conn).unwrap();
    assert!(v2 > v1);
    conn.execute("UPDATE credit_card_transactions SET amount = 1 WHERE 0", [])
        .unwrap();
    conn.execute(
        "UPDATE upi_transactions SET amount = 13 WHERE transaction_id = 1",
        [],
    )
    .unwrap();
    let v3 = db::data_version(&conn).unwrap();
    assert!(v3 > v2);
    conn.execute("DELETE FROM upi_transactions", []).unwrap();
    assert!(store.data_version().unwrap() > v3);
    // Rule writes are not data writes.
    let v4 = store.data_version().unwrap();
    store.create_rule_json(&tier_rule("R", 1)).unwrap();
    assert_eq!(store.data_version().unwrap(), v4);
}

#[test]
fn summary_is_exact_to_the_cent() {
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    add_users(&conn);
    conn.execute_batch(
        "INSERT INTO credit_card_transactions VALUES (1, 1, 0.1, 'M', 'Travel', '2025-02-01 10:00:00');
         INSERT INTO credit_card_transactions VALUES (2, 1, 0.2, 'M', 'Travel', '2025-02-01 10:00:00');
         INSERT INTO upi_transactions VALUES (1, 2, 999.70, 'D', 'Travel', '2025-02-01 10:00:00');
         INSERT INTO upi_transactions VALUES (2, 2, 12.5, 'D', 'Dining', '2025-02-01 10:00:00');",
    )
    .unwrap();
    let s = catalog::summary(&conn).unwrap();
    assert_eq!(s.total_users, 3);
    assert_eq!(s.total_transactions, 4);
    assert_eq!(s.total_spend_cents, 101_250);
    assert_eq!(s.total_spend_text(), "1012.50");
    assert_eq!(s.total_spend(), 1012.5);
    let empty = catalog::summary(&temp_store().1.connection().unwrap()).unwrap();
    assert_eq!((empty.total_transactions, empty.total_spend_cents), (0, 0));
}

#[test]
fn runs_go_through_their_lifecycle() {
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    let rule = store.create_rule_json(&tier_rule("R", 1)).unwrap();
    let run = runs::create_run(&conn, rule, RunTrigger::Api).unwrap();
    let queued = runs::get_run(&conn, run).unwrap();
    assert_eq!(queued.status, RunStatus::Queued);
    assert_eq!(queued.trigger, RunTrigger::Api);
    assert_eq!(queued.rule_name, "R");
    assert_eq!(
        runs::active_run_for(&conn, rule).unwrap().map(|r| r.id),
        Some(run)
    );

    // Finishing a run that is not running is refused, naming its state.
    let err = runs::mark_succeeded(&conn, run, 1, 1, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("run #{run} is queued, not running")
    );

    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    runs::mark_running(&conn, run, as_of).unwrap();
    runs::mark_succeeded(&conn, run, 10, 4, 1).unwrap();
    let done = runs::get_run(&conn, run).unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(
        (done.row_count, done.entered, done.left),
        (Some(10), Some(4), Some(1))
    );
    assert_eq!(done.as_of, Some(as_of));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert!(runs::active_run_for(&conn, rule).unwrap().is_none());

    let failed = runs::create_run(&conn, rule, RunTrigger::Schedule).unwrap();
    runs::mark_failed(&conn, failed, "boom").unwrap();
    let f = runs::get_run(&conn, failed).unwrap();
    assert_eq!(
        (f.status, f.error.as_deref()),
        (RunStatus::Failed, Some("boom"))
    );

    let all = runs::list_runs(&conn, &RunFilter::default()).unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [failed, run]);
    let only_failed = runs::list_runs(
        &conn,
        &RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        },
    )
    .unwrap();
    assert_eq!(only_failed.len(), 1);
    let limited = runs::list_runs(
        &conn,
        &RunFilter {
            rule_id: Some(rule),
            limit: Some(1),
            ..RunFilter::default()
        },
    )
    .unwrap();
    assert_eq!(limited.iter().map(|r| r.id).collect::<Vec<_>>(), [failed]);
    assert_eq!(
        runs::last_run(&conn, rule).unwrap().map(|r| r.id),
        Some(failed)
    );
    assert!(matches!(
        runs::create_run(&conn, 999, RunTrigger::Cli),
        Err(Error::NotFound { .. })
    ));

    // Runs outlive their rule, keeping its name.
    store.delete_rule(rule).unwrap();
    let orphan = runs::get_run(&conn, run).unwrap();
    assert_eq!((orphan.rule_id, orphan.rule_name.as_str()), (None, "R"));
}

/// A run owned by `token`, as another process would have created it.
fn run_owned_by(conn: &Connection, rule: i64, token: Option<&str>, running: bool) -> i64 {
    let run = runs::create_run(conn, rule, RunTrigger::Cli).unwrap();
    if running {
        runs::mark_running(conn, run, chrono::Utc::now().naive_utc()).unwrap();
    }
    conn.execute(
        "UPDATE refresh_runs SET owner = ?2 WHERE id = ?1",
        rusqlite::params![run, token],
    )
    .unwrap();
    run
}

fn status_and_error(conn: &Connection, run: i64) -> (RunStatus, Option<String>) {
    let r = runs::get_run(conn, run).unwrap();
    (r.status, r.error)
}

#[test]
fn only_runs_whose_process_is_gone_are_failed_as_abandoned() {
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    let rule = store.create_rule_json(&tier_rule("R", 1)).unwrap();
    // Ours: this process is alive.
    let mine = runs::create_run(&conn, rule, RunTrigger::Schedule).unwrap();
    // Another process, alive: it holds its lock file (util-linux `flock`, the same lock).
    let db = store.path().to_path_buf();
    let owners = std::path::PathBuf::from(format!("{}.owners", db.display()));
    std::fs::create_dir_all(&owners).unwrap();
    let other = "4242.abc";
    // `-o`: the lock stays with flock itself, not with the command it waits for.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(owners.join(other))
        // `cat` ends when its input closes, so nothing outlives the test.
        .arg("cat")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux flock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !am_sql::owner::is_alive(&db, other) {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let theirs = run_owned_by(&conn, rule, Some(other), true);
    // Gone: a process whose lock file nobody holds, and a run from before owners existed.
    let gone = run_owned_by(&conn, rule, Some("4343.def"), true);
    let legacy = run_owned_by(&conn, rule, None, false);
    let done = runs::create_run(&conn, rule, RunTrigger::Cli).unwrap();
    runs::mark_failed(&conn, done, "earlier").unwrap();

    // Whoever opens the database next sees them for what they are.
    let _reopened = Store::open(&db).unwrap();
    assert_eq!(
        status_and_error(&conn, gone),
        (
            RunStatus::Failed,
            Some(
                "abandoned: the process that ran it (pid 4343) ended before recording how it ended"
                    .into()
            )
        )
    );
    assert_eq!(
        status_and_error(&conn, legacy),
        (
            RunStatus::Failed,
            Some("abandoned: the process that ran it ended before recording how it ended".into())
        )
    );
    assert_eq!(status_and_error(&conn, mine), (RunStatus::Queued, None));
    assert_eq!(status_and_error(&conn, theirs), (RunStatus::Running, None));
    assert_eq!(
        status_and_error(&conn, done),
        (RunStatus::Failed, Some("earlier".into()))
    );

    // The other process dies (as with kill -9): the next read of its run says so.
    holder.kill().unwrap();
    holder.wait().unwrap();
    drop(holder.stdin.take());
    let run = store.run(theirs).unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("abandoned: the process that ran it (pid 4242) ended before recording how it ended")
    );
    assert!(
        !owners.join(other).exists(),
        "the dead owner's file is removed"
    );
    assert_eq!(store.run(mine).unwrap().status, RunStatus::Queued);
}

#[test]
fn readers_see_the_last_commit_while_a_writer_is_busy() {
    fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
    let (_dir, store) = temp_store();
    shareable(&store);
    let a = store.create_rule_json(&tier_rule("Before", 1)).unwrap();
    let mut writer = store.connection().unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute(
        "UPDATE rule_table SET rule_name = 'During' WHERE id = ?1",
        [a],
    )
    .unwrap();
    // WAL: another connection reads the committed state without waiting for the writer.
    let reader = store.clone();
    let seen = std::thread::spawn(move || reader.rule(a).unwrap().spec.rule_name)
        .join()
        .unwrap();
    assert_eq!(seen, "Before");
    tx.commit().unwrap();
    assert_eq!(store.rule(a).unwrap().spec.rule_name, "During");
}

#[test]
fn the_summary_is_cached_per_data_version_and_shared_by_clones() {
    let (_dir, store) = temp_store();
    let clone = store.clone();
    let conn = store.connection().unwrap();
    add_users(&conn);
    let first = store.summary().unwrap();
    assert_eq!((first.total_users, first.total_transactions), (3, 0));
    // Any write to the data tables, by any connection, is seen at once.
    conn.execute(
        "INSERT INTO upi_transactions VALUES (1, 1, 12.5, 'Cab ride', 'Travel', '2025-02-01 10:00:00')",
        [],
    )
    .unwrap();
    let second = clone.summary().unwrap();
    assert_eq!(second.total_transactions, 1);
    assert_eq!(second.total_spend_cents, 1250);
    assert_eq!(store.summary().unwrap(), second);
    // The count is not taken again while the data version stands still: here a write made
    // behind the version counter's back goes unseen until the next counted write.
    conn.execute_batch(
        "DROP TRIGGER upi_transactions_data_version_delete;
         DELETE FROM upi_transactions;",
    )
    .unwrap();
    assert_eq!(store.summary().unwrap(), second, "served from the cache");
    conn.execute("DELETE FROM users WHERE user_id = 3", [])
        .unwrap();
    let third = clone.summary().unwrap();
    assert_eq!((third.total_users, third.total_transactions), (2, 0));
    assert_eq!(third, catalog::summary(&conn).unwrap());
}

#[test]
fn the_rule_set_is_planned_again_after_every_rule_write() {
    let (_dir, store) = temp_store();
    let clone = store.clone();
    let ids = |store: &Store| -> Vec<i64> {
        store
            .rule_set()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.id)
            .collect()
    };
    let reused = |store: &Store| -> Vec<i64> {
        store
            .rule_set()
            .unwrap()
            .reuses
            .as_ref()
            .unwrap()
            .keys()
            .copied()
            .collect()
    };
    assert!(ids(&store).is_empty());
    let r1 = store.create_rule_json(&tier_rule("R1", 1)).unwrap();
    let r2 = store.create_rule_json(&tier_rule("R2", 2)).unwrap();
    assert_eq!(ids(&clone), vec![r1, r2]);
    assert!(reused(&store).is_empty());
    // Unchanged rules: the same planned set, for every clone.
    let set = store.rule_set().unwrap();
    assert!(std::sync::Arc::ptr_eq(&set, &clone.rule_set().unwrap()));
    assert_eq!(set.name_of(r2), Some("R2"));

    // An update: R2 now has R1's conditions, so one is answered from the other.
    store.update_rule_json(r2, &tier_rule("R2", 1)).unwrap();
    assert_eq!(reused(&clone).len(), 1);
    assert_eq!(clone.rule_set().unwrap().name_of(r2), Some("R2"));
    // An update of a rule whose version is not the highest, within the same second.
    store.update_rule_json(r1, &tier_rule("R1", 3)).unwrap();
    assert!(reused(&clone).is_empty());
    // A delete.
    store.delete_rule(r2).unwrap();
    assert_eq!(ids(&clone), vec![r1]);
    let r3 = store.create_rule_json(&tier_rule("R3", 3)).unwrap();
    assert_eq!(reused(&store), vec![r3]);
    // A delete and a create between two reads: same count and version sum, new highest id.
    store.delete_rule(r3).unwrap();
    let r4 = store.create_rule_json(&tier_rule("R4", 1)).unwrap();
    assert_eq!(ids(&clone), vec![r1, r4]);
    assert!(reused(&clone).is_empty());
    assert_eq!(clone.rule_set().unwrap().name_of(r3), None);
}

#[test]
fn a_refused_database_of_another_program_is_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE foo (id INTEGER PRIMARY KEY); INSERT INTO foo VALUES (1);")
        .unwrap();
    let before = std::fs::read(&other).unwrap();
    let err = Store::open(&other).unwrap_err();
    assert!(matches!(err, Error::NotOurDatabase(_)), "{err:?}");
    let err = db::connect(&other).unwrap_err();
    assert!(matches!(err, Error::NotOurDatabase(_)), "{err:?}");
    assert!(std::fs::read(&other).unwrap() == before, "other.db changed");
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = dir.path().join(format!("other.db{suffix}"));
        assert!(!side.exists(), "{} was left behind", side.display());
    }
}

#[test]
fn unknown_dependencies_are_named_by_their_path() {
    let (_dir, store) = temp_store();
    let a = store.create_rule_json(&tier_rule("A", 1)).unwrap();
    let err = store
        .create_rule_json(&format!(
            r#"{{"rule_name": "depu", "depends_on": [999, {a}, 998]}}"#
        ))
        .unwrap_err();
    let Error::Invalid(problems) = &err else {
        panic!("expected invalid, got {err:?}");
    };
    let got: Vec<(&str, &str)> = problems
        .0
        .iter()
        .map(|p| (p.path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("depends_on[0]", "no rule with id 999"),
            ("depends_on[2]", "no rule with id 998")
        ]
    );
    let err = store
        .update_rule_json(a, r#"{"rule_name": "A", "depends_on": [5]}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid rule: depends_on[0]: no rule with id 5"
    );
    assert_eq!(store.rule(a).unwrap().version, 1, "nothing was written");
}

#[test]
fn rule_names_are_stored_trimmed_and_unique_without_spaces() {
    let (_dir, store) = temp_store();
    let id = store.create_rule_json(&tier_rule(" GE1000 ", 1)).unwrap();
    let stored = store.rule(id).unwrap();
    assert_eq!(stored.spec.rule_name, "GE1000");
    assert_eq!(store.rule_by_name("GE1000").unwrap().id, id);

    let one = store.create_rule_json(&tier_rule("api one", 1)).unwrap();
    let err = store
        .create_rule_json(&tier_rule("api one ", 2))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        Error::Conflict("a rule named \"api one\" already exists".into()).to_string()
    );
    // A spec built in code is trimmed too, on create and update.
    let spec = RuleSpec {
        rule_name: "  coded\t".into(),
        conditions: serde_json::json!([]),
        ..Default::default()
    };
    let coded = store.create_rule(&spec).unwrap();
    assert_eq!(store.rule(coded).unwrap().spec.rule_name, "coded");
    let renamed = RuleSpec {
        rule_name: " api one".into(),
        conditions: serde_json::json!([]),
        ..Default::default()
    };
    assert!(matches!(
        store.update_rule(coded, &renamed),
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.rule(one).unwrap().spec.rule_name, "api one");
}

/// A rule at every limit of the rule language: 200 predicates (one in a `where`), 12 levels
/// of nesting, a list of 1000 values and 24 aggregate scopes.
fn maximal_rule_json() -> serde_json::Value {
    use serde_json::json;
    let tier = json!({"field": "city_tier", "operator": "=", "value": 1});
    let deep = (0..10).fold(json!({ "all": [tier] }), |acc, _| json!({ "not": acc }));
    let ids: Vec<i64> = (1..=1000).collect();
    let mut items = vec![
        deep,
        json!({"field": "user_id", "operator": "in", "value": ids}),
    ];
    for i in 0..24 {
        let mut p = json!({"field": "total_spend", "operator": ">", "value": i,
                           "window": {"last_days": i + 1}});
        if i == 0 {
            p["where"] = json!({"field": "category", "operator": "=", "value": "Travel"});
        }
        items.push(p);
    }
    items.extend((0..173).map(|i| json!({"field": "city_tier", "operator": "=", "value": i})));
    json!({"rule_name": "maximal", "conditions": {"any": items}})
}

#[test]
fn the_largest_rule_allowed_refreshes_and_previews() {
    use am_sql::progress::NoProgress;
    use am_sql::refresh::{RefreshRequest, RefreshTargets};
    // Test threads have a 2 MiB stack, like the server's workers.
    let (_dir, store) = temp_store();
    let rule = maximal_rule_json();
    let id = store.create_rule_json(&rule.to_string()).unwrap();
    let on_it = store
        .create_rule_json(&format!(
            r#"{{"rule_name": "on it", "depends_on": [{id}], "conditions": {}}}"#,
            rule["conditions"]
        ))
        .unwrap();
    let report = store
        .refresh(
            &RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli),
            &NoProgress,
        )
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(report.node(on_it).is_some());
    let spec = am_core::validate::parse_rule(&rule).unwrap();
    store.preview(&spec, None, None).unwrap();
    store.preview(&spec, Some(id), None).unwrap();
    store.explain(on_it).unwrap();
}

#[test]
fn run_times_keep_milliseconds_so_short_runs_have_a_true_duration() {
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    let rule = store.create_rule_json(&tier_rule("R", 1)).unwrap();
    let run = runs::create_run(&conn, rule, RunTrigger::Api).unwrap();
    runs::mark_running(&conn, run, chrono::Utc::now().naive_utc()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    runs::mark_succeeded(&conn, run, 1, 1, 0).unwrap();
    let done = runs::get_run(&conn, run).unwrap();
    let took = done.finished_at.unwrap() - done.started_at.unwrap();
    assert!(
        took >= chrono::Duration::milliseconds(30) && took < chrono::Duration::seconds(1),
        "{took}"
    );
    // Stored in a form SQLite's date functions read.
    let valid: bool = conn
        .query_row(
            "SELECT julianday(finished_at) IS NOT NULL FROM refresh_runs WHERE id = ?1",
            [run],
            |r| r.get(0),
        )
        .unwrap();
    assert!(valid);
}

#[test]
fn a_rule_saved_without_conditions_or_dependencies_still_reads_as_every_user() {
    use am_sql::progress::NoProgress;
    use am_sql::refresh::{RefreshRequest, RefreshTargets};
    let (_dir, store) = temp_store();
    let conn = store.connection().unwrap();
    add_users(&conn);
    // What a misspelt `conditions` key used to save.
    conn.execute(
        "INSERT INTO rule_table (rule_name, created_at, updated_at)
         VALUES ('legacy', '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
        [],
    )
    .unwrap();
    let legacy = store.rule_by_name("legacy").unwrap();
    assert_eq!(legacy.spec.conditions, serde_json::Value::Null);
    assert_eq!(store.all_rules().unwrap().len(), 1);
    assert!(store.rule_set().unwrap().reuses.is_ok());
    let tier1 = store.create_rule_json(&tier_rule("tier 1", 1)).unwrap();
    let report = store
        .refresh(
            &RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli),
            &NoProgress,
        )
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    let count = |id: i64| -> i64 {
        conn.query_row(
            &format!("SELECT count(*) FROM {}", catalog::segment_table_name(id)),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!((count(legacy.id), count(tier1)), (3, 2));
    // Saving it again needs the explicit form.
    let err = store
        .update_rule_json(legacy.id, r#"{"rule_name": "legacy"}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid rule: conditions: is required when depends_on is empty; write \"conditions\": [] to select every user"
    );
    store
        .update_rule_json(legacy.id, r#"{"rule_name": "legacy", "conditions": []}"#)
        .unwrap();
    assert_eq!(
        store.rule(legacy.id).unwrap().conditions_text.as_deref(),
        Some("[]")
    );
}
