//! The schema, the rule store, the catalog, run history and the summary, against a real
//! database.

use am_core::error::PlanError;
use am_core::rule::RuleSpec;
use am_sql::catalog::{self, SegmentRecord};
use am_sql::conn::{Conn, TxMode, transaction};
use am_sql::error::Error;
use am_sql::runs::{self, RunFilter, RunStatus, RunTrigger};
use am_sql::store::Store;
use am_sql::tracking::data_version;
use rusqlite::Connection;
use sea_query::{Alias, Expr, ExprTrait, Query};

use crate::engines::{
    Engine, TestDb, TxRow, UserRow, insert_card, insert_upi, insert_users, table_names,
};

fn tier_rule(name: &str, tier: i64) -> String {
    format!(
        r#"{{"rule_name": "{name}", "conditions": [{{"field": "city_tier", "operator": "=", "value": {tier}}}]}}"#
    )
}

fn union_rule(name: &str, deps: &[i64]) -> String {
    format!(r#"{{"rule_name": "{name}", "depends_on": {deps:?}, "operation": "UNION"}}"#)
}

/// The value of a SQLite `PRAGMA` on a connection.
fn pragma(conn: &mut dyn Conn, name: &str) -> am_sql::conn::Cell {
    let mut value = None;
    conn.query_sql(
        &format!("PRAGMA {name}"),
        sea_query::Values(vec![]),
        &mut |row| {
            value = Some(row.0[0].clone());
            Ok(())
        },
    )
    .unwrap();
    value.unwrap()
}

/// The tables every database of ours has: the contract's and the platform's.
const OUR_TABLES: [&str; 9] = [
    "credit_card_transactions",
    "data_changes",
    "data_version",
    "refresh_runs",
    "rule_table",
    "segment_catalog",
    "upi_transactions",
    "user_locations",
    "users",
];

/// SQLite only: the schema version in the file header, WAL and foreign keys are settings of
/// SQLite connections.
#[test]
fn opening_twice_migrates_once_and_sets_the_connection_up() {
    let db = TestDb::new(Engine::Sqlite);
    let again = Store::open(db.store.path().unwrap()).unwrap();
    let mut conn = again.connection().unwrap();
    let conn = conn.as_mut();
    assert_eq!(
        pragma(conn, "user_version"),
        am_sql::conn::Cell::Int(am_sql::backend::sqlite::schema_version())
    );
    assert_eq!(
        again.schema_version(),
        am_sql::backend::sqlite::schema_version()
    );
    assert_eq!(
        pragma(conn, "journal_mode"),
        am_sql::conn::Cell::Text("wal".into())
    );
    assert_eq!(pragma(conn, "foreign_keys"), am_sql::conn::Cell::Int(1));
    assert_eq!(table_names(conn), OUR_TABLES);
}

conformance! {
    fn opening_again_keeps_the_schema_and_the_data(db: &mut TestDb) {
        insert_users(db.conn(), &[UserRow::new(1)]);
        let rule = db.store.create_rule_json(&tier_rule("R", 1)).unwrap();
        let again = Store::open(db.store.location().clone()).unwrap();
        assert_eq!(again.dialect(), db.store.dialect());
        let mut conn = again.connection().unwrap();
        let tables = table_names(conn.as_mut());
        for table in OUR_TABLES {
            assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
        }
        assert_eq!(crate::engines::count(conn.as_mut(), "users"), 1);
        assert_eq!(again.rule(rule).unwrap().spec.rule_name, "R");
        let existing = Store::open_existing(db.store.location().clone()).unwrap();
        assert_eq!(existing.all_rules().unwrap().len(), 1);
    }
}

/// SQLite only: a database is a file.
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

/// SQLite only: files that are not SQLite, and SQLite files without our application id.
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
conformance! {
    fn rule_crud_with_unique_names_and_versions(db: &mut TestDb) {
        let store = &db.store.clone();
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
}

conformance! {
    fn invalid_rules_are_refused_with_their_paths(db: &mut TestDb) {
        let store = &db.store.clone();
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
}

conformance! {
    fn conditions_are_stored_byte_for_byte(db: &mut TestDb) {
        let store = &db.store.clone();
        let conditions = r#"[ {"value": 1000.50, "operator": ">",  "field": "total_spend"},
        {"field":"city_tier","operator":"in","value":[1, 2]} ]"#;
        let body =
            format!(r#"{{"rule_name": "Spenders", "conditions": {conditions}, "depends_on": []}}"#);
        let id = store.create_rule_json(&body).unwrap();
        let stored = store.rule(id).unwrap();
        assert_eq!(stored.conditions_text.as_deref(), Some(conditions));
        let raw = Query::select()
            .column("conditions")
            .from("rule_table")
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        let raw = db.conn().row(&raw).unwrap().text(0).unwrap();
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
}

conformance! {
    fn pagination_counts_pages(db: &mut TestDb) {
        let store = &db.store.clone();
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
        let empty = TestDb::new(db.engine).store.list_rules(1, 10).unwrap();
        assert_eq!((empty.total, empty.pages), (0, 0));
    }
}

conformance! {
    fn dependencies_must_exist_and_form_no_cycle(db: &mut TestDb) {
        let store = &db.store.clone();
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
}

conformance! {
    fn deleting_a_rule_others_depend_on_is_refused(db: &mut TestDb) {
        let store = &db.store.clone();
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
}

fn record(rule_id: i64, engine: &str) -> SegmentRecord {
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
        engine: engine.into(),
    }
}

fn add_users(conn: &mut dyn Conn) {
    let at = "2025-01-01 00:00:00";
    insert_users(
        conn,
        &[
            UserRow::new(1)
                .name("Asha Rao")
                .email("asha@example.com")
                .tier(1)
                .created(at),
            UserRow::new(2).name("Ben Li").tier(2).created(at),
            UserRow::new(3)
                .name("Cy Das")
                .email("cy@example.com")
                .tier(1)
                .created(at),
        ],
    );
}

/// UPI payment 1: user 1 pays 12.50.
fn cab_ride() -> TxRow {
    TxRow::new(1, 1, 12.5, "2025-02-01 10:00:00")
        .text("Cab ride")
        .category("Travel")
}

conformance! {
    fn catalog_rows_samples_and_deletion(db: &mut TestDb) {
        let store = &db.store.clone();
        add_users(db.conn());
        let rule = store.create_rule_json(&tier_rule("Tier one", 1)).unwrap();
        assert_eq!(
            catalog::segment_table_name(rule),
            format!("segment_output_{rule}")
        );
        assert!(
            catalog::segment_for_rule(db.conn(), rule)
                .unwrap()
                .is_none()
        );

        let engine = db.store.dialect().name();
        let table = catalog::segment_table_name(rule);
        db.exec(&am_sql::backend::create_segment_table(
            db.store.dialect(),
            &table,
        ));
        db.exec(
            &Query::insert()
                .into_table(Alias::new(table.as_str()))
                .columns(["user_id"])
                .values_panic([3.into()])
                .values_panic([1.into()])
                .to_owned(),
        );
        let id = catalog::upsert_segment(db.conn(), &record(rule, engine)).unwrap();
        let mut second = record(rule, engine);
        second.entered = 1;
        second.reused_from = vec![rule];
        assert_eq!(
            catalog::upsert_segment(db.conn(), &second).unwrap(),
            id,
            "one row per rule"
        );

        let seg = catalog::segment(db.conn(), id).unwrap();
        assert_eq!(seg.table_name, format!("segment_output_{rule}"));
        assert_eq!((seg.row_count, seg.entered, seg.left), (2, 1, 0));
        assert_eq!(seg.reused_from, vec![rule]);
        assert_eq!(seg.as_of, record(rule, engine).as_of);
        assert_eq!(seg.engine, engine);
        assert_eq!(catalog::list_segments(db.conn(), 1, 10).unwrap().total, 1);

        let sample = catalog::sample(db.conn(), id, 10).unwrap();
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
        catalog::for_each_member(db.conn(), id, |uid, name, _| {
            members.push((uid, name.map(str::to_owned)));
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(members.len(), 2);
        assert!(matches!(
            catalog::segment(db.conn(), id + 1),
            Err(Error::NotFound {
                what: "segment",
                ..
            })
        ));

        assert!(db.table_exists(&table));
        store.delete_rule(rule).unwrap();
        assert!(matches!(
            catalog::segment(db.conn(), id),
            Err(Error::NotFound { .. })
        ));
        assert!(
            !db.table_exists(&table),
            "the segment table is dropped with its rule"
        );
    }
}

conformance! {
    fn a_sample_is_spread_over_the_segment_and_stays_until_the_next_refresh(db: &mut TestDb) {
        let store = &db.store.clone();
        let rule = store.create_rule_json(&tier_rule("Tier one", 1)).unwrap();
        let table = catalog::segment_table_name(rule);
        db.exec(&am_sql::backend::create_segment_table(
            db.store.dialect(),
            &table,
        ));
        let mut insert = Query::insert();
        insert.into_table(Alias::new(table.as_str())).columns(["user_id"]);
        for user in 1..=2000 {
            insert.values_panic([user.into()]);
        }
        db.exec(&insert);
        let engine = db.store.dialect().name();
        let id = catalog::upsert_segment(db.conn(), &record(rule, engine)).unwrap();

        let ids = |db: &mut TestDb| -> Vec<i64> {
            catalog::sample(db.conn(), id, 10)
                .unwrap()
                .into_iter()
                .map(|(user, _, _)| user)
                .collect()
        };
        let first = ids(db);
        assert_eq!(first.len(), 10);
        assert!(first.windows(2).all(|w| w[0] < w[1]), "listed by id: {first:?}");
        assert!(first.iter().all(|u| (1..=2000).contains(u)), "{first:?}");
        assert_ne!(first, (1..=10).collect::<Vec<i64>>(), "not the lowest ids");
        assert_eq!(ids(db), first, "the same sample until the next refresh");

        std::thread::sleep(std::time::Duration::from_millis(20));
        catalog::upsert_segment(db.conn(), &record(rule, engine)).unwrap();
        assert_ne!(ids(db), first, "another sample after a refresh");
    }
}

conformance! {
    fn data_version_counts_plain_sql_writes(db: &mut TestDb) {
        let store = &db.store.clone();
        let v0 = data_version(db.conn()).unwrap();
        add_users(db.conn());
        let v1 = data_version(db.conn()).unwrap();
        assert!(v1 > v0);
        insert_upi(db.conn(), &[cab_ride()]);
        let v2 = data_version(db.conn()).unwrap();
        assert!(v2 > v1);
        let nothing = Query::update()
            .table("credit_card_transactions")
            .value("amount", 1)
            .and_where(Expr::cust("1 = 0"))
            .to_owned();
        assert_eq!(db.exec(&nothing), 0);
        let update = Query::update()
            .table("upi_transactions")
            .value("amount", 13)
            .and_where(Expr::col("transaction_id").eq(1))
            .to_owned();
        assert_eq!(db.exec(&update), 1);
        let v3 = data_version(db.conn()).unwrap();
        assert!(v3 > v2);
        db.exec(&Query::delete().from_table("upi_transactions").to_owned());
        assert!(store.data_version().unwrap() > v3);
        // Rule writes are not data writes.
        let v4 = store.data_version().unwrap();
        store.create_rule_json(&tier_rule("R", 1)).unwrap();
        assert_eq!(store.data_version().unwrap(), v4);
    }
}

conformance! {
    fn summary_is_exact_to_the_cent(db: &mut TestDb) {
        add_users(db.conn());
        let at = "2025-02-01 10:00:00";
        insert_card(
            db.conn(),
            &[
                TxRow::new(1, 1, 0.1, at).text("M").category("Travel"),
                TxRow::new(2, 1, 0.2, at).text("M").category("Travel"),
            ],
        );
        insert_upi(
            db.conn(),
            &[
                TxRow::new(1, 2, 999.70, at).text("D").category("Travel"),
                TxRow::new(2, 2, 12.5, at).text("D").category("Dining"),
            ],
        );
        let s = catalog::summary(db.conn()).unwrap();
        assert_eq!(s.total_users, 3);
        assert_eq!(s.total_transactions, 4);
        assert_eq!(s.total_spend_cents, 101_250);
        assert_eq!(s.total_spend_text(), "1012.50");
        assert_eq!(s.total_spend(), 1012.5);
        let empty = catalog::summary(TestDb::new(db.engine).conn()).unwrap();
        assert_eq!((empty.total_transactions, empty.total_spend_cents), (0, 0));
    }
}

conformance! {
    fn runs_go_through_their_lifecycle(db: &mut TestDb) {
        let store = &db.store.clone();
        let rule = store.create_rule_json(&tier_rule("R", 1)).unwrap();
        let run = store.create_run(rule, RunTrigger::Api).unwrap();
        let queued = runs::get_run(db.conn(), run).unwrap();
        assert_eq!(queued.status, RunStatus::Queued);
        assert_eq!(queued.trigger, RunTrigger::Api);
        assert_eq!(queued.rule_name, "R");
        assert_eq!(
            runs::active_run_for(db.conn(), rule).unwrap().map(|r| r.id),
            Some(run)
        );

        // Finishing a run that is not running is refused, naming its state.
        let err = runs::mark_succeeded(db.conn(), run, 1, 1, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("run #{run} is queued, not running")
        );

        let as_of = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        runs::mark_running(db.conn(), run, as_of).unwrap();
        runs::mark_succeeded(db.conn(), run, 10, 4, 1).unwrap();
        let done = runs::get_run(db.conn(), run).unwrap();
        assert_eq!(done.status, RunStatus::Succeeded);
        assert_eq!(
            (done.row_count, done.entered, done.left),
            (Some(10), Some(4), Some(1))
        );
        assert_eq!(done.as_of, Some(as_of));
        assert!(done.started_at.is_some() && done.finished_at.is_some());
        assert!(runs::active_run_for(db.conn(), rule).unwrap().is_none());

        let failed = store.create_run(rule, RunTrigger::Schedule).unwrap();
        runs::mark_failed(db.conn(), failed, "boom").unwrap();
        let f = runs::get_run(db.conn(), failed).unwrap();
        assert_eq!(
            (f.status, f.error.as_deref()),
            (RunStatus::Failed, Some("boom"))
        );

        let all = runs::list_runs(db.conn(), &RunFilter::default()).unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [failed, run]);
        let only_failed = runs::list_runs(
            db.conn(),
            &RunFilter {
                status: Some(RunStatus::Failed),
                ..RunFilter::default()
            },
        )
        .unwrap();
        assert_eq!(only_failed.len(), 1);
        let limited = runs::list_runs(
            db.conn(),
            &RunFilter {
                rule_id: Some(rule),
                limit: Some(1),
                ..RunFilter::default()
            },
        )
        .unwrap();
        assert_eq!(limited.iter().map(|r| r.id).collect::<Vec<_>>(), [failed]);
        assert_eq!(
            runs::last_run(db.conn(), rule).unwrap().map(|r| r.id),
            Some(failed)
        );
        assert!(matches!(
            runs::create_run(db.conn(), 999, RunTrigger::Cli, None),
            Err(Error::NotFound { .. })
        ));

        // Runs outlive their rule, keeping its name.
        store.delete_rule(rule).unwrap();
        let orphan = runs::get_run(db.conn(), run).unwrap();
        assert_eq!((orphan.rule_id, orphan.rule_name.as_str()), (None, "R"));
    }
}

/// A run owned by `token`, as another process would have created it.
fn run_owned_by(conn: &mut dyn Conn, rule: i64, token: Option<&str>, running: bool) -> i64 {
    let run = runs::create_run(conn, rule, RunTrigger::Cli, token).unwrap();
    if running {
        runs::mark_running(conn, run, chrono::Utc::now().naive_utc()).unwrap();
    }
    run
}

fn status_and_error(conn: &mut dyn Conn, run: i64) -> (RunStatus, Option<String>) {
    let r = runs::get_run(conn, run).unwrap();
    (r.status, r.error)
}

/// Whether someone holds the lock of an owner file.
fn locked(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// SQLite only: owners are lock files in `<database>.owners/`, held by another process here.
#[test]
fn only_runs_whose_process_is_gone_are_failed_as_abandoned() {
    let mut db = TestDb::new(Engine::Sqlite);
    let store = &db.store.clone();
    let rule = store.create_rule_json(&tier_rule("R", 1)).unwrap();
    // Ours: this process is alive.
    let mine = store.create_run(rule, RunTrigger::Schedule).unwrap();
    // Another process, alive: it holds its lock file (util-linux `flock`, the same lock).
    let path = store.path().unwrap().to_path_buf();
    let owners = std::path::PathBuf::from(format!("{}.owners", path.display()));
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
    while !locked(&owners.join(other)) {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let theirs = run_owned_by(db.conn(), rule, Some(other), true);
    // Gone: a process whose lock file nobody holds, and a run from before owners existed.
    let gone = run_owned_by(db.conn(), rule, Some("4343.def"), true);
    let legacy = run_owned_by(db.conn(), rule, None, false);
    let done = store.create_run(rule, RunTrigger::Cli).unwrap();
    runs::mark_failed(db.conn(), done, "earlier").unwrap();

    // Whoever opens the database next sees them for what they are.
    let _reopened = Store::open(&path).unwrap();
    assert_eq!(
        status_and_error(db.conn(), gone),
        (
            RunStatus::Failed,
            Some(
                "abandoned: the process that ran it (pid 4343) ended before recording how it ended"
                    .into()
            )
        )
    );
    assert_eq!(
        status_and_error(db.conn(), legacy),
        (
            RunStatus::Failed,
            Some("abandoned: the process that ran it ended before recording how it ended".into())
        )
    );
    assert_eq!(status_and_error(db.conn(), mine), (RunStatus::Queued, None));
    assert_eq!(
        status_and_error(db.conn(), theirs),
        (RunStatus::Running, None)
    );
    assert_eq!(
        status_and_error(db.conn(), done),
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

conformance! {
    fn readers_see_the_last_commit_while_a_writer_is_busy(db: &mut TestDb) {
        fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
        let store = db.store.clone();
        shareable(&store);
        let a = store.create_rule_json(&tier_rule("Before", 1)).unwrap();
        let rename = Query::update()
            .table("rule_table")
            .value("rule_name", "During")
            .and_where(Expr::col("id").eq(a))
            .to_owned();
        transaction(db.conn(), TxMode::Write, |writer| {
            assert_eq!(writer.exec(&rename)?, 1);
            // Another connection reads the committed state without waiting for the writer
            // (SQLite's WAL, PostgreSQL's snapshots).
            let reader = store.clone();
            let seen = std::thread::spawn(move || reader.rule(a).unwrap().spec.rule_name)
                .join()
                .unwrap();
            assert_eq!(seen, "Before");
            Ok(())
        })
        .unwrap();
        assert_eq!(store.rule(a).unwrap().spec.rule_name, "During");
    }
}

conformance! {
    fn the_summary_is_cached_per_data_version_and_shared_by_clones(db: &mut TestDb) {
        let store = &db.store.clone();
        let clone = store.clone();
        add_users(db.conn());
        let first = store.summary().unwrap();
        assert_eq!((first.total_users, first.total_transactions), (3, 0));
        // Any write to the data tables, by any connection, is seen at once.
        insert_upi(db.conn(), &[cab_ride()]);
        let second = clone.summary().unwrap();
        assert_eq!(second.total_transactions, 1);
        assert_eq!(second.total_spend_cents, 1250);
        assert_eq!(store.summary().unwrap(), second);
        // The count is not taken again while the data version stands still: here a write made
        // behind the version counter's back (the counter put back as it was) goes unseen
        // until the next counted write.
        let version = data_version(db.conn()).unwrap();
        db.exec(&Query::delete().from_table("upi_transactions").to_owned());
        db.exec(
            &Query::update()
                .table("data_version")
                .value("version", version)
                .to_owned(),
        );
        assert_eq!(db.count("upi_transactions"), 0);
        assert_eq!(store.summary().unwrap(), second, "served from the cache");
        db.exec(
            &Query::delete()
                .from_table("users")
                .and_where(Expr::col("user_id").eq(3))
                .to_owned(),
        );
        let third = clone.summary().unwrap();
        assert_eq!((third.total_users, third.total_transactions), (2, 0));
        assert_eq!(third, catalog::summary(db.conn()).unwrap());
    }
}

conformance! {
    fn the_rule_set_is_planned_again_after_every_rule_write(db: &mut TestDb) {
        let store = &db.store.clone();
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
        assert!(ids(store).is_empty());
        let r1 = store.create_rule_json(&tier_rule("R1", 1)).unwrap();
        let r2 = store.create_rule_json(&tier_rule("R2", 2)).unwrap();
        assert_eq!(ids(&clone), vec![r1, r2]);
        assert!(reused(store).is_empty());
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
        assert_eq!(reused(store), vec![r3]);
        // A delete and a create between two reads: same count and version sum, new highest id.
        store.delete_rule(r3).unwrap();
        let r4 = store.create_rule_json(&tier_rule("R4", 1)).unwrap();
        assert_eq!(ids(&clone), vec![r1, r4]);
        assert!(reused(&clone).is_empty());
        assert_eq!(clone.rule_set().unwrap().name_of(r3), None);
    }
}

/// SQLite only: the bytes of another program's file, and SQLite's side files.
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
    let err = Store::open_existing(&other).unwrap_err();
    assert!(matches!(err, Error::NotOurDatabase(_)), "{err:?}");
    assert!(std::fs::read(&other).unwrap() == before, "other.db changed");
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = dir.path().join(format!("other.db{suffix}"));
        assert!(!side.exists(), "{} was left behind", side.display());
    }
}

conformance! {
    fn unknown_dependencies_are_named_by_their_path(db: &mut TestDb) {
        let store = &db.store.clone();
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
}

conformance! {
    fn rule_names_are_stored_trimmed_and_unique_without_spaces(db: &mut TestDb) {
        let store = &db.store.clone();
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

conformance! {
    fn the_largest_rule_allowed_refreshes_and_previews(db: &mut TestDb) {
        use am_sql::progress::NoProgress;
        use am_sql::refresh::{RefreshRequest, RefreshTargets};
        // Test threads have a 2 MiB stack, like the server's workers.
        let store = &db.store;
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
}

conformance! {
    fn run_times_keep_milliseconds_so_short_runs_have_a_true_duration(db: &mut TestDb) {
        let store = &db.store.clone();
        let rule = store.create_rule_json(&tier_rule("R", 1)).unwrap();
        let run = store.create_run(rule, RunTrigger::Api).unwrap();
        runs::mark_running(db.conn(), run, chrono::Utc::now().naive_utc()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        runs::mark_succeeded(db.conn(), run, 1, 1, 0).unwrap();
        let done = runs::get_run(db.conn(), run).unwrap();
        let took = done.finished_at.unwrap() - done.started_at.unwrap();
        assert!(
            took >= chrono::Duration::milliseconds(30) && took < chrono::Duration::seconds(1),
            "{took}"
        );
        if db.engine == Engine::Sqlite {
            // Stored in a form SQLite's date functions read.
            let valid = Query::select()
                .expr(Expr::cust("julianday(finished_at) IS NOT NULL"))
                .from("refresh_runs")
                .and_where(Expr::col("id").eq(run))
                .to_owned();
            assert!(db.conn().row(&valid).unwrap().bool(0).unwrap());
        }
    }
}

conformance! {
    fn a_rule_saved_without_conditions_or_dependencies_still_reads_as_every_user(db: &mut TestDb) {
        use am_sql::progress::NoProgress;
        use am_sql::refresh::{RefreshRequest, RefreshTargets};
        let store = &db.store.clone();
        add_users(db.conn());
        // What a misspelt `conditions` key used to save.
        db.exec(
            &Query::insert()
                .into_table("rule_table")
                .columns(["rule_name", "created_at", "updated_at"])
                .values_panic([
                    "legacy".into(),
                    "2025-01-01 00:00:00".into(),
                    "2025-01-01 00:00:00".into(),
                ])
                .to_owned(),
        );
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
        let mut count = |id: i64| db.count(&catalog::segment_table_name(id));
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
}
