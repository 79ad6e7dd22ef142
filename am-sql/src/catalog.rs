//! The segment catalog (`segment_catalog`): one row per built rule with its table, size, SQL
//! and freshness stamps; reading segment members; and the analytics summary.
//!
//! Functions take a `&Connection` so the refresh engine can call them inside its own swap
//! transaction (`Transaction` derefs to `Connection`).

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use am_core::rule::RuleId;

use crate::db::{now_text, parse_time};
use crate::error::{Error, Result};

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
        let page = page.max(1);
        let per_page = per_page.max(1);
        (
            page,
            per_page,
            i64::from(per_page),
            (i64::from(page) - 1) * i64::from(per_page),
        )
    }

    pub(crate) fn new(items: Vec<T>, total: i64, page: u32, per_page: u32) -> Page<T> {
        let pages = u32::try_from((total.max(0) + i64::from(per_page) - 1) / i64::from(per_page))
            .unwrap_or(u32::MAX);
        Page {
            items,
            total,
            page,
            pages,
        }
    }
}

const SEGMENT_COLUMNS: &str = "id, rule_id, segment_name, description, table_name, row_count, \
     sql_query, last_refreshed_at, rule_version, data_version, as_of, entered, left_count, \
     duration_ms, reused_from";

/// A row as read, before the text columns are parsed.
struct RawSegment {
    segment: Segment,
    last_refreshed_at: String,
    as_of: String,
    reused_from: String,
}

fn raw_segment(row: &Row<'_>) -> rusqlite::Result<RawSegment> {
    Ok(RawSegment {
        segment: Segment {
            id: row.get(0)?,
            rule_id: row.get(1)?,
            segment_name: row.get(2)?,
            description: row.get(3)?,
            table_name: row.get(4)?,
            row_count: row.get(5)?,
            sql_query: row.get(6)?,
            last_refreshed_at: DateTime::<Utc>::MIN_UTC,
            rule_version: row.get(8)?,
            data_version: row.get(9)?,
            as_of: NaiveDateTime::MIN,
            entered: row.get(11)?,
            left: row.get(12)?,
            duration_ms: row.get(13)?,
            reused_from: Vec::new(),
        },
        last_refreshed_at: row.get(7)?,
        as_of: row.get(10)?,
        reused_from: row.get(14)?,
    })
}

fn finish(raw: RawSegment) -> Result<Segment> {
    let mut s = raw.segment;
    s.last_refreshed_at = parse_time(&raw.last_refreshed_at)?;
    s.as_of = parse_time(&raw.as_of)?.naive_utc();
    s.reused_from = serde_json::from_str(&raw.reused_from)?;
    Ok(s)
}

/// Segments by id, one page (pages from 1).
pub fn list_segments(conn: &Connection, page: u32, per_page: u32) -> Result<Page<Segment>> {
    let (page, per_page, limit, offset) = Page::<Segment>::window(page, per_page);
    let total: i64 = conn.query_row("SELECT count(*) FROM segment_catalog", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM segment_catalog ORDER BY id LIMIT ?1 OFFSET ?2"
    ))?;
    let items = stmt
        .query_map(params![limit, offset], raw_segment)?
        .map(|r| r.map_err(Error::from).and_then(finish))
        .collect::<Result<Vec<_>>>()?;
    Ok(Page::new(items, total, page, per_page))
}

/// Every segment, by id.
pub fn all_segments(conn: &Connection) -> Result<Vec<Segment>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM segment_catalog ORDER BY id"
    ))?;
    stmt.query_map([], raw_segment)?
        .map(|r| r.map_err(Error::from).and_then(finish))
        .collect()
}

/// One segment; `NotFound` if there is none with that id.
pub fn segment(conn: &Connection, id: SegmentId) -> Result<Segment> {
    let raw = conn
        .query_row(
            &format!("SELECT {SEGMENT_COLUMNS} FROM segment_catalog WHERE id = ?1"),
            [id],
            raw_segment,
        )
        .optional()?;
    finish(raw.ok_or_else(|| Error::not_found_id("segment", id))?)
}

/// The segment of a rule, if the rule has been built.
pub fn segment_for_rule(conn: &Connection, rule_id: RuleId) -> Result<Option<Segment>> {
    conn.query_row(
        &format!("SELECT {SEGMENT_COLUMNS} FROM segment_catalog WHERE rule_id = ?1"),
        [rule_id],
        raw_segment,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// Writes (inserts or replaces) a rule's catalog row, stamped with the current time, and
/// returns the segment id. Call it inside the transaction that swaps the segment's table in,
/// so readers see the new table and its catalog row together.
pub fn upsert_segment(conn: &Connection, record: &SegmentRecord) -> Result<SegmentId> {
    let reused_from = serde_json::to_string(&record.reused_from)?;
    let id = conn.query_row(
        "INSERT INTO segment_catalog (rule_id, segment_name, description, table_name, row_count,
             sql_query, last_refreshed_at, rule_version, data_version, as_of, entered,
             left_count, duration_ms, reused_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (rule_id) DO UPDATE SET
             segment_name = excluded.segment_name, description = excluded.description,
             table_name = excluded.table_name, row_count = excluded.row_count,
             sql_query = excluded.sql_query, last_refreshed_at = excluded.last_refreshed_at,
             rule_version = excluded.rule_version, data_version = excluded.data_version,
             as_of = excluded.as_of, entered = excluded.entered,
             left_count = excluded.left_count, duration_ms = excluded.duration_ms,
             reused_from = excluded.reused_from
         RETURNING id",
        params![
            record.rule_id,
            record.segment_name,
            record.description,
            segment_table_name(record.rule_id),
            record.row_count,
            record.sql_query,
            now_text(),
            record.rule_version,
            record.data_version,
            record
                .as_of
                .format(am_core::expr::TIMESTAMP_FORMAT)
                .to_string(),
            record.entered,
            record.left,
            record.duration_ms,
            reused_from,
        ],
        |r| r.get(0),
    )?;
    Ok(id)
}

/// A segment member: user id, name, email.
pub type Member = (i64, Option<String>, Option<String>);

/// Up to `limit` members of a segment with their name and email, by user id.
pub fn sample(conn: &Connection, id: SegmentId, limit: u32) -> Result<Vec<Member>> {
    let seg = segment(conn, id)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT s.user_id, u.name, u.email FROM {} AS s LEFT JOIN users AS u ON u.user_id = s.user_id
         ORDER BY s.user_id LIMIT ?1",
        segment_table_name(seg.rule_id)
    ))?;
    let rows = stmt
        .query_map([i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
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

/// Compares a segment with the members it had before its last refresh (the engine keeps
/// them as `segment_output_<id>__previous`).
pub fn membership_diff(conn: &Connection, id: SegmentId, limit: u32) -> Result<MembershipDiff> {
    let seg = segment(conn, id)?;
    let live = segment_table_name(seg.rule_id);
    let previous = crate::dialect::previous_table_name(seg.rule_id);
    let has_previous: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [&previous],
        |r| r.get(0),
    )?;
    let side = |from: &str, minus: Option<&str>| -> Result<(i64, Vec<i64>)> {
        let set = match minus {
            Some(minus) => {
                format!("SELECT user_id FROM \"{from}\" EXCEPT SELECT user_id FROM \"{minus}\"")
            }
            None => format!("SELECT user_id FROM \"{from}\""),
        };
        let total = conn.query_row(&format!("SELECT count(*) FROM ({set})"), [], |r| r.get(0))?;
        let ids = conn
            .prepare(&format!("{set} ORDER BY 1 LIMIT ?1"))?
            .query_map([i64::from(limit)], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok((total, ids))
    };
    let ((entered_total, entered), (left_total, left)) = if has_previous {
        (side(&live, Some(&previous))?, side(&previous, Some(&live))?)
    } else {
        (side(&live, None)?, (0, Vec::new()))
    };
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
    conn: &Connection,
    id: SegmentId,
    mut f: impl FnMut(i64, Option<&str>, Option<&str>) -> std::result::Result<(), E>,
) -> Result<std::result::Result<(), E>> {
    let seg = segment(conn, id)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT s.user_id, u.name, u.email FROM {} AS s LEFT JOIN users AS u ON u.user_id = s.user_id
         ORDER BY s.user_id",
        segment_table_name(seg.rule_id)
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let user_id: i64 = row.get(0)?;
        let name = row
            .get_ref(1)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)?;
        let email = row
            .get_ref(2)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)?;
        if let Err(e) = f(user_id, name, email) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
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
pub fn summary(conn: &Connection) -> Result<Summary> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM users),
                (SELECT count(*) FROM credit_card_transactions)
                  + (SELECT count(*) FROM upi_transactions),
                coalesce((SELECT sum(CAST(round(amount * 100) AS INTEGER)) FROM credit_card_transactions), 0)
                  + coalesce((SELECT sum(CAST(round(amount * 100) AS INTEGER)) FROM upi_transactions), 0)",
        [],
        |r| {
            Ok(Summary {
                total_users: r.get(0)?,
                total_transactions: r.get(1)?,
                total_spend_cents: r.get(2)?,
            })
        },
    )?)
}
