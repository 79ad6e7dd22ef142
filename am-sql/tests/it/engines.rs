//! The engines the suite runs on, and what its tests share: a fresh database per test, data
//! written the way a user's ETL writes it (sea-query statements, values bound), and the few
//! probes that differ per engine, each in one place here.
//!
//! A test about semantics is written once with [`conformance!`] and runs on every engine; a
//! test about one engine's files or settings is a plain `#[test]` on that engine.

use std::collections::BTreeSet;

use am_core::rule::RuleId;
use am_sql::Dialect;
use am_sql::conn::{Cell, Conn, Row, Statement};
use am_sql::store::Store;
use sea_query::{Alias, Asterisk, Expr, ExprTrait, Order, Query, Values};
use tempfile::TempDir;

/// An engine the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// Where a fresh, empty PostgreSQL database for one test is: a `postgres://` URI.
#[cfg(feature = "postgres")]
pub fn postgres_location() -> String {
    am_testkit::postgres::server().fresh_database()
}

/// A fresh database of one engine, with a connection to it.
pub struct TestDb {
    pub engine: Engine,
    pub store: Store,
    pub conn: Box<dyn Conn>,
    /// The directory of a SQLite file, removed when the test ends.
    #[allow(dead_code)]
    pub dir: Option<TempDir>,
}

impl TestDb {
    pub fn new(engine: Engine) -> TestDb {
        let (store, dir) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (Store::open(dir.path().join("am.db")).unwrap(), Some(dir))
            }
            #[cfg(feature = "postgres")]
            Engine::Postgres => (Store::open(postgres_location()).unwrap(), None),
        };
        let conn = store.connection().unwrap();
        TestDb {
            engine,
            store,
            conn,
            dir,
        }
    }

    pub fn conn(&mut self) -> &mut dyn Conn {
        self.conn.as_mut()
    }

    /// The members of a rule's segment table.
    pub fn members(&mut self, rule_id: RuleId) -> BTreeSet<i64> {
        members(self.conn(), rule_id)
    }

    /// The users a rule's stored `sql_query` returns, run as pasted into a shell.
    pub fn replay(&mut self, rule_id: RuleId) -> BTreeSet<i64> {
        replay(self.conn(), rule_id)
    }

    /// How many rows a table has.
    pub fn count(&mut self, table: &str) -> i64 {
        count(self.conn(), table)
    }

    /// The one integer a query without parameters returns.
    pub fn one(&mut self, sql: &str) -> i64 {
        one(self.conn(), sql)
    }

    pub fn exec(&mut self, stmt: &impl Statement) -> u64 {
        self.conn().exec(stmt).unwrap()
    }

    pub fn table_exists(&mut self, name: &str) -> bool {
        let dialect = self.conn.dialect();
        dialect.table_exists(self.conn(), name).unwrap()
    }
}

/// Generates one `#[test]` per engine from a test written once:
/// `conformance! { fn name(db: &mut TestDb) { .. } }` makes `name::sqlite` (and
/// `name::postgres` with the `postgres` feature), each on a fresh database.
macro_rules! conformance {
    ($($(#[$meta:meta])* fn $name:ident($db:ident: &mut TestDb $(,)?) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn check($db: &mut crate::engines::TestDb) $body

            #[test]
            fn sqlite() {
                check(&mut crate::engines::TestDb::new(crate::engines::Engine::Sqlite));
            }

            #[cfg(feature = "postgres")]
            #[test]
            fn postgres() {
                check(&mut crate::engines::TestDb::new(crate::engines::Engine::Postgres));
            }
        }
    )*};
}

// ---- Data, as a user's ETL writes it --------------------------------------------------------

/// A row of `users`: times as `YYYY-MM-DD HH:MM:SS` text.
#[derive(Debug, Clone, Default)]
pub struct UserRow {
    pub user_id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub city_tier: Option<i64>,
    pub created_at: Option<String>,
}

impl UserRow {
    pub fn new(user_id: i64) -> UserRow {
        UserRow {
            user_id,
            ..UserRow::default()
        }
    }
    pub fn name(mut self, name: &str) -> UserRow {
        self.name = Some(name.into());
        self
    }
    pub fn email(mut self, email: &str) -> UserRow {
        self.email = Some(email.into());
        self
    }
    pub fn tier(mut self, tier: i64) -> UserRow {
        self.city_tier = Some(tier);
        self
    }
    pub fn created(mut self, at: &str) -> UserRow {
        self.created_at = Some(at.into());
        self
    }
}

/// A row of a transaction table: the amount as a decimal number (`999.70`), the time as
/// text; `text` is the merchant of a card payment or the description of a UPI one.
#[derive(Debug, Clone, Default)]
pub struct TxRow {
    pub transaction_id: i64,
    pub user_id: i64,
    pub amount: Option<f64>,
    pub text: Option<String>,
    pub category: Option<String>,
    pub transaction_date: Option<String>,
}

impl TxRow {
    pub fn new(transaction_id: i64, user_id: i64, amount: f64, at: &str) -> TxRow {
        TxRow {
            transaction_id,
            user_id,
            amount: Some(amount),
            transaction_date: Some(at.into()),
            ..TxRow::default()
        }
    }
    pub fn text(mut self, text: &str) -> TxRow {
        self.text = Some(text.into());
        self
    }
    pub fn category(mut self, category: &str) -> TxRow {
        self.category = Some(category.into());
        self
    }
}

/// Which transaction table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxTable {
    Card,
    Upi,
}

impl TxTable {
    pub fn name(self) -> &'static str {
        match self {
            TxTable::Card => "credit_card_transactions",
            TxTable::Upi => "upi_transactions",
        }
    }

    fn text_column(self) -> &'static str {
        match self {
            TxTable::Card => "merchant",
            TxTable::Upi => "description",
        }
    }
}

pub fn insert_users(conn: &mut dyn Conn, rows: &[UserRow]) {
    if rows.is_empty() {
        return;
    }
    let mut q = Query::insert();
    q.into_table("users")
        .columns(["user_id", "name", "email", "city_tier", "created_at"]);
    for r in rows {
        q.values_panic([
            r.user_id.into(),
            r.name.clone().into(),
            r.email.clone().into(),
            r.city_tier.into(),
            r.created_at.clone().into(),
        ]);
    }
    conn.exec(&q).unwrap();
}

/// Rows of `user_locations`: (user id, latitude, longitude).
pub fn insert_locations(conn: &mut dyn Conn, rows: &[(i64, f64, f64)]) {
    if rows.is_empty() {
        return;
    }
    let mut q = Query::insert();
    q.into_table("user_locations")
        .columns(["user_id", "latitude", "longitude"]);
    for (user_id, lat, lon) in rows {
        q.values_panic([(*user_id).into(), (*lat).into(), (*lon).into()]);
    }
    conn.exec(&q).unwrap();
}

pub fn insert_transactions(conn: &mut dyn Conn, table: TxTable, rows: &[TxRow]) {
    if rows.is_empty() {
        return;
    }
    let mut q = Query::insert();
    q.into_table(Alias::new(table.name())).columns([
        "transaction_id",
        "user_id",
        "amount",
        table.text_column(),
        "category",
        "transaction_date",
    ]);
    for r in rows {
        q.values_panic([
            r.transaction_id.into(),
            r.user_id.into(),
            r.amount.into(),
            r.text.clone().into(),
            r.category.clone().into(),
            r.transaction_date.clone().into(),
        ]);
    }
    conn.exec(&q).unwrap();
}

pub fn insert_card(conn: &mut dyn Conn, rows: &[TxRow]) {
    insert_transactions(conn, TxTable::Card, rows);
}

pub fn insert_upi(conn: &mut dyn Conn, rows: &[TxRow]) {
    insert_transactions(conn, TxTable::Upi, rows);
}

/// Runs `f` with foreign keys off on this connection, for random data with transactions of
/// users who do not exist.
pub fn without_foreign_keys(conn: &mut dyn Conn, f: impl FnOnce(&mut dyn Conn)) {
    let (off, on) = match conn.dialect() {
        Dialect::Sqlite => ("PRAGMA foreign_keys = OFF", "PRAGMA foreign_keys = ON"),
        // Needs a superuser; it also keeps triggers from firing.
        #[cfg(feature = "postgres")]
        Dialect::Postgres => (
            "SET session_replication_role = replica",
            "SET session_replication_role = DEFAULT",
        ),
        #[cfg(feature = "spark")]
        Dialect::Spark => unreachable!("no store speaks Spark"),
    };
    conn.batch(off).unwrap();
    f(conn);
    conn.batch(on).unwrap();
}

// ---- Probes -------------------------------------------------------------------------------

/// The user ids an SQL text returns (its first column).
pub fn user_ids(conn: &mut dyn Conn, sql: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    conn.query_sql(sql, Values(vec![]), &mut |row| {
        assert!(out.insert(row.i64(0)?), "a user id returned twice by {sql}");
        Ok(())
    })
    .unwrap();
    out
}

/// The user ids in a table.
pub fn ids_in(conn: &mut dyn Conn, table: &str) -> BTreeSet<i64> {
    let q = Query::select()
        .column("user_id")
        .from(Alias::new(table))
        .to_owned();
    conn.rows(&q)
        .unwrap()
        .iter()
        .map(|r| r.i64(0).unwrap())
        .collect()
}

pub fn members(conn: &mut dyn Conn, rule_id: RuleId) -> BTreeSet<i64> {
    ids_in(conn, &am_sql::catalog::segment_table_name(rule_id))
}

pub fn replay(conn: &mut dyn Conn, rule_id: RuleId) -> BTreeSet<i64> {
    let q = Query::select()
        .column("sql_query")
        .from("segment_catalog")
        .and_where(Expr::col("rule_id").eq(rule_id))
        .to_owned();
    let sql = conn.row(&q).unwrap().text(0).unwrap();
    user_ids(conn, &sql)
}

pub fn count(conn: &mut dyn Conn, table: &str) -> i64 {
    let q = Query::select()
        .expr(Expr::cust("count(*)"))
        .from(Alias::new(table))
        .to_owned();
    conn.row(&q).unwrap().i64(0).unwrap()
}

/// The one integer a query without parameters returns.
pub fn one(conn: &mut dyn Conn, sql: &str) -> i64 {
    let mut got = None;
    conn.query_sql(sql, Values(vec![]), &mut |row| {
        assert!(got.is_none(), "more than one row from {sql}");
        got = Some(row.i64(0)?);
        Ok(())
    })
    .unwrap();
    got.unwrap_or_else(|| panic!("no row from {sql}"))
}

/// Every row of a table in key order, every cell as the engine returned it.
pub fn rows_of(conn: &mut dyn Conn, table: &str, key: &str) -> Vec<Row> {
    let q = Query::select()
        .column(Asterisk)
        .from(Alias::new(table))
        .order_by(Alias::new(key), Order::Asc)
        .to_owned();
    conn.rows(&q).unwrap()
}

/// A time as stored: the text itself where the engine keeps times as text, else the
/// `TIMESTAMP` written `YYYY-MM-DD HH:MM:SS` (with a fraction only when there is one).
pub fn time_text(row: &Row, i: usize) -> Option<String> {
    match &row.0[i] {
        Cell::Null => None,
        Cell::Text(s) => Some(s.clone()),
        Cell::Time(t) => Some(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        other => panic!("column {i} is not a time: {other:?}"),
    }
}

/// Our tables, the data tables and every other base table in the database, by name.
pub fn table_names(conn: &mut dyn Conn) -> Vec<String> {
    let q = match conn.dialect() {
        Dialect::Sqlite => Query::select()
            .column("name")
            .from("sqlite_master")
            .and_where(Expr::col("type").eq("table"))
            .and_where(Expr::col("name").not_like("sqlite_%"))
            .order_by("name", Order::Asc)
            .to_owned(),
        #[cfg(feature = "postgres")]
        Dialect::Postgres => Query::select()
            .expr(Expr::cust("CAST(table_name AS TEXT)"))
            .from(("information_schema", "tables"))
            .and_where(Expr::col("table_schema").eq(Expr::cust("current_schema()")))
            .and_where(Expr::col("table_type").eq("BASE TABLE"))
            .order_by_expr(Expr::cust("1"), Order::Asc)
            .to_owned(),
        #[cfg(feature = "spark")]
        Dialect::Spark => unreachable!("no store speaks Spark"),
    };
    conn.rows(&q)
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect()
}

/// What a forced failure fails.
#[derive(Debug, Clone, Copy)]
pub enum Write {
    Insert,
    Update,
}

/// Makes every insert or update of a row of `table` fail with `message`, or only of the rows
/// for which `when` (a condition on `NEW`) holds: how a test breaks a refresh half way.
/// Undone by [`stop_failing`].
pub fn fail_writes(
    conn: &mut dyn Conn,
    name: &str,
    write: Write,
    table: &str,
    when: Option<&str>,
    message: &str,
) {
    let write = match write {
        Write::Insert => "INSERT",
        Write::Update => "UPDATE",
    };
    let message = message.replace('\'', "''");
    let sql = match conn.dialect() {
        Dialect::Sqlite => {
            let when = when.map(|w| format!("WHEN {w}")).unwrap_or_default();
            format!(
                "CREATE TRIGGER {name} BEFORE {write} ON {table} {when}
                 BEGIN SELECT RAISE(ABORT, '{message}'); END;"
            )
        }
        #[cfg(feature = "postgres")]
        Dialect::Postgres => {
            let when = when.map(|w| format!("WHEN ({w})")).unwrap_or_default();
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN RAISE EXCEPTION '{message}'; END $$;
                 CREATE TRIGGER {name} BEFORE {write} ON {table} FOR EACH ROW {when}
                   EXECUTE FUNCTION {name}();"
            )
        }
        #[cfg(feature = "spark")]
        Dialect::Spark => unreachable!("no store speaks Spark"),
    };
    conn.batch(&sql).unwrap();
}

/// `table` is the one [`fail_writes`] was given (PostgreSQL names a trigger with its table).
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn stop_failing(conn: &mut dyn Conn, name: &str, table: &str) {
    let sql = match conn.dialect() {
        Dialect::Sqlite => format!("DROP TRIGGER {name}"),
        #[cfg(feature = "postgres")]
        Dialect::Postgres => format!("DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();"),
        #[cfg(feature = "spark")]
        Dialect::Spark => unreachable!("no store speaks Spark"),
    };
    conn.batch(&sql).unwrap();
}
