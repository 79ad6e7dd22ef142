//! SQLite, the embedded default: one database file, opened per operation (WAL lets readers
//! run while a refresh writes), migrations by rusqlite_migration, change tracking by row
//! triggers, the atomic swap in one `IMMEDIATE` transaction, and run owners as file locks.

mod bind;
pub(crate) mod conn;
pub(crate) mod error;
pub(crate) mod owner;
pub(crate) mod swap;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};
use sea_query::{ExprTrait, Func};

use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::schema::DATA_TABLES;

pub use conn::SqliteConn;

type SqlExpr = sea_query::Expr;

/// Written into the file header by the first migration ("AMG1"), so another program's
/// SQLite file is recognised even when it happens to have a `user_version`.
pub const APPLICATION_ID: i64 = 0x414D_4731;

/// How long a connection waits for another writer before giving up with [`Error::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema's history. Append only: a released migration is never edited.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("migrations/01_schema.sql")),
    M::up(include_str!("migrations/02_indexes.sql")),
    M::up(include_str!("migrations/03_run_owners.sql")),
    M::up(include_str!("migrations/04_segment_engine.sql")),
    M::up(include_str!("migrations/05_change_log.sql")),
    M::up(include_str!("migrations/06_user_locations.sql")),
    M::up(include_str!("migrations/07_scan_index_category.sql")),
];

/// The schema version this program writes (`PRAGMA user_version`).
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// One SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    path: PathBuf,
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// Refuses a file that is not SQLite, or is SQLite but belongs to another program (it has
    /// tables but not our application id), or was written by a newer version.
    pub fn open(path: &Path) -> Result<SqliteDb> {
        let mut conn = Connection::open(path).map_err(|e| error::at_path(e, path))?;
        // Check before configuring: `journal_mode = WAL` writes the file header, and another
        // program's database must be left exactly as it was.
        check_ours(&conn, path)?;
        configure(&conn, path)?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        let db = SqliteDb {
            // SQLite's own name for the file: absolute, so owner files are found from any
            // working directory.
            path: conn
                .path()
                .filter(|p| !p.is_empty())
                .map_or_else(|| path.to_path_buf(), PathBuf::from),
        };
        repair_change_tracking(&mut SqliteConn(conn))?;
        owner::sweep(&db.path);
        Ok(db)
    }

    /// Opens a database that must already exist.
    pub fn open_existing(path: &Path) -> Result<SqliteDb> {
        if !path.exists() {
            return Err(Error::NoDatabase(path.display().to_string()));
        }
        SqliteDb::open(path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection to the already migrated database, configured (WAL, foreign keys,
    /// busy timeout).
    pub fn connect(&self) -> Result<SqliteConn> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if !self.path.exists() {
            return Err(Error::NoDatabase(self.path.display().to_string()));
        }
        let conn = Connection::open_with_flags(&self.path, flags)
            .map_err(|e| error::at_path(e, &self.path))?;
        check_ours(&conn, &self.path)?;
        configure(&conn, &self.path)?;
        Ok(SqliteConn(conn))
    }

    /// This process's owner token for runs (see [`owner`]).
    pub fn owner_token(&self) -> Result<String> {
        owner::this_process(&self.path)
    }

    /// Whether the process owning runs under `token` is alive.
    pub fn owner_alive(&self, token: &str) -> bool {
        owner::is_alive(&self.path, token)
    }

    /// Forgets an owner found gone.
    pub fn forget_owner(&self, token: &str) {
        owner::forget(&self.path, token);
    }
}

/// Per-connection settings. WAL lets readers (the HTTP server) run while a refresh writes;
/// NORMAL synchronous is durable across application crashes in WAL mode and much faster
/// than FULL; foreign keys are off by default in SQLite.
fn configure(conn: &Connection, path: &Path) -> Result<()> {
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| error::at_path(e, path))?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    Ok(())
}

/// Refuses files that are not SQLite, or SQLite but not ours, before anything writes into
/// them. Only reads: it runs before [`configure`] switches the journal mode.
fn check_ours(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first statements that read the file: "not a database" surfaces here.
    let read = |sql: &str| -> Result<i64> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| error::at_path(e, path))
    };
    let user_version = read("PRAGMA user_version")?;
    let application_id = read("PRAGMA application_id")?;
    let tables =
        read("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")?;
    let fresh = user_version == 0 && application_id == 0 && tables == 0;
    if fresh {
        return Ok(());
    }
    if application_id != APPLICATION_ID {
        return Err(Error::NotOurDatabase(path.display().to_string()));
    }
    if user_version > schema_version() {
        return Err(Error::TooNew {
            path: path.display().to_string(),
            found: user_version,
            supported: schema_version(),
        });
    }
    Ok(())
}

/// The operations the change-tracking triggers watch on each data table.
const TRACKED: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];

/// The names and DDL of the triggers that bump `data_version` on every write to the data
/// tables and log the users each write touched (as migration 05 created them).
pub(crate) fn tracking_triggers() -> Vec<(String, String)> {
    let log = |row: &str, extra: &str| {
        format!(
            "INSERT INTO data_changes (version, user_id) SELECT version, {row}.user_id \
             FROM data_version WHERE id = 1 AND {row}.user_id IS NOT NULL{extra};"
        )
    };
    DATA_TABLES
        .iter()
        .flat_map(|table| {
            TRACKED.iter().map(move |op| {
                let name = format!("{table}_data_version_{}", op.to_ascii_lowercase());
                let logs = match *op {
                    "INSERT" => log("NEW", ""),
                    "DELETE" => log("OLD", ""),
                    _ => format!(
                        "{}\n{}",
                        log("OLD", ""),
                        log("NEW", " AND NEW.user_id IS NOT OLD.user_id")
                    ),
                };
                let sql = format!(
                    "CREATE TRIGGER {name} AFTER {op} ON {table}\n\
                     BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1;\n\
                     {logs} END;"
                );
                (name, sql)
            })
        })
        .collect()
}

/// Drops the change-tracking triggers, for a bulk load inside the caller's transaction.
pub(crate) fn drop_tracking(conn: &mut dyn Conn) -> Result<()> {
    for (name, _) in tracking_triggers() {
        conn.batch(&format!("DROP TRIGGER IF EXISTS {name}"))?;
    }
    Ok(())
}

/// Creates the change-tracking triggers again, inside the same transaction as the drop.
pub(crate) fn restore_tracking(conn: &mut dyn Conn) -> Result<()> {
    for (_, sql) in tracking_triggers() {
        conn.batch(&sql)?;
    }
    Ok(())
}

/// Puts back the change-tracking triggers if any is missing (an interrupted load of an older
/// version dropped them for good, or someone dropped one by hand), and counts that as a data
/// change: writes made while they were missing went unseen, so every segment is stale.
/// Returns whether it repaired anything.
pub fn repair_change_tracking(conn: &mut SqliteConn) -> Result<bool> {
    let triggers = tracking_triggers();
    let present = |conn: &Connection| -> Result<usize> {
        let mut n = 0;
        for (name, _) in &triggers {
            let found: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1)",
                [name],
                |r| r.get(0),
            )?;
            n += usize::from(found);
        }
        Ok(n)
    };
    if present(conn.inner())? == triggers.len() {
        return Ok(false);
    }
    crate::conn::transaction(conn, crate::conn::TxMode::Write, |conn| {
        // Checked again under the write lock: another process may have repaired it meanwhile.
        let mut n = 0;
        for (name, _) in &triggers {
            let mut q = sea_query::Query::select();
            q.expr(SqlExpr::exists(
                sea_query::Query::select()
                    .expr(SqlExpr::val(1))
                    .from("sqlite_master")
                    .and_where(SqlExpr::col("type").eq("trigger"))
                    .and_where(SqlExpr::col("name").eq(name.as_str()))
                    .to_owned(),
            ));
            n += usize::from(conn.row(&q)?.bool(0)?);
        }
        if n == triggers.len() {
            return Ok(false);
        }
        drop_tracking(conn)?;
        restore_tracking(conn)?;
        crate::tracking::bump_data_version(conn)?;
        tracing::warn!("the data-change triggers were missing and have been put back");
        Ok(true)
    })
}

/// `CAST(julianday('as_of') - julianday(date(last)) AS BIGINT)`: whole days from the date of
/// the last transaction to the as-of date.
pub(crate) fn days_since(as_of: NaiveDate, last: SqlExpr) -> SqlExpr {
    let days: SqlExpr = Func::cust("julianday")
        .arg(as_of.format("%Y-%m-%d").to_string())
        .into();
    let last: SqlExpr = Func::cust("julianday")
        .arg(SqlExpr::from(Func::cust("date").arg(last)))
        .into();
    Func::cast_as(SqlExpr::expr(days).sub(last), "BIGINT").into()
}

/// `instr(lower(x), 'needle')`: SQLite's `lower` folds ASCII only, as the contract asks.
/// `LIKE` would need `%`/`_` escaping.
pub(crate) fn ascii_position(x: SqlExpr, needle: &str) -> SqlExpr {
    Func::cust("instr")
        .args([
            SqlExpr::from(Func::lower(x)),
            SqlExpr::val(needle.to_owned()),
        ])
        .into()
}

/// Whether a table exists in the main schema (`name` is one of our own table names).
pub(crate) fn table_exists(conn: &mut dyn Conn, name: &str) -> Result<bool> {
    let mut q = sea_query::Query::select();
    q.expr(SqlExpr::exists(
        sea_query::Query::select()
            .expr(SqlExpr::val(1))
            .from(("main", "sqlite_master"))
            .and_where(SqlExpr::col("type").eq("table"))
            .and_where(SqlExpr::col("name").eq(name))
            .to_owned(),
    ));
    conn.row(&q)?.bool(0)
}

/// Page reads the refresh's many scans (each rule reads the shared aggregates and users
/// again) make cheaper: the database memory-mapped instead of copied in by `pread`, and a page
/// cache for the temporary aggregates large enough to keep them in memory. Both are bounded;
/// returns the statements that put the previous settings back.
pub(crate) fn read_faster(conn: &mut dyn Conn) -> Vec<String> {
    const SETTINGS: [(&str, i64); 2] = [
        // Bytes of the file to map; reads past it fall back to `pread`.
        ("main.mmap_size", 1 << 30),
        // Negative: KiB, here 128 MiB, an upper bound filled only as the tables grow.
        ("temp.cache_size", -131_072),
    ];
    let mut restore = Vec::new();
    for (pragma, value) in SETTINGS {
        // Only a speed-up: a setting that cannot be read or changed is left as it was.
        let mut old = None;
        if conn
            .query_sql(
                &format!("PRAGMA {pragma}"),
                sea_query::Values(Vec::new()),
                &mut |row| {
                    old = row.opt_i64(0)?;
                    Ok(())
                },
            )
            .is_err()
        {
            continue;
        }
        let Some(old) = old else { continue };
        if conn.batch(&format!("PRAGMA {pragma} = {value}")).is_ok() {
            restore.push(format!("PRAGMA {pragma} = {old}"));
        }
    }
    restore
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;
    use crate::render::{CREDIT_CARD, UPI};

    #[test]
    fn the_migrated_triggers_are_the_ones_repair_puts_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = SqliteDb::open(&dir.path().join("t.db")).expect("open");
        let conn = db.connect().expect("connect");
        for (name, sql) in tracking_triggers() {
            let stored: String = conn
                .inner()
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .expect(&name);
            assert_eq!(format!("{stored};"), sql);
        }
    }

    fn plan_of(conn: &SqliteConn, sql: &str, values: sea_query::Values) -> String {
        let mut stmt = conn
            .inner()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = stmt
            .query_map(rusqlite::params_from_iter(bind::params(values)), |r| {
                r.get::<_, String>(3)
            })
            .expect("plan");
        rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
    }

    /// A circle's candidates come from the latitude band of the covering index, not a scan
    /// of every location.
    #[test]
    fn a_circle_reads_its_latitude_band_from_the_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = SqliteDb::open(&dir.path().join("t.db")).expect("open");
        let conn = db.connect().expect("connect");
        let circle = am_core::geo::Circle::new(12.9716, 77.5946, 10.0).expect("in range");
        let (sql, values) = Dialect::Sqlite.build(&crate::geo::members(&circle));
        let plan = plan_of(&conn, &sql, values);
        assert!(
            plan.contains("COVERING INDEX user_locations_latitude (latitude>? AND latitude<?)"),
            "{plan}"
        );
    }

    /// The day index the change log's bands read must never replace the covering index in a
    /// refresh's window scan (it would look every row up: ten times slower at 1M users).
    #[test]
    fn window_scans_keep_the_covering_index_and_bands_use_the_day_index() {
        use am_core::expr::{CmpOp, Expr, Pred, Scope, Source, Test, Value, Window};
        use am_core::field::Field;

        let dir = tempfile::tempdir().expect("temp dir");
        let db = SqliteDb::open(&dir.path().join("t.db")).expect("open");
        let conn = db.connect().expect("connect");
        let scope = Scope {
            source: Source::All,
            window: Window::LastDays(90),
            filter: None,
        };
        let e = Expr::Pred(Pred::Aggregate {
            field: Field::TotalSpend,
            scope,
            test: Test::Cmp(CmpOp::Gt, Value::Money(100)),
        });
        let mut needs = crate::render::AggregateNeeds::new();
        crate::render::collect_expr_needs(&e, &mut needs);
        let layout = crate::render::AggregateLayout::new(Dialect::Sqlite, &needs);
        let as_of = chrono::NaiveDate::from_ymd_opt(2025, 6, 30)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .expect("time");
        conn.inner()
            .execute_batch(&Dialect::Sqlite.table(&layout.create_statement(&layout.tables[0])))
            .expect("create");
        // One statement per source, each grouping in its covering index's order: no sort.
        let fills = layout.fill_statements(&layout.tables[0], as_of);
        assert_eq!(fills.len(), 2);
        for (fill, table) in fills.iter().zip([CREDIT_CARD, UPI]) {
            let (sql, values) = Dialect::Sqlite.build(fill);
            let fill = plan_of(&conn, &sql, values);
            assert!(
                fill.contains(&format!("COVERING INDEX {table}_user_date_amount")),
                "{fill}"
            );
            assert!(!fill.contains("day_user"), "{fill}");
            assert!(!fill.contains("TEMP B-TREE"), "{fill}");
        }

        let band = sea_query::Query::select()
            .column("user_id")
            .from("credit_card_transactions")
            .and_where(
                Dialect::Sqlite
                    .transaction_day(SqlExpr::col("transaction_date"))
                    .gte(SqlExpr::val(as_of.date())),
            )
            .and_where(SqlExpr::col("transaction_date").gte(Dialect::Sqlite.time_value(as_of)))
            .to_owned();
        let (sql, values) = Dialect::Sqlite.build(&band);
        let band = plan_of(&conn, &sql, values);
        assert!(band.contains("credit_card_transactions_day_user"), "{band}");
    }
}
