//! Opening a database: connection settings (WAL, foreign keys, busy timeout) and the versioned
//! schema migrations, plus the data-version counter that makes freshness see every write.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use crate::error::{Error, Result};

/// Written into the file header by the first migration ("AMG1"), so another program's
/// SQLite file is recognised even when it happens to have a `user_version`.
pub const APPLICATION_ID: i64 = 0x414D_4731;

/// How long a connection waits for another writer before giving up with [`Error::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema's history. Append only: a released migration is never edited.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../migrations/01_schema.sql")),
    M::up(include_str!("../migrations/02_indexes.sql")),
    M::up(include_str!("../migrations/03_run_owners.sql")),
];

/// The schema version this program writes (`PRAGMA user_version`).
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The three tables users' ETL writes, in load order (users first, for the foreign keys).
pub const DATA_TABLES: [&str; 3] = ["users", "credit_card_transactions", "upi_transactions"];

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
///
/// Refuses a file that is not SQLite, or is SQLite but belongs to another program (it has
/// tables but not our application id), or was written by a newer version.
pub fn open(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(|e| Error::at_path(e, path))?;
    // Check before configuring: `journal_mode = WAL` writes the file header, and another
    // program's database must be left exactly as it was.
    check_ours(&conn, path)?;
    configure(&conn, path)?;
    Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
    repair_change_tracking(&mut conn)?;
    // Best effort: a database that cannot be written is still opened for reading.
    match crate::runs::fail_abandoned_runs(&conn) {
        Ok(0) => {}
        Ok(abandoned) => {
            tracing::warn!(
                abandoned,
                "failed runs whose process ended before they finished"
            );
        }
        Err(e) => tracing::debug!("could not fail abandoned runs: {e}"),
    }
    Ok(conn)
}

/// The operations the change-tracking triggers watch on each data table.
const TRACKED: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];

/// The names and DDL of the triggers that bump `data_version` on every write to the data
/// tables (the schema's first migration created exactly these).
pub(crate) fn tracking_triggers() -> Vec<(String, String)> {
    DATA_TABLES
        .iter()
        .flat_map(|table| {
            TRACKED.iter().map(move |op| {
                let name = format!("{table}_data_version_{}", op.to_ascii_lowercase());
                let sql = format!(
                    "CREATE TRIGGER {name} AFTER {op} ON {table}\n\
                     BEGIN UPDATE data_version SET version = version + 1 WHERE id = 1; END;"
                );
                (name, sql)
            })
        })
        .collect()
}

/// Puts back the change-tracking triggers if any is missing (an interrupted load of an older
/// version dropped them for good, or someone dropped one by hand), and counts that as a data
/// change: writes made while they were missing went unseen, so every segment is stale.
/// Returns whether it repaired anything.
pub fn repair_change_tracking(conn: &mut Connection) -> Result<bool> {
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
    if present(conn)? == triggers.len() {
        return Ok(false);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Checked again under the write lock: another process may have repaired it meanwhile.
    if present(&tx)? == triggers.len() {
        return Ok(false);
    }
    for (name, sql) in &triggers {
        tx.execute_batch(&format!("DROP TRIGGER IF EXISTS {name}"))?;
        tx.execute_batch(sql)?;
    }
    bump_data_version(&tx)?;
    tx.commit()?;
    tracing::warn!("the data-change triggers were missing and have been put back");
    Ok(true)
}

/// Opens an existing, already migrated database without touching its schema: the cheap
/// per-operation connection of [`crate::store::Store`].
pub fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !path.exists() {
        return Err(Error::NoDatabase(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::at_path(e, path))?;
    check_ours(&conn, path)?;
    configure(&conn, path)?;
    Ok(conn)
}

/// Per-connection settings. WAL lets readers (the HTTP server) run while a refresh writes;
/// NORMAL synchronous is durable across application crashes in WAL mode and much faster
/// than FULL; foreign keys are off by default in SQLite.
fn configure(conn: &Connection, path: &Path) -> Result<()> {
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| Error::at_path(e, path))?;
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
            .map_err(|e| Error::at_path(e, path))
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
        return Err(Error::NotOurDatabase(path.to_path_buf()));
    }
    if user_version > schema_version() {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found: user_version,
            supported: schema_version(),
        });
    }
    Ok(())
}

/// The data-version counter: it grows with every insert, update or delete on the data
/// tables, whoever makes it.
pub fn data_version(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT version FROM data_version WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Adds one to the data version; bulk loaders call it once instead of once per row.
pub(crate) fn bump_data_version(conn: &Connection) -> Result<()> {
    conn.execute(
        "UPDATE data_version SET version = version + 1 WHERE id = 1",
        [],
    )?;
    Ok(())
}

/// How our own tables (runs, catalog, rules) store times: UTC `YYYY-MM-DD HH:MM:SS.fff`,
/// milliseconds included so a run's duration can be read from its times. SQLite's date
/// functions read this form; the data tables keep the contract's whole seconds.
pub(crate) const STAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// The current time as stored in our tables (see [`STAMP_FORMAT`]).
pub(crate) fn now_text() -> String {
    chrono::Utc::now()
        .naive_utc()
        .format(STAMP_FORMAT)
        .to_string()
}

/// Parses a timestamp we stored: UTC `YYYY-MM-DD HH:MM:SS`, with or without a fraction of a
/// second (older versions stored whole seconds).
pub(crate) fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| Error::Database(format!("stored timestamp {text:?} is malformed: {e}")))
}

/// DDL of the triggers or indexes on the data tables, for bulk loaders that drop them
/// around a load and put back exactly what the schema had.
pub(crate) fn data_table_objects(conn: &Connection, kind: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT name, sql FROM sqlite_master
         WHERE type = ?1 AND sql IS NOT NULL
           AND tbl_name IN ('users', 'credit_card_transactions', 'upi_transactions')
         ORDER BY name",
    )?;
    let rows = stmt
        .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Drops the named schema objects (their names come from `sqlite_master`, never from users).
pub(crate) fn drop_objects(
    conn: &Connection,
    kind: &str,
    objects: &[(String, String)],
) -> Result<()> {
    let keyword = if kind == "index" { "INDEX" } else { "TRIGGER" };
    for (name, _) in objects {
        conn.execute_batch(&format!(
            "DROP {keyword} IF EXISTS \"{}\"",
            name.replace('"', "\"\"")
        ))?;
    }
    Ok(())
}

/// Re-creates schema objects from their saved DDL.
pub(crate) fn create_objects(conn: &Connection, objects: &[(String, String)]) -> Result<()> {
    for (_, sql) in objects {
        conn.execute_batch(sql)?;
    }
    Ok(())
}
