//! `am rules`: add, list, show, edit, delete, explain, preview and validate rules.

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};

use am_core::error::ValidationErrors;
use am_core::rule::{CheckedRule, RuleId, RuleSpec};
use am_core::validate;
use am_sql::Store;
use am_sql::catalog::Segment;
use am_sql::rules::StoredRule;
use anyhow::Context as _;
use serde_json::Value as Json;

use super::{Context, read_input};
use crate::cli::RulesCommand;
use crate::exit::Invalid;
use crate::output::{self, Plain};

pub fn run(ctx: &Context, cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Validate { file } => validate_file(ctx, &file),
        RulesCommand::Add { file } => add(ctx, &file),
        RulesCommand::List => list(ctx),
        RulesCommand::Show { rule } => show(ctx, &rule),
        RulesCommand::Edit { rule, file } => edit(ctx, &rule, file.as_deref()),
        RulesCommand::Delete { rule } => delete(ctx, &rule),
        RulesCommand::Explain { rule, dot } => super::explain::run(ctx, &rule, dot),
        RulesCommand::Preview { file, as_of } => preview(ctx, &file, as_of.as_deref()),
    }
}

/// Finds a rule by id (`7`, `#7`) or name, with a message that says what was asked.
pub fn resolve(store: &Store, key: &str) -> anyhow::Result<StoredRule> {
    store.resolve_rule(key).map_err(|e| match e {
        am_sql::Error::NotFound { .. } => {
            anyhow::anyhow!("no rule with id or name {key:?} (see `am rules list`)")
        }
        other => anyhow::Error::new(other).context(format!("cannot read rule {key:?}")),
    })
}

/// Rule files may name dependencies by rule name as well as by id (`"depends_on": ["Big
/// spenders"]`): names are replaced by the ids of existing rules before the rule is saved.
/// Returns whether anything was replaced.
pub fn resolve_dependency_names(store: &Store, value: &mut Json) -> anyhow::Result<bool> {
    let Some(deps) = value.get_mut("depends_on").and_then(Json::as_array_mut) else {
        return Ok(false);
    };
    let mut changed = false;
    for dep in deps.iter_mut() {
        if let Json::String(name) = dep {
            let rule =
                resolve(store, name).with_context(|| format!("depends_on names rule {name:?}"))?;
            *dep = Json::from(rule.id);
            changed = true;
        }
    }
    Ok(changed)
}

/// Checks a rule file's text as `am rules validate` does (with `store`, looking up the
/// rules `depends_on` names) and returns the JSON text to store: the file's own text when
/// no name was replaced, so the conditions are kept as written. An invalid rule prints
/// every problem on its own line on stderr, prefixed with `name`, and fails with `Invalid`;
/// `outcome` says what did not happen (`no rule was added`).
fn rule_body(store: &Store, name: &str, text: &str, outcome: &str) -> anyhow::Result<String> {
    let mut value: Json =
        serde_json::from_str(text).with_context(|| format!("{name} is not valid JSON"))?;
    let spec = match check(&value, Some(store))? {
        Ok((spec, _)) => spec,
        Err(errors) => return Err(report_problems(name, &errors, outcome)),
    };
    let named = value
        .get("depends_on")
        .and_then(Json::as_array)
        .is_some_and(|deps| deps.iter().any(Json::is_string));
    if !named {
        return Ok(text.to_string());
    }
    value["depends_on"] = Json::from(spec.depends_on);
    serde_json::to_string(&value).context("cannot encode the rule")
}

/// Prints each problem on its own line on stderr, `name: path: message`, and returns the
/// summary error (exit 3).
fn report_problems(name: &str, errors: &ValidationErrors, outcome: &str) -> anyhow::Error {
    let mut err = std::io::stderr().lock();
    for p in &errors.0 {
        let _ = writeln!(err, "{name}: {}: {}", p.path, p.message);
    }
    Invalid(format!(
        "{name} is not a valid rule ({}); {outcome}",
        output::plural(errors.0.len() as i64, "problem")
    ))
    .into()
}

/// A store error on writing a rule: the problems the store found (unknown rule ids) as
/// [`report_problems`] prints them, anything else with `what` as context.
fn write_failed(err: am_sql::Error, name: &str, outcome: &str, what: String) -> anyhow::Error {
    match err {
        am_sql::Error::Invalid(errors) => report_problems(name, &errors, outcome),
        other => anyhow::Error::new(other).context(what),
    }
}

fn add(ctx: &Context, path: &Path) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let name = input_name(path);
    let outcome = "no rule was added";
    let body = rule_body(&store, &name, &read_input(path)?, outcome)?;
    let id = store
        .create_rule_json(&body)
        .map_err(|e| write_failed(e, &name, outcome, format!("cannot add the rule in {name}")))?;
    let rule = store.rule(id).context("cannot read the new rule back")?;
    if ctx.json {
        return output::json(&serde_json::json!({"rule_id": id, "rule_name": rule.spec.rule_name}));
    }
    output::print(&format!(
        "created rule #{id} {:?}; build its segment with `am run {id}`\n",
        rule.spec.rule_name
    ))
}

fn preview(ctx: &Context, path: &Path, as_of: Option<&str>) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let name = input_name(path);
    let body = rule_body(&store, &name, &read_input(path)?, "nothing was previewed")?;
    let spec: RuleSpec = serde_json::from_str(&body).context("cannot read the rule back")?;
    let as_of = as_of.map(super::run::parse_as_of).transpose()?;
    let previewed = store.preview(&spec, None, as_of).map_err(|e| {
        write_failed(
            e,
            &name,
            "nothing was previewed",
            format!("cannot preview {name}"),
        )
    })?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "rule_name": spec.rule_name,
            "audience_size": previewed.audience_size,
            "reuses": previewed.reuse,
            "plan": {"text": previewed.plan.plan_text, "nodes": previewed.plan.nodes},
            "sql": previewed.sql,
        }));
    }
    let mut out = format!(
        "{:?} would have {} now (nothing saved)
",
        spec.rule_name,
        output::plural(previewed.audience_size, "member")
    );
    if let Some(reuse) = &previewed.reuse {
        out.push_str(&format!(
            "reuse: {}
",
            reuse.reason
        ));
    }
    out.push_str(&format!(
        "
plan
{}",
        previewed.plan.plan_text
    ));
    out.push_str(
        "
sql
",
    );
    for line in previewed.sql.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    output::print(&out)
}

/// A rule for scripts: the rule as written plus bookkeeping and its segment, flat like the
/// API's view.
fn rule_json(rule: &StoredRule, segment: Option<&Segment>) -> Json {
    serde_json::json!({
        "id": rule.id,
        "rule_name": rule.spec.rule_name,
        "description": rule.spec.description,
        "conditions": rule.spec.conditions,
        "schedule": rule.spec.schedule,
        "start_date": rule.spec.start_date,
        "end_date": rule.spec.end_date,
        "depends_on": rule.spec.depends_on,
        "operation": rule.spec.operation,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
        "version": rule.version,
        "segment": segment.map(|s| serde_json::json!({
            "id": s.id,
            "row_count": s.row_count,
            "last_refreshed_at": s.last_refreshed_at,
        })),
    })
}

fn segments_by_rule(store: &Store) -> anyhow::Result<HashMap<RuleId, Segment>> {
    Ok(store
        .all_segments()
        .context("cannot read the segment catalog")?
        .into_iter()
        .map(|s| (s.rule_id, s))
        .collect())
}

/// How a rule is defined, in a few words: its operation over dependencies, or conditions.
fn kind(spec: &RuleSpec) -> String {
    if spec.depends_on.is_empty() {
        // `[]`, or no conditions in a rule saved before they were required.
        let everyone = spec.conditions.is_null() || spec.conditions == Json::Array(Vec::new());
        return if everyone { "every user" } else { "conditions" }.into();
    }
    let op = spec
        .operation
        .as_deref()
        .filter(|o| !o.is_empty())
        .unwrap_or("INTERSECTION");
    let deps = super::segments::ids(&spec.depends_on);
    if spec.conditions.is_null() {
        format!("{op} {deps}")
    } else {
        format!("{op} {deps} + conditions")
    }
}

fn list(ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rules = store.all_rules().context("cannot read the rules")?;
    let segments = segments_by_rule(&store)?;
    if ctx.json {
        let items: Vec<Json> = rules
            .iter()
            .map(|r| rule_json(r, segments.get(&r.id)))
            .collect();
        return output::json(&items);
    }
    if rules.is_empty() {
        return output::print(
            "no rules yet: add one with `am rules add FILE.json` (or try `am demo`)\n",
        );
    }
    let mut t = Plain::new(&[
        "id",
        "name",
        "defined by",
        "schedule",
        "members",
        "refreshed",
    ])
    .right(&[0, 4]);
    for r in &rules {
        let seg = segments.get(&r.id);
        t.row([
            r.id.to_string(),
            r.spec.rule_name.clone(),
            kind(&r.spec),
            r.spec
                .schedule
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into()),
            seg.map_or_else(|| "-".into(), |s| output::count(s.row_count)),
            seg.map_or_else(
                || "never".into(),
                |s| s.last_refreshed_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
        ]);
    }
    output::print(&t.render())
}

fn show(ctx: &Context, key: &str) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rule = resolve(&store, key)?;
    let segments = segments_by_rule(&store)?;
    let segment = segments.get(&rule.id);
    if ctx.json {
        return output::json(&rule_json(&rule, segment));
    }
    let spec = &rule.spec;
    let dependants = store
        .dependants_of(rule.id)
        .context("cannot read the rules that use it")?;
    let mut out = String::new();
    let mut field =
        |k: &str, v: String| out.push_str(&format!("{k:<13} {}\n", output::terminal_safe(&v)));
    field("rule", format!("#{} {}", rule.id, spec.rule_name));
    if let Some(d) = spec.description.as_ref().filter(|d| !d.is_empty()) {
        field("description", d.clone());
    }
    field("defined by", kind(spec));
    match spec.schedule.as_deref().filter(|s| !s.is_empty()) {
        Some(line) => match am_core::schedule::Schedule::parse(line) {
            Ok(s) => {
                let next = s
                    .next_after(chrono::Utc::now())
                    .map(|t| format!(", next at {} UTC", t.format("%Y-%m-%d %H:%M")))
                    .unwrap_or_default();
                let words = s.describe();
                field(
                    "schedule",
                    format!("{line} ({}{next})", words.trim_end_matches('.')),
                );
            }
            Err(e) => field("schedule", format!("{line} ({e})")),
        },
        None => field("schedule", "manual only".into()),
    }
    let open = |d: Option<&str>| {
        d.filter(|d| !d.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| "(open)".into())
    };
    let window = match (&spec.start_date, &spec.end_date) {
        (None, None) => "all time".to_string(),
        (s, e) => format!("{} .. {}", open(s.as_deref()), open(e.as_deref())),
    };
    field("window", window);
    field(
        "segment",
        match segment {
            Some(s) => format!(
                "{} members, refreshed {} UTC",
                output::count(s.row_count),
                s.last_refreshed_at.format("%Y-%m-%d %H:%M:%S")
            ),
            None => format!("not built yet (`am run {}`)", rule.id),
        },
    );
    if !dependants.is_empty() {
        field(
            "used by",
            dependants
                .iter()
                .map(|(id, name)| format!("#{id} {name}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    field(
        "version",
        format!(
            "{} (updated {} UTC)",
            rule.version,
            rule.updated_at.format("%Y-%m-%d %H:%M:%S")
        ),
    );
    if !spec.conditions.is_null() {
        out.push_str("conditions\n");
        let pretty =
            serde_json::to_string_pretty(&spec.conditions).context("cannot encode conditions")?;
        for line in pretty.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    output::print(&out)
}

fn edit(ctx: &Context, key: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rule = resolve(&store, key)?;
    let outcome = format!("rule #{} was not changed", rule.id);
    let (name, text) = match file {
        Some(path) => (input_name(path), read_input(path)?),
        None => {
            let Some(edited) = edit_in_editor(&rule)? else {
                return output::print("no change\n");
            };
            ("the edited rule".to_string(), edited)
        }
    };
    let body = rule_body(&store, &name, &text, &outcome)?;
    store.update_rule_json(rule.id, &body).map_err(|e| {
        write_failed(
            e,
            &name,
            &outcome,
            format!("cannot update rule #{}", rule.id),
        )
    })?;
    if ctx.json {
        return output::json(
            &serde_json::json!({"rule_id": rule.id, "message": "Rule updated successfully"}),
        );
    }
    output::print(&format!(
        "updated rule #{}; its segment is stale until `am run {}`\n",
        rule.id, rule.id
    ))
}

/// Opens `$VISUAL` / `$EDITOR` (else `vi`) on the rule's JSON; `None` when nothing changed.
/// Only on a terminal: a script would hang waiting for an editor it cannot see.
fn edit_in_editor(rule: &StoredRule) -> anyhow::Result<Option<String>> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        anyhow::bail!(
            "no FILE given and not on a terminal: pass a rule file, or - to read standard input"
        );
    }
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let original =
        serde_json::to_string_pretty(&rule.spec).context("cannot encode the rule")? + "\n";
    let path: PathBuf =
        std::env::temp_dir().join(format!("am-rule-{}-{}.json", rule.id, std::process::id()));
    std::fs::write(&path, &original).with_context(|| format!("cannot write {}", path.display()))?;
    // The editor setting may carry arguments (`code --wait`), so it goes through the shell.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("cannot start the editor {editor:?}"));
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    let status = status?;
    if !status.success() {
        anyhow::bail!("the editor {editor:?} exited with {status}; rule not changed");
    }
    let edited = edited.context("cannot read the edited rule back")?;
    Ok((edited.trim() != original.trim()).then_some(edited))
}

fn delete(ctx: &Context, key: &str) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let rule = resolve(&store, key)?;
    store
        .delete_rule(rule.id)
        .with_context(|| format!("cannot delete rule #{}", rule.id))?;
    if ctx.json {
        return output::json(
            &serde_json::json!({"rule_id": rule.id, "message": "Rule deleted successfully"}),
        );
    }
    output::print(&format!(
        "deleted rule #{} {:?} and its segment\n",
        rule.id, rule.spec.rule_name
    ))
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

/// Checks a rule file's JSON, the one check of `validate`, `add` and `edit`: the spec (rule
/// names in `depends_on` replaced by ids) and its checked form, or every problem. With a
/// store, names are looked up there; without one (`am rules validate` needs no database)
/// each name stands for a rule that `am rules add` will look up. Fails only if the store
/// cannot be read.
pub fn check(
    value: &Json,
    store: Option<&Store>,
) -> anyhow::Result<Result<(RuleSpec, CheckedRule), ValidationErrors>> {
    let mut failure = None;
    let mut names: Vec<String> = Vec::new();
    let mut lookup = |name: &str| -> Result<RuleId, String> {
        let Some(store) = store else {
            if names.iter().any(|n| n == name) {
                return Err(format!("rule {name:?} is listed more than once"));
            }
            names.push(name.to_string());
            // Stand-in ids no rule has, one per name.
            return Ok(RuleId::MIN + names.len() as RuleId);
        };
        match store.resolve_rule(name) {
            Ok(rule) => Ok(rule.id),
            Err(am_sql::Error::NotFound { .. }) => Err(format!(
                "no rule with id or name {name:?} (see `am rules list`)"
            )),
            Err(e) => {
                let message = format!("cannot look up rule {name:?}: {e}");
                failure =
                    Some(anyhow::Error::new(e).context(format!("cannot look up rule {name:?}")));
                Err(message)
            }
        }
    };
    let checked = validate::parse_rule_with(value, Some(&mut lookup))
        .and_then(|spec| validate::check_rule(&spec).map(|checked| (spec, checked)));
    match failure {
        Some(e) => Err(e),
        None => Ok(checked),
    }
}

/// `depends_on` as the file wrote it, ids and names: `#4, "Big spenders"`.
fn written_dependencies(value: &Json) -> String {
    let deps = value.get("depends_on").and_then(Json::as_array);
    deps.into_iter()
        .flatten()
        .map(|d| match d {
            Json::String(name) => format!("{name:?}"),
            other => format!("#{other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_file(ctx: &Context, path: &Path) -> anyhow::Result<()> {
    let name = input_name(path);
    let value = read_json(path)?;
    match check(&value, None)? {
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
                    written_dependencies(&value)
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
