//! `am rules explain`: how a rule is computed.

use super::Context;

pub fn run(ctx: &Context, key: &str, dot: bool) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rule = super::rules::resolve(&store, key)?;
    let _ = dot;
    anyhow::bail!(
        "explain is not there yet in this build (am-sql has no `Store::explain`); rule #{} exists",
        rule.id
    )
}
