//! Run history (`refresh_runs`): every refresh, triggered or scheduled, is a run that goes
//! queued -> running -> succeeded | failed, with timings, row counts and the error.

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sea_query::{Expr, ExprTrait, Order, Query, SqliteQueryBuilder};
use serde::Serialize;

use am_core::rule::RuleId;

use crate::db::{now_text, parse_time};
use crate::error::{Error, Result};
use crate::owner;

/// A run's id in `refresh_runs`.
pub type RunId = i64;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether the run is still to finish (queued or running).
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunTrigger {
    /// From the web UI.
    Manual,
    /// The scheduler, at the rule's schedule.
    Schedule,
    /// `am refresh`.
    Cli,
    /// `POST /api/rules/{id}/trigger`.
    Api,
    /// Refreshed because a rule built from it was refreshed and it was not fresh.
    Upstream,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Manual => "manual",
            RunTrigger::Schedule => "schedule",
            RunTrigger::Cli => "cli",
            RunTrigger::Api => "api",
            RunTrigger::Upstream => "upstream",
        }
    }

    pub fn parse(s: &str) -> Option<RunTrigger> {
        [
            RunTrigger::Manual,
            RunTrigger::Schedule,
            RunTrigger::Cli,
            RunTrigger::Api,
            RunTrigger::Upstream,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One refresh of one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: RunId,
    /// `None` once the rule has been deleted.
    pub rule_id: Option<RuleId>,
    pub rule_name: String,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub row_count: Option<i64>,
    pub entered: Option<i64>,
    pub left: Option<i64>,
    pub error: Option<String>,
    pub as_of: Option<NaiveDateTime>,
}

/// Which runs [`list_runs`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunFilter {
    pub rule_id: Option<RuleId>,
    pub status: Option<RunStatus>,
    /// At most this many (newest first); 100 when unset.
    pub limit: Option<u32>,
}

/// The error recorded on runs a stopping server had queued but not started.
pub const ABANDONED: &str = "abandoned: the server stopped before it finished";

/// The error recorded on runs whose process ended without recording how they ended (killed,
/// crashed, or unable to write to the database before it exited).
pub fn abandoned_by(owner: Option<&str>) -> String {
    match owner.and_then(owner::pid_of) {
        Some(pid) => format!(
            "abandoned: the process that ran it (pid {pid}) ended before recording how it ended"
        ),
        None => "abandoned: the process that ran it ended before recording how it ended".into(),
    }
}

const RUN_COLUMNS: [&str; 13] = [
    "id",
    "rule_id",
    "rule_name",
    "status",
    "trigger",
    "queued_at",
    "started_at",
    "finished_at",
    "row_count",
    "entered",
    "left_count",
    "error",
    "as_of",
];

fn select_sql() -> String {
    let cols = RUN_COLUMNS
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT {cols} FROM refresh_runs")
}

struct RawRun {
    id: RunId,
    rule_id: Option<RuleId>,
    rule_name: String,
    status: String,
    trigger: String,
    queued_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    row_count: Option<i64>,
    entered: Option<i64>,
    left: Option<i64>,
    error: Option<String>,
    as_of: Option<String>,
}

fn raw_run(row: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: row.get(0)?,
        rule_id: row.get(1)?,
        rule_name: row.get(2)?,
        status: row.get(3)?,
        trigger: row.get(4)?,
        queued_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        row_count: row.get(8)?,
        entered: row.get(9)?,
        left: row.get(10)?,
        error: row.get(11)?,
        as_of: row.get(12)?,
    })
}

fn finish(raw: RawRun) -> Result<Run> {
    let opt_time = |t: Option<String>| t.as_deref().map(parse_time).transpose();
    Ok(Run {
        id: raw.id,
        rule_id: raw.rule_id,
        rule_name: raw.rule_name,
        status: RunStatus::parse(&raw.status).ok_or_else(|| {
            Error::Database(format!(
                "run #{} has unknown status {:?}",
                raw.id, raw.status
            ))
        })?,
        trigger: RunTrigger::parse(&raw.trigger).ok_or_else(|| {
            Error::Database(format!(
                "run #{} has unknown trigger {:?}",
                raw.id, raw.trigger
            ))
        })?,
        queued_at: parse_time(&raw.queued_at)?,
        started_at: opt_time(raw.started_at)?,
        finished_at: opt_time(raw.finished_at)?,
        row_count: raw.row_count,
        entered: raw.entered,
        left: raw.left,
        error: raw.error,
        as_of: opt_time(raw.as_of)?.map(|t| t.naive_utc()),
    })
}

/// The database file a connection is on; `None` for an in-memory database.
fn database_path(conn: &Connection) -> Option<std::path::PathBuf> {
    conn.path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
}

/// Queues a run of a rule and returns its id, owned by this process (see [`crate::owner`]).
/// The rule's name is copied so the run stays readable after the rule is deleted.
pub fn create_run(conn: &Connection, rule_id: RuleId, trigger: RunTrigger) -> Result<RunId> {
    let owner = database_path(conn)
        .map(|db| owner::this_process(&db))
        .transpose()?;
    let name: Option<String> = conn
        .query_row(
            "SELECT rule_name FROM rule_table WHERE id = ?1",
            [rule_id],
            |r| r.get(0),
        )
        .optional()?;
    let name = name.ok_or_else(|| Error::not_found_id("rule", rule_id))?;
    conn.execute(
        "INSERT INTO refresh_runs (rule_id, rule_name, status, \"trigger\", queued_at, owner)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
        params![rule_id, name, trigger.as_str(), now_text(), owner],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Moves a run from one status to another, checking it was where we expect.
fn transition(
    conn: &Connection,
    id: RunId,
    from: &[RunStatus],
    sql_set: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<()> {
    let allowed = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&id];
    params.extend_from_slice(values);
    let changed = conn.execute(
        &format!("UPDATE refresh_runs SET {sql_set} WHERE id = ?1 AND status IN ({allowed})"),
        params.as_slice(),
    )?;
    if changed == 0 {
        let run = get_run(conn, id)?;
        return Err(Error::Conflict(format!(
            "run #{id} is {}, not {}",
            run.status.as_str(),
            from.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    Ok(())
}

/// A queued run starts, resolving relative windows against `as_of`.
pub fn mark_running(conn: &Connection, id: RunId, as_of: NaiveDateTime) -> Result<()> {
    let as_of = as_of.format(am_core::expr::TIMESTAMP_FORMAT).to_string();
    transition(
        conn,
        id,
        &[RunStatus::Queued],
        "status = 'running', started_at = ?2, as_of = ?3",
        &[&now_text(), &as_of],
    )
}

/// A running run built its segment.
pub fn mark_succeeded(
    conn: &Connection,
    id: RunId,
    row_count: i64,
    entered: i64,
    left: i64,
) -> Result<()> {
    transition(
        conn,
        id,
        &[RunStatus::Running],
        "status = 'succeeded', finished_at = ?2, row_count = ?3, entered = ?4, left_count = ?5",
        &[&now_text(), &row_count, &entered, &left],
    )
}

/// A queued or running run failed; the segment was left as it was.
pub fn mark_failed(conn: &Connection, id: RunId, error: &str) -> Result<()> {
    transition(
        conn,
        id,
        &[RunStatus::Queued, RunStatus::Running],
        "status = 'failed', finished_at = ?2, error = ?3",
        &[&now_text(), &error],
    )
}

/// One run; `NotFound` if there is none with that id.
pub fn get_run(conn: &Connection, id: RunId) -> Result<Run> {
    let raw = conn
        .query_row(&format!("{} WHERE id = ?1", select_sql()), [id], raw_run)
        .optional()?;
    finish(raw.ok_or_else(|| Error::not_found_id("run", id))?)
}

/// Runs matching the filter, newest first.
pub fn list_runs(conn: &Connection, filter: &RunFilter) -> Result<Vec<Run>> {
    let mut query = Query::select();
    query
        .columns(RUN_COLUMNS)
        .from("refresh_runs")
        .order_by("id", Order::Desc)
        .limit(u64::from(filter.limit.unwrap_or(100)));
    if let Some(rule_id) = filter.rule_id {
        query.and_where(Expr::col("rule_id").eq(rule_id));
    }
    if let Some(status) = filter.status {
        query.and_where(Expr::col("status").eq(status.as_str()));
    }
    let (sql, values) = query.build(SqliteQueryBuilder);
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(
        rusqlite::params_from_iter(crate::bind::params(values)),
        raw_run,
    )?
    .map(|r| r.map_err(Error::from).and_then(finish))
    .collect()
}

/// The newest run of a rule, if any.
pub fn last_run(conn: &Connection, rule_id: RuleId) -> Result<Option<Run>> {
    conn.query_row(
        &format!(
            "{} WHERE rule_id = ?1 ORDER BY id DESC LIMIT 1",
            select_sql()
        ),
        [rule_id],
        raw_run,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// The rule's queued or running run, if it has one: a new trigger joins it instead of
/// starting a second refresh of the same rule.
pub fn active_run_for(conn: &Connection, rule_id: RuleId) -> Result<Option<Run>> {
    conn.query_row(
        &format!(
            "{} WHERE rule_id = ?1 AND status IN ('queued', 'running') ORDER BY id LIMIT 1",
            select_sql()
        ),
        [rule_id],
        raw_run,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// Fails the queued and running runs whose process is gone (see [`crate::owner`]), each with
/// [`abandoned_by`] as the error; the runs of live processes, this one's and others', are left
/// alone. Whoever opens the database calls it, so a run killed with its process is seen as
/// failed without waiting for a server. Returns how many it failed.
pub fn fail_abandoned_runs(conn: &Connection) -> Result<usize> {
    let Some(db) = database_path(conn) else {
        return Ok(0);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT owner FROM refresh_runs WHERE status IN ('queued', 'running')",
    )?;
    let owners = stmt
        .query_map([], |r| r.get::<_, Option<String>>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut failed = 0;
    for token in owners {
        if token.as_deref().is_some_and(|t| owner::is_alive(&db, t)) {
            continue;
        }
        failed += conn.execute(
            "UPDATE refresh_runs SET status = 'failed', finished_at = ?1, error = ?2
             WHERE status IN ('queued', 'running') AND owner IS ?3",
            params![now_text(), abandoned_by(token.as_deref()), token],
        )?;
        if let Some(t) = &token {
            owner::forget(&db, t);
        }
    }
    Ok(failed)
}
