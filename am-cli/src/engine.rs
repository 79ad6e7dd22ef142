//! Refresh and explain over a `Store`: plans the stored rules with the am-core planner and
//! runs am-sql's refresh engine on the plan, the way the HTTP server's scheduler does.

use std::collections::{BTreeMap, BTreeSet};

use am_core::plan::Plan;
use am_core::planner::{PlanOptions, Planner, RuleInput};
use am_core::rule::RuleId;
use am_sql::Store;
use am_sql::catalog::Segment;
use am_sql::dialect::Dialect;
use am_sql::dialect::sqlite::Sqlite;
use am_sql::refresh::{
    EngineRule, RefreshReport, RefreshRequest, RefreshTargets, now_as_of, refresh_plan, stale_nodes,
};
use am_sql::render::{Aggregates, RenderContext, render_set};
use am_sql::rules::StoredRule;
use anyhow::Context as _;

/// The planner over every stored rule, and the rules as the engine needs them.
fn plan_inputs(rules: &[StoredRule]) -> anyhow::Result<(Planner, BTreeMap<RuleId, EngineRule>)> {
    let mut inputs = Vec::with_capacity(rules.len());
    let mut engine = BTreeMap::new();
    for r in rules {
        let checked = r
            .checked()
            .with_context(|| format!("stored rule #{} is no longer valid", r.id))?;
        inputs.push(RuleInput {
            id: r.id,
            rule: checked.clone(),
        });
        engine.insert(
            r.id,
            EngineRule {
                id: r.id,
                name: r.spec.rule_name.clone(),
                description: r.spec.description.clone(),
                version: r.version,
                rule: checked,
            },
        );
    }
    let planner = Planner::new(inputs, PlanOptions::default()).context("cannot plan the rules")?;
    Ok((planner, engine))
}

/// Refreshes what `request` asks for, in plan order, reporting progress.
pub fn refresh(
    store: &Store,
    request: &RefreshRequest,
    progress: &dyn am_sql::Progress,
) -> anyhow::Result<RefreshReport> {
    let as_of = request.as_of.unwrap_or_else(now_as_of);
    let rules = store.all_rules().context("cannot read the rules")?;
    let (planner, engine) = plan_inputs(&rules)?;
    let mut conn = store.connection().context("cannot open the database")?;
    let segments: BTreeMap<RuleId, Segment> = am_sql::catalog::all_segments(&conn)
        .context("cannot read the segment catalog")?
        .into_iter()
        .map(|s| (s.rule_id, s))
        .collect();
    let data_version = am_sql::db::data_version(&conn).context("cannot read the data version")?;
    let (plan, selected, targets) = match &request.targets {
        RefreshTargets::All => {
            let plan = planner.plan_all();
            let all: BTreeSet<RuleId> = plan.nodes.iter().map(|n| n.rule_id).collect();
            (plan, all.clone(), all)
        }
        RefreshTargets::Stale => {
            let plan = planner.plan_all();
            let stale = stale_nodes(&plan, &engine, &segments, data_version, as_of);
            (plan, stale.clone(), stale)
        }
        RefreshTargets::Rules(ids) => {
            let plan = planner.plan_for(ids).context("cannot plan the rules")?;
            let mut selected = stale_nodes(&plan, &engine, &segments, data_version, as_of);
            let targets: BTreeSet<RuleId> = ids.iter().copied().collect();
            selected.extend(targets.iter().copied());
            (plan, selected, targets)
        }
    };
    refresh_plan(
        &mut conn, &plan, &selected, &engine, request, &targets, as_of, progress,
    )
    .context("cannot refresh")
}

/// A rule's plan (with everything upstream of it) and the SQL of every node.
pub struct Explained {
    pub plan: Plan,
    pub sql: BTreeMap<RuleId, String>,
}

pub fn explain(store: &Store, rule_id: RuleId) -> anyhow::Result<Explained> {
    let rules = store.all_rules().context("cannot read the rules")?;
    let (planner, _) = plan_inputs(&rules)?;
    let plan = planner
        .plan_for(&[rule_id])
        .context("cannot plan the rule")?;
    let ctx = RenderContext {
        as_of: now_as_of(),
        aggregates: Aggregates::Standalone,
    };
    let sql = plan
        .nodes
        .iter()
        .map(|n| (n.rule_id, Sqlite.inline(&render_set(&n.compute, &ctx))))
        .collect();
    Ok(Explained { plan, sql })
}
