//! SQLite, the embedded default: statements through sea-query's SQLite builder, values bound
//! with our binder (`crate::bind`), and the atomic swap of a segment table.
//!
//! A segment is rebuilt by one `IMMEDIATE` transaction that renames the old table to
//! `segment_output_<id>__previous`, creates and fills `segment_output_<id>` anew, counts who
//! entered and left, and lets the caller write the catalog row and the run's success. Readers
//! (WAL) see the last committed state, so the old table or the new one, never a missing or
//! half-filled one; on any error the transaction rolls back, so the old table and its catalog
//! row stay exactly as they were.

use am_core::rule::RuleId;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sea_query::{SelectStatement, SqliteQueryBuilder, TableCreateStatement, Values};

use super::{
    Dialect, Rebuild, create_segment_table, insert_members, next_table_name, previous_table_name,
};
use crate::catalog::segment_table_name;
use crate::error::Result;

/// The SQLite dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqlite;

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn inline(&self, select: &SelectStatement) -> String {
        select.to_string(SqliteQueryBuilder)
    }

    fn build(&self, select: &SelectStatement) -> (String, Values) {
        select.build(SqliteQueryBuilder)
    }

    fn table(&self, create: &TableCreateStatement) -> String {
        create.to_string(SqliteQueryBuilder)
    }

    /// The table is rebuilt under its own name after the old one is renamed aside: SQLite's
    /// readers see snapshots, not locks, and a rename costs time in proportion to the whole
    /// schema (every table's definition is parsed again), so one rename instead of two.
    fn rebuild(&self, rule_id: RuleId, has_live: bool, select: SelectStatement) -> Rebuild {
        let live = segment_table_name(rule_id);
        let previous = previous_table_name(rule_id);
        let mut before = vec![
            // A leftover of a refresh interrupted before this engine wrote in one transaction.
            format!("DROP TABLE IF EXISTS \"{}\"", next_table_name(rule_id)),
            format!("DROP TABLE IF EXISTS \"{previous}\""),
        ];
        if has_live {
            before.push(format!("ALTER TABLE \"{live}\" RENAME TO \"{previous}\""));
        }
        before.push(self.table(&create_segment_table(&live)));
        Rebuild {
            before,
            fill: insert_members(&live, select).build(SqliteQueryBuilder),
            new_table: live,
            old_table: has_live.then_some(previous),
            after: Vec::new(),
        }
    }
}

/// sea-query's values as rusqlite parameters.
fn bind(values: Values) -> rusqlite::ParamsFromIter<impl Iterator<Item = crate::bind::Param>> {
    rusqlite::params_from_iter(crate::bind::params(values))
}

/// Runs a statement with its values bound; returns the number of rows changed.
pub fn execute(conn: &Connection, (sql, values): (String, Values)) -> Result<usize> {
    Ok(conn.execute(&sql, bind(values))?)
}

/// The `user_id`s a select returns, in ascending order.
pub fn member_ids(conn: &Connection, select: &SelectStatement) -> Result<Vec<i64>> {
    let (sql, values) = Sqlite.build(select);
    let mut stmt = conn.prepare(&format!("SELECT user_id FROM ({sql}) ORDER BY user_id"))?;
    let ids = stmt
        .query_map(bind(values), |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// How many rows a select returns.
pub fn count(conn: &Connection, select: &SelectStatement) -> Result<i64> {
    let (sql, values) = Sqlite.build(select);
    Ok(conn.query_row(
        &format!("SELECT count(*) FROM ({sql})"),
        bind(values),
        |r| r.get(0),
    )?)
}

/// Whether a table exists in the main schema (`name` is one of our own table names).
pub fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

/// The sizes a swap measured: members now, members added, members removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwapCounts {
    pub row_count: i64,
    pub entered: i64,
    pub left: i64,
}

/// Rebuilds `segment_output_<id>` from the select in one `IMMEDIATE` transaction (see
/// [`Sqlite::rebuild`]): counts who entered and left against the old members, kept as
/// `segment_output_<id>__previous`, and calls `publish` (catalog row, run status) before
/// committing.
///
/// Readers see the whole transaction or none of it: the old members or the new ones. On any
/// error everything rolls back, so the old table and catalog row stay exactly as they were.
pub fn refresh_segment<F>(
    conn: &mut Connection,
    rule_id: RuleId,
    select: SelectStatement,
    publish: F,
) -> Result<SwapCounts>
where
    F: FnOnce(&Transaction<'_>, &SwapCounts) -> Result<()>,
{
    // Users' own views and triggers on a segment must keep reading the segment, not follow
    // the old table to `__previous` (where the next refresh's drop would break them).
    let legacy: bool = conn.query_row("PRAGMA legacy_alter_table", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA legacy_alter_table = ON")?;
    let result = rebuild_in_one_transaction(conn, rule_id, select, publish);
    if !legacy {
        // Only how renames treat views; the connection works either way.
        let _ = conn.execute_batch("PRAGMA legacy_alter_table = OFF");
    }
    result
}

fn rebuild_in_one_transaction<F>(
    conn: &mut Connection,
    rule_id: RuleId,
    select: SelectStatement,
    publish: F,
) -> Result<SwapCounts>
where
    F: FnOnce(&Transaction<'_>, &SwapCounts) -> Result<()>,
{
    // One transaction: one lock, one commit, and the new table's pages reach the WAL once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_live = table_exists(&tx, &segment_table_name(rule_id))?;
    let rebuild = Sqlite.rebuild(rule_id, has_live, select);
    for sql in &rebuild.before {
        tx.execute_batch(sql)?;
    }
    // The select yields distinct ids (the primary key would refuse a duplicate), so the
    // rows inserted are the members.
    let inserted = execute(&tx, rebuild.fill)?;
    let row_count = i64::try_from(inserted).unwrap_or(i64::MAX);
    let (entered, left) = match &rebuild.old_table {
        Some(old_table) => {
            let new_table = &rebuild.new_table;
            let old: i64 =
                tx.query_row(&format!("SELECT count(*) FROM \"{old_table}\""), [], |r| {
                    r.get(0)
                })?;
            // One rowid join finds who stayed (several times cheaper than NOT EXISTS probes),
            // looking the smaller table's ids up in the larger (`CROSS JOIN` keeps this order);
            // entered = |new| - stayed, left = |old| - stayed.
            let (outer, inner) = if row_count <= old {
                (new_table, old_table)
            } else {
                (old_table, new_table)
            };
            let stayed: i64 = tx.query_row(
                &format!("SELECT count(*) FROM \"{outer}\" CROSS JOIN \"{inner}\" USING (user_id)"),
                [],
                |r| r.get(0),
            )?;
            (row_count - stayed, old - stayed)
        }
        None => (row_count, 0),
    };
    for sql in &rebuild.after {
        tx.execute_batch(sql)?;
    }
    let counts = SwapCounts {
        row_count,
        entered,
        left,
    };
    publish(&tx, &counts)?;
    tx.commit()?;
    Ok(counts)
}
