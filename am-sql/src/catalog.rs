//! The segment catalog (`segment_catalog`): one row per built rule with its table, size, SQL
//! and freshness stamps; reading segment members; and the analytics summary.
//!
//! Functions take a `&mut dyn Conn` so the refresh engine can call them inside its own swap
//! transaction.

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement, UnionType};
use serde::Serialize;

use am_core::rule::RuleId;

use crate::conn::{Conn, Row};
use crate::error::{Error, Result};
use crate::schema::{SEGMENT_CATALOG, now};

/// A segment's id in `segment_catalog`.
pub type SegmentId = i64;

/// The name of the table holding a rule's members. Built from the integer id only, so it is
/// always a safe identifier.
pub fn segment_table_name(rule_id: RuleId) -> String {
    format!("segment_output_{rule_id}")
}

/// A built segment, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub id: SegmentId,
    pub rule_id: RuleId,
    pub segment_name: String,
    pub description: Option<String>,
    pub table_name: String,
    pub row_count: i64,
    /// The complete SELECT that produced the members, values inlined.
    pub sql_query: String,
    pub last_refreshed_at: DateTime<Utc>,
    /// The rule's `version` the segment was built from.
    pub rule_version: i64,
    /// The data tables' version the segment was built from.
    pub data_version: i64,
    /// The as-of instant relative windows (`last_days`) were resolved against.
    pub as_of: NaiveDateTime,
    /// Members added by the last refresh.
    pub entered: i64,
    /// Members removed by the last refresh.
    pub left: i64,
    pub duration_ms: i64,
    /// Rules whose segments the last refresh computed this one from (automatic reuse).
    pub reused_from: Vec<RuleId>,
    /// The engine that computed the members (`sqlite`, `postgresql`).
    pub engine: String,
}

/// What a refresh writes into the catalog for a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub rule_id: RuleId,
    pub segment_name: String,
    pub description: Option<String>,
    pub row_count: i64,
    pub sql_query: String,
    pub rule_version: i64,
    pub data_version: i64,
    pub as_of: NaiveDateTime,
    pub entered: i64,
    pub left: i64,
    pub duration_ms: i64,
    pub reused_from: Vec<RuleId>,
    /// The engine that computed the members.
    pub engine: String,
}

/// A page of results, in the seed's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub pages: u32,
}

impl<T> Page<T> {
    /// The limit and offset of page `page` (from 1) of `per_page` items; both are clamped to
    /// at least 1.
    pub(crate) fn window(page: u32, per_page: u32) -> (u32, u32, i64, i64) {
        let page = std::cmp::max(page, 1);
        let per_page = std::cmp::max(per_page, 1);
        (
            page,
            per_page,
            i64::from(per_page),
            (i64::from(page) - 1) * i64::from(per_page),
        )
    }

    pub(crate) fn new(items: Vec<T>, total: i64, page: u32, per_page: u32) -> Page<T> {
        let pages = u32::try_from(
            (std::cmp::max(total, 0) + i64::from(per_page) - 1) / i64::from(per_page),
        )
        .unwrap_or(u32::MAX);
        Page {
            items,
            total,
            page,
            pages,
        }
    }
}

const SEGMENT_COLUMNS: [&str; 16] = [
    "id",
    "rule_id",
    "segment_name",
    "description",
    "table_name",
    "row_count",
    "sql_query",
    "last_refreshed_at",
    "rule_version",
    "data_version",
    "as_of",
    "entered",
    "left_count",
    "duration_ms",
    "reused_from",
    "engine",
];

fn select_segments() -> SelectStatement {
    Query::select()
        .columns(SEGMENT_COLUMNS)
        .from(SEGMENT_CATALOG)
        .to_owned()
}

fn segment_of(row: &Row) -> Result<Segment> {
    Ok(Segment {
        id: row.i64(0)?,
        rule_id: row.i64(1)?,
        segment_name: row.text(2)?,
        description: row.opt_text(3)?,
        table_name: row.text(4)?,
        row_count: row.i64(5)?,
        sql_query: row.text(6)?,
        last_refreshed_at: row.utc(7)?,
        rule_version: row.i64(8)?,
        data_version: row.i64(9)?,
        as_of: row.time(10)?,
        entered: row.i64(11)?,
        left: row.i64(12)?,
        duration_ms: row.i64(13)?,
        reused_from: serde_json::from_str(&row.text(14)?)?,
        engine: row.text(15)?,
    })
}

fn segments_of(conn: &mut dyn Conn, q: &SelectStatement) -> Result<Vec<Segment>> {
    conn.rows(q)?.iter().map(segment_of).collect()
}

/// Segments by id, one page (pages from 1).
pub fn list_segments(conn: &mut dyn Conn, page: u32, per_page: u32) -> Result<Page<Segment>> {
    let (page, per_page, limit, offset) = Page::<Segment>::window(page, per_page);
    let total = crate::rules::count_rows(conn, SEGMENT_CATALOG)?;
    let q = select_segments()
        .order_by("id", Order::Asc)
        .limit(limit as u64)
        .offset(offset as u64)
        .to_owned();
    Ok(Page::new(segments_of(conn, &q)?, total, page, per_page))
}

/// Every segment, by id.
pub fn all_segments(conn: &mut dyn Conn) -> Result<Vec<Segment>> {
    segments_of(
        conn,
        &select_segments().order_by("id", Order::Asc).to_owned(),
    )
}

/// One segment; `NotFound` if there is none with that id.
pub fn segment(conn: &mut dyn Conn, id: SegmentId) -> Result<Segment> {
    let q = select_segments()
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    segments_of(conn, &q)?
        .pop()
        .ok_or_else(|| Error::not_found_id("segment", id))
}

/// The segment of a rule, if the rule has been built.
pub fn segment_for_rule(conn: &mut dyn Conn, rule_id: RuleId) -> Result<Option<Segment>> {
    let q = select_segments()
        .and_where(Expr::col("rule_id").eq(rule_id))
        .to_owned();
    Ok(segments_of(conn, &q)?.pop())
}

/// Writes (inserts or replaces) a rule's catalog row, stamped with the current time, and
/// returns the segment id. Call it inside the transaction that swaps the segment's table in,
/// so readers see the new table and its catalog row together.
pub fn upsert_segment(conn: &mut dyn Conn, record: &SegmentRecord) -> Result<SegmentId> {
    let dialect = conn.dialect();
    let columns = [
        ("rule_id", record.rule_id.into()),
        ("segment_name", record.segment_name.clone().into()),
        ("description", record.description.clone().into()),
        ("table_name", segment_table_name(record.rule_id).into()),
        ("row_count", record.row_count.into()),
        ("sql_query", record.sql_query.clone().into()),
        ("last_refreshed_at", dialect.time_value(now())),
        ("rule_version", record.rule_version.into()),
        ("data_version", record.data_version.into()),
        ("as_of", dialect.time_value(record.as_of)),
        ("entered", record.entered.into()),
        ("left_count", record.left.into()),
        ("duration_ms", record.duration_ms.into()),
        (
            "reused_from",
            serde_json::to_string(&record.reused_from)?.into(),
        ),
        ("engine", record.engine.clone().into()),
    ];
    let mut insert = Query::insert();
    insert
        .into_table(SEGMENT_CATALOG)
        .columns(columns.iter().map(|(c, _)| *c))
        .on_conflict(
            OnConflict::column("rule_id")
                .update_columns(columns.iter().skip(1).map(|(c, _)| *c))
                .to_owned(),
        )
        .returning_col("id");
    let values: Vec<Expr> = columns
        .into_iter()
        .map(|(_, v): (&str, sea_query::Value)| Expr::val(v))
        .collect();
    // As many values as columns.
    let _ = insert.values(values);
    conn.row(&insert)?.i64(0)
}

/// Members of segment `rule_id`'s table with their name and email, by user id: all of them,
/// or (with `sample`) the `limit` that come first in the order of `sample`.
fn members_query(rule_id: RuleId, sample: Option<(SampleOrder, u32)>) -> SelectStatement {
    let table = Alias::new(segment_table_name(rule_id));
    let mut q = Query::select();
    q.column(("s", "user_id"))
        .column(("u", "name"))
        .column(("u", "email"));
    match sample {
        None => {
            q.from_as(table, "s");
        }
        Some((order, limit)) => {
            let picked = Query::select()
                .column("user_id")
                .from(table)
                .order_by_expr(order.key(Expr::col("user_id")), Order::Asc)
                .order_by("user_id", Order::Asc)
                .limit(u64::from(limit))
                .to_owned();
            q.from_subquery(picked, "s");
        }
    }
    q.join_as(
        sea_query::JoinType::LeftJoin,
        Alias::new("users"),
        "u",
        Expr::col(("u", "user_id")).equals(("s", "user_id")),
    )
    .order_by(("s", "user_id"), Order::Asc);
    q
}

/// A pseudo-random order of user ids, fixed by a seed: ids multiplied by a key modulo a prime
/// (a permutation of the ids below it), so a sample is spread over the whole segment.
#[derive(Debug, Clone, Copy)]
struct SampleOrder {
    key: i64,
}

impl SampleOrder {
    /// 2^31 - 1: ids and key stay below it, so the product fits 64 bits on every engine.
    const PRIME: i64 = 2_147_483_647;

    fn seeded(seed: u64) -> SampleOrder {
        // SplitMix64's finalizer: nearby seeds (consecutive refreshes) give unrelated keys.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Keys 0 and 1 would keep the ids' own order.
        let span = (Self::PRIME - 2).unsigned_abs();
        SampleOrder {
            key: 2 + i64::try_from(z % span).unwrap_or(0),
        }
    }

    fn key(self, id: Expr) -> Expr {
        id.modulo(Self::PRIME).mul(self.key).modulo(Self::PRIME)
    }
}

/// A segment member: user id, name, email.
pub type Member = (i64, Option<String>, Option<String>);

/// Up to `limit` members of a segment with their name and email, listed by user id: a
/// pseudo-random sample drawn from all its members, the same until the segment's next refresh.
pub fn sample(conn: &mut dyn Conn, id: SegmentId, limit: u32) -> Result<Vec<Member>> {
    let seg = segment(conn, id)?;
    let refreshed = seg.last_refreshed_at.timestamp_micros().unsigned_abs();
    let order = SampleOrder::seeded(refreshed ^ seg.rule_id.unsigned_abs().rotate_left(32));
    conn.rows(&members_query(seg.rule_id, Some((order, limit))))?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.opt_text(1)?, r.opt_text(2)?)))
        .collect()
}

/// Who entered and who left a segment at its last refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembershipDiff {
    /// Members now that were not members before (everyone, after the first refresh).
    pub entered_total: i64,
    pub left_total: i64,
    /// Up to the asked-for number of user ids of each side, ascending.
    pub entered: Vec<i64>,
    pub left: Vec<i64>,
}

/// Compares a segment with the members it had before its last refresh: a rebuild keeps them
/// as `segment_output_<id>__previous`, an incremental update records who entered and left in
/// `segment_output_<id>__changes`.
pub fn membership_diff(conn: &mut dyn Conn, id: SegmentId, limit: u32) -> Result<MembershipDiff> {
    let seg = segment(conn, id)?;
    let live = segment_table_name(seg.rule_id);
    let previous = crate::backend::previous_table_name(seg.rule_id);
    let changes = crate::backend::changes_table_name(seg.rule_id);
    let ids = |table: &str| {
        Query::select()
            .column("user_id")
            .from(Alias::new(table))
            .to_owned()
    };
    // Each side as a set of ids: recorded by an update, or the difference of two tables.
    let (entered, left) = if conn.dialect().table_exists(conn, &changes)? {
        let recorded = |entered: bool| {
            ids(&changes)
                .and_where(Expr::col("entered").eq(i32::from(entered)))
                .to_owned()
        };
        (Some(recorded(true)), Some(recorded(false)))
    } else if conn.dialect().table_exists(conn, &previous)? {
        let minus = |a: &str, b: &str| ids(a).union(UnionType::Except, ids(b)).to_owned();
        (Some(minus(&live, &previous)), Some(minus(&previous, &live)))
    } else {
        // The first build: everyone entered.
        (Some(ids(&live)), None)
    };
    let mut side = |set: Option<SelectStatement>| -> Result<(i64, Vec<i64>)> {
        let Some(set) = set else {
            return Ok((0, Vec::new()));
        };
        let total = Query::select()
            .expr(Expr::cust("count(*)"))
            .from_subquery(set.clone(), "d")
            .to_owned();
        let total = conn.row(&total)?.i64(0)?;
        let first = Query::select()
            .column("user_id")
            .from_subquery(set, "d")
            .order_by("user_id", Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        let ids = conn
            .rows(&first)?
            .iter()
            .map(|r| r.i64(0))
            .collect::<Result<Vec<i64>>>()?;
        Ok((total, ids))
    };
    let ((entered_total, entered), (left_total, left)) = (side(entered)?, side(left)?);
    Ok(MembershipDiff {
        entered_total,
        left_total,
        entered,
        left,
    })
}

/// Calls `f` with every member of a segment (user id, name, email), by user id, without
/// holding them all in memory: the CSV export streams from here. Stops at `f`'s first error.
pub fn for_each_member<E>(
    conn: &mut dyn Conn,
    id: SegmentId,
    mut f: impl FnMut(i64, Option<&str>, Option<&str>) -> std::result::Result<(), E>,
) -> Result<std::result::Result<(), E>> {
    let seg = segment(conn, id)?;
    let mut failed = None;
    let stop = || Error::Database("stopped by the caller".into());
    let result = conn.for_each(&members_query(seg.rule_id, None), &mut |row| {
        let (name, email) = (row.opt_text(1)?, row.opt_text(2)?);
        match f(row.i64(0)?, name.as_deref(), email.as_deref()) {
            Ok(()) => Ok(()),
            Err(e) => {
                failed = Some(e);
                Err(stop())
            }
        }
    });
    match (result, failed) {
        (_, Some(e)) => Ok(Err(e)),
        (Ok(()), None) => Ok(Ok(())),
        (Err(e), None) => Err(e),
    }
}

/// The analytics summary over the data tables (both transaction tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total_users: i64,
    pub total_transactions: i64,
    /// Total spend in cents: each amount is rounded to the cent before summing, so the
    /// total is exact whatever binary floating point does to the amounts.
    pub total_spend_cents: i64,
}

impl Summary {
    /// The total spend as a number (for JSON).
    pub fn total_spend(&self) -> f64 {
        self.total_spend_cents as f64 / 100.0
    }

    /// The total spend as exact decimal text, e.g. `1234.50`.
    pub fn total_spend_text(&self) -> String {
        let sign = if self.total_spend_cents < 0 { "-" } else { "" };
        let abs = self.total_spend_cents.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Counts users and transactions and sums every amount, exactly.
pub fn summary(conn: &mut dyn Conn) -> Result<Summary> {
    let count = |table: &str| {
        SelectStatement::new()
            .expr(Expr::cust("count(*)"))
            .from(Alias::new(table))
            .to_owned()
    };
    let cents = |table: &str| {
        SelectStatement::new()
            .expr(Expr::cust(
                "CAST(coalesce(sum(CAST(round(amount * 100) AS BIGINT)), 0) AS BIGINT)",
            ))
            .from(Alias::new(table))
            .to_owned()
    };
    let q = Query::select()
        .expr(Expr::SubQuery(None, Box::new(count("users").into())))
        .expr(Expr::SubQuery(
            None,
            Box::new(count("credit_card_transactions").into()),
        ))
        .expr(Expr::SubQuery(
            None,
            Box::new(count("upi_transactions").into()),
        ))
        .expr(Expr::SubQuery(
            None,
            Box::new(cents("credit_card_transactions").into()),
        ))
        .expr(Expr::SubQuery(
            None,
            Box::new(cents("upi_transactions").into()),
        ))
        .to_owned();
    let row = conn.row(&q)?;
    Ok(Summary {
        total_users: row.i64(0)?,
        total_transactions: row.i64(1)? + row.i64(2)?,
        total_spend_cents: row.i64(3)? + row.i64(4)?,
    })
}
