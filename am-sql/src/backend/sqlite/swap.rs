//! The atomic swap of a segment table on SQLite.
//!
//! A segment is rebuilt by one `IMMEDIATE` transaction that renames the old table to
//! `segment_output_<id>__previous`, creates and fills `segment_output_<id>` anew, counts who
//! entered and left, and lets the caller write the catalog row and the run's success. Readers
//! (WAL) see the last committed state, so the old table or the new one, never a missing or
//! half-filled one; on any error the transaction rolls back, so the old table and its catalog
//! row stay exactly as they were.
//!
//! The table is rebuilt under its own name after the old one is renamed aside: SQLite's
//! readers see snapshots, not locks, and a rename costs time in proportion to the whole
//! schema (every table's definition is parsed again), so one rename instead of two.

use am_core::rule::RuleId;
use sea_query::SelectStatement;

use crate::backend::{
    Dialect, SwapCounts, changes_table_name, create_segment_table, insert_members, next_table_name,
    previous_table_name,
};
use crate::catalog::segment_table_name;
use crate::conn::{Conn, TxMode, transaction};
use crate::error::Result;

pub(crate) fn rebuild(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    select: SelectStatement,
    publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
) -> Result<SwapCounts> {
    // Users' own views and triggers on a segment must keep reading the segment, not follow
    // the old table to `__previous` (where the next refresh's drop would break them).
    let mut legacy = false;
    conn.query_sql(
        "PRAGMA legacy_alter_table",
        sea_query::Values(Vec::new()),
        &mut |row| {
            legacy = row.bool(0)?;
            Ok(())
        },
    )?;
    conn.batch("PRAGMA legacy_alter_table = ON")?;
    let result = transaction(conn, TxMode::Write, |conn| {
        rebuild_in(conn, rule_id, select, publish)
    });
    if !legacy {
        // Only how renames treat views; the connection works either way.
        let _ = conn.batch("PRAGMA legacy_alter_table = OFF");
    }
    result
}

fn rebuild_in(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    select: SelectStatement,
    publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
) -> Result<SwapCounts> {
    let d = Dialect::Sqlite;
    let live = segment_table_name(rule_id);
    let previous = previous_table_name(rule_id);
    let has_live = d.table_exists(conn, &live)?;
    // A leftover of a refresh interrupted before this engine wrote in one transaction.
    conn.batch(&format!(
        "DROP TABLE IF EXISTS {}",
        d.quote(&next_table_name(rule_id))
    ))?;
    conn.batch(&format!("DROP TABLE IF EXISTS {}", d.quote(&previous)))?;
    // An update's record of who entered and left; `__previous` says it after a rebuild.
    conn.batch(&format!(
        "DROP TABLE IF EXISTS {}",
        d.quote(&changes_table_name(rule_id))
    ))?;
    if has_live {
        conn.batch(&format!(
            "ALTER TABLE {} RENAME TO {}",
            d.quote(&live),
            d.quote(&previous)
        ))?;
    }
    conn.batch(&d.table(&create_segment_table(d, &live)))?;
    // The select yields distinct ids (the primary key would refuse a duplicate), so the
    // rows inserted are the members.
    let inserted = conn.exec(&insert_members(&live, select))?;
    let row_count = i64::try_from(inserted).unwrap_or(i64::MAX);
    let (entered, left) = if has_live {
        let count = |conn: &mut dyn Conn, sql: &str| -> Result<i64> {
            let mut n = 0;
            conn.query_sql(sql, sea_query::Values(Vec::new()), &mut |row| {
                n = row.i64(0)?;
                Ok(())
            })?;
            Ok(n)
        };
        let old = count(
            conn,
            &format!("SELECT count(*) FROM {}", d.quote(&previous)),
        )?;
        // One rowid join finds who stayed (several times cheaper than NOT EXISTS probes),
        // looking the smaller table's ids up in the larger (`CROSS JOIN` keeps this order);
        // entered = |new| - stayed, left = |old| - stayed.
        let (outer, inner) = if row_count <= old {
            (&live, &previous)
        } else {
            (&previous, &live)
        };
        let stayed = count(
            conn,
            &format!(
                "SELECT count(*) FROM {} CROSS JOIN {} USING (user_id)",
                d.quote(outer),
                d.quote(inner)
            ),
        )?;
        (row_count - stayed, old - stayed)
    } else {
        (row_count, 0)
    };
    let counts = SwapCounts {
        row_count,
        entered,
        left,
    };
    publish(conn, &counts)?;
    Ok(counts)
}
