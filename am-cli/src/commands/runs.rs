//! `am runs`: the run history, as the API's `/api/runs` shows it.
//!
//! Reading runs first fails those whose process is gone, so a run killed with its `am run`
//! reads as failed here rather than running forever.

use am_sql::error::one_line_short;
use am_sql::runs::{Run, RunFilter, RunStatus};
use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Context;
use crate::cli::{RunStatusArg, RunsCommand};
use crate::output::{self, Plain};

pub fn run(ctx: &Context, cmd: RunsCommand) -> anyhow::Result<()> {
    let store = ctx.store()?;
    match cmd {
        RunsCommand::List {
            rule,
            status,
            limit,
        } => {
            let rule_id = match rule {
                Some(key) => Some(super::rules::resolve(&store, &key)?.id),
                None => None,
            };
            let filter = RunFilter {
                rule_id,
                status: status.map(status_of),
                limit: Some(limit),
            };
            let runs = store.list_runs(&filter).context("cannot read runs")?;
            if ctx.json {
                return output::json(&runs);
            }
            if runs.is_empty() {
                return output::print("no runs yet: refresh rules with `am run`\n");
            }
            output::print(&runs_table(&runs))
        }
        RunsCommand::Show { id } => {
            let run = store.run(id).map_err(|e| match e {
                am_sql::Error::NotFound { .. } => {
                    anyhow::anyhow!("no run #{id} (see `am runs list`)")
                }
                other => anyhow::Error::new(other).context(format!("cannot read run #{id}")),
            })?;
            if ctx.json {
                return output::json(&run);
            }
            output::print(&run_text(&run))
        }
    }
}

fn status_of(arg: RunStatusArg) -> RunStatus {
    match arg {
        RunStatusArg::Queued => RunStatus::Queued,
        RunStatusArg::Running => RunStatus::Running,
        RunStatusArg::Succeeded => RunStatus::Succeeded,
        RunStatusArg::Failed => RunStatus::Failed,
    }
}

/// The longest error shown in the list, in characters; `am runs show` has it whole.
const ERROR_CHARS: usize = 80;

fn runs_table(runs: &[Run]) -> String {
    let mut t = Plain::new(&[
        "id", "rule", "status", "trigger", "started", "took", "members", "error",
    ])
    .right(&[0, 5, 6]);
    for r in runs {
        t.row([
            r.id.to_string(),
            rule_of(r),
            r.status.as_str().to_string(),
            r.trigger.as_str().to_string(),
            r.started_at.map_or_else(|| "-".into(), time),
            took(r).unwrap_or_else(|| "-".into()),
            r.row_count.map_or_else(|| "-".into(), output::count),
            r.error
                .as_deref()
                .map_or_else(|| "-".into(), |e| one_line_short(e, ERROR_CHARS)),
        ]);
    }
    t.render()
}

fn run_text(r: &Run) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| {
        out.push_str(&format!("{k:<10} {}\n", output::terminal_safe(&v)));
    };
    field("run", format!("#{}", r.id));
    field("rule", rule_of(r));
    field("status", r.status.as_str().to_string());
    field("trigger", r.trigger.as_str().to_string());
    field("queued", time(r.queued_at));
    if let Some(t) = r.started_at {
        field("started", time(t));
    }
    if let Some(t) = r.finished_at {
        field("finished", time(t));
    }
    if let Some(t) = took(r) {
        field("took", t);
    }
    if let Some(as_of) = r.as_of {
        field(
            "as of",
            format!("{} UTC", as_of.format("%Y-%m-%d %H:%M:%S")),
        );
    }
    if let (Some(n), Some(entered), Some(left)) = (r.row_count, r.entered, r.left) {
        field(
            "members",
            format!(
                "{} ({} entered, {} left)",
                output::count(n),
                output::count(entered),
                output::count(left)
            ),
        );
    }
    if let Some(e) = &r.error {
        field("error", e.clone());
    }
    out
}

fn rule_of(r: &Run) -> String {
    match r.rule_id {
        Some(id) => format!("#{id} {}", r.rule_name),
        None => format!("{} (deleted)", r.rule_name),
    }
}

fn time(t: DateTime<Utc>) -> String {
    format!("{} UTC", t.format("%Y-%m-%d %H:%M:%S%.3f"))
}

/// From start to finish, when the run has both.
fn took(r: &Run) -> Option<String> {
    let d = (r.finished_at? - r.started_at?).to_std().ok()?;
    Some(output::duration(d))
}
