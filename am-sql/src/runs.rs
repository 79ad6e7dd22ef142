//! Run history (`refresh_runs`): every refresh, triggered or scheduled, is a run that goes
//! queued -> running -> succeeded | failed, with timings, row counts and the error.

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use serde::Serialize;

use am_core::rule::RuleId;

use crate::conn::{Conn, Row};
use crate::error::{Error, Result};
use crate::schema::{REFRESH_RUNS, RULE_TABLE, now};

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
    match owner.and_then(pid_of) {
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

/// The process id in an owner token (`<pid>.<rest>`), for messages.
pub fn pid_of(token: &str) -> Option<u32> {
    token.split('.').next()?.parse().ok()
}

fn select_runs() -> SelectStatement {
    Query::select()
        .columns(RUN_COLUMNS)
        .from(REFRESH_RUNS)
        .to_owned()
}

fn run_of(row: &Row) -> Result<Run> {
    let id = row.i64(0)?;
    let status = row.text(3)?;
    let trigger = row.text(4)?;
    Ok(Run {
        id,
        rule_id: row.opt_i64(1)?,
        rule_name: row.text(2)?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| Error::Database(format!("run #{id} has unknown status {status:?}")))?,
        trigger: RunTrigger::parse(&trigger)
            .ok_or_else(|| Error::Database(format!("run #{id} has unknown trigger {trigger:?}")))?,
        queued_at: row.utc(5)?,
        started_at: row.opt_utc(6)?,
        finished_at: row.opt_utc(7)?,
        row_count: row.opt_i64(8)?,
        entered: row.opt_i64(9)?,
        left: row.opt_i64(10)?,
        error: row.opt_text(11)?,
        as_of: row.opt_time(12)?,
    })
}

fn runs_of(conn: &mut dyn Conn, q: &SelectStatement) -> Result<Vec<Run>> {
    conn.rows(q)?.iter().map(run_of).collect()
}

/// Queues a run of a rule and returns its id, owned by the process `owner` names (see
/// [`fail_abandoned_runs`]). The rule's name is copied so the run stays readable after the
/// rule is deleted.
pub fn create_run(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    trigger: RunTrigger,
    owner: Option<&str>,
) -> Result<RunId> {
    let name = conn
        .opt_row(
            &Query::select()
                .column("rule_name")
                .from(RULE_TABLE)
                .and_where(Expr::col("id").eq(rule_id))
                .to_owned(),
        )?
        .ok_or_else(|| Error::not_found_id("rule", rule_id))?
        .text(0)?;
    let now = conn.dialect().time_value(now());
    let mut insert = Query::insert();
    insert
        .into_table(REFRESH_RUNS)
        .columns([
            "rule_id",
            "rule_name",
            "status",
            "trigger",
            "queued_at",
            "owner",
        ])
        .returning_col("id");
    // As many values as columns.
    let _ = insert.values([
        rule_id.into(),
        name.into(),
        "queued".into(),
        trigger.as_str().into(),
        Expr::val(now),
        owner.map(str::to_owned).into(),
    ]);
    conn.row(&insert)?.i64(0)
}

/// Moves a run from one status to another, checking it was where we expect.
fn transition(
    conn: &mut dyn Conn,
    id: RunId,
    from: &[RunStatus],
    set: Vec<(&'static str, sea_query::Value)>,
) -> Result<()> {
    let mut update = Query::update();
    update
        .table(REFRESH_RUNS)
        .values(set.into_iter().map(|(c, v)| (c, Expr::val(v))))
        .and_where(Expr::col("id").eq(id))
        .and_where(Expr::col("status").is_in(from.iter().map(|s| s.as_str())));
    if conn.exec(&update)? == 0 {
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
pub fn mark_running(conn: &mut dyn Conn, id: RunId, as_of: NaiveDateTime) -> Result<()> {
    let d = conn.dialect();
    transition(
        conn,
        id,
        &[RunStatus::Queued],
        vec![
            ("status", "running".into()),
            ("started_at", d.time_value(now())),
            ("as_of", d.time_value(as_of)),
        ],
    )
}

/// A running run built its segment.
pub fn mark_succeeded(
    conn: &mut dyn Conn,
    id: RunId,
    row_count: i64,
    entered: i64,
    left: i64,
) -> Result<()> {
    let d = conn.dialect();
    transition(
        conn,
        id,
        &[RunStatus::Running],
        vec![
            ("status", "succeeded".into()),
            ("finished_at", d.time_value(now())),
            ("row_count", row_count.into()),
            ("entered", entered.into()),
            ("left_count", left.into()),
        ],
    )
}

/// A queued or running run failed; the segment was left as it was.
pub fn mark_failed(conn: &mut dyn Conn, id: RunId, error: &str) -> Result<()> {
    let d = conn.dialect();
    transition(
        conn,
        id,
        &[RunStatus::Queued, RunStatus::Running],
        vec![
            ("status", "failed".into()),
            ("finished_at", d.time_value(now())),
            ("error", error.into()),
        ],
    )
}

/// One run; `NotFound` if there is none with that id.
pub fn get_run(conn: &mut dyn Conn, id: RunId) -> Result<Run> {
    let q = select_runs().and_where(Expr::col("id").eq(id)).to_owned();
    runs_of(conn, &q)?
        .pop()
        .ok_or_else(|| Error::not_found_id("run", id))
}

/// Runs matching the filter, newest first.
pub fn list_runs(conn: &mut dyn Conn, filter: &RunFilter) -> Result<Vec<Run>> {
    let mut query = select_runs();
    query
        .order_by("id", Order::Desc)
        .limit(u64::from(filter.limit.unwrap_or(100)));
    if let Some(rule_id) = filter.rule_id {
        query.and_where(Expr::col("rule_id").eq(rule_id));
    }
    if let Some(status) = filter.status {
        query.and_where(Expr::col("status").eq(status.as_str()));
    }
    runs_of(conn, &query)
}

/// The newest run of a rule, if any.
pub fn last_run(conn: &mut dyn Conn, rule_id: RuleId) -> Result<Option<Run>> {
    let q = select_runs()
        .and_where(Expr::col("rule_id").eq(rule_id))
        .order_by("id", Order::Desc)
        .limit(1)
        .to_owned();
    Ok(runs_of(conn, &q)?.pop())
}

/// The rule's queued or running run, if it has one: a new trigger joins it instead of
/// starting a second refresh of the same rule.
pub fn active_run_for(conn: &mut dyn Conn, rule_id: RuleId) -> Result<Option<Run>> {
    let q = select_runs()
        .and_where(Expr::col("rule_id").eq(rule_id))
        .and_where(Expr::col("status").is_in(["queued", "running"]))
        .order_by("id", Order::Asc)
        .limit(1)
        .to_owned();
    Ok(runs_of(conn, &q)?.pop())
}

/// How a backend tells whether the process owning runs is alive.
pub trait Owners {
    /// Whether the owner `token` names is alive.
    fn alive(&self, token: &str) -> bool;
    /// Forgets an owner found gone (its lock file, say).
    fn forget(&self, token: &str);
}

/// Fails the queued and running runs whose process is gone (as `owners` tells), each with
/// [`abandoned_by`] as the error; the runs of live processes, this one's and others', are
/// left alone. Whoever opens the database calls it, so a run killed with its process is seen
/// as failed without waiting for a server. Returns how many it failed.
pub fn fail_abandoned_runs(conn: &mut dyn Conn, owners: &dyn Owners) -> Result<usize> {
    let q = Query::select()
        .distinct()
        .column("owner")
        .from(REFRESH_RUNS)
        .and_where(Expr::col("status").is_in(["queued", "running"]))
        .to_owned();
    let tokens = conn
        .rows(&q)?
        .iter()
        .map(|r| r.opt_text(0))
        .collect::<Result<Vec<_>>>()?;
    let d = conn.dialect();
    let mut failed = 0;
    for token in tokens {
        if token.as_deref().is_some_and(|t| owners.alive(t)) {
            continue;
        }
        let mut update = Query::update();
        update
            .table(REFRESH_RUNS)
            .values([
                ("status", Expr::val("failed")),
                ("finished_at", Expr::val(d.time_value(now()))),
                ("error", Expr::val(abandoned_by(token.as_deref()))),
            ])
            .and_where(Expr::col("status").is_in(["queued", "running"]));
        match &token {
            Some(t) => update.and_where(Expr::col("owner").eq(t.as_str())),
            None => update.and_where(Expr::col("owner").is_null()),
        };
        failed += conn.exec(&update)? as usize;
        if let Some(t) = &token {
            owners.forget(t);
        }
    }
    Ok(failed)
}
