//! What differs per engine, one folder each (as sea-query keeps `src/backend/<name>/`), and
//! only that: the query builder and transaction control ([`Dialect`]), the SQL functions that
//! are spelt differently (day arithmetic, ASCII case folding), the atomic swap of a segment
//! table, bulk loading, change tracking, migrations, run ownership and driver errors.
//!
//! Everything else (rules, catalog, runs, rendering, refresh) is written once over
//! [`crate::conn::Conn`] and asks the [`Dialect`] where an engine differs.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "spark")]
pub mod spark;
pub mod sqlite;

use am_core::rule::RuleId;
use chrono::{NaiveDate, NaiveDateTime};
use sea_query::{
    ColumnType, QueryStatementWriter, SchemaStatementBuilder, SelectStatement, Values,
};

use crate::conn::{Conn, TxMode};
use crate::error::Result;

type SqlExpr = sea_query::Expr;

/// The engine a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite, the embedded default.
    Sqlite,
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres,
    /// Spark SQL: the SQL Spark computes segments with (`backend/spark`); never a store.
    #[cfg(feature = "spark")]
    Spark,
}

impl Dialect {
    /// The engine's name, as the catalog and explain output say it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => "postgresql",
            #[cfg(feature = "spark")]
            Dialect::Spark => "spark",
        }
    }

    /// A statement with placeholders, and the values to bind.
    pub fn build<S: QueryStatementWriter>(self, stmt: &S) -> (String, Values) {
        match self {
            Dialect::Sqlite => stmt.build(sea_query::SqliteQueryBuilder),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => stmt.build(sea_query::PostgresQueryBuilder),
            #[cfg(feature = "spark")]
            Dialect::Spark => stmt.build(sea_query::MysqlQueryBuilder),
        }
    }

    /// A statement with its values inlined: the stored `sql_query`, explain output.
    pub fn inline<S: QueryStatementWriter>(self, stmt: &S) -> String {
        match self {
            Dialect::Sqlite => stmt.to_string(sea_query::SqliteQueryBuilder),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => stmt.to_string(sea_query::PostgresQueryBuilder),
            #[cfg(feature = "spark")]
            Dialect::Spark => stmt.to_string(sea_query::MysqlQueryBuilder),
        }
    }

    /// A schema statement.
    pub fn table<S: SchemaStatementBuilder>(self, stmt: &S) -> String {
        match self {
            Dialect::Sqlite => stmt.to_string(sea_query::SqliteQueryBuilder),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => stmt.to_string(sea_query::PostgresQueryBuilder),
            #[cfg(feature = "spark")]
            Dialect::Spark => stmt.to_string(sea_query::MysqlQueryBuilder),
        }
    }

    /// The statement that opens a transaction of `mode`.
    pub fn begin(self, mode: TxMode) -> &'static str {
        match (self, mode) {
            // Deferred SQLite transactions upgrade to writes lazily and can then fail with
            // "busy" half way; IMMEDIATE takes the write lock up front (or waits for it).
            (Dialect::Sqlite, TxMode::Write) => "BEGIN IMMEDIATE",
            (Dialect::Sqlite, TxMode::Read) => "BEGIN",
            #[cfg(feature = "postgres")]
            (Dialect::Postgres, TxMode::Write) => "BEGIN",
            #[cfg(feature = "postgres")]
            (Dialect::Postgres, TxMode::Read) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            #[cfg(feature = "spark")]
            // No connection speaks Spark: it computes segments, the store keeps them.
            (Dialect::Spark, _) => "BEGIN",
        }
    }

    /// `"name"`: one of our own identifiers (table names built from ids), quoted.
    pub fn quote(self, name: &str) -> String {
        #[cfg(feature = "spark")]
        if self == Dialect::Spark {
            return format!("`{}`", name.replace('`', "``"));
        }
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// A time as this engine compares it with the data tables' times: SQLite keeps them as
    /// text (`YYYY-MM-DD HH:MM:SS`, a fraction only when there is one), others as
    /// `TIMESTAMP`.
    pub fn time_value(self, t: NaiveDateTime) -> sea_query::Value {
        match self {
            Dialect::Sqlite => t.format("%Y-%m-%d %H:%M:%S%.f").to_string().into(),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => t.into(),
            #[cfg(feature = "spark")]
            Dialect::Spark => t.format("%Y-%m-%d %H:%M:%S%.f").to_string().into(),
        }
    }

    /// A `user_id`-like key column: SQLite's `INTEGER PRIMARY KEY` is the row id itself
    /// (a `BIGINT` key would be a second index); elsewhere a `BIGINT`.
    pub fn key_column(self, name: &str) -> sea_query::ColumnDef {
        let mut col = sea_query::ColumnDef::new(sea_query::Alias::new(name));
        match self {
            Dialect::Sqlite => col.integer(),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => col.big_integer(),
            #[cfg(feature = "spark")]
            Dialect::Spark => col.big_integer(),
        };
        col.primary_key();
        col
    }

    /// The column type of a time in our scratch tables.
    pub fn time_column(self) -> ColumnType {
        match self {
            Dialect::Sqlite => ColumnType::Text,
            #[cfg(feature = "postgres")]
            Dialect::Postgres => ColumnType::DateTime,
            #[cfg(feature = "spark")]
            Dialect::Spark => ColumnType::DateTime,
        }
    }

    /// Whole days from the date of `last` (a time) to `as_of`.
    pub fn days_since(self, as_of: NaiveDate, last: SqlExpr) -> SqlExpr {
        match self {
            Dialect::Sqlite => sqlite::days_since(as_of, last),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => postgres::days_since(as_of, last),
            #[cfg(feature = "spark")]
            Dialect::Spark => spark::days_since(as_of, last),
        }
    }

    /// The day of a transaction time, exactly as the index the change log's window bands read
    /// spells it (migrations: `<transactions>_day_user`): refresh scans compare the time
    /// itself, so they never pick that index over the covering one.
    pub fn transaction_day(self, time: SqlExpr) -> SqlExpr {
        match self {
            Dialect::Sqlite => sea_query::Func::cust("date").arg(time).into(),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => sea_query::Func::cast_as(time, "DATE").into(),
            #[cfg(feature = "spark")]
            Dialect::Spark => sea_query::Func::cast_as(time, "DATE").into(),
        }
    }

    /// Where `needle` (already lower case) first occurs in `x` with ASCII letters folded
    /// to lower case and nothing else folded (1-based; 0 when it does not occur), as the
    /// contract's `contains` and `starts_with` ask.
    pub fn ascii_position(self, x: SqlExpr, needle: &str) -> SqlExpr {
        match self {
            Dialect::Sqlite => sqlite::ascii_position(x, needle),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => postgres::ascii_position(x, needle),
            #[cfg(feature = "spark")]
            Dialect::Spark => spark::ascii_position(x, needle),
        }
    }

    /// Whether a table of ours exists.
    pub fn table_exists(self, conn: &mut dyn Conn, name: &str) -> Result<bool> {
        match self {
            Dialect::Sqlite => sqlite::table_exists(conn, name),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => postgres::table_exists(conn, name),
            #[cfg(feature = "spark")]
            Dialect::Spark => Err(spark::not_a_store()),
        }
    }

    /// Whether a refresh should read a small set a filter narrows member by member (a key
    /// lookup of each member in the aggregates), as measured on SQLite, whose planner keeps
    /// the join order it is given; engines that choose join orders themselves decide alone.
    pub fn drives_from_small_sets(self) -> bool {
        match self {
            Dialect::Sqlite => true,
            #[cfg(feature = "postgres")]
            Dialect::Postgres => false,
            #[cfg(feature = "spark")]
            Dialect::Spark => false,
        }
    }

    /// Rebuilds `segment_output_<id>` from `select` in one transaction, keeping the old
    /// members as `segment_output_<id>__previous`; `publish` writes the catalog row and the
    /// run's success inside the same transaction. Readers see the old members or the new
    /// ones, never a missing, empty or partial table; on any error nothing changes.
    pub fn rebuild_segment(
        self,
        conn: &mut dyn Conn,
        rule_id: RuleId,
        select: SelectStatement,
        publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
    ) -> Result<SwapCounts> {
        match self {
            Dialect::Sqlite => sqlite::swap::rebuild(conn, rule_id, select, publish),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => postgres::swap::rebuild(conn, rule_id, select, publish),
            #[cfg(feature = "spark")]
            Dialect::Spark => Err(spark::not_a_store()),
        }
    }

    /// Settings that make the refresh's many scans cheaper on this connection; returns
    /// what to run afterwards to put them back.
    pub fn read_faster(self, conn: &mut dyn Conn) -> Vec<String> {
        match self {
            Dialect::Sqlite => sqlite::read_faster(conn),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => Vec::new(),
            #[cfg(feature = "spark")]
            Dialect::Spark => Vec::new(),
        }
    }

    /// Prepares a bulk load inside its transaction, which bumps the data version once at its
    /// end: SQLite drops the per-row change-tracking triggers and grows its page cache;
    /// PostgreSQL tells its triggers, for this transaction only, that the load counts itself.
    pub fn bulk_load_begin(self, conn: &mut dyn Conn) -> Result<()> {
        match self {
            Dialect::Sqlite => {
                sqlite::drop_tracking(conn)?;
                conn.batch("PRAGMA cache_size = -262144")
            }
            #[cfg(feature = "postgres")]
            Dialect::Postgres => conn.batch("SET LOCAL am.bulk_load = 'on'"),
            #[cfg(feature = "spark")]
            Dialect::Spark => Err(spark::not_a_store()),
        }
    }

    /// Ends a bulk load inside its transaction, before the commit: SQLite puts the triggers
    /// back; PostgreSQL moves its id sequences past the loaded ids.
    pub fn bulk_load_end(self, conn: &mut dyn Conn) -> Result<()> {
        match self {
            Dialect::Sqlite => {
                sqlite::restore_tracking(conn)?;
                conn.batch("PRAGMA cache_size = -2000")
            }
            #[cfg(feature = "postgres")]
            Dialect::Postgres => postgres::sync_identities(conn),
            #[cfg(feature = "spark")]
            Dialect::Spark => Err(spark::not_a_store()),
        }
    }

    /// After a committed bulk load (best effort): SQLite folds the WAL, as big as the data,
    /// back into the file; PostgreSQL gathers the new tables' statistics for its planner.
    pub fn after_bulk_load(self, conn: &mut dyn Conn) {
        let sql = match self {
            Dialect::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => {
                "ANALYZE users, user_locations, credit_card_transactions, upi_transactions"
            }
            #[cfg(feature = "spark")]
            Dialect::Spark => return,
        };
        if let Err(e) = conn.batch(sql) {
            tracing::debug!("after the load: {e}");
        }
    }

    /// How a scratch table of one refresh is named in statements: SQLite keeps them in its
    /// `temp` schema.
    pub fn scratch_table(self, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("temp.{}", self.quote(name)),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => self.quote(name),
            #[cfg(feature = "spark")]
            Dialect::Spark => self.quote(name),
        }
    }
}

/// `translate(x, 'A..Z', 'a..z')`: ASCII letters folded to lower case and nothing else, as
/// the contract's `contains` and `starts_with` ask, where an engine's `lower` folds every letter
/// its locale knows (`Ä` to `ä`).
#[cfg(any(feature = "postgres", feature = "spark"))]
pub(crate) fn ascii_lower(x: SqlExpr) -> SqlExpr {
    sea_query::Func::cust("translate")
        .args([
            x,
            SqlExpr::val("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            SqlExpr::val("abcdefghijklmnopqrstuvwxyz"),
        ])
        .into()
}

/// The sizes a swap measured: members now, members added, members removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwapCounts {
    pub row_count: i64,
    pub entered: i64,
    pub left: i64,
}

/// The table a refresh builds before swapping it in, where an engine needs one:
/// `segment_output_<id>__next`.
pub fn next_table_name(rule_id: RuleId) -> String {
    format!("{}__next", crate::catalog::segment_table_name(rule_id))
}

/// The members a segment had before its last refresh: `segment_output_<id>__previous`.
pub fn previous_table_name(rule_id: RuleId) -> String {
    format!("{}__previous", crate::catalog::segment_table_name(rule_id))
}

/// Who entered (`entered = 1`) and left (`0`) a segment at its last refresh, when that refresh
/// updated it rather than rebuilt it: `segment_output_<id>__changes`.
pub fn changes_table_name(rule_id: RuleId) -> String {
    format!("{}__changes", crate::catalog::segment_table_name(rule_id))
}

/// `CREATE TABLE <table> (user_id INTEGER PRIMARY KEY)`, the contract's shape of a segment
/// table.
pub fn create_segment_table(dialect: Dialect, table: &str) -> sea_query::TableCreateStatement {
    sea_query::Table::create()
        .table(sea_query::Alias::new(table))
        .col(dialect.key_column(crate::render::USER_ID))
        .to_owned()
}

/// `INSERT INTO <table> (user_id) <select> ORDER BY 1`.
///
/// In user_id order each row appends to the end of the table's B-tree. The order is free on
/// SQLite: its plans for segment selects already produce it, and it turns `UNION`,
/// `INTERSECT` and `EXCEPT` into merges instead of temporary B-trees.
pub(crate) fn insert_members(
    table: &str,
    mut select: SelectStatement,
) -> sea_query::InsertStatement {
    // Positional, so it names the one result column of a compound select too.
    select.order_by_expr(SqlExpr::cust("1"), sea_query::Order::Asc);
    let mut insert = sea_query::Query::insert();
    insert
        .into_table(sea_query::Alias::new(table))
        .columns([crate::render::USER_ID]);
    // The select returns exactly one column, so the column counts always match.
    let _ = insert.select_from(select);
    insert
}
