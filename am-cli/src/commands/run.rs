//! `am run`: refresh segments with a progress bar, then a table of what happened.

use am_core::expr::Timestamp;
use am_sql::Store;
use am_sql::refresh::{NodeStatus, RefreshReport, RefreshRequest, RefreshTargets};
use am_sql::runs::RunTrigger;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::Context;
use crate::cli::RunArgs;
use crate::output::{self, Plain};
use crate::progress::Bars;

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let targets = if args.all {
        RefreshTargets::All
    } else if args.stale {
        RefreshTargets::Stale
    } else {
        let mut ids = Vec::new();
        for key in &args.rules {
            ids.push(super::rules::resolve(&store, key)?.id);
        }
        RefreshTargets::Rules(ids)
    };
    let mut request = RefreshRequest::new(targets, RunTrigger::Cli);
    request.as_of = args.as_of.as_deref().map(parse_as_of).transpose()?;
    let report = refresh(&store, request)?;
    if ctx.json {
        output::json(&report)?;
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

/// Refreshes with progress bars; shared with `am demo`.
pub fn refresh(store: &Store, request: RefreshRequest) -> anyhow::Result<RefreshReport> {
    let bars = Bars::new();
    store.refresh(&request, &bars).context("cannot refresh")
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
    for n in report.nodes.iter().filter(|n| n.error.is_some()) {
        out.push_str(&format!(
            "#{} {}: {}\n",
            n.rule_id,
            n.rule_name,
            n.error.as_deref().unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "refreshed {} as of {} UTC\n",
        output::plural(report.nodes.len() as i64, "segment"),
        report.as_of.format("%Y-%m-%d %H:%M:%S")
    ));
    out
}

/// `YYYY-MM-DD` (the end of that day), `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` (UTC),
/// or RFC 3339 with an offset.
pub fn parse_as_of(text: &str) -> anyhow::Result<Timestamp> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(end) = d.and_hms_opt(23, 59, 59) {
            return Ok(end);
        }
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
