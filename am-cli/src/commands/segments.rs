//! `am segments`: list, show, sample, export and diff the built segments.
//!
//! A segment is named by its rule (id or name): each rule has at most one segment, and the
//! rule is what people know.

use std::fs::File;
use std::io::{BufWriter, Write};

use am_sql::Store;
use am_sql::catalog::Segment;
use anyhow::Context as _;

use super::Context;
use crate::cli::{ExportFormat, SegmentsCommand};
use crate::output::{self, Plain};

pub fn run(ctx: &Context, cmd: SegmentsCommand) -> anyhow::Result<()> {
    let store = ctx.store()?;
    match cmd {
        SegmentsCommand::List => list(ctx, &store),
        SegmentsCommand::Show { rule } => show(ctx, &store, &rule),
        SegmentsCommand::Sample { rule, limit } => sample(ctx, &store, &rule, limit),
        SegmentsCommand::Export {
            rule,
            format,
            output,
        } => export(&store, &rule, format, output.as_deref()),
        SegmentsCommand::Diff { rule, limit } => diff(ctx, &store, &rule, limit),
    }
}

/// Finds the segment of a rule given by id or by name.
pub fn find(store: &Store, rule: &str) -> anyhow::Result<Segment> {
    let segments = store
        .all_segments()
        .context("cannot read the segment catalog")?;
    let by_id = rule.trim_start_matches('#').parse::<i64>().ok();
    segments
        .into_iter()
        .find(|s| Some(s.rule_id) == by_id || s.segment_name == rule)
        .with_context(|| {
            format!(
                "no segment for rule {rule:?} (unknown rule, or not refreshed yet: `am run {rule}`)"
            )
        })
}

fn list(ctx: &Context, store: &Store) -> anyhow::Result<()> {
    let segments = store
        .all_segments()
        .context("cannot read the segment catalog")?;
    if ctx.json {
        return output::json(&segments);
    }
    if segments.is_empty() {
        return output::print(
            "no segments yet: create rules with `am rules add` and build them with `am run --all`\n",
        );
    }
    output::print(&segments_table(&segments).render())
}

/// The table `segments list` prints, also used by `am demo`.
pub fn segments_table(segments: &[Segment]) -> Plain {
    let mut t = Plain::new(&[
        "rule",
        "segment",
        "members",
        "entered",
        "left",
        "refreshed",
        "reused from",
    ])
    .right(&[0, 2, 3, 4]);
    for s in segments {
        t.row([
            s.rule_id.to_string(),
            s.segment_name.clone(),
            output::count(s.row_count),
            output::count(s.entered),
            output::count(s.left),
            s.last_refreshed_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ids(&s.reused_from),
        ]);
    }
    t
}

/// `#1, #4`, or `-` for none.
pub fn ids(ids: &[i64]) -> String {
    if ids.is_empty() {
        "-".into()
    } else {
        ids.iter()
            .map(|id| format!("#{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn show(ctx: &Context, store: &Store, rule: &str) -> anyhow::Result<()> {
    let s = find(store, rule)?;
    if ctx.json {
        return output::json(&s);
    }
    let mut out = String::new();
    let field = |out: &mut String, k: &str, v: String| {
        out.push_str(&format!("{k:<14} {}\n", output::terminal_safe(&v)));
    };
    field(&mut out, "segment", format!("#{} {}", s.id, s.segment_name));
    field(&mut out, "rule", format!("#{}", s.rule_id));
    if let Some(d) = &s.description {
        field(&mut out, "description", d.clone());
    }
    field(&mut out, "table", s.table_name.clone());
    field(&mut out, "members", output::count(s.row_count));
    field(
        &mut out,
        "last refresh",
        format!(
            "{} UTC, as of {}, took {}ms",
            s.last_refreshed_at.format("%Y-%m-%d %H:%M:%S"),
            s.as_of.format("%Y-%m-%d %H:%M:%S"),
            s.duration_ms
        ),
    );
    field(
        &mut out,
        "change",
        format!(
            "{} entered, {} left",
            output::count(s.entered),
            output::count(s.left)
        ),
    );
    field(&mut out, "reused from", ids(&s.reused_from));
    out.push_str("sql\n");
    for line in s.sql_query.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    output::print(&out)
}

fn sample(ctx: &Context, store: &Store, rule: &str, limit: u32) -> anyhow::Result<()> {
    let s = find(store, rule)?;
    let rows = store
        .sample(s.id, limit)
        .context("cannot read the segment")?;
    if ctx.json {
        let data: Vec<_> = rows
            .iter()
            .map(|(id, name, email)| serde_json::json!([id, name, email]))
            .collect();
        return output::json(&serde_json::json!({
            "columns": ["user_id", "name", "email"],
            "data": data,
        }));
    }
    let mut t = Plain::new(&["user_id", "name", "email"]).right(&[0]);
    for (id, name, email) in &rows {
        t.row([
            id.to_string(),
            name.clone().unwrap_or_default(),
            email.clone().unwrap_or_default(),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!(
        "({} of {})\n",
        output::count(rows.len() as i64),
        output::plural(s.row_count, "member")
    ));
    output::print(&out)
}

/// The format an export is written in: `--format`, else the output file's extension, else
/// CSV. A `--format` the file's extension contradicts is refused before anything is written.
fn export_format(
    format: Option<ExportFormat>,
    path: Option<&std::path::Path>,
) -> anyhow::Result<ExportFormat> {
    let extension = path
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let by_name = match extension.as_deref() {
        Some("csv") => Some(ExportFormat::Csv),
        Some("json") => Some(ExportFormat::Json),
        _ => None,
    };
    match (format, by_name, path) {
        (Some(asked), Some(named), Some(p)) if asked != named => anyhow::bail!(
            "--format {} does not match the file name {}: drop --format or name the file .{}",
            format_name(asked),
            p.display(),
            format_name(asked)
        ),
        (Some(asked), _, _) => Ok(asked),
        (None, Some(named), _) => Ok(named),
        (None, None, _) => Ok(ExportFormat::Csv),
    }
}

fn format_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "json",
    }
}

fn export(
    store: &Store,
    rule: &str,
    format: Option<ExportFormat>,
    path: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let format = export_format(format, path)?;
    let s = find(store, rule)?;
    let sink: Box<dyn Write> = match path {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    let mut first = true;
    let written = match format {
        ExportFormat::Csv => {
            writeln!(w, "user_id,name,email").context("cannot write the export")?;
            store.for_each_member(s.id, |id, name, email| {
                writeln!(w, "{id},{},{}", csv_field(name), csv_field(email))
            })
        }
        ExportFormat::Json => {
            write!(w, "[").context("cannot write the export")?;
            store.for_each_member(s.id, |id, name, email| {
                let obj = serde_json::json!({"user_id": id, "name": name, "email": email});
                let sep = if first { "\n  " } else { ",\n  " };
                first = false;
                write!(w, "{sep}{}", output::json_safe(&obj.to_string()))
            })
        }
    };
    written
        .context("cannot read the segment")?
        .context("cannot write the export")?;
    if format == ExportFormat::Json {
        writeln!(w, "{}]", if first { "" } else { "\n" }).context("cannot write the export")?;
    }
    w.flush().context("cannot write the export")?;
    if let Some(p) = path {
        eprintln!(
            "wrote {} of {} to {}",
            output::plural(s.row_count, "member"),
            output::terminal_safe(&s.segment_name),
            p.display()
        );
    }
    Ok(())
}

/// A CSV field by the rule the API's export uses too: quoted when needed, formulas defused.
fn csv_field(value: Option<&str>) -> std::borrow::Cow<'_, str> {
    value.map_or(std::borrow::Cow::Borrowed(""), am_sql::csv_text::csv_safe)
}

fn diff(ctx: &Context, store: &Store, rule: &str, limit: u32) -> anyhow::Result<()> {
    let s = find(store, rule)?;
    let changes = store
        .membership_diff(s.id, limit)
        .context("cannot compare the segment with its previous members")?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "rule_id": s.rule_id,
            "segment_name": s.segment_name,
            "last_refreshed_at": s.last_refreshed_at,
            "members": s.row_count,
            "entered": changes.entered_total,
            "left": changes.left_total,
            "entered_ids": changes.entered,
            "left_ids": changes.left,
        }));
    }
    let side = |total: i64, ids: &[i64]| {
        if ids.is_empty() {
            return String::new();
        }
        let listed = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let more = total - i64::try_from(ids.len()).unwrap_or(i64::MAX);
        if more > 0 {
            format!(": {listed} and {} more", output::count(more))
        } else {
            format!(": {listed}")
        }
    };
    output::print(&format!(
        "{}: at the last refresh ({} UTC); {} now\n  entered {}{}\n  left    {}{}\n",
        output::terminal_safe(&s.segment_name),
        s.last_refreshed_at.format("%Y-%m-%d %H:%M:%S"),
        output::plural(s.row_count, "member"),
        output::count(changes.entered_total),
        side(changes.entered_total, &changes.entered),
        output::count(changes.left_total),
        side(changes.left_total, &changes.left),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field(None), "");
        assert_eq!(csv_field(Some("Asha Rao")), "Asha Rao");
        assert_eq!(csv_field(Some("Rao, Asha")), "\"Rao, Asha\"");
        assert_eq!(csv_field(Some("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_field(Some("=HYPERLINK(\"x\")")),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(csv_field(Some("-cmd@x")), "\"'-cmd@x\"");
    }

    #[test]
    fn id_lists_read_as_references() {
        assert_eq!(ids(&[]), "-");
        assert_eq!(ids(&[1, 4]), "#1, #4");
    }
}
