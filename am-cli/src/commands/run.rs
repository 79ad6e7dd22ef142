//! `am run`: refresh segments with a progress bar, then a table of what happened.

use std::collections::{BTreeMap, BTreeSet};

use am_core::expr::Timestamp;
use am_core::rule::RuleId;
use am_sql::Store;
use am_sql::error::one_line_short;
use am_sql::refresh::{NodeStatus, RefreshMode, RefreshReport, RefreshRequest, RefreshTargets};
use am_sql::runs::RunTrigger;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::Context;
use crate::cli::RunArgs;
use crate::output::{self, Plain};
use crate::progress::Bars;

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<()> {
    if args.rules.is_empty() && !args.all && !args.stale {
        use clap::CommandFactory as _;
        crate::cli::Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "name the rules to refresh (ids or names; `+RULE` with what it is built from, \
                 `RULE+` with what is built from it), or refresh every rule with `--all` or \
                 only the stale ones with `--stale`",
            )
            .exit()
    }
    let store = ctx.store()?;
    let targets = if args.all {
        RefreshTargets::All
    } else if args.stale {
        RefreshTargets::Stale
    } else {
        RefreshTargets::Rules(selected(&store, &args.rules)?)
    };
    let mut request = RefreshRequest::new(targets, RunTrigger::Cli);
    request.as_of = args.as_of.as_deref().map(parse_as_of).transpose()?;
    if args.full {
        request.mode = RefreshMode::Full;
    }
    let report = refresh(&store, request)?;
    if ctx.json {
        output::json(&report_json(&report)?)?;
    } else {
        output::print(&report_text(&report))?;
    }
    let failed = report
        .nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Succeeded)
        .count();
    if failed > 0 {
        anyhow::bail!(
            "{} of {} did not refresh",
            failed,
            output::plural(report.nodes.len() as i64, "rule")
        );
    }
    Ok(())
}

/// The rules `am run RULE...` names, with dbt's graph selectors: `+RULE` adds every rule
/// RULE is built from (its `depends_on`, all the way up), `RULE+` every rule built from it
/// (all the way down), `+RULE+` both. A rule whose own name starts or ends with `+` is that
/// rule: a selector is read only when no rule has the name as written.
fn selected(store: &Store, keys: &[String]) -> anyhow::Result<Vec<RuleId>> {
    let mut chosen = BTreeSet::new();
    // Built on the first selector: rule -> what it is built from, and the other way round.
    let mut graph: Option<(Edges, Edges)> = None;
    for key in keys {
        match store.resolve_rule(key) {
            Ok(rule) => {
                chosen.insert(rule.id);
                continue;
            }
            Err(am_sql::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read rule {key:?}")));
            }
        }
        let key = key.trim();
        let (up, rest) = key.strip_prefix('+').map_or((false, key), |r| (true, r));
        let (down, name) = rest.strip_suffix('+').map_or((false, rest), |r| (true, r));
        if name.trim().is_empty() {
            anyhow::bail!(
                "{key:?} names no rule: write `+RULE` (with what it is built from) or `RULE+` \
                 (with what is built from it)"
            );
        }
        let rule = super::rules::resolve(store, name)?;
        chosen.insert(rule.id);
        if !(up || down) {
            continue;
        }
        let (built_from, built_into) = match &mut graph {
            Some(g) => &*g,
            None => &*graph.insert(dependency_edges(store)?),
        };
        if up {
            reach(rule.id, built_from, &mut chosen);
        }
        if down {
            reach(rule.id, built_into, &mut chosen);
        }
    }
    Ok(chosen.into_iter().collect())
}

type Edges = BTreeMap<RuleId, Vec<RuleId>>;

/// Every rule's `depends_on`, and for every rule the rules whose `depends_on` names it.
fn dependency_edges(store: &Store) -> anyhow::Result<(Edges, Edges)> {
    let mut built_from = Edges::new();
    let mut built_into = Edges::new();
    for rule in store.all_rules()? {
        for &dep in &rule.spec.depends_on {
            built_into.entry(dep).or_default().push(rule.id);
        }
        built_from.insert(rule.id, rule.spec.depends_on);
    }
    Ok((built_from, built_into))
}

/// Adds every rule reachable from `from` along `edges` to `out`.
fn reach(from: RuleId, edges: &Edges, out: &mut BTreeSet<RuleId>) {
    let mut todo = vec![from];
    let mut seen = BTreeSet::from([from]);
    while let Some(id) = todo.pop() {
        for &n in edges.get(&id).into_iter().flatten() {
            if seen.insert(n) {
                out.insert(n);
                todo.push(n);
            }
        }
    }
}

/// Refreshes with progress bars; shared with `am demo`.
pub fn refresh(store: &Store, request: RefreshRequest) -> anyhow::Result<RefreshReport> {
    let bars = Bars::new();
    store.refresh(&request, &bars).context("cannot refresh")
}

/// The report as JSON, with `as_of` in UTC with a `Z` like every other timestamp.
pub fn report_json(report: &RefreshReport) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(report).context("cannot write the report as JSON")?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "as_of".into(),
            report.as_of.format("%Y-%m-%dT%H:%M:%SZ").to_string().into(),
        );
    }
    Ok(value)
}

/// The result table, with a line saying what was refreshed as of when.
pub fn report_text(report: &RefreshReport) -> String {
    if report.nodes.is_empty() {
        return "nothing to refresh: every segment is fresh\n".into();
    }
    let names: std::collections::HashMap<_, _> = report
        .nodes
        .iter()
        .map(|n| (n.rule_id, n.rule_name.as_str()))
        .collect();
    let mut t = Plain::new(&[
        "id",
        "rule",
        "members",
        "entered",
        "left",
        "time",
        "reused from",
    ])
    .right(&[0, 2, 3, 4, 5]);
    let opt = |v: Option<i64>| v.map_or_else(|| "-".into(), output::count);
    for n in &report.nodes {
        let members = match n.status {
            NodeStatus::Succeeded => opt(n.row_count),
            NodeStatus::Failed => "failed".into(),
            NodeStatus::Skipped => "skipped".into(),
        };
        let reused = if n.reused_from.is_empty() {
            "-".to_string()
        } else {
            n.reused_from
                .iter()
                .map(|id| match names.get(id) {
                    Some(name) => format!("#{id} {name}"),
                    None => format!("#{id}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        t.row([
            n.rule_id.to_string(),
            n.rule_name.clone(),
            members,
            opt(n.entered),
            opt(n.left),
            output::duration(n.duration),
            reused,
        ]);
    }
    let mut out = t.render();
    for n in &report.nodes {
        if let Some(error) = &n.error {
            out.push_str(&format!(
                "#{} {}: {}\n",
                n.rule_id,
                output::terminal_safe(&n.rule_name),
                output::terminal_safe(&one_line_short(error, ERROR_CHARS))
            ));
        }
    }
    let total = report.nodes.len();
    let count = |status| report.nodes.iter().filter(|n| n.status == status).count();
    let (succeeded, failed, skipped) = (
        count(NodeStatus::Succeeded),
        count(NodeStatus::Failed),
        count(NodeStatus::Skipped),
    );
    let when = report.as_of.format("%Y-%m-%d %H:%M:%S");
    if succeeded == total {
        out.push_str(&format!(
            "refreshed {} as of {when} UTC\n",
            output::plural(total as i64, "segment")
        ));
    } else {
        let mut not = Vec::new();
        if failed > 0 {
            not.push(format!("{} failed", output::count(failed as i64)));
        }
        if skipped > 0 {
            not.push(format!("{} skipped", output::count(skipped as i64)));
        }
        out.push_str(&format!(
            "refreshed {} of {} as of {when} UTC; {}\n",
            output::count(succeeded as i64),
            output::plural(total as i64, "segment"),
            not.join(", ")
        ));
    }
    let updated = report.nodes.iter().filter(|n| n.incremental).count();
    if let (true, Some(affected)) = (updated > 0, report.affected_users) {
        let rebuilt = match total - updated {
            0 => String::new(),
            n => format!("; rebuilt {}", output::count(n as i64)),
        };
        out.push_str(&format!(
            "updated {} from the {} whose data or windows changed{rebuilt}\n",
            output::plural(updated as i64, "segment"),
            output::plural(affected, "user"),
        ));
    }
    if total > 0 {
        let shared = if report.engine == "spark" {
            "to reach Spark and its data"
        } else {
            "for the aggregates the rules share"
        };
        out.push_str(&format!(
            "took {}: {} {shared}, then each segment's own build and swap (TIME)\n",
            output::duration(report.elapsed),
            output::duration(report.aggregates),
        ));
    }
    out
}

/// The longest error shown for a rule in the result table, in characters.
const ERROR_CHARS: usize = 200;

/// `YYYY-MM-DD` (the end of that day), `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` (UTC),
/// or RFC 3339 with an offset.
pub fn parse_as_of(text: &str) -> anyhow::Result<Timestamp> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(end) = d.and_hms_opt(23, 59, 59)
    {
        return Ok(end);
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(ts);
        }
    }
    if let Ok(ts) = DateTime::parse_from_rfc3339(t) {
        return Ok(ts.naive_utc());
    }
    anyhow::bail!(
        "--as-of {text:?} is not a time: use YYYY-MM-DD, YYYY-MM-DD HH:MM:SS (UTC) or RFC 3339"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use am_sql::refresh::NodeOutcome;

    fn node(id: i64, status: NodeStatus, error: Option<String>) -> NodeOutcome {
        let ok = status == NodeStatus::Succeeded;
        NodeOutcome {
            rule_id: id,
            rule_name: format!("Rule {id}"),
            status,
            row_count: ok.then_some(10),
            entered: ok.then_some(10),
            left: ok.then_some(0),
            duration: std::time::Duration::from_millis(5),
            reused_from: vec![],
            error,
            run_id: None,
            incremental: false,
        }
    }

    #[test]
    fn failures_are_short_one_line_and_not_counted_as_refreshed() {
        let long = format!(
            "no such column: x in SELECT\n{}",
            "\"user_id\", ".repeat(10_000)
        );
        let report = RefreshReport {
            as_of: parse_as_of("2025-06-30 12:00:00").expect("time"),
            engine: "sqlite".into(),
            nodes: vec![
                node(1, NodeStatus::Succeeded, None),
                node(2, NodeStatus::Failed, Some(long)),
                node(
                    3,
                    NodeStatus::Skipped,
                    Some("upstream rule #2 failed".into()),
                ),
            ],
            affected_users: None,
            aggregates: std::time::Duration::from_millis(300),
            elapsed: std::time::Duration::from_millis(340),
        };
        let text = report_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        let error = lines[4];
        assert!(error.starts_with("#2 Rule 2: no such column: x in SELECT \"user_id\", "));
        assert!(error.ends_with('…'), "{error}");
        assert_eq!(error.chars().count(), "#2 Rule 2: ".len() + ERROR_CHARS + 1);
        assert_eq!(lines[5], "#3 Rule 3: upstream rule #2 failed");
        assert_eq!(
            lines[6],
            "refreshed 1 of 3 segments as of 2025-06-30 12:00:00 UTC; 1 failed, 1 skipped"
        );
        assert_eq!(
            lines[7],
            "took 340ms: 300ms for the aggregates the rules share, then each segment's own build and swap (TIME)"
        );

        let all = RefreshReport {
            nodes: vec![node(1, NodeStatus::Succeeded, None)],
            ..report
        };
        assert!(report_text(&all).contains("refreshed 1 segment as of 2025-06-30 12:00:00 UTC\n"));
    }

    #[test]
    fn as_of_accepts_dates_times_and_rfc3339() {
        let at = |s: &str| {
            parse_as_of(s)
                .map(|t| t.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(at("2025-06-30").as_deref(), Ok("2025-06-30 23:59:59"));
        assert_eq!(
            at("2025-06-30 08:15:00").as_deref(),
            Ok("2025-06-30 08:15:00")
        );
        assert_eq!(
            at("2025-06-30T08:15:00").as_deref(),
            Ok("2025-06-30 08:15:00")
        );
        assert_eq!(
            at("2025-06-30T10:15:00+02:00").as_deref(),
            Ok("2025-06-30 08:15:00")
        );
        assert_eq!(
            at("yesterday"),
            Err("--as-of \"yesterday\" is not a time: use YYYY-MM-DD, YYYY-MM-DD HH:MM:SS (UTC) or RFC 3339".into())
        );
    }
}
