//! The synthetic data generator: deterministic for a seed, refuses to mix with existing data
//! unless told to replace it, and produces data with the shape the docs promise.

use am_sql::datagen::{GenerateOptions, generate};
use am_sql::db;
use am_sql::error::Error;
use am_sql::progress::NoProgress;
use am_sql::store::Store;
use rusqlite::Connection;
use tempfile::TempDir;

fn options(seed: u64) -> GenerateOptions {
    let mut o = GenerateOptions::new(
        300,
        4_000,
        chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
    );
    o.seed = seed;
    o
}

fn generated(seed: u64) -> (TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("am.db")).unwrap();
    let mut conn = store.connection().unwrap();
    generate(&mut conn, &options(seed), &NoProgress).unwrap();
    (dir, conn)
}

/// Every row of the data tables, as text, in key order.
fn dump(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("users", "user_id"),
        ("credit_card_transactions", "transaction_id"),
        ("upi_transactions", "transaction_id"),
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = String::from(table);
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!("|{v:?}"));
                }
                Ok(line)
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_rows() {
    let (_a, first) = generated(7);
    let (_b, second) = generated(7);
    let rows = dump(&first);
    assert_eq!(rows.len(), 300 + 4_000);
    assert_eq!(rows, dump(&second));
    let (_c, other) = generated(8);
    assert_ne!(rows, dump(&other));
}

#[test]
fn the_data_has_the_promised_shape() {
    let (_dir, conn) = generated(1);
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let card = one("SELECT count(*) FROM credit_card_transactions");
    let upi = one("SELECT count(*) FROM upi_transactions");
    assert_eq!(card + upi, 4_000);
    assert!((2_000..3_000).contains(&card), "about 60% by card: {card}");

    let idle = one(
        "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM credit_card_transactions t WHERE t.user_id = u.user_id)
           AND NOT EXISTS (SELECT 1 FROM upi_transactions t WHERE t.user_id = u.user_id)",
    );
    assert!(idle >= 5, "some users never transact: {idle}");
    assert_eq!(
        one("SELECT count(*) FROM users WHERE city_tier NOT IN (1, 2, 3)"),
        0
    );
    assert_eq!(one("SELECT count(DISTINCT city_tier) FROM users"), 3);
    // Amounts have at most two decimals; times are in the contract's form and span.
    for table in ["credit_card_transactions", "upi_transactions"] {
        assert_eq!(
            one(&format!(
                "SELECT count(*) FROM {table} WHERE abs(amount * 100 - round(amount * 100)) > 1e-6 OR amount < 1"
            )),
            0
        );
        assert_eq!(
            one(&format!(
                "SELECT count(*) FROM {table} WHERE datetime(transaction_date) IS NOT transaction_date
                    OR transaction_date < '2025-07-01 00:00:00' OR transaction_date > '2026-06-30 23:59:59'"
            )),
            0
        );
        assert_eq!(
            one(&format!(
                "SELECT count(*) FROM {table} t JOIN users u USING (user_id) WHERE u.created_at >= t.transaction_date"
            )),
            0,
            "users join before they transact"
        );
        assert_eq!(
            one(&format!(
                "SELECT count(*) FROM {table} WHERE category NOT IN ('Travel', 'Groceries', 'Dining',
                   'Electronics', 'Fashion', 'Fuel', 'Entertainment', 'Utilities', 'Health', 'Education')"
            )),
            0
        );
    }
    assert_eq!(
        one("SELECT count(*) FROM credit_card_transactions WHERE merchant IS NULL"),
        0
    );
    assert_eq!(
        one("SELECT count(*) FROM upi_transactions WHERE description IS NULL"),
        0
    );
    // A heavy head: the busiest tenth of users make far more than a tenth of transactions.
    let top = one(
        "SELECT sum(n) FROM (SELECT count(*) AS n FROM credit_card_transactions GROUP BY user_id ORDER BY n DESC LIMIT 28)",
    );
    assert!(top * 10 > card * 2, "top users: {top} of {card}");
}

#[test]
fn existing_data_is_refused_unless_replaced() {
    let (_dir, mut conn) = generated(3);
    let v = db::data_version(&conn).unwrap();
    let err = generate(&mut conn, &options(3), &NoProgress).unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "table users already has rows; generate with replace to delete them first"
    );
    assert_eq!(db::data_version(&conn).unwrap(), v);

    let before = dump(&conn);
    let mut again = options(3);
    again.replace = true;
    let report = generate(&mut conn, &again, &NoProgress).unwrap();
    assert_eq!(report.users, 300);
    assert_eq!(
        report.credit_card_transactions + report.upi_transactions,
        4_000
    );
    assert_eq!(dump(&conn), before, "replacing regenerates the same rows");
    assert_eq!(db::data_version(&conn).unwrap(), v + 1, "one bump per load");

    // The triggers and indexes are back: a plain write still counts.
    let objects: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type IN ('trigger', 'index') AND sql IS NOT NULL
               AND tbl_name IN ('users', 'credit_card_transactions', 'upi_transactions')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(objects, 9 + 2);
    conn.execute("DELETE FROM upi_transactions WHERE transaction_id = 1", [])
        .unwrap();
    assert_eq!(db::data_version(&conn).unwrap(), v + 2);
}

#[test]
fn options_out_of_range_are_refused_before_anything_is_written() {
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let with = |f: &dyn Fn(&mut GenerateOptions)| {
        let mut o = options(1);
        f(&mut o);
        o
    };
    let cases: Vec<(GenerateOptions, &str)> = vec![
        (
            with(&|o| o.days = 0),
            "days must be from 1 to 36500 (got 0)",
        ),
        (
            with(&|o| o.days = 99_999_999),
            "days must be from 1 to 36500 (got 99999999)",
        ),
        (
            with(&|o| {
                o.end = date(1, 1, 1);
                o.days = 36_500;
            }),
            "the 36500 days ending 0001-01-01 (and two years of sign-ups before them) must fall in years 1000 to 9999",
        ),
        (
            with(&|o| {
                o.end = date(1002, 1, 1);
                o.days = 365;
            }),
            "the 365 days ending 1002-01-01 (and two years of sign-ups before them) must fall in years 1000 to 9999",
        ),
        (
            with(&|o| o.end = date(10_000, 1, 1)),
            "the 365 days ending +10000-01-01 (and two years of sign-ups before them) must fall in years 1000 to 9999",
        ),
        (
            with(&|o| o.users = 9_999_999_999_999),
            "users must be at most 100000000 (got 9999999999999)",
        ),
        (
            with(&|o| o.transactions = 2_000_000_001),
            "transactions must be at most 2000000000 (got 2000000001)",
        ),
        (
            with(&|o| o.users = 0),
            "transactions need users: ask for at least one user",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("am.db")).unwrap();
    let mut conn = store.connection().unwrap();
    let v = db::data_version(&conn).unwrap();
    for (o, message) in cases {
        assert_eq!(o.validate().unwrap_err().to_string(), message, "{o:?}");
        let err = generate(&mut conn, &o, &NoProgress).unwrap_err();
        assert!(matches!(err, Error::BadOptions(_)), "{err:?}");
        assert_eq!(err.to_string(), message);
    }
    assert_eq!(db::data_version(&conn).unwrap(), v, "nothing was written");

    // The edges are accepted and generate.
    let mut o = with(&|o| {
        o.end = date(1003, 1, 1);
        o.days = 1;
        o.users = 2;
        o.transactions = 3;
    });
    o.validate().unwrap();
    let report = generate(&mut conn, &o, &NoProgress).unwrap();
    assert_eq!(report.users, 2);
    let first: String = conn
        .query_row("SELECT min(created_at) FROM users", [], |r| r.get(0))
        .unwrap();
    assert!(first.as_str() >= "1000-01-01", "{first}");
    o.days = 36_500;
    o.end = date(9999, 12, 31);
    o.replace = true;
    o.validate().unwrap();
}

fn tracking_triggers(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%data_version%'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn data_version(conn: &Connection) -> i64 {
    conn.query_row("SELECT version FROM data_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_load_that_fails_midway_changes_nothing_and_keeps_change_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("am.db")).unwrap();
    let mut conn = store.connection().unwrap();
    let version = data_version(&conn);
    // A full disk, as SQLite sees one: the file may not grow past its current size plus a few
    // pages, so the load fails part way.
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 20))
        .unwrap();
    let mut big = options(1);
    big.users = 5_000;
    big.transactions = 50_000;
    let err = generate(&mut conn, &big, &NoProgress).unwrap_err();
    assert!(
        err.to_string().contains("full"),
        "the error says the disk is full: {err}"
    );
    conn.execute_batch("PRAGMA max_page_count = 1073741823")
        .unwrap();
    assert_eq!(tracking_triggers(&conn), 9, "the triggers are all there");
    assert!(dump(&conn).is_empty(), "nothing was loaded");
    assert_eq!(data_version(&conn), version);
    // And an ETL write still counts.
    conn.execute("INSERT INTO users (user_id) VALUES (1)", [])
        .unwrap();
    assert_eq!(data_version(&conn), version + 1);
}

#[test]
fn opening_puts_lost_change_tracking_back_and_counts_it_as_a_data_change() {
    let (dir, conn) = generated(3);
    // What an interrupted load of an older version left behind.
    for table in ["users", "credit_card_transactions", "upi_transactions"] {
        for op in ["insert", "update", "delete"] {
            conn.execute_batch(&format!("DROP TRIGGER {table}_data_version_{op}"))
                .unwrap();
        }
    }
    let version = data_version(&conn);
    let _store = Store::open(dir.path().join("am.db")).unwrap();
    assert_eq!(tracking_triggers(&conn), 9);
    assert_eq!(
        data_version(&conn),
        version + 1,
        "segments built before are stale"
    );
    conn.execute("DELETE FROM upi_transactions WHERE transaction_id = 1", [])
        .unwrap();
    assert_eq!(data_version(&conn), version + 2);
    // Opening again finds nothing to repair.
    let _again = Store::open(dir.path().join("am.db")).unwrap();
    assert_eq!(data_version(&conn), version + 2);
}
