//! What only PostgreSQL has: its own writers' ways (COPY, TRUNCATE, a plain INSERT without
//! ids), locks held by other sessions, read-only databases, pasting `sql_query` into `psql`.

use am_sql::Error;
use am_sql::progress::NoProgress;
use am_sql::refresh::{RefreshRequest, RefreshTargets};
use am_sql::runs::{RunFilter, RunStatus, RunTrigger};
use am_sql::store::Store;

use crate::engines::{Engine, TestDb, UserRow, insert_users};

/// A PostgreSQL test database and a second session on it, as another program would have.
fn db_and_session() -> (TestDb, String, ::postgres::Client) {
    let uri = crate::engines::postgres_location();
    let store = Store::open(uri.as_str()).expect("open");
    let conn = store.connection().expect("connection");
    let db = TestDb {
        engine: Engine::Postgres,
        store,
        conn,
        dir: None,
    };
    let session = ::postgres::Client::connect(&uri, ::postgres::NoTls).expect("session");
    (db, uri, session)
}

fn spenders(store: &Store) -> i64 {
    store
        .create_rule_json(
            r#"{"rule_name": "Spenders", "conditions": [{"field": "total_spend", "operator": ">", "value": 100}]}"#,
        )
        .expect("rule")
}

fn refresh(store: &Store) -> am_sql::refresh::RefreshReport {
    store
        .refresh(
            &RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli),
            &NoProgress,
        )
        .expect("refresh")
}

#[test]
fn every_way_an_etl_job_writes_counts_for_freshness() {
    let (mut db, _uri, mut etl) = db_and_session();
    insert_users(db.conn(), &[UserRow::new(1).name("A")]);
    let id = spenders(&db.store);
    assert!(refresh(&db.store).succeeded());
    let mut version = db.store.data_version().expect("version");
    let mut stale_after = |what: &str, sql: &str, etl: &mut ::postgres::Client| {
        etl.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let now = db.store.data_version().expect("version");
        assert!(now > version, "{what} is a data change");
        version = now;
        let report = db
            .store
            .refresh(
                &RefreshRequest::new(RefreshTargets::Stale, RunTrigger::Cli),
                &NoProgress,
            )
            .expect("refresh");
        assert_eq!(
            report.nodes.iter().map(|n| n.rule_id).collect::<Vec<_>>(),
            vec![id],
            "{what} made the segment stale"
        );
        version = db.store.data_version().expect("version");
    };
    // The issue's own example: no transaction_id, the amount as a number, the time as text.
    stale_after(
        "INSERT",
        "INSERT INTO credit_card_transactions (user_id, amount, merchant, category, transaction_date)
         VALUES (1, 999.70, 'IndiGo', 'Travel', '2025-03-03 10:00:00')",
        &mut etl,
    );
    stale_after(
        "UPDATE",
        "UPDATE credit_card_transactions SET amount = 5 WHERE user_id = 1",
        &mut etl,
    );
    stale_after(
        "COPY",
        "COPY upi_transactions (user_id, amount, description, category, transaction_date)
         FROM PROGRAM 'printf ''1\\t250.00\\tRent\\tHousing\\t2025-03-04 10:00:00\\n'''",
        &mut etl,
    );
    stale_after("DELETE", "DELETE FROM upi_transactions", &mut etl);
    stale_after("TRUNCATE", "TRUNCATE credit_card_transactions", &mut etl);
    assert_eq!(db.members(id).len(), 0);
}

#[test]
fn a_lock_held_past_the_timeout_fails_the_swap_and_keeps_the_old_segment() {
    let (mut db, _uri, mut other) = db_and_session();
    insert_users(db.conn(), &[UserRow::new(1), UserRow::new(2)]);
    db.conn()
        .batch(
            "INSERT INTO credit_card_transactions (user_id, amount, transaction_date)
             VALUES (1, 500, '2025-01-01 00:00:00')",
        )
        .expect("data");
    let id = spenders(&db.store);
    assert!(refresh(&db.store).succeeded());
    db.conn()
        .batch(
            "INSERT INTO credit_card_transactions (user_id, amount, transaction_date)
             VALUES (2, 500, '2025-01-01 00:00:00')",
        )
        .expect("data");
    // Another session holds the segment table against every writer.
    let mut tx = other.transaction().expect("begin");
    tx.batch_execute(&format!("LOCK TABLE segment_output_{id} IN EXCLUSIVE MODE"))
        .expect("lock");
    let started = std::time::Instant::now();
    let report = refresh(&db.store);
    let waited = started.elapsed();
    tx.rollback().expect("release");
    let node = report.node(id).expect("node");
    assert_eq!(node.status, am_sql::refresh::NodeStatus::Failed);
    assert_eq!(
        node.error.as_deref(),
        Some("the database is busy (another process is writing); try again")
    );
    assert!(
        waited < std::time::Duration::from_secs(30),
        "the wait is bounded: {waited:?}"
    );
    assert_eq!(db.members(id), [1].into(), "the old members are kept");
    let runs = db
        .store
        .list_runs(&RunFilter {
            rule_id: Some(id),
            ..RunFilter::default()
        })
        .expect("runs");
    assert_eq!(runs[0].status, RunStatus::Failed);
    // Readers were not in the way while the lock was held, and are not now.
    assert!(refresh(&db.store).succeeded());
    assert_eq!(db.members(id), [1, 2].into());
}

#[test]
fn a_read_only_database_is_told_apart() {
    let (db, uri, mut admin) = db_and_session();
    assert!(db.store.check_writable().is_ok());
    let name: String = admin
        .query_one("SELECT current_database()", &[])
        .expect("name")
        .get(0);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
        ))
        .expect("read-only");
    // New sessions take the setting.
    let store = Store::open_existing(uri.as_str()).expect("reads still open it");
    let err = store.check_writable().expect_err("read-only");
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let err = spenders_result(&store).expect_err("no writes");
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(store.all_rules().expect("reads work").is_empty());
}

fn spenders_result(store: &Store) -> am_sql::Result<i64> {
    store.create_rule_json(r#"{"rule_name": "S", "conditions": []}"#)
}

#[test]
fn the_stored_query_pasted_into_psql_returns_the_members() {
    let (mut db, uri, _) = db_and_session();
    insert_users(
        db.conn(),
        &[UserRow::new(1).name("Asha"), UserRow::new(2).name("ben")],
    );
    db.conn()
        .batch(
            "INSERT INTO credit_card_transactions (user_id, amount, transaction_date) VALUES
               (1, 0.10, '2025-06-01 00:00:00'), (1, 0.20, '2025-06-02 00:00:00'),
               (1, 999.70, '2025-06-03 00:00:00'), (2, 1000.01, '2025-06-03 00:00:00')",
        )
        .expect("data");
    let exactly = db
        .store
        .create_rule_json(
            r#"{"rule_name": "At least 1000", "conditions": [{"field": "total_spend", "operator": ">=", "value": 1000}, {"field": "name", "operator": "contains", "value": "ASH"}]}"#,
        )
        .expect("rule");
    assert!(refresh(&db.store).succeeded());
    let sql = db
        .store
        .segment_for_rule(exactly)
        .expect("catalog")
        .expect("built")
        .sql_query;
    let out = std::process::Command::new("psql")
        .args([uri.as_str(), "-tA", "-v", "ON_ERROR_STOP=1", "-c", &sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_eq!(db.members(exactly), [1].into());
}

#[test]
fn another_programs_tables_are_refused_and_others_beside_ours_are_fine() {
    let uri = crate::engines::postgres_location();
    let mut admin = ::postgres::Client::connect(&uri, ::postgres::NoTls).expect("connect");
    admin
        .batch_execute("CREATE TABLE invoices (id BIGINT)")
        .expect("their table");
    Store::open(uri.as_str()).expect("a table of another name is no obstacle");

    let uri = crate::engines::postgres_location();
    let mut admin = ::postgres::Client::connect(&uri, ::postgres::NoTls).expect("connect");
    admin
        .batch_execute("CREATE TABLE users (id BIGINT)")
        .expect("their users");
    let err = Store::open(uri.as_str()).expect_err("their users table");
    assert!(matches!(err, Error::NotOurDatabase(_)), "{err:?}");
    let err = Store::open_existing(crate::engines::postgres_location()).expect_err("empty");
    assert!(matches!(err, Error::NoDatabase(_)), "{err:?}");
}

#[test]
fn a_database_the_server_refuses_fails_at_once_with_its_reason() {
    let server = am_testkit::postgres::server();
    let uri = format!(
        "postgres://{}@/no_such_database?host={}&port={}",
        server.user(),
        server.socket_dir().display(),
        server.port()
    );
    let err = Store::open(uri.as_str()).expect_err("no such database");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("database \"no_such_database\" does not exist"),
        "the server's reason, not the pool's \"db error\" after its wait: {err}"
    );
}
