//! The atomic swap of a segment table on PostgreSQL.
//!
//! One transaction computes the new members into a temporary table, records who left and who
//! entered in `segment_output_<id>__changes` (what `diff` reads), deletes from the live table
//! the members that left and inserts those that entered, and lets the caller write the catalog
//! row and the run's success. The live table keeps its identity, so users' views on it keep working, and no
//! statement takes a lock that stops readers: under MVCC they read the old members until the
//! commit and the new ones after it, never a missing, empty or partial table. On any error
//! the transaction rolls back and nothing has changed. A lock another session holds longer
//! than the lock timeout fails the swap with `Busy`.

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
    transaction(conn, TxMode::Write, |conn| {
        rebuild_in(conn, rule_id, select, publish)
    })
}

fn rebuild_in(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    select: SelectStatement,
    publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
) -> Result<SwapCounts> {
    let d = Dialect::Postgres;
    let live = segment_table_name(rule_id);
    let next = next_table_name(rule_id);
    let previous = previous_table_name(rule_id);
    let (q_live, q_next, q_previous) = (d.quote(&live), d.quote(&next), d.quote(&previous));
    let has_live = d.table_exists(conn, &live)?;

    conn.batch(&format!("DROP TABLE IF EXISTS pg_temp.{q_next}"))?;
    let mut create = create_segment_table(d, &next);
    create.temporary();
    conn.batch(&format!("{} ON COMMIT DROP", d.table(&create)))?;
    let inserted = conn.exec(&insert_members(&next, select))?;
    let row_count = i64::try_from(inserted).unwrap_or(i64::MAX);

    let counts = if has_live {
        // Who left and who entered, recorded for `diff` instead of a copy of every old member
        // (the copy cost most of a refresh of broad audiences); then applied to the live table.
        conn.batch(&format!("DROP TABLE IF EXISTS {q_previous}"))?;
        let changes = d.quote(&changes_table_name(rule_id));
        conn.batch(&format!("DROP TABLE IF EXISTS {changes}"))?;
        conn.batch(&d.table(&crate::incremental::create_changes_table(
            d,
            &changes_table_name(rule_id),
        )))?;
        let none = || sea_query::Values(Vec::new());
        let left = conn.execute_sql(
            &format!(
                "INSERT INTO {changes} (user_id, entered) SELECT l.user_id, 0 FROM {q_live} AS l \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_temp.{q_next} AS n WHERE n.user_id = l.user_id)"
            ),
            none(),
        )?;
        let entered = conn.execute_sql(
            &format!(
                "INSERT INTO {changes} (user_id, entered) SELECT n.user_id, 1 \
                 FROM pg_temp.{q_next} AS n \
                 WHERE NOT EXISTS (SELECT 1 FROM {q_live} AS l WHERE l.user_id = n.user_id)"
            ),
            none(),
        )?;
        crate::incremental::apply_recorded(conn, rule_id)?;
        SwapCounts {
            row_count,
            entered: i64::try_from(entered).unwrap_or(i64::MAX),
            left: i64::try_from(left).unwrap_or(i64::MAX),
        }
    } else {
        conn.batch(&d.table(&create_segment_table(d, &live)))?;
        conn.batch(&format!(
            "INSERT INTO {q_live} (user_id) SELECT user_id FROM pg_temp.{q_next} ORDER BY 1"
        ))?;
        SwapCounts {
            row_count,
            entered: row_count,
            left: 0,
        }
    };
    publish(conn, &counts)?;
    Ok(counts)
}
