//! `am rules`: add, list, show, edit, delete, explain and validate rules.

use std::path::Path;

use am_core::error::ValidationErrors;
use am_core::rule::{CheckedRule, RuleSpec};
use am_core::validate;
use anyhow::Context as _;
use serde_json::Value as Json;

use super::{Context, read_input};
use crate::cli::RulesCommand;
use crate::exit::Invalid;
use crate::output;

pub fn run(ctx: &Context, cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Validate { file } => validate_file(ctx, &file),
        _ => anyhow::bail!("not wired yet"),
    }
}

/// The name to show for an input: the file, or `<stdin>`.
fn input_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

/// Reads a file as JSON; malformed JSON names the file, line and column.
pub fn read_json(path: &Path) -> anyhow::Result<Json> {
    let text = read_input(path)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", input_name(path)))
}

/// Checks a rule as JSON: the spec as written and its checked form, or every problem.
pub fn check(value: &Json) -> Result<(RuleSpec, CheckedRule), ValidationErrors> {
    let spec = validate::parse_rule(value)?;
    let checked = validate::check_rule(&spec)?;
    Ok((spec, checked))
}

fn validate_file(ctx: &Context, path: &Path) -> anyhow::Result<()> {
    let name = input_name(path);
    let value = read_json(path)?;
    match check(&value) {
        Ok((spec, checked)) => {
            if ctx.json {
                return output::json(&serde_json::json!({
                    "valid": true,
                    "rule_name": spec.rule_name,
                    "problems": [],
                }));
            }
            let mut out = format!("{name}: rule {:?} is valid\n", spec.rule_name);
            if let Some(s) = &checked.schedule {
                out.push_str(&format!("  schedule: {} ({})\n", s.as_str(), s.describe()));
            }
            if !spec.depends_on.is_empty() {
                out.push_str(&format!(
                    "  depends on {} (checked against the database by `am rules add`)\n",
                    super::segments::ids(&spec.depends_on)
                ));
            }
            output::print(&out)
        }
        Err(errors) => {
            if ctx.json {
                output::json(&serde_json::json!({
                    "valid": false,
                    "problems": errors.0,
                }))?;
            } else {
                let mut out = String::new();
                for p in &errors.0 {
                    out.push_str(&format!("{name}: {}: {}\n", p.path, p.message));
                }
                output::print(&out)?;
            }
            Err(Invalid(format!(
                "{name} is not a valid rule ({})",
                output::plural(errors.0.len() as i64, "problem")
            ))
            .into())
        }
    }
}
