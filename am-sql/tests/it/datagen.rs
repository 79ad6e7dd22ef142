//! The synthetic data generator: deterministic for a seed, refuses to mix with existing data
//! unless told to replace it, and produces data with the shape the docs promise.

use am_sql::conn::Conn;
use am_sql::datagen::{GenerateOptions, generate};
use am_sql::error::Error;
use am_sql::progress::NoProgress;
use am_sql::store::Store;
use am_sql::tracking::data_version;
use sea_query::{Expr, ExprTrait, Query};

use crate::engines::{Engine, TestDb, UserRow, insert_users, one, rows_of, time_text};

fn options(seed: u64) -> GenerateOptions {
    let mut o = GenerateOptions::new(
        300,
        4_000,
        chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
    );
    o.seed = seed;
    o
}

fn generated(engine: Engine, seed: u64) -> TestDb {
    let mut db = TestDb::new(engine);
    generate(db.conn(), &options(seed), &NoProgress).unwrap();
    db
}

/// Every row of the data tables, every cell as the engine returns it, in key order.
fn dump(conn: &mut dyn Conn) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("users", "user_id"),
        ("user_locations", "user_id"),
        ("credit_card_transactions", "transaction_id"),
        ("upi_transactions", "transaction_id"),
    ] {
        out.extend(
            rows_of(conn, table, key)
                .into_iter()
                .map(|row| format!("{table}|{:?}", row.0)),
        );
    }
    out
}

fn delete_upi(conn: &mut dyn Conn, transaction_id: i64) {
    let q = Query::delete()
        .from_table("upi_transactions")
        .and_where(Expr::col("transaction_id").eq(transaction_id))
        .to_owned();
    assert_eq!(conn.exec(&q).unwrap(), 1);
}

conformance! {
    fn the_same_seed_gives_the_same_rows(db: &mut TestDb) {
        generate(db.conn(), &options(7), &NoProgress).unwrap();
        let mut second = generated(db.engine, 7);
        let rows = dump(db.conn());
        let located = db.count("user_locations");
        assert_eq!(rows.len() as i64, 300 + located + 4_000);
        assert_eq!(rows, dump(second.conn()));
        let mut other = generated(db.engine, 8);
        assert_ne!(rows, dump(other.conn()));
    }
}

conformance! {
    fn the_data_has_the_promised_shape(db: &mut TestDb) {
        generate(db.conn(), &options(1), &NoProgress).unwrap();
        let card = db.count("credit_card_transactions");
        let upi = db.count("upi_transactions");
        assert_eq!(card + upi, 4_000);
        assert!((2_000..3_000).contains(&card), "about 60% by card: {card}");

        let idle = db.one(
            "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM credit_card_transactions t WHERE t.user_id = u.user_id)
               AND NOT EXISTS (SELECT 1 FROM upi_transactions t WHERE t.user_id = u.user_id)",
        );
        assert!(idle >= 5, "some users never transact: {idle}");
        assert_eq!(
            db.one("SELECT count(*) FROM users WHERE city_tier NOT IN (1, 2, 3)"),
            0
        );
        assert_eq!(db.one("SELECT count(DISTINCT city_tier) FROM users"), 3);
        // Amounts have at most two decimals; times are in the contract's form and span.
        for table in ["credit_card_transactions", "upi_transactions"] {
            assert_eq!(
                db.one(&format!(
                    "SELECT count(*) FROM {table} WHERE abs(amount * 100 - round(amount * 100)) > 1e-6 OR amount < 1"
                )),
                0
            );
            assert_eq!(
                db.one(&format!(
                    "SELECT count(*) FROM {table} WHERE transaction_date IS NULL
                        OR transaction_date < '2025-07-01 00:00:00' OR transaction_date > '2026-06-30 23:59:59'"
                )),
                0
            );
            if db.engine == Engine::Sqlite {
                // Text in the one form SQLite's date functions read and write back unchanged.
                assert_eq!(
                    db.one(&format!(
                        "SELECT count(*) FROM {table} WHERE datetime(transaction_date) IS NOT transaction_date"
                    )),
                    0
                );
            }
            assert_eq!(
                db.one(&format!(
                    "SELECT count(*) FROM {table} t JOIN users u USING (user_id) WHERE u.created_at >= t.transaction_date"
                )),
                0,
                "users join before they transact"
            );
            assert_eq!(
                db.one(&format!(
                    "SELECT count(*) FROM {table} WHERE category NOT IN ('Travel', 'Groceries', 'Dining',
                       'Electronics', 'Fashion', 'Fuel', 'Entertainment', 'Utilities', 'Health', 'Education')"
                )),
                0
            );
        }
        assert_eq!(
            db.one("SELECT count(*) FROM credit_card_transactions WHERE merchant IS NULL"),
            0
        );
        assert_eq!(
            db.one("SELECT count(*) FROM upi_transactions WHERE description IS NULL"),
            0
        );
        // Most users have a location, in India to six decimals, near a city of their tier:
        // around Bengaluru (tier 1) only tier-1 users and users without a tier.
        let located = db.count("user_locations");
        assert!((240..=290).contains(&located), "about 90% located: {located}");
        assert_eq!(
            db.one(
                "SELECT count(*) FROM user_locations WHERE latitude NOT BETWEEN 8 AND 32
                   OR longitude NOT BETWEEN 68 AND 90
                   OR abs(latitude * 1e6 - round(latitude * 1e6)) > 1e-3 OR updated_at IS NULL"
            ),
            0
        );
        let near_bengaluru = "FROM user_locations l JOIN users u USING (user_id)
            WHERE l.latitude BETWEEN 12.57 AND 13.37 AND l.longitude BETWEEN 77.19 AND 78.0";
        assert!(db.one(&format!("SELECT count(*) {near_bengaluru}")) > 0);
        assert_eq!(
            db.one(&format!("SELECT count(*) {near_bengaluru} AND u.city_tier IN (2, 3)")),
            0
        );
        // A heavy head: the busiest tenth of users make far more than a tenth of transactions.
        let top = db.one(
            "SELECT CAST(sum(n) AS BIGINT) FROM (SELECT count(*) AS n FROM credit_card_transactions
               GROUP BY user_id ORDER BY n DESC LIMIT 28) AS busiest",
        );
        assert!(top * 10 > card * 2, "top users: {top} of {card}");
    }
}

conformance! {
    fn existing_data_is_refused_unless_replaced(db: &mut TestDb) {
        generate(db.conn(), &options(3), &NoProgress).unwrap();
        let v = data_version(db.conn()).unwrap();
        let err = generate(db.conn(), &options(3), &NoProgress).unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "table users already has rows; generate with replace to delete them first"
        );
        assert_eq!(data_version(db.conn()).unwrap(), v);

        let before = dump(db.conn());
        let mut again = options(3);
        again.replace = true;
        let report = generate(db.conn(), &again, &NoProgress).unwrap();
        assert_eq!(report.users, 300);
        assert_eq!(
            report.credit_card_transactions + report.upi_transactions,
            4_000
        );
        assert_eq!(
            dump(db.conn()),
            before,
            "replacing regenerates the same rows"
        );
        assert_eq!(data_version(db.conn()).unwrap(), v + 1, "one bump per load");

        if db.engine == Engine::Sqlite {
            // The triggers and indexes the load dropped are back.
            let objects = db.one(
                "SELECT count(*) FROM sqlite_master WHERE type IN ('trigger', 'index') AND sql IS NOT NULL
                   AND tbl_name IN ('users', 'credit_card_transactions', 'upi_transactions')",
            );
            assert_eq!(objects, 9 + 4);
        }
        // A plain write still counts.
        delete_upi(db.conn(), 1);
        assert_eq!(data_version(db.conn()).unwrap(), v + 2);
    }
}

conformance! {
    fn options_out_of_range_are_refused_before_anything_is_written(db: &mut TestDb) {
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
        let v = data_version(db.conn()).unwrap();
        for (o, message) in cases {
            assert_eq!(o.validate().unwrap_err().to_string(), message, "{o:?}");
            let err = generate(db.conn(), &o, &NoProgress).unwrap_err();
            assert!(matches!(err, Error::BadOptions(_)), "{err:?}");
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(data_version(db.conn()).unwrap(), v, "nothing was written");

        // The edges are accepted and generate.
        let mut o = with(&|o| {
            o.end = date(1003, 1, 1);
            o.days = 1;
            o.users = 2;
            o.transactions = 3;
        });
        o.validate().unwrap();
        let report = generate(db.conn(), &o, &NoProgress).unwrap();
        assert_eq!(report.users, 2);
        let first = Query::select()
            .expr(Expr::col("created_at").min())
            .from("users")
            .to_owned();
        let first = time_text(&db.conn().row(&first).unwrap(), 0).unwrap();
        assert!(first.as_str() >= "1000-01-01", "{first}");
        o.days = 36_500;
        o.end = date(9999, 12, 31);
        o.replace = true;
        o.validate().unwrap();
    }
}

/// SQLite only: the change-tracking triggers, by name in `sqlite_master`.
fn tracking_triggers(conn: &mut dyn Conn) -> i64 {
    one(
        conn,
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%data_version%'",
    )
}

/// SQLite only: a full disk as SQLite sees one (`max_page_count`), with its trigger drop and
/// restore around the load.
#[test]
fn a_load_that_fails_midway_changes_nothing_and_keeps_change_tracking() {
    let mut db = TestDb::new(Engine::Sqlite);
    let conn = db.conn();
    let version = data_version(conn).unwrap();
    // The file may not grow past its current size plus a few pages, so the load fails part
    // way.
    let pages = one(conn, "PRAGMA page_count");
    conn.batch(&format!("PRAGMA max_page_count = {}", pages + 20))
        .unwrap();
    let mut big = options(1);
    big.users = 5_000;
    big.transactions = 50_000;
    let err = generate(conn, &big, &NoProgress).unwrap_err();
    assert!(
        matches!(err, Error::DiskFull { .. }) && err.to_string().contains("full"),
        "the error says the disk is full: {err}"
    );
    conn.batch("PRAGMA max_page_count = 1073741823").unwrap();
    assert_eq!(tracking_triggers(conn), 12, "the triggers are all there");
    assert!(dump(conn).is_empty(), "nothing was loaded");
    assert_eq!(data_version(conn).unwrap(), version);
    // And an ETL write still counts.
    insert_users(conn, &[UserRow::new(1)]);
    assert_eq!(data_version(conn).unwrap(), version + 1);
}

/// SQLite only: SQLite's change-tracking triggers, repaired by opening the file.
#[test]
fn opening_puts_lost_change_tracking_back_and_counts_it_as_a_data_change() {
    let mut db = generated(Engine::Sqlite, 3);
    let path = db.store.path().unwrap().to_path_buf();
    let conn = db.conn();
    // What an interrupted load of an older version left behind.
    for table in [
        "users",
        "user_locations",
        "credit_card_transactions",
        "upi_transactions",
    ] {
        for op in ["insert", "update", "delete"] {
            conn.batch(&format!("DROP TRIGGER {table}_data_version_{op}"))
                .unwrap();
        }
    }
    let version = data_version(conn).unwrap();
    let _store = Store::open(&path).unwrap();
    assert_eq!(tracking_triggers(conn), 12);
    assert_eq!(
        data_version(conn).unwrap(),
        version + 1,
        "segments built before are stale"
    );
    delete_upi(conn, 1);
    assert_eq!(data_version(conn).unwrap(), version + 2);
    // Opening again finds nothing to repair.
    let _again = Store::open(&path).unwrap();
    assert_eq!(data_version(conn).unwrap(), version + 2);
}
