//! The store operations the API and the scheduler use, in one place: each is a blocking call
//! into `am_sql`, run on the blocking pool by the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use am_core::error::{Problem, ValidationErrors};
use am_core::plan::{Plan, Reuse};
use am_core::planner::{PlanOptions, Planner, RuleInput};
use am_core::rule::{RuleId, RuleSpec};
use am_sql::Store;
use am_sql::catalog::Page;
use am_sql::catalog::{Segment, segment_table_name};
use am_sql::dialect::Dialect;
use am_sql::dialect::sqlite::{Sqlite, count, table_exists};
use am_sql::refresh::{
    EngineRule, NodeStatus, RefreshRequest, RefreshTargets, now_as_of, refresh_plan, stale_nodes,
};
use am_sql::render::{Aggregates, RenderContext, render_set, segments_read};
use am_sql::runs::RunId;
use am_sql::runs::RunTrigger;
use chrono::{NaiveDateTime, Timelike};

pub type Result<T> = std::result::Result<T, am_sql::Error>;

/// A stored rule.
pub type RuleRecord = am_sql::rules::StoredRule;

/// A rule's plan with the SQL of every node.
#[derive(Debug, Clone)]
pub struct Explained {
    pub plan: Plan,
    pub sql: HashMap<RuleId, String>,
}

/// What a rule would select now, without saving it.
#[derive(Debug, Clone)]
pub struct Previewed {
    pub audience_size: i64,
    pub explained: Explained,
    /// The id the previewed rule has in `explained`.
    pub target: RuleId,
    pub reuse: Option<Reuse>,
    pub sql: String,
}

pub fn list_rules(store: &Store, page: u32, per_page: u32) -> Result<Page<RuleRecord>> {
    store.list_rules(page, per_page)
}

pub fn all_rules(store: &Store) -> Result<Vec<RuleRecord>> {
    store.all_rules()
}

pub fn rule(store: &Store, id: RuleId) -> Result<RuleRecord> {
    store.rule(id)
}

/// The reuse the planner finds for each rule, over all current rules.
pub fn reuses(store: &Store) -> Result<HashMap<RuleId, Reuse>> {
    let planner = planner(&store.all_rules()?, PlanOptions::default())?;
    Ok(planner
        .plan_all()
        .nodes
        .into_iter()
        .filter_map(|n| n.reuse.map(|r| (n.rule_id, r)))
        .collect())
}

fn inputs(rules: &[RuleRecord]) -> Result<Vec<RuleInput>> {
    rules
        .iter()
        .map(|r| {
            Ok(RuleInput {
                id: r.id,
                rule: r.checked()?,
            })
        })
        .collect()
}

/// The planner over the stored rules, as refresh plans them.
fn planner(rules: &[RuleRecord], options: PlanOptions) -> Result<Planner> {
    Ok(Planner::new(inputs(rules)?, options)?)
}

fn engine_rules(rules: &[RuleRecord]) -> Result<BTreeMap<RuleId, EngineRule>> {
    rules
        .iter()
        .map(|r| {
            Ok((
                r.id,
                EngineRule {
                    id: r.id,
                    name: r.spec.rule_name.clone(),
                    description: r.spec.description.clone(),
                    version: r.version,
                    rule: r.checked()?,
                },
            ))
        })
        .collect()
}

/// The pasteable SELECT of a plan node (values inlined: display only, never executed).
fn node_sql(node: &am_core::plan::PlanNode, as_of: NaiveDateTime) -> String {
    let ctx = RenderContext {
        as_of,
        aggregates: Aggregates::Standalone,
    };
    Sqlite.inline(&render_set(&node.compute, &ctx))
}

fn explained(plan: Plan, as_of: NaiveDateTime) -> Explained {
    let sql = plan
        .nodes
        .iter()
        .map(|n| (n.rule_id, node_sql(n, as_of)))
        .collect();
    Explained { plan, sql }
}

/// A rule's plan with everything upstream of it, and the SQL of every node.
pub fn explain(store: &Store, rule_id: RuleId) -> Result<Explained> {
    store.rule(rule_id)?;
    let planner = planner(&store.all_rules()?, PlanOptions::default())?;
    let plan = planner.plan_for(&[rule_id])?;
    Ok(explained(plan, now_as_of()))
}

/// Plans `spec` with the stored rules under a fresh id and counts its members now. The
/// count uses the plan without reuse so it reads only base tables and the segments the
/// rule names explicitly; values are bound, never inlined.
pub fn preview(store: &Store, spec: &RuleSpec, as_of: NaiveDateTime) -> Result<Previewed> {
    let checked = am_core::validate::check_rule(spec)?;
    let rules = store.all_rules()?;
    let target = rules.iter().map(|r| r.id).max().unwrap_or(0) + 1;
    let mut all = inputs(&rules)?;
    all.push(RuleInput {
        id: target,
        rule: checked,
    });
    let with_reuse = Planner::new(all.clone(), PlanOptions::default())?.plan_for(&[target])?;
    let direct = Planner::new(all, PlanOptions { reuse: false })?.plan_for(&[target])?;
    let node =
        direct
            .nodes
            .iter()
            .find(|n| n.rule_id == target)
            .ok_or(am_sql::Error::NotFound {
                what: "rule",
                key: format!("#{target}"),
            })?;
    let conn = store.connection()?;
    let mut read = BTreeSet::new();
    segments_read(&node.compute, &mut read);
    let mut missing = Vec::new();
    for id in &read {
        if !table_exists(&conn, &segment_table_name(*id))? {
            missing.push(Problem {
                path: "depends_on".into(),
                message: format!("rule #{id} has no segment yet: refresh it first"),
            });
        }
    }
    if !missing.is_empty() {
        return Err(am_sql::Error::Invalid(ValidationErrors(missing)));
    }
    let ctx = RenderContext {
        as_of,
        aggregates: Aggregates::Standalone,
    };
    let select = render_set(&node.compute, &ctx);
    let audience_size = count(&conn, &select)?;
    let sql = Sqlite.inline(&select);
    let reuse = with_reuse
        .nodes
        .iter()
        .find(|n| n.rule_id == target)
        .and_then(|n| n.reuse.clone());
    Ok(Previewed {
        audience_size,
        explained: explained(with_reuse, as_of),
        target,
        reuse,
        sql,
    })
}

/// Refreshes `rule_id` (and its stale upstream, in plan order) as run `run_id`, marking the
/// run running and then succeeded or failed.
pub fn refresh_run(
    store: &Store,
    run_id: RunId,
    rule_id: RuleId,
    as_of: NaiveDateTime,
) -> Result<()> {
    let as_of = as_of.with_nanosecond(0).unwrap_or(as_of);
    let rules = store.all_rules()?;
    if !rules.iter().any(|r| r.id == rule_id) {
        return Err(am_sql::Error::NotFound {
            what: "rule",
            key: format!("#{rule_id}"),
        });
    }
    let engine = engine_rules(&rules)?;
    let plan = planner(&rules, PlanOptions::default())?.plan_for(&[rule_id])?;
    let mut conn = store.connection()?;
    let segments: BTreeMap<RuleId, Segment> = am_sql::catalog::all_segments(&conn)?
        .into_iter()
        .map(|s| (s.rule_id, s))
        .collect();
    let data_version = am_sql::db::data_version(&conn)?;
    let mut selected = stale_nodes(&plan, &engine, &segments, data_version, as_of);
    selected.insert(rule_id);
    let mut request = RefreshRequest::new(RefreshTargets::Rules(vec![rule_id]), RunTrigger::Api);
    request.as_of = Some(as_of);
    request.runs.insert(rule_id, run_id);
    let targets = BTreeSet::from([rule_id]);
    let report = refresh_plan(
        &mut conn,
        &plan,
        &selected,
        &engine,
        &request,
        &targets,
        as_of,
        &am_sql::NoProgress,
    )?;
    match report.node(rule_id) {
        Some(node) if node.status == NodeStatus::Succeeded => Ok(()),
        Some(node) => Err(am_sql::Error::Refused(
            node.error
                .clone()
                .unwrap_or_else(|| "refresh failed".into()),
        )),
        None => Err(am_sql::Error::Refused("the rule was not refreshed".into())),
    }
}
