//! `am rules explain`: how a rule is computed: the plan in stages, the reuse the
//! DependencyFinder found with its reason, and the SQL of every node (`--dot`: Graphviz).

use anyhow::Context as _;

use super::Context;
use crate::output;

pub fn run(ctx: &Context, key: &str, dot: bool) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rule = super::rules::resolve(&store, key)?;
    let explained = store.explain(rule.id).context("cannot plan the rule")?;
    if dot {
        return output::print(&explained.dot);
    }
    if ctx.json {
        return output::json(&serde_json::json!({
            "text": explained.plan_text,
            "dot": explained.dot,
            "nodes": explained.nodes,
        }));
    }
    let mut out = format!(
        "plan for #{} {:?}\n{}",
        rule.id, rule.spec.rule_name, explained.plan_text
    );
    for n in &explained.nodes {
        let name = output::terminal_safe(&n.rule_name);
        out.push_str(&format!("\nsql of #{} {name}\n", n.rule_id));
        for line in n.sql.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    output::print(&out)
}
