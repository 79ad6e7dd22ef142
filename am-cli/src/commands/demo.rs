//! `am demo`: the one-command tour. Generates a realistic dataset, creates example rules
//! that show off the condition language, refreshes them and prints the segments.
//!
//! The demo writes to the `--db` database. It replaces data only in a new or empty database
//! or one a previous demo made (every rule is one of the demo's); a database holding anything
//! else is left alone.

use std::time::Instant;

use am_sql::Store;
use am_sql::datagen::GenerateOptions;
use am_sql::refresh::{RefreshRequest, RefreshTargets};
use am_sql::runs::RunTrigger;
use anyhow::Context as _;
use serde_json::Value as Json;

use super::Context;
use crate::cli::DemoArgs;
use crate::output;

/// The example rules; `depends_on` names rules created before them.
const RULES: &str = include_str!("../../demo/rules.json");

/// The example rules as JSON values, in creation order.
pub fn demo_rules() -> anyhow::Result<Vec<Json>> {
    serde_json::from_str(RULES).context("the built-in demo rules are malformed")
}

fn rule_names(rules: &[Json]) -> Vec<&str> {
    rules
        .iter()
        .filter_map(|r| r.get("rule_name").and_then(Json::as_str))
        .collect()
}

pub fn run(ctx: &Context, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let rules = demo_rules()?;
    let location = ctx.location();
    let store = Store::open(location.clone())
        .with_context(|| format!("cannot open database {location}"))?;
    let replace = clear_previous_demo(ctx, &store, &rules)?;
    let say = |line: String| -> anyhow::Result<()> {
        if ctx.json {
            Ok(())
        } else {
            output::print(&format!("{line}\n"))
        }
    };

    say(format!(
        "Generating {} and {} into {} ...",
        output::plural(args.users as i64, "user"),
        output::plural(args.transactions as i64, "transaction"),
        ctx.location()
    ))?;
    let options = GenerateOptions {
        users: args.users,
        transactions: args.transactions,
        seed: args.seed,
        end: chrono::Utc::now().date_naive(),
        days: 365,
        replace,
    };
    let generated = super::data::run_generate(&store, &options)?;
    say(format!("  {}", super::data::generate_summary(&generated)))?;

    say(format!("Creating {} example rules ...", rules.len()))?;
    let mut created = Vec::with_capacity(rules.len());
    for rule in &rules {
        let mut rule = rule.clone();
        super::rules::resolve_dependency_names(&store, &mut rule)?;
        let name = rule
            .get("rule_name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let body = serde_json::to_string(&rule).context("cannot encode a demo rule")?;
        let id = store
            .create_rule_json(&body)
            .with_context(|| format!("cannot create the demo rule {name:?}"))?;
        created.push((id, name));
    }

    say("Refreshing every segment ...".into())?;
    let report = super::run::refresh(
        &store,
        RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli),
    )?;
    if ctx.json {
        let refresh = super::run::report_json(&report)?;
        return output::json(&serde_json::json!({
            "database": ctx.location().to_string(),
            "generated": {
                "users": generated.users,
                "credit_card_transactions": generated.credit_card_transactions,
                "upi_transactions": generated.upi_transactions,
            },
            "rules": created.iter().map(|(id, name)| serde_json::json!({"id": id, "rule_name": name})).collect::<Vec<_>>(),
            "refresh": refresh,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
    }
    output::print(&format!("\n{}", super::run::report_text(&report)))?;
    let reused = report
        .nodes
        .iter()
        .filter(|n| !n.reused_from.is_empty())
        .count();
    // What the finder found can be more than a refresh read: a large segment costs more to
    // read member by member than the rule's own scan of the shared aggregates.
    let found = store
        .rule_set()
        .ok()
        .and_then(|set| set.reuses.as_ref().ok().map(|r| r.len()))
        .unwrap_or(reused);
    let skipped = if found > reused {
        format!(
            "\nIt found {found}; for the other {}, reading the segment costs more than their own condition, so the refresh used that.",
            found - reused
        )
    } else {
        String::new()
    };
    let db_flag = if ctx.db == std::path::Path::new("audience.db") {
        String::new()
    } else {
        format!(" --db {}", shell_word(&ctx.location().to_string()))
    };
    let next = [
        (
            format!("am{db_flag} serve"),
            "then open http://127.0.0.1:8080",
        ),
        (
            format!("am{db_flag} rules explain \"Tier 1 big spenders\""),
            "how a rule is computed, with its SQL",
        ),
        (
            format!("am{db_flag} segments sample \"UPI power users\""),
            "a few members",
        ),
    ];
    let width = next.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out = format!(
        "\n{reused} of {} were answered from other segments by the DependencyFinder (REUSED FROM).{skipped}\n\
         Demo finished in {}.\n\nNext:\n",
        output::plural(report.nodes.len() as i64, "segment"),
        output::duration(started.elapsed()),
    );
    for (cmd, what) in &next {
        out.push_str(&format!("  {cmd:<width$}   {what}\n"));
    }
    output::print(&out)?;
    if !report.succeeded() {
        anyhow::bail!("some demo segments did not refresh");
    }
    Ok(())
}

/// `text` as one shell word: quoted when it holds anything a shell would act on (a URI's
/// `&` and `?`, spaces).
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:@=,+%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Decides whether the demo may write here: `Ok(false)` for an empty database, `Ok(true)`
/// (after deleting the old demo rules) for a previous demo's, an error for anything else.
fn clear_previous_demo(ctx: &Context, store: &Store, demo: &[Json]) -> anyhow::Result<bool> {
    let names = rule_names(demo);
    let existing = store.all_rules().context("cannot read the rules")?;
    let users = store
        .summary()
        .context("cannot read the users table")?
        .total_users;
    if existing.is_empty() && users == 0 {
        return Ok(false);
    }
    let all_demo = !existing.is_empty()
        && existing
            .iter()
            .all(|r| names.contains(&r.spec.rule_name.as_str()));
    if !all_demo {
        anyhow::bail!(
            "{} already holds other data ({}, {}); run the demo in its own database: am --db demo.db demo",
            ctx.location(),
            output::plural(existing.len() as i64, "rule"),
            output::plural(users, "user")
        );
    }
    // Dependants have larger ids than what they depend on, so newest first never trips the
    // "still used by" check.
    for rule in existing.iter().rev() {
        store
            .delete_rule(rule.id)
            .with_context(|| format!("cannot delete the old demo rule #{}", rule.id))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_single_shell_words() {
        assert_eq!(super::shell_word("/tmp/a.db"), "/tmp/a.db");
        assert_eq!(
            super::shell_word("postgres://am@/demo?host=/tmp/pg&port=5499"),
            "'postgres://am@/demo?host=/tmp/pg&port=5499'"
        );
        assert_eq!(super::shell_word("it's.db"), "'it'\\''s.db'");
    }

    use super::*;

    #[test]
    fn demo_rules_are_valid_and_show_off_the_language() {
        let rules = demo_rules().expect("demo rules parse");
        let names = rule_names(&rules);
        assert_eq!(names.len(), rules.len(), "every demo rule has a name");
        for rule in &rules {
            // Names in depends_on become ids at creation; check the rest here.
            let mut rule = rule.clone();
            let deps = rule
                .get("depends_on")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for dep in &deps {
                let dep = dep.as_str().expect("demo dependencies are names");
                let at = names.iter().position(|n| *n == dep).expect("known name");
                let me = names
                    .iter()
                    .position(|n| Some(*n) == rule.get("rule_name").and_then(Json::as_str))
                    .expect("own name");
                assert!(at < me, "{dep} is created before its dependant");
            }
            if let Some(d) = rule.get_mut("depends_on") {
                *d = Json::from((1..=deps.len() as i64).collect::<Vec<_>>());
            }
            let checked = super::super::rules::check(&rule, None).expect("no store to read");
            if let Err(e) = checked {
                panic!("{:?} is invalid: {e}", rule.get("rule_name"));
            }
        }
        let ops: Vec<&str> = rules
            .iter()
            .filter_map(|r| r.get("operation").and_then(Json::as_str))
            .collect();
        for op in ["INTERSECTION", "UNION", "DIFFERENCE"] {
            assert!(ops.contains(&op), "the demo uses {op}");
        }
        assert!(RULES.contains("\"last_days\": 30"));
        assert!(RULES.contains("\"source\": \"upi\""));
    }
}
