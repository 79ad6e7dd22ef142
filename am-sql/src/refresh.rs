//! Refresh: rebuilds segments in plan order, sharing the aggregate scans, and swaps each one in
//! atomically with its catalog row and run.
//!
//! One refresh works like this:
//!
//! 1. plan every stored rule (reuse on) and select the nodes to rebuild: the targets, and
//!    whatever they read that is not fresh (contract section 2, "Freshness");
//! 2. fix the as-of time once, and fill one scratch table of per-user aggregates per
//!    (source, window) the selected nodes read, so rules that aggregate the same transactions
//!    share one scan instead of rescanning them each;
//! 3. for each node in plan order, in one transaction: rebuild `segment_output_<id>` from
//!    the shared aggregates and upstream segments (the old members kept as
//!    `segment_output_<id>__previous`), count who entered and left, and write the catalog row
//!    and the run's success. A node that fails keeps its old segment and catalog row, records
//!    its error, and the nodes built from it are skipped.
//!
//! The catalog's `sql_query` is the same node rendered standalone (aggregates as subqueries,
//! values inlined), so it can be pasted into `sqlite3` and returns exactly the members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use am_core::evaluate::rule_set_expr;
use am_core::expr::Timestamp;
use am_core::plan::{Plan, PlanNode, Reuse, SetExpr};
use am_core::planner::{PlanOptions, Planner, RuleInput};
use am_core::rule::{CheckedRule, RuleId, RuleSpec};
use am_core::validate::check_rule;
use serde::Serialize;

use crate::backend::{Dialect, SwapCounts};
use crate::catalog::{self, Segment, SegmentRecord};
use crate::conn::Conn;
use crate::error::Result;
pub use crate::incremental::RefreshMode;
use crate::incremental::{self, AFFECTED, plan_increment};
use crate::progress::Progress;
use crate::render::{
    AggregateLayout, AggregateNeeds, Aggregates, RenderContext, collect_set_needs, render_set,
};
use crate::runs::{self, RunId, RunTrigger};
use crate::store::Store;

/// Which rules a refresh rebuilds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTargets {
    /// Every rule.
    All,
    /// Every rule whose segment is not fresh.
    Stale,
    /// These rules, and whatever they are built from that is not fresh.
    Rules(Vec<RuleId>),
}

/// What to refresh and how.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    pub targets: RefreshTargets,
    /// The as-of time of relative windows; now (UTC, whole seconds) when unset.
    pub as_of: Option<Timestamp>,
    /// Recorded on the runs of the targets; rules refreshed because a target needs them are
    /// recorded as [`RunTrigger::Upstream`].
    pub trigger: RunTrigger,
    /// Queued runs to use instead of creating new ones (the scheduler and the API create a
    /// run before the refresh starts, to answer with its id).
    pub runs: BTreeMap<RuleId, RunId>,
    /// The owner token of the runs the refresh creates (see [`runs::fail_abandoned_runs`]);
    /// [`Store::refresh`] sets this process's.
    pub owner: Option<String>,
    /// Whether segments may be updated from the change log rather than rebuilt.
    pub mode: RefreshMode,
}

impl RefreshRequest {
    /// A refresh of `targets`, as of now, with fresh runs.
    pub fn new(targets: RefreshTargets, trigger: RunTrigger) -> Self {
        RefreshRequest {
            targets,
            as_of: None,
            trigger,
            runs: BTreeMap::new(),
            owner: None,
            mode: RefreshMode::Auto,
        }
    }
}

/// How one node's refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Succeeded,
    /// Failed; the old segment and catalog row are as they were.
    Failed,
    /// Not attempted because a rule it is built from failed.
    Skipped,
}

/// One rule refreshed (or attempted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeOutcome {
    pub rule_id: RuleId,
    pub rule_name: String,
    pub status: NodeStatus,
    pub row_count: Option<i64>,
    pub entered: Option<i64>,
    pub left: Option<i64>,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// The segments it was computed from by automatic reuse.
    pub reused_from: Vec<RuleId>,
    pub error: Option<String>,
    pub run_id: Option<RunId>,
    /// Updated from the users whose inputs changed, rather than rebuilt from all the data.
    pub incremental: bool,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// What a refresh did, node by node in plan order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefreshReport {
    pub as_of: Timestamp,
    /// The engine that computed the segments: the store's (`sqlite`, `postgresql`) or
    /// `spark`.
    pub engine: String,
    pub nodes: Vec<NodeOutcome>,
    /// How many users the incremental nodes re-evaluated, if any node was updated.
    pub affected_users: Option<i64>,
    /// Preparing what the rules share before any segment is built: the store's aggregate
    /// tables, or Spark's session; each node's `duration` is its own build and swap only.
    #[serde(rename = "aggregates_ms", serialize_with = "millis")]
    pub aggregates: Duration,
    /// The whole refresh: runs, shared aggregates and every segment.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

impl RefreshReport {
    /// Whether every node succeeded.
    pub fn succeeded(&self) -> bool {
        self.nodes.iter().all(|n| n.status == NodeStatus::Succeeded)
    }

    /// The outcome of one rule, if it was part of the refresh.
    pub fn node(&self, rule_id: RuleId) -> Option<&NodeOutcome> {
        self.nodes.iter().find(|n| n.rule_id == rule_id)
    }
}

/// What the engine needs to know of a stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineRule {
    pub id: RuleId,
    pub name: String,
    pub description: Option<String>,
    /// `rule_table.version`: a segment built from an older version is stale.
    pub version: i64,
    pub rule: CheckedRule,
}

/// The as-of time of a run started now: UTC, whole seconds.
pub fn now_as_of() -> Timestamp {
    let now = chrono::Utc::now().naive_utc();
    chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now)
}

/// The rules whose segments are not fresh at `as_of`, among the nodes of `plan`.
///
/// A segment is fresh when it was built from the rule's current version and the current data
/// version, at the same as-of when its condition depends on it, and every segment it reads is
/// fresh and was not refreshed after it.
pub fn stale_nodes(
    plan: &Plan,
    rules: &BTreeMap<RuleId, EngineRule>,
    segments: &BTreeMap<RuleId, Segment>,
    data_version: i64,
    as_of: Timestamp,
) -> BTreeSet<RuleId> {
    let mut stale = BTreeSet::new();
    for node in &plan.nodes {
        let own_fresh = match (segments.get(&node.rule_id), rules.get(&node.rule_id)) {
            (Some(seg), Some(rule)) => {
                let as_of_ok = !rule
                    .rule
                    .condition
                    .as_ref()
                    .is_some_and(|c| c.depends_on_as_of())
                    || seg.as_of == as_of;
                seg.rule_version == rule.version && seg.data_version == data_version && as_of_ok
            }
            _ => false,
        };
        let upstream_fresh = node.upstream.iter().all(|u| {
            !stale.contains(u)
                && match (segments.get(u), segments.get(&node.rule_id)) {
                    (Some(up), Some(me)) => up.last_refreshed_at <= me.last_refreshed_at,
                    _ => false,
                }
        });
        if !(own_fresh && upstream_fresh) {
            stale.insert(node.rule_id);
        }
    }
    stale
}

/// Rebuilds the `selected` nodes of `plan`, in plan order, on one connection.
///
/// `targets` get runs with `trigger`, the other selected nodes [`RunTrigger::Upstream`].
/// Every node's run ends succeeded or failed; nothing here returns early on a node's error.
/// An error is returned only when the run rows themselves cannot be written.
#[allow(clippy::too_many_arguments)]
pub fn refresh_plan(
    conn: &mut dyn Conn,
    plan: &Plan,
    selected: &BTreeSet<RuleId>,
    rules: &BTreeMap<RuleId, EngineRule>,
    request: &RefreshRequest,
    targets: &BTreeSet<RuleId>,
    as_of: Timestamp,
    progress: &dyn Progress,
) -> Result<RefreshReport> {
    refresh_plan_on(
        conn, None, None, plan, selected, rules, request, targets, as_of, progress,
    )
}

/// [`refresh_plan`], with the members computed by `compute` where given (another engine
/// than the store's own, such as Spark), and the data version the caller already read, if
/// it did (reading it can cost a query on that engine).
#[allow(clippy::too_many_arguments)]
pub(crate) fn refresh_plan_on(
    conn: &mut dyn Conn,
    compute: Option<&dyn Compute>,
    known_version: Option<i64>,
    plan: &Plan,
    selected: &BTreeSet<RuleId>,
    rules: &BTreeMap<RuleId, EngineRule>,
    request: &RefreshRequest,
    targets: &BTreeSet<RuleId>,
    as_of: Timestamp,
    progress: &dyn Progress,
) -> Result<RefreshReport> {
    let mut book = RunBook::default();
    book.open
        .extend(request.runs.values().map(|&run| (run, None)));
    let result = refresh_nodes(
        conn,
        compute,
        known_version,
        plan,
        selected,
        rules,
        request,
        targets,
        as_of,
        progress,
        &mut book,
    );
    if let Err(e) = &result {
        // Every run ends: those this refresh could not finish record why.
        book.fail_open(conn, &e.to_string());
    }
    result
}

/// The version of the data the segments are computed from.
fn data_version(conn: &mut dyn Conn, compute: Option<&dyn Compute>) -> Result<i64> {
    match compute {
        Some(compute) => compute.data_version(conn),
        None => crate::tracking::data_version(conn),
    }
}

/// The runs of one refresh that have not ended yet, each with its own error once known.
#[derive(Debug, Default)]
struct RunBook {
    open: BTreeMap<RunId, Option<String>>,
}

impl RunBook {
    /// Fails every run still open, with its own error or else with the refresh's `error`. A
    /// busy database is waited for a few times over; if it stays unwritable the runs stay
    /// active until this process ends, and the next process to open the database fails them
    /// as abandoned.
    fn fail_open(&mut self, conn: &mut dyn Conn, error: &str) {
        const ATTEMPTS: u32 = 4;
        for (run, own) in std::mem::take(&mut self.open) {
            let message = own.unwrap_or_else(|| format!("the refresh stopped: {error}"));
            for attempt in 1..=ATTEMPTS {
                match runs::mark_failed(conn, run, &message) {
                    // Conflict: it ended meanwhile (failed as abandoned, say).
                    Ok(()) | Err(crate::Error::Conflict(_) | crate::Error::NotFound { .. }) => {
                        break;
                    }
                    Err(e) if attempt == ATTEMPTS => {
                        tracing::error!(run, "could not record that the run failed: {e}");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn refresh_nodes(
    conn: &mut dyn Conn,
    compute: Option<&dyn Compute>,
    known_version: Option<i64>,
    plan: &Plan,
    selected: &BTreeSet<RuleId>,
    rules: &BTreeMap<RuleId, EngineRule>,
    request: &RefreshRequest,
    targets: &BTreeSet<RuleId>,
    as_of: Timestamp,
    progress: &dyn Progress,
    book: &mut RunBook,
) -> Result<RefreshReport> {
    let began = Instant::now();
    let nodes: Vec<&PlanNode> = plan
        .nodes
        .iter()
        .filter(|n| selected.contains(&n.rule_id))
        .collect();
    // Runs first, so every node has one to record its outcome in.
    let mut run_ids = BTreeMap::new();
    for node in &nodes {
        let id = node.rule_id;
        let run = match request.runs.get(&id) {
            Some(&run) => run,
            None => {
                let trigger = if targets.contains(&id) {
                    request.trigger
                } else {
                    RunTrigger::Upstream
                };
                runs::create_run(conn, id, trigger, request.owner.as_deref())?
            }
        };
        book.open.insert(run, None);
        runs::mark_running(conn, run, as_of)?;
        run_ids.insert(id, run);
    }
    // Recorded before reading: a write during the refresh leaves the segments stale rather
    // than wrongly fresh.
    let data_version = match known_version {
        Some(version) => version,
        None => data_version(conn, compute)?,
    };
    let mut affected_users = None;
    let mut builder: Box<dyn Builder + '_> = match compute {
        Some(compute) => compute.builder(conn, &nodes, as_of, progress)?,
        None => {
            let segments: BTreeMap<RuleId, Segment> = catalog::all_segments(conn)?
                .into_iter()
                .map(|s| (s.rule_id, s))
                .collect();
            let increment = plan_increment(conn, request.mode, &nodes, rules, &segments, as_of)?;
            affected_users = increment.as_ref().map(|i| i.affected);
            Box::new(Split::prepare(
                conn,
                &nodes,
                increment.map(|i| i.nodes).unwrap_or_default(),
                rules,
                as_of,
                progress,
            ))
        }
    };
    let aggregates = builder.prepared_in();

    let mut outcomes = Vec::with_capacity(nodes.len());
    let mut failed: BTreeSet<RuleId> = BTreeSet::new();
    progress.begin("segments", Some(nodes.len() as u64));
    for node in nodes {
        let id = node.rule_id;
        let run = run_ids.get(&id).copied();
        let job = builder.job(conn, node);
        let name = rules
            .get(&id)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| node.rule_name.clone());
        let started = Instant::now();
        let blocked = node.upstream.iter().find(|u| failed.contains(u)).copied();
        let reused_from = job.reused_from.clone();
        let incremental = job.incremental;
        let result = match (builder.unusable(), blocked) {
            (_, Some(up)) => Err(Skip(format!("upstream rule #{up} failed"))),
            (Some(e), None) => Err(Fail(e)),
            (None, None) => refresh_node(
                conn,
                builder.as_mut(),
                plan,
                node,
                job,
                rules,
                as_of,
                data_version,
                run,
                started,
            )
            .map_err(|e| Fail(e.to_string())),
        };
        if let Some(run) = run {
            book.open.remove(&run);
        }
        let outcome = match result {
            Ok(counts) => NodeOutcome {
                rule_id: id,
                rule_name: name,
                status: NodeStatus::Succeeded,
                row_count: Some(counts.row_count),
                entered: Some(counts.entered),
                left: Some(counts.left),
                duration: started.elapsed(),
                reused_from,
                error: None,
                run_id: run,
                incremental,
            },
            Err(why) => {
                failed.insert(id);
                let (status, message) = match why {
                    Skip(m) => (NodeStatus::Skipped, m),
                    Fail(m) => (NodeStatus::Failed, m),
                };
                if let Some(run) = run
                    && let Err(e) = runs::mark_failed(conn, run, &message)
                {
                    // Left to the run book, with this node's own error.
                    book.open.insert(run, Some(message));
                    return Err(e);
                }
                NodeOutcome {
                    rule_id: id,
                    rule_name: name,
                    status,
                    row_count: None,
                    entered: None,
                    left: None,
                    duration: started.elapsed(),
                    reused_from,
                    error: Some(message),
                    run_id: run,
                    incremental,
                }
            }
        };
        outcomes.push(outcome);
        progress.advance(1);
    }
    builder.finish(conn);
    // Also after a refresh on another engine, which never reads the log: it must not grow.
    prune_change_log(conn);
    progress.finish("segments refreshed");
    Ok(RefreshReport {
        as_of,
        engine: builder.engine_name().to_owned(),
        nodes: outcomes,
        affected_users,
        aggregates,
        elapsed: began.elapsed(),
    })
}

use NodeError::{Fail, Skip};

/// Why a node was not swapped in.
enum NodeError {
    Skip(String),
    Fail(String),
}

/// Creates and fills the shared aggregate tables (temporary: private to this connection and
/// gone with it, so readers never see them).
fn fill_shared(
    conn: &mut dyn Conn,
    layout: &AggregateLayout,
    as_of: Timestamp,
    progress: &dyn Progress,
) -> Result<()> {
    let d = layout.dialect;
    for table in &layout.tables {
        conn.batch(&format!(
            "DROP TABLE IF EXISTS {}",
            d.scratch_table(&table.name)
        ))?;
        conn.batch(&d.table(&layout.create_statement(table)))?;
        for fill in layout.fill_statements(table, as_of) {
            conn.exec(&fill)?;
        }
        progress.advance(1);
    }
    Ok(())
}

/// Creates and fills the users table, if the layout has one: built once from `users` and the
/// shared tables, so the rules that need `users` each scan it in order.
fn fill_users_table(conn: &mut dyn Conn, layout: &AggregateLayout) -> Result<()> {
    let (Some(create), Some(fill)) = (layout.users_table_create(), layout.users_table_fill())
    else {
        return Ok(());
    };
    drop_users_table(conn, layout);
    conn.batch(&layout.dialect.table(&create))?;
    conn.exec(&fill)?;
    Ok(())
}

fn drop_users_table(conn: &mut dyn Conn, layout: &AggregateLayout) {
    if let Some(users) = &layout.users_table {
        // Temporary: gone with the connection anyway, so a failed drop is harmless.
        let _ = conn.batch(&format!(
            "DROP TABLE IF EXISTS {}",
            layout.dialect.scratch_table(&users.name)
        ));
    }
}

fn drop_shared(conn: &mut dyn Conn, layout: &AggregateLayout) {
    drop_users_table(conn, layout);
    for table in &layout.tables {
        // Temporary tables vanish with the connection anyway; failing to drop one early
        // is harmless.
        let _ = conn.batch(&format!(
            "DROP TABLE IF EXISTS {}",
            layout.dialect.scratch_table(&table.name)
        ));
    }
}

/// Builds one node's members and swaps them in with its catalog row and run success, in one
/// transaction.
#[allow(clippy::too_many_arguments)]
fn refresh_node(
    conn: &mut dyn Conn,
    builder: &mut dyn Builder,
    plan: &Plan,
    node: &PlanNode,
    job: Job,
    rules: &BTreeMap<RuleId, EngineRule>,
    as_of: Timestamp,
    data_version: i64,
    run: Option<RunId>,
    started: Instant,
) -> Result<SwapCounts> {
    let id = node.rule_id;
    let dialect = builder.dialect();
    let standalone = RenderContext {
        dialect,
        as_of,
        aggregates: Aggregates::Standalone,
        base_first: false,
    };
    // Self-contained: the segments it read are replaced by their rules' definitions, so it
    // reads only the data tables and returns these members for as long as the data are
    // unchanged, whatever later refreshes do to those segments.
    let definition = |id: RuleId| {
        plan.nodes
            .iter()
            .find(|n| n.rule_id == id)
            .map(|n| n.compute.clone())
            .or_else(|| rule_definition(rules)(id))
    };
    let self_contained = inline_segments(&job.compute, &definition, 0);
    let sql_query = dialect.inline(&render_set(&self_contained, &standalone));
    let (name, description, version) = match rules.get(&id) {
        Some(r) => (r.name.clone(), r.description.clone(), r.version),
        None => (node.rule_name.clone(), None, 0),
    };
    let mut record = Some(SegmentRecord {
        rule_id: id,
        segment_name: name,
        description,
        row_count: 0,
        sql_query,
        rule_version: version,
        data_version,
        as_of,
        entered: 0,
        left: 0,
        duration_ms: 0,
        reused_from: job.reused_from.clone(),
        engine: builder.engine_name().to_owned(),
    });
    builder.build(conn, id, &job, &self_contained, &mut |conn, counts| {
        let Some(mut record) = record.take() else {
            return Ok(());
        };
        record.row_count = counts.row_count;
        record.entered = counts.entered;
        record.left = counts.left;
        record.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        catalog::upsert_segment(conn, &record)?;
        if let Some(run) = run {
            runs::mark_succeeded(conn, run, counts.row_count, counts.entered, counts.left)?;
        }
        Ok(())
    })
}

/// An engine other than the store's own that computes segments (Spark): the store keeps
/// rules, catalog, runs and members.
pub(crate) trait Compute: Send + Sync + std::fmt::Debug {
    /// The dialect of the SQL it runs.
    fn dialect(&self) -> Dialect;
    /// The version of the data it reads, as freshness compares it (contract section 2).
    fn data_version(&self, conn: &mut dyn Conn) -> Result<i64>;
    /// How many users `set` holds now.
    fn count(&self, set: &SetExpr, as_of: Timestamp) -> Result<i64>;
    /// Readies the engine for one refresh of `nodes`; an error fails every node's run.
    fn builder<'a>(
        &'a self,
        conn: &mut dyn Conn,
        nodes: &[&PlanNode],
        as_of: Timestamp,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Builder + 'a>>;
}

/// How a refresh computes the members of each node; the store swaps them in either way.
pub(crate) trait Builder {
    /// The dialect the node's SQL is written in (the stored `sql_query`'s).
    fn dialect(&self) -> Dialect;
    /// The engine that computes the members, as the catalog records it.
    fn engine_name(&self) -> &'static str;
    /// How long preparing what the nodes share took.
    fn prepared_in(&self) -> Duration;
    /// Why no node can be built, if preparing failed.
    fn unusable(&self) -> Option<String>;
    /// How one node will be computed.
    fn job(&mut self, conn: &mut dyn Conn, node: &PlanNode) -> Job;
    /// Computes a node's members and swaps them in; `publish` runs inside the swap's
    /// transaction. `self_contained` is the job's set with every segment it reads inlined.
    fn build(
        &mut self,
        conn: &mut dyn Conn,
        rule_id: RuleId,
        job: &Job,
        self_contained: &SetExpr,
        publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
    ) -> Result<SwapCounts>;
    /// Drops what preparing made (best effort).
    fn finish(&mut self, conn: &mut dyn Conn);
}

/// How one node is computed.
pub(crate) struct Job {
    pub(crate) compute: SetExpr,
    /// Updated from the affected users rather than rebuilt.
    pub(crate) incremental: bool,
    /// Read the set the filter narrows member by member (see [`RenderContext::base_first`]).
    pub(crate) base_first: bool,
    /// The segments `compute` reads by the finder's reuse.
    pub(crate) reused_from: Vec<RuleId>,
}

/// The store's own engine: one scratch table of per-user aggregates per (source, window) the
/// nodes read, filled once, so rules over the same transactions share one scan.
struct SharedAggregates {
    layout: AggregateLayout,
    own_forms: BTreeMap<RuleId, SetExpr>,
    /// What set sizes are compared with; without it every node is evaluated as planned.
    users: Option<i64>,
    failed: Option<String>,
    restore: Vec<String>,
    took: Duration,
    as_of: Timestamp,
}

impl SharedAggregates {
    /// Fills the aggregates `nodes` read, for every user or, with `only`, for the users in
    /// that table.
    fn prepare(
        conn: &mut dyn Conn,
        nodes: &[&PlanNode],
        rules: &BTreeMap<RuleId, EngineRule>,
        as_of: Timestamp,
        progress: &dyn Progress,
        only: Option<&str>,
    ) -> SharedAggregates {
        let dialect = conn.dialect();
        let mut needs = AggregateNeeds::new();
        for node in nodes {
            collect_set_needs(&node.compute, &mut needs);
        }
        // The own conditions of rules the finder answered from other segments, where they
        // read only scopes scanned anyway: a node may be evaluated from them instead
        // (`evaluation_of`), so their columns are computed too.
        let own_forms: BTreeMap<RuleId, SetExpr> = nodes
            .iter()
            .filter(|n| n.reuse.is_some())
            .filter_map(|n| {
                let own = rule_set_expr(&rules.get(&n.rule_id)?.rule);
                let mut own_needs = AggregateNeeds::new();
                collect_set_needs(&own, &mut own_needs);
                own_needs
                    .keys()
                    .all(|scope| needs.contains_key(scope))
                    .then_some((n.rule_id, own))
            })
            .collect();
        for own in own_forms.values() {
            collect_set_needs(own, &mut needs);
        }
        let mut layout = AggregateLayout::new(dialect, &needs);
        if let Some(only) = only {
            layout = layout.restricted_to(only);
        }
        layout.plan_users_table(
            nodes.iter().map(|n| &n.compute).chain(own_forms.values()),
            as_of,
        );
        let restore = dialect.read_faster(conn);
        let began = Instant::now();
        progress.begin("aggregates", Some(layout.tables.len() as u64));
        let shared = fill_shared(conn, &layout, as_of, progress);
        if shared.is_ok()
            && let Err(e) = fill_users_table(conn, &layout)
        {
            // Only a shortcut: without it each rule reads `users` itself, so a profile
            // column gone fails just the rules that read it.
            tracing::warn!("refresh continues without the per-user table of aggregates: {e}");
            drop_users_table(conn, &layout);
            layout.users_table = None;
        }
        progress.finish("aggregates ready");
        SharedAggregates {
            layout,
            own_forms,
            // Restricted to a few users, every node is evaluated as planned.
            users: match only {
                Some(_) => None,
                None => crate::rules::count_rows(conn, "users").ok(),
            },
            failed: shared
                .err()
                .map(|e| format!("computing aggregates failed: {e}")),
            restore,
            took: began.elapsed(),
            as_of,
        }
    }
}

impl Builder for SharedAggregates {
    fn dialect(&self) -> Dialect {
        self.layout.dialect
    }

    fn engine_name(&self) -> &'static str {
        self.layout.dialect.name()
    }

    fn prepared_in(&self) -> Duration {
        self.took
    }

    fn unusable(&self) -> Option<String> {
        self.failed.clone()
    }

    fn job(&mut self, conn: &mut dyn Conn, node: &PlanNode) -> Job {
        let own = self.own_forms.get(&node.rule_id);
        let evaluation = match (&self.layout.only, own) {
            // Over the affected users the aggregates are few rows: reading the rule's own
            // condition scans them, reading the segment would look each one up in it.
            (Some(_), Some(own)) => Evaluation {
                compute: own.clone(),
                base_first: false,
                reuses: false,
            },
            _ => evaluation_of(conn, node, own, self.users),
        };
        let reused_from = if evaluation.reuses {
            node.reuse
                .as_ref()
                .map(|r| r.parents.clone())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Job {
            compute: evaluation.compute,
            incremental: self.layout.only.is_some(),
            base_first: evaluation.base_first,
            reused_from,
        }
    }

    fn build(
        &mut self,
        conn: &mut dyn Conn,
        rule_id: RuleId,
        job: &Job,
        _self_contained: &SetExpr,
        publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
    ) -> Result<SwapCounts> {
        let shared = RenderContext {
            dialect: self.layout.dialect,
            as_of: self.as_of,
            aggregates: Aggregates::Shared(&self.layout),
            base_first: job.base_first,
        };
        let select = render_set(&job.compute, &shared);
        if self.layout.only.is_some() {
            incremental::apply(conn, rule_id, select, publish)
        } else {
            self.layout
                .dialect
                .rebuild_segment(conn, rule_id, select, publish)
        }
    }

    fn finish(&mut self, conn: &mut dyn Conn) {
        drop_shared(conn, &self.layout);
        for statement in std::mem::take(&mut self.restore) {
            // The connection works with either value; failing to restore one is harmless.
            let _ = conn.batch(&statement);
        }
    }
}

/// The store's own engine for one refresh: the nodes rebuilt read aggregates of every user,
/// the nodes updated incrementally aggregates of the affected users only.
struct Split {
    /// Prepared for the rebuilt nodes (none, if every node is updated: then it fills nothing).
    full: SharedAggregates,
    /// Prepared when some node is updated.
    incremental: Option<SharedAggregates>,
    updated: BTreeSet<RuleId>,
}

impl Split {
    fn prepare(
        conn: &mut dyn Conn,
        nodes: &[&PlanNode],
        updated: BTreeSet<RuleId>,
        rules: &BTreeMap<RuleId, EngineRule>,
        as_of: Timestamp,
        progress: &dyn Progress,
    ) -> Split {
        let (inc, full): (Vec<&PlanNode>, Vec<&PlanNode>) =
            nodes.iter().partition(|n| updated.contains(&n.rule_id));
        let full = SharedAggregates::prepare(conn, &full, rules, as_of, progress, None);
        let incremental = (!inc.is_empty())
            .then(|| SharedAggregates::prepare(conn, &inc, rules, as_of, progress, Some(AFFECTED)));
        Split {
            full,
            incremental,
            updated,
        }
    }

    fn part(&mut self, rule_id: RuleId) -> &mut SharedAggregates {
        match self.incremental.as_mut() {
            Some(inc) if self.updated.contains(&rule_id) => inc,
            _ => &mut self.full,
        }
    }
}

impl Builder for Split {
    fn dialect(&self) -> Dialect {
        self.full.dialect()
    }

    fn engine_name(&self) -> &'static str {
        self.full.engine_name()
    }

    fn prepared_in(&self) -> Duration {
        self.full.took + self.incremental.as_ref().map_or(Duration::ZERO, |p| p.took)
    }

    fn unusable(&self) -> Option<String> {
        self.full
            .failed
            .clone()
            .or_else(|| self.incremental.as_ref()?.failed.clone())
    }

    fn job(&mut self, conn: &mut dyn Conn, node: &PlanNode) -> Job {
        self.part(node.rule_id).job(conn, node)
    }

    fn build(
        &mut self,
        conn: &mut dyn Conn,
        rule_id: RuleId,
        job: &Job,
        self_contained: &SetExpr,
        publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
    ) -> Result<SwapCounts> {
        self.part(rule_id)
            .build(conn, rule_id, job, self_contained, publish)
    }

    fn finish(&mut self, conn: &mut dyn Conn) {
        // In reverse order of preparing: each puts back the settings it found.
        if let Some(inc) = &mut self.incremental {
            inc.finish(conn);
            incremental::drop_affected(conn);
        }
        self.full.finish(conn);
    }
}

/// How many changed users the change log keeps at most beyond what every segment has seen.
const CHANGE_LOG_LIMIT: u64 = 10_000_000;

/// Drops the changes every segment of this engine has seen (best effort: a log kept longer
/// costs space only).
fn prune_change_log(conn: &mut dyn Conn) {
    let engine = conn.dialect().name();
    let seen = catalog::all_segments(conn).map(|segments| {
        segments
            .iter()
            .filter(|s| s.engine == engine)
            .map(|s| s.data_version)
            .min()
    });
    let result = match seen {
        Ok(Some(seen)) => crate::tracking::prune_change_log(conn, seen, CHANGE_LOG_LIMIT),
        Ok(None) => crate::tracking::data_version(conn)
            .and_then(|now| crate::tracking::prune_change_log(conn, now, CHANGE_LOG_LIMIT)),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!("could not prune the change log: {e}");
    }
}

/// How a refresh that shares the aggregates evaluates one node.
struct Evaluation {
    compute: SetExpr,
    /// Read the set the filter narrows member by member (see [`RenderContext::base_first`]).
    base_first: bool,
    /// Whether `compute` reads the segments the finder's reuse chose.
    reuses: bool,
}

/// A filter reads the aggregates either row by row, looking each user up in the set it
/// narrows, or, for a small set, member by member, looking each member up in the aggregates.
/// A key lookup costs several times a row of a scan, so the second order wins only for sets up
/// to about a fifth of the users (docs/benchmarks.md, "Reuse in a refresh"); this takes an
/// eighth. A rule the finder answered from a larger segment is evaluated from its own
/// condition instead (`own_form`, when that reads only aggregates the refresh computes
/// anyway): that scans the same aggregates without any lookups, so reading the segment saves
/// nothing there.
fn evaluation_of(
    conn: &mut dyn Conn,
    node: &PlanNode,
    own_form: Option<&SetExpr>,
    users: Option<i64>,
) -> Evaluation {
    let as_planned = |base_first| Evaluation {
        compute: node.compute.clone(),
        base_first,
        reuses: node.reuse.is_some(),
    };
    let (SetExpr::Filter(inner, _), Some(users)) = (&node.compute, users) else {
        return as_planned(false);
    };
    if !conn.dialect().drives_from_small_sets() {
        return as_planned(false);
    }
    if matches!(inner.as_ref(), SetExpr::AllUsers) {
        return as_planned(false);
    }
    let small = members_at_most(conn, inner, users).is_some_and(|n| n.saturating_mul(8) <= users);
    match own_form {
        _ if small => as_planned(true),
        Some(own) => Evaluation {
            compute: own.clone(),
            base_first: false,
            reuses: false,
        },
        None => as_planned(false),
    }
}

/// An upper bound of a set's size from its segments' row counts; `None` if one can't be read.
fn members_at_most(conn: &mut dyn Conn, set: &SetExpr, users: i64) -> Option<i64> {
    let mut sizes = |xs: &[SetExpr]| -> Option<Vec<i64>> {
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            out.push(members_at_most(conn, x, users)?);
        }
        Some(out)
    };
    match set {
        SetExpr::AllUsers => Some(users),
        SetExpr::Segment(id) => {
            crate::rules::count_rows(conn, &catalog::segment_table_name(*id)).ok()
        }
        SetExpr::Intersect(xs) => Some(sizes(xs)?.into_iter().min().unwrap_or(users)),
        SetExpr::Union(xs) => Some(sizes(xs)?.into_iter().sum()),
        SetExpr::Difference(first, _) | SetExpr::Filter(first, _) => {
            members_at_most(conn, first, users)
        }
    }
}

/// One node of an explain: how a rule is computed and the SQL that computes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainNode {
    pub rule_id: RuleId,
    pub rule_name: String,
    pub upstream: Vec<RuleId>,
    pub reuse: Option<Reuse>,
    /// The standalone SELECT with values inlined, as the catalog would store it now.
    pub sql: String,
}

/// A rule's plan: the rule and everything it is built from, in plan order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explain {
    pub plan_text: String,
    pub dot: String,
    pub nodes: Vec<ExplainNode>,
}

/// What an unsaved rule would select now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub audience_size: i64,
    /// The id the rule has in `plan`: the edited rule's, or one no stored rule has.
    pub rule_id: RuleId,
    /// The plan of the rule and what it is built from, with the SQL of every node.
    pub plan: Explain,
    /// How the planner would reuse existing segments for it.
    pub reuse: Option<Reuse>,
    /// A self-contained SELECT (dependencies inlined) that returns the members.
    pub sql: String,
}

/// Every stored rule, checked, by id.
fn engine_rules(conn: &mut dyn Conn) -> Result<BTreeMap<RuleId, EngineRule>> {
    engine_rules_of(&crate::rules::all_rules(conn)?)
}

/// The stored rules, checked, as the engine and the planner need them.
pub(crate) fn engine_rules_of(
    stored: &[crate::rules::StoredRule],
) -> Result<BTreeMap<RuleId, EngineRule>> {
    let mut out = BTreeMap::new();
    for stored in stored {
        let rule = stored.checked()?;
        out.insert(
            stored.id,
            EngineRule {
                id: stored.id,
                name: stored.spec.rule_name.clone(),
                description: stored.spec.description.clone(),
                version: stored.version,
                rule,
            },
        );
    }
    Ok(out)
}

/// The planner over every rule, with reuse, as every refresh plans them.
pub(crate) fn planner_of(rules: &BTreeMap<RuleId, EngineRule>) -> Result<Planner> {
    let inputs = rules
        .values()
        .map(|r| {
            let mut rule = r.rule.clone();
            rule.name.clone_from(&r.name);
            RuleInput { id: r.id, rule }
        })
        .collect();
    Ok(Planner::new(inputs, PlanOptions { reuse: true })?)
}

/// A set expression with every segment replaced by how that segment is defined, recursively:
/// self-contained, and exact whatever the state of the stored segments. `definition` gives a
/// segment's set expression (its plan node's, or its rule's); `depth` counts the segments
/// inlined on the way here.
fn inline_segments(
    s: &SetExpr,
    definition: &dyn Fn(RuleId) -> Option<SetExpr>,
    depth: usize,
) -> SetExpr {
    // Dependencies are acyclic (the planner checked), so a chain of segments is shorter than
    // the rule set; the depth bound is a guard only.
    const MAX_DEPTH: usize = 10_000;
    let go = |x: &SetExpr| inline_segments(x, definition, depth);
    match s {
        SetExpr::Segment(id) if depth <= MAX_DEPTH => match definition(*id) {
            Some(d) => inline_segments(&d, definition, depth + 1),
            None => s.clone(),
        },
        SetExpr::AllUsers | SetExpr::Segment(_) => s.clone(),
        SetExpr::Intersect(xs) => SetExpr::Intersect(xs.iter().map(go).collect()),
        SetExpr::Union(xs) => SetExpr::Union(xs.iter().map(go).collect()),
        SetExpr::Difference(first, others) => {
            SetExpr::Difference(Box::new(go(first)), others.iter().map(go).collect())
        }
        SetExpr::Filter(inner, e) => SetExpr::Filter(Box::new(go(inner)), e.clone()),
    }
}

/// A segment's definition by its rule.
fn rule_definition(rules: &BTreeMap<RuleId, EngineRule>) -> impl Fn(RuleId) -> Option<SetExpr> {
    |id| rules.get(&id).map(|r| rule_set_expr(&r.rule))
}

impl Store {
    /// Refreshes rules (contract section 2): the targets in plan order, each after whatever
    /// it is built from that is not fresh, with one run per rule refreshed.
    pub fn refresh(
        &self,
        request: &RefreshRequest,
        progress: &dyn Progress,
    ) -> Result<RefreshReport> {
        let result = self.refresh_unchecked(request, progress);
        if let Err(e) = &result
            && !request.runs.is_empty()
        {
            // The runs the caller queued end even when the refresh could not start.
            let mut book = RunBook::default();
            book.open
                .extend(request.runs.values().map(|&run| (run, None)));
            if let Ok(mut conn) = self.connection() {
                book.fail_open(conn.as_mut(), &e.to_string());
            }
        }
        result
    }

    fn refresh_unchecked(
        &self,
        request: &RefreshRequest,
        progress: &dyn Progress,
    ) -> Result<RefreshReport> {
        let as_of = request.as_of.unwrap_or_else(now_as_of);
        let mut conn = self.connection()?;
        let conn = conn.as_mut();
        let rules = engine_rules(conn)?;
        let planner = planner_of(&rules)?;
        let plan = match &request.targets {
            RefreshTargets::All | RefreshTargets::Stale => planner.plan_all(),
            RefreshTargets::Rules(ids) => planner.plan_for(ids)?,
        };
        let segments: BTreeMap<RuleId, Segment> = catalog::all_segments(conn)?
            .into_iter()
            .map(|s| (s.rule_id, s))
            .collect();
        let known_version = match data_version(conn, self.compute()) {
            Ok(version) => Some(version),
            // Another engine that cannot be reached: everything counts as stale, so the
            // refresh creates its runs and fails them with that engine's error.
            Err(e) if self.compute().is_some() => {
                tracing::warn!("cannot read the data version from the engine: {e}");
                None
            }
            Err(e) => return Err(e),
        };
        let data_version = known_version.unwrap_or(i64::MIN);
        let stale = stale_nodes(&plan, &rules, &segments, data_version, as_of);
        let in_plan: BTreeSet<RuleId> = plan.nodes.iter().map(|n| n.rule_id).collect();
        let targets: BTreeSet<RuleId> = match &request.targets {
            RefreshTargets::All => in_plan.clone(),
            RefreshTargets::Stale => stale.clone(),
            RefreshTargets::Rules(ids) => ids.iter().copied().collect(),
        };
        let mut selected: BTreeSet<RuleId> = targets.union(&stale).copied().collect();
        // A run queued for a rule must end, so its rule is refreshed too.
        selected.extend(request.runs.keys().filter(|id| in_plan.contains(id)));
        selected.retain(|id| in_plan.contains(id));
        let mut request = request.clone();
        if request.owner.is_none() {
            request.owner = self.owner_token()?;
        }
        refresh_plan_on(
            conn,
            self.compute(),
            known_version,
            &plan,
            &selected,
            &rules,
            &request,
            &targets,
            as_of,
            progress,
        )
    }

    /// Refreshes every node of `plan`, a plan the caller made (hand-made computations in
    /// tests, a benchmark's rule set), in its order, on the store's engine or the engine that
    /// computes its segments, with one run per node.
    pub fn refresh_planned(
        &self,
        plan: &Plan,
        rules: &BTreeMap<RuleId, EngineRule>,
        as_of: Timestamp,
        progress: &dyn Progress,
    ) -> Result<RefreshReport> {
        let mut conn = self.connection()?;
        let all: BTreeSet<RuleId> = plan.nodes.iter().map(|n| n.rule_id).collect();
        let mut request = RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli);
        request.owner = self.owner_token()?;
        refresh_plan_on(
            conn.as_mut(),
            self.compute(),
            None,
            plan,
            &all,
            rules,
            &request,
            &all,
            as_of,
            progress,
        )
    }

    /// A rule's plan with the SQL of every node (values inlined, aggregates standalone);
    /// `NotFound` if there is no such rule.
    pub fn explain(&self, rule_id: RuleId) -> Result<Explain> {
        let mut conn = self.connection()?;
        let rules = engine_rules(conn.as_mut())?;
        if !rules.contains_key(&rule_id) {
            return Err(crate::error::Error::not_found_id("rule", rule_id));
        }
        let plan = planner_of(&rules)?.plan_for(&[rule_id])?;
        Ok(match self.compute() {
            // It runs every node's definition whole, reading no segment: show that SQL.
            Some(engine) => explain_plan(engine.dialect(), &self_contained(&plan), now_as_of()),
            None => explain_plan(conn.dialect(), &plan, now_as_of()),
        })
    }

    /// Plans an unsaved rule against the stored ones and counts its members now, writing
    /// nothing.
    ///
    /// `editing` names the stored rule the candidate would replace: the candidate is planned
    /// under that id instead of the saved version, so it is never "reused" from itself, the
    /// rules built from it see the candidate, and a dependency cycle through it is an error.
    /// `NotFound` if there is no such rule.
    pub fn preview(
        &self,
        spec: &RuleSpec,
        editing: Option<RuleId>,
        as_of: Option<Timestamp>,
    ) -> Result<Preview> {
        let checked = check_rule(spec)?;
        let mut conn = self.connection()?;
        let dialect = self.compute().map_or(conn.dialect(), |c| c.dialect());
        let mut rules = engine_rules(conn.as_mut())?;
        let id = match editing {
            Some(id) if rules.contains_key(&id) => id,
            Some(id) => return Err(crate::error::Error::not_found_id("rule", id)),
            // An id no stored rule has, for the rule being previewed.
            None => rules
                .keys()
                .next_back()
                .map_or(1, |last| last.saturating_add(1)),
        };
        rules.insert(
            id,
            EngineRule {
                id,
                name: spec.rule_name.clone(),
                description: spec.description.clone(),
                version: 0,
                rule: checked.clone(),
            },
        );
        let mut plan = planner_of(&rules)?.plan_for(&[id])?;
        if self.compute().is_some() {
            plan = self_contained(&plan);
        }
        let reuse = plan
            .nodes
            .iter()
            .find(|n| n.rule_id == id)
            .and_then(|n| n.reuse.clone());
        let compute = inline_segments(&rule_set_expr(&checked), &rule_definition(&rules), 0);
        let as_of = as_of.unwrap_or_else(now_as_of);
        let ctx = RenderContext {
            dialect,
            as_of,
            aggregates: Aggregates::Standalone,
            base_first: false,
        };
        let select = render_set(&compute, &ctx);
        let audience_size = match self.compute() {
            Some(engine) => engine.count(&compute, as_of)?,
            None => conn.count(&select)?,
        };
        Ok(Preview {
            audience_size,
            rule_id: id,
            plan: explain_plan(dialect, &plan, as_of),
            reuse,
            sql: dialect.inline(&select),
        })
    }
}

/// `plan` with every node's segments inlined, as an engine that reads no segment (Spark)
/// computes it; the reuse the planner found is still reported.
fn self_contained(plan: &Plan) -> Plan {
    let definition = |id: RuleId| {
        plan.nodes
            .iter()
            .find(|n| n.rule_id == id)
            .map(|n| n.compute.clone())
    };
    let mut out = plan.clone();
    for node in &mut out.nodes {
        node.compute = inline_segments(&node.compute, &definition, 0);
    }
    out
}

/// A plan with the standalone SQL of every node.
fn explain_plan(dialect: Dialect, plan: &Plan, as_of: Timestamp) -> Explain {
    let ctx = RenderContext {
        dialect,
        as_of,
        aggregates: Aggregates::Standalone,
        base_first: false,
    };
    Explain {
        plan_text: plan.to_string(),
        dot: plan.to_dot(),
        nodes: plan
            .nodes
            .iter()
            .map(|n| ExplainNode {
                rule_id: n.rule_id,
                rule_name: n.rule_name.clone(),
                upstream: n.upstream.clone(),
                reuse: n.reuse.clone(),
                sql: dialect.inline(&render_set(&n.compute, &ctx)),
            })
            .collect(),
    }
}
