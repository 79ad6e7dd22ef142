//! SQLite, the embedded default: statements through sea-query's SQLite builder, values bound
//! with our binder (`crate::bind`), and the atomic swap of a segment table.
//!
//! A segment is rebuilt by one `IMMEDIATE` transaction that fills
//! `segment_output_<id>__next`, counts who entered and left, drops the old table, renames the
//! next one and lets the caller write the catalog row and the run's success. Readers (WAL) see the old
//! table or the new one, never a missing or half-filled one; on any error the transaction
//! rolls back, so the old table and its catalog row stay exactly as they were.

use am_core::rule::RuleId;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sea_query::{SelectStatement, SqliteQueryBuilder, TableCreateStatement, Values};

use super::{Dialect, create_next_table, insert_next, next_table_name};
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

    fn fill_next(&self, rule_id: RuleId, select: SelectStatement) -> (String, Values) {
        insert_next(rule_id, select).build(SqliteQueryBuilder)
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

/// Drops a rule's next table if an earlier step left it behind.
pub fn drop_next_of(conn: &Connection, rule_id: RuleId) -> Result<()> {
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS main.\"{}\"",
        next_table_name(rule_id)
    ))?;
    Ok(())
}

/// The sizes a swap measured: members now, members added, members removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwapCounts {
    pub row_count: i64,
    pub entered: i64,
    pub left: i64,
}

/// Rebuilds `segment_output_<id>` from the select in one `IMMEDIATE` transaction: fills
/// `segment_output_<id>__next`, counts who entered and left, keeps the old table as
/// `segment_output_<id>__previous`, renames the next one and calls `publish` (catalog row, run status) before committing.
///
/// Readers see the whole transaction or none of it: the old members or the new ones. On any
/// error everything rolls back, next table included, so the old table and catalog row stay
/// exactly as they were.
pub fn refresh_segment<F>(
    conn: &mut Connection,
    rule_id: RuleId,
    select: SelectStatement,
    publish: F,
) -> Result<SwapCounts>
where
    F: FnOnce(&Transaction<'_>, &SwapCounts) -> Result<()>,
{
    // One transaction instead of build-then-swap: one lock, one commit, and the next table's
    // pages reach the WAL once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // A leftover of a refresh interrupted before this engine wrote in one transaction.
    drop_next_of(&tx, rule_id)?;
    tx.execute_batch(&Sqlite.table(&create_next_table(rule_id)))?;
    // The select yields distinct ids (the primary key would refuse a duplicate), so the
    // rows inserted are the members.
    let inserted = execute(&tx, Sqlite.fill_next(rule_id, select))?;
    let row_count = i64::try_from(inserted).unwrap_or(i64::MAX);
    let live = segment_table_name(rule_id);
    let next = next_table_name(rule_id);
    let has_live = table_exists(&tx, &live)?;
    let (entered, left) = if has_live {
        let old: i64 = tx.query_row(&format!("SELECT count(*) FROM \"{live}\""), [], |r| {
            r.get(0)
        })?;
        // One rowid join finds who stayed (several times cheaper than NOT EXISTS probes),
        // looking the smaller table's ids up in the larger (`CROSS JOIN` keeps this order);
        // entered = |new| - stayed, left = |old| - stayed.
        let (outer, inner) = if row_count <= old {
            (&next, &live)
        } else {
            (&live, &next)
        };
        let stayed: i64 = tx.query_row(
            &format!("SELECT count(*) FROM \"{outer}\" CROSS JOIN \"{inner}\" USING (user_id)"),
            [],
            |r| r.get(0),
        )?;
        (row_count - stayed, old - stayed)
    } else {
        (row_count, 0)
    };
    for sql in Sqlite.swap_statements(rule_id, has_live) {
        tx.execute_batch(&sql)?;
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
