//! Incremental refresh: re-evaluate only the users whose inputs changed since a segment was
//! built, and write only who entered and left.
//!
//! Membership is a per-user predicate of the user's profile, the user's transactions and the
//! as-of time. So a segment built at data version `v` and as-of `a` is still right for every
//! user outside the *affected* set:
//!
//! - users the change log lists after `v` (every write to the data tables, see `tracking`);
//! - users with a transaction that entered or left a relative window (`last_days`) between
//!   `a` and now: dated between the two as-of times, or between the two window starts;
//! - users whose `days_since_last_transaction` may have crossed a value the rule compares it
//!   with: a transaction dated where the day count passes that value.
//!
//! The affected users go into one scratch table, [`AFFECTED`]; the refresh fills its shared
//! aggregates for them only and re-evaluates each incremental node over them
//! ([`crate::render::AggregateLayout::restricted_to`]); [`apply`] then deletes who left and
//! inserts who entered, in one transaction with the catalog row and the run.

use std::collections::{BTreeMap, BTreeSet};

use am_core::expr::{Expr, Pred, Source, Test, Timestamp, Value, Window};
use am_core::field::Field;
use am_core::plan::{PlanNode, SetExpr};
use am_core::rule::RuleId;
use chrono::{Duration, NaiveDate, NaiveTime};
use sea_query::{Alias, ColumnDef, ExprTrait, Query, SelectStatement, Table, UnionType};

use crate::backend::{Dialect, SwapCounts, changes_table_name, previous_table_name};
use crate::catalog::{Segment, segment_table_name};
use crate::conn::{Conn, TxMode, transaction};
use crate::error::Result;
use crate::refresh::EngineRule;
use crate::render::{CREDIT_CARD, UPI, USER_ID};
use crate::schema::{DATA_CHANGES, SEGMENT_CATALOG};

type SqlExpr = sea_query::Expr;

/// The scratch table of the users an incremental refresh re-evaluates.
pub(crate) const AFFECTED: &str = "am_affected";

/// How a refresh chooses between rebuilding a segment and updating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshMode {
    /// Update the segments the change log allows, unless the affected users are so many that
    /// rebuilding is cheaper ([`REBUILD_SHARE`]).
    #[default]
    Auto,
    /// Rebuild every segment from all the data.
    Full,
    /// Update every segment the change log allows, however many users are affected.
    Incremental,
}

/// Above one affected user in this many, a refresh rebuilds instead (docs/benchmarks.md,
/// "Incremental refresh").
pub const REBUILD_SHARE: i64 = 5;

/// The nodes a refresh updates incrementally, with the affected users already in
/// [`AFFECTED`].
#[derive(Debug)]
pub(crate) struct Increment {
    pub(crate) nodes: BTreeSet<RuleId>,
    pub(crate) affected: i64,
}

/// Chooses the nodes to update rather than rebuild and fills [`AFFECTED`] for them; `None`
/// when every node is rebuilt. A node is updated when its segment was built by this engine
/// from the rule's current version at a data version the change log still covers, and every
/// node it reads is updated in this refresh too or was not refreshed since it.
pub(crate) fn plan_increment(
    conn: &mut dyn Conn,
    mode: RefreshMode,
    nodes: &[&PlanNode],
    rules: &BTreeMap<RuleId, EngineRule>,
    segments: &BTreeMap<RuleId, Segment>,
    as_of: Timestamp,
) -> Result<Option<Increment>> {
    if mode == RefreshMode::Full {
        return Ok(None);
    }
    let d = conn.dialect();
    let log_from = crate::tracking::changes_from(conn)?;
    let selected: BTreeSet<RuleId> = nodes.iter().map(|n| n.rule_id).collect();
    let mut chosen: BTreeSet<RuleId> = BTreeSet::new();
    for node in nodes {
        let (Some(seg), Some(rule)) = (segments.get(&node.rule_id), rules.get(&node.rule_id))
        else {
            continue;
        };
        let own = seg.engine == d.name()
            && seg.rule_version == rule.version
            && seg.data_version >= log_from
            && d.table_exists(conn, &segment_table_name(node.rule_id))?;
        let upstream = node.upstream.iter().all(|u| {
            if selected.contains(u) {
                chosen.contains(u)
            } else {
                segments
                    .get(u)
                    .is_some_and(|up| up.last_refreshed_at <= seg.last_refreshed_at)
            }
        });
        if own && upstream {
            chosen.insert(node.rule_id);
        }
    }
    if chosen.is_empty() {
        return Ok(None);
    }
    let since = chosen
        .iter()
        .filter_map(|id| segments.get(id).map(|s| s.data_version))
        .min()
        .unwrap_or(log_from);
    let mut bands = Vec::new();
    for node in nodes.iter().filter(|n| chosen.contains(&n.rule_id)) {
        let Some(built_at) = segments.get(&node.rule_id).map(|s| s.as_of) else {
            continue;
        };
        set_bands(&node.compute, built_at, as_of, &mut bands);
        if let Some(condition) = rules
            .get(&node.rule_id)
            .and_then(|r| r.rule.condition.as_ref())
        {
            expr_bands(condition, built_at, as_of, &mut bands);
        }
    }
    let affected = fill_affected(conn, d, since, &bands)?;
    let users = crate::rules::count_rows(conn, crate::render::USERS)?;
    if mode == RefreshMode::Auto && affected.saturating_mul(REBUILD_SHARE) > users {
        drop_affected(conn);
        return Ok(None);
    }
    Ok(Some(Increment {
        nodes: chosen,
        affected,
    }))
}

/// Drops [`AFFECTED`] (best effort: it is temporary, gone with the connection anyway).
pub(crate) fn drop_affected(conn: &mut dyn Conn) {
    let d = conn.dialect();
    let _ = conn.batch(&format!(
        "DROP TABLE IF EXISTS {}",
        d.scratch_table(AFFECTED)
    ));
}

/// Transactions of `source` dated in `[start, end]` (`None`: unbounded on that side).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Band {
    source: Source,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

fn set_bands(s: &SetExpr, from: Timestamp, to: Timestamp, out: &mut Vec<Band>) {
    match s {
        SetExpr::AllUsers | SetExpr::Segment(_) => {}
        SetExpr::Intersect(xs) | SetExpr::Union(xs) => {
            xs.iter().for_each(|x| set_bands(x, from, to, out));
        }
        SetExpr::Difference(first, others) => {
            set_bands(first, from, to, out);
            others.iter().for_each(|x| set_bands(x, from, to, out));
        }
        SetExpr::Filter(inner, e) => {
            set_bands(inner, from, to, out);
            expr_bands(e, from, to, out);
        }
    }
}

/// The transactions whose dates decide whether a user's value of an aggregate in `e` changed
/// when the as-of time moved from `from` to `to`.
fn expr_bands(e: &Expr, from: Timestamp, to: Timestamp, out: &mut Vec<Band>) {
    match e {
        Expr::True | Expr::False | Expr::Pred(Pred::Profile { .. } | Pred::Tx { .. }) => {}
        Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| expr_bands(x, from, to, out)),
        Expr::Not(x) => expr_bands(x, from, to, out),
        Expr::Pred(Pred::Aggregate { field, scope, test }) => {
            if from == to {
                return;
            }
            let (lo, hi) = (std::cmp::min(from, to), std::cmp::max(from, to));
            let source = scope.source;
            if let Window::LastDays(n) = scope.window {
                let back = |t: Timestamp| t.checked_sub_signed(Duration::days(i64::from(n)));
                // Dated between the two window starts: left (or entered) at the start.
                out.push(Band {
                    source,
                    start: back(lo),
                    end: Some(back(hi).unwrap_or(hi)),
                });
                // Dated between the two as-of times: entered (or left) at the end.
                out.push(Band {
                    source,
                    start: Some(lo),
                    end: Some(hi),
                });
            }
            if *field == Field::DaysSinceLastTransaction && lo.date() != hi.date() {
                for c in day_counts(test) {
                    out.push(days_band(source, lo.date(), hi.date(), c));
                }
            }
        }
    }
}

/// The day counts a `days_since_last_transaction` test compares with.
fn day_counts(test: &Test) -> Vec<i64> {
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    match test {
        Test::Cmp(_, v) => int(v).into_iter().collect(),
        Test::In(vs) | Test::NotIn(vs) => vs.iter().filter_map(int).collect(),
        Test::Between(a, b) | Test::NotBetween(a, b) => {
            [a, b].into_iter().filter_map(int).collect()
        }
        Test::Contains(_)
        | Test::StartsWith(_)
        | Test::IsNull
        | Test::IsNotNull
        | Test::WithinKm(_) => Vec::new(),
    }
}

/// A user's day count is `as_of date - last date`; between as-of dates `lo` and `hi` it can
/// pass `c` (or a neighbour, for strict and inclusive tests alike) only when the last
/// transaction is dated within `[lo - c - 1, hi - c + 1]`. Dates off the calendar leave the
/// band unbounded on that side, which only widens it.
fn days_band(source: Source, lo: NaiveDate, hi: NaiveDate, c: i64) -> Band {
    let shift = |d: NaiveDate, by: Option<i64>| {
        by.and_then(|n| d.checked_sub_signed(Duration::try_days(n)?))
    };
    let start = shift(lo, c.checked_add(1)).map(|d| d.and_time(NaiveTime::MIN));
    let end = shift(hi, c.checked_sub(1)).and_then(|d| d.and_hms_opt(23, 59, 59));
    Band { source, start, end }
}

/// Creates [`AFFECTED`] and fills it with the users the log lists after `since` and those
/// with transactions in `bands`; returns how many there are.
fn fill_affected(conn: &mut dyn Conn, d: Dialect, since: i64, bands: &[Band]) -> Result<i64> {
    drop_affected(conn);
    let create = Table::create()
        .table(Alias::new(AFFECTED))
        .temporary()
        .col(d.key_column(USER_ID))
        .to_owned();
    conn.batch(&d.table(&create))?;
    let mut select = Query::select();
    select
        .distinct()
        .column(USER_ID)
        .from(DATA_CHANGES)
        .and_where(SqlExpr::col("version").gt(since));
    let mut distinct: BTreeSet<(&str, Option<Timestamp>, Option<Timestamp>)> = BTreeSet::new();
    for band in bands {
        let tables: &[&str] = match band.source {
            Source::All => &[CREDIT_CARD, UPI],
            Source::CreditCard => &[CREDIT_CARD],
            Source::Upi => &[UPI],
        };
        for table in tables {
            distinct.insert((table, band.start, band.end));
        }
    }
    for (table, start, end) in distinct {
        let mut q = Query::select();
        q.column(USER_ID)
            .from(Alias::new(table))
            .and_where(SqlExpr::col(USER_ID).is_not_null());
        // The days find the rows through the day index; the times keep the band exact.
        let day = || d.transaction_day(SqlExpr::col("transaction_date"));
        let time = || SqlExpr::col("transaction_date");
        match (start, end) {
            (None, None) => q.and_where(time().is_not_null()),
            (start, end) => {
                if let Some(s) = start {
                    q.and_where(day().gte(SqlExpr::val(s.date())))
                        .and_where(time().gte(d.time_value(s)));
                }
                if let Some(e) = end {
                    q.and_where(day().lte(SqlExpr::val(e.date())))
                        .and_where(time().lte(d.time_value(e)));
                }
                &mut q
            }
        };
        select.union(UnionType::Distinct, q);
    }
    let mut insert = Query::insert();
    insert.into_table(Alias::new(AFFECTED)).columns([USER_ID]);
    // The select returns exactly one column.
    let _ = insert.select_from(select);
    let n = conn.exec(&insert)?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Updates `segment_output_<id>` in one transaction: `select` gives the members among the
/// affected users; the affected users no longer in it leave, those in it not yet members
/// enter. Who entered and left is kept in `segment_output_<id>__changes` (what `am segments
/// diff` reads after an update). `publish` writes the catalog row and the run's success inside
/// the same transaction; on any error nothing changes.
pub(crate) fn apply(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    select: SelectStatement,
    publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
) -> Result<SwapCounts> {
    transaction(conn, TxMode::Write, |conn| {
        apply_in(conn, rule_id, select, publish)
    })
}

fn apply_in(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    select: SelectStatement,
    publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
) -> Result<SwapCounts> {
    const NEXT: &str = "am_next_members";
    let d = conn.dialect();
    let live = d.quote(&segment_table_name(rule_id));
    let changes_name = changes_table_name(rule_id);
    let changes = d.quote(&changes_name);
    let next = d.scratch_table(NEXT);
    let affected = d.scratch_table(AFFECTED);
    let before = {
        let q = Query::select()
            .column("row_count")
            .from(SEGMENT_CATALOG)
            .and_where(SqlExpr::col("rule_id").eq(rule_id))
            .to_owned();
        conn.row(&q)?.i64(0)?
    };

    conn.batch(&format!("DROP TABLE IF EXISTS {next}"))?;
    let mut create = crate::backend::create_segment_table(d, NEXT);
    create.temporary();
    conn.batch(&d.table(&create))?;
    conn.exec(&crate::backend::insert_members(NEXT, select))?;

    conn.batch(&format!("DROP TABLE IF EXISTS {changes}"))?;
    conn.batch(&d.table(&create_changes_table(d, &changes_name)))?;
    let none = || sea_query::Values(Vec::new());
    // One pass over the affected users: a member before and not now left, the other way
    // round entered.
    conn.execute_sql(
        &format!(
            "INSERT INTO {changes} (user_id, entered) \
             SELECT a.user_id, CASE WHEN n.user_id IS NULL THEN 0 ELSE 1 END \
             FROM {affected} AS a \
             LEFT JOIN {live} AS l ON l.user_id = a.user_id \
             LEFT JOIN {next} AS n ON n.user_id = a.user_id \
             WHERE (l.user_id IS NULL) <> (n.user_id IS NULL)"
        ),
        none(),
    )?;
    let count = |conn: &mut dyn Conn, entered: i32| -> Result<i64> {
        let q = Query::select()
            .expr(SqlExpr::cust("count(*)"))
            .from(Alias::new(changes_name.as_str()))
            .and_where(SqlExpr::col("entered").eq(entered))
            .to_owned();
        conn.row(&q)?.i64(0)
    };
    let (entered, left) = (count(conn, 1)?, count(conn, 0)?);
    apply_recorded(conn, rule_id)?;
    conn.batch(&format!("DROP TABLE IF EXISTS {next}"))?;
    // The members before a rebuild; after an update the changes say what `diff` needs.
    conn.batch(&format!(
        "DROP TABLE IF EXISTS {}",
        d.quote(&previous_table_name(rule_id))
    ))?;
    let counts = SwapCounts {
        row_count: before + entered - left,
        entered,
        left,
    };
    publish(conn, &counts)?;
    Ok(counts)
}

/// Applies `segment_output_<id>__changes` to the live table: who left goes, who entered comes
/// (in key order, appended to the table's B-tree). Shared by updates and PostgreSQL rebuilds.
pub(crate) fn apply_recorded(conn: &mut dyn Conn, rule_id: RuleId) -> Result<()> {
    let d = conn.dialect();
    let live = d.quote(&segment_table_name(rule_id));
    let changes = d.quote(&changes_table_name(rule_id));
    let none = || sea_query::Values(Vec::new());
    conn.execute_sql(
        &format!(
            "DELETE FROM {live} WHERE user_id IN \
             (SELECT user_id FROM {changes} WHERE entered = 0)"
        ),
        none(),
    )?;
    conn.execute_sql(
        &format!(
            "INSERT INTO {live} (user_id) \
             SELECT user_id FROM {changes} WHERE entered = 1 ORDER BY 1"
        ),
        none(),
    )?;
    Ok(())
}

/// `CREATE TABLE <name> (user_id INTEGER PRIMARY KEY, entered SMALLINT NOT NULL)`: who
/// entered (1) and left (0) a segment at its last refresh.
pub(crate) fn create_changes_table(d: Dialect, name: &str) -> sea_query::TableCreateStatement {
    Table::create()
        .table(Alias::new(name))
        .col(d.key_column(USER_ID))
        .col(
            ColumnDef::new(Alias::new("entered"))
                .small_integer()
                .not_null(),
        )
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn a_day_count_band_covers_the_dates_whose_count_crosses_the_bound() {
        // As-of moves from June 10 to June 12; `days_since > 30` flips for last dates whose
        // count goes from at most 30 to above: May 11 (30 -> 32) and May 12 (29 -> 31).
        let band = days_band(Source::All, date("2025-06-10"), date("2025-06-12"), 30);
        let start = band.start.expect("start").date();
        let end = band.end.expect("end").date();
        for flips in [date("2025-05-11"), date("2025-05-12")] {
            assert!(
                start <= flips && flips <= end,
                "{flips} outside {start}..{end}"
            );
        }
        assert!(date("2025-05-01") < start && end < date("2025-05-20"));
    }

    #[test]
    fn a_bound_off_the_calendar_leaves_the_band_open() {
        let band = days_band(
            Source::Upi,
            date("2025-06-10"),
            date("2025-06-12"),
            i64::MAX,
        );
        assert_eq!(band.start, None);
    }
}
