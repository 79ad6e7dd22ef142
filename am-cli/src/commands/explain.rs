//! `am rules explain`: how a rule is computed: the plan in stages, the reuse the
//! DependencyFinder found with its reason, and the SQL of every node (`--dot`: Graphviz).

use super::Context;
use crate::engine;
use crate::output;

pub fn run(ctx: &Context, key: &str, dot: bool) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rule = super::rules::resolve(&store, key)?;
    let explained = engine::explain(&store, rule.id)?;
    if dot {
        return output::print(&explained.plan.to_dot());
    }
    if ctx.json {
        let nodes: Vec<_> = explained
            .plan
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "rule_id": n.rule_id,
                    "rule_name": n.rule_name,
                    "upstream": n.upstream,
                    "reuse": n.reuse,
                    "sql": explained.sql.get(&n.rule_id),
                })
            })
            .collect();
        return output::json(&serde_json::json!({
            "text": explained.plan.to_string(),
            "dot": explained.plan.to_dot(),
            "nodes": nodes,
        }));
    }
    let mut out = format!(
        "plan for #{} {:?}\n{}",
        rule.id, rule.spec.rule_name, explained.plan
    );
    for n in &explained.plan.nodes {
        out.push_str(&format!("\nsql of #{} {}\n", n.rule_id, n.rule_name));
        for line in explained
            .sql
            .get(&n.rule_id)
            .map_or("", String::as_str)
            .lines()
        {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    output::print(&out)
}
