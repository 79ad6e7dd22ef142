//! `am generate` and `am import`: filling the data tables.

use am_sql::Store;
use am_sql::datagen::{GenerateOptions, GenerateReport};
use anyhow::Context as _;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use am_sql::import::{CsvFile, ImportOptions, ImportTable};

use super::Context;
use crate::cli::{GenerateArgs, ImportArgs, TableArg};
use crate::output;
use crate::progress::Bars;

/// Opens the database for loading data, creating it when missing: loading data is a natural
/// first step on a new database.
pub fn open_for_data(ctx: &Context) -> anyhow::Result<Store> {
    let location = ctx.location();
    Store::open(location.clone()).with_context(|| format!("cannot open database {location}"))
}

pub fn generate(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<()> {
    let options = GenerateOptions {
        users: args.users,
        transactions: args.transactions,
        seed: args.seed,
        end: args.end.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        days: args.days,
        replace: args.replace,
    };
    // Check the options before the database is opened (and perhaps created).
    options.validate().context("cannot generate data")?;
    let store = open_for_data(ctx)?;
    let report = run_generate(&store, &options)?;
    if ctx.json {
        return output::json(&generate_json(&report));
    }
    output::print(&format!("{}\n", generate_summary(&report)))
}

/// Generates with progress bars; shared with `am demo`.
pub fn run_generate(store: &Store, options: &GenerateOptions) -> anyhow::Result<GenerateReport> {
    let bars = Bars::new();
    store.generate(options, &bars).map_err(|e| match e {
        am_sql::Error::Refused(msg) if msg.contains("already has rows") => {
            anyhow::anyhow!("{msg} (pass --replace)")
        }
        other => anyhow::Error::new(other).context("cannot generate data"),
    })
}

/// One line: what was generated and how long it took.
pub fn generate_summary(r: &GenerateReport) -> String {
    format!(
        "generated {} ({} without transactions), {} credit-card and {} UPI transactions in {}",
        output::plural(r.users as i64, "user"),
        output::count(r.users_without_transactions as i64),
        output::count(r.credit_card_transactions as i64),
        output::count(r.upi_transactions as i64),
        output::duration(r.elapsed)
    )
}

fn generate_json(r: &GenerateReport) -> serde_json::Value {
    serde_json::json!({
        "users": r.users,
        "users_without_transactions": r.users_without_transactions,
        "user_locations": r.user_locations,
        "credit_card_transactions": r.credit_card_transactions,
        "upi_transactions": r.upi_transactions,
        "elapsed_ms": r.elapsed.as_millis() as u64,
    })
}

pub fn import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<()> {
    let table = match args.table {
        TableArg::Users => ImportTable::Users,
        TableArg::Locations => ImportTable::Locations,
        TableArg::CreditCard => ImportTable::CreditCard,
        TableArg::Upi => ImportTable::Upi,
    };
    let name = if args.file == Path::new("-") {
        "<stdin>".to_string()
    } else {
        args.file.display().to_string()
    };
    // Open the file before the database, so a typo does not create an empty database.
    let reader: Box<dyn Read> = if args.file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("cannot read {name}"))?)
    };
    // The header too: a wrong file is refused before a database is created for it.
    let file = match CsvFile::open(table, BufReader::new(reader)) {
        Ok(file) => file,
        Err(header @ am_sql::Error::BadHeader { .. }) => {
            // The whole file is refused: --skip-bad-rows would not help.
            anyhow::bail!("{name}: {header}");
        }
        Err(other) => {
            return Err(anyhow::Error::new(other).context(format!("cannot import {name}")));
        }
    };
    let store = open_for_data(ctx)?;
    let bars = Bars::new();
    let options = ImportOptions {
        skip_bad_rows: args.skip_bad_rows,
    };
    let report = match store.import(file, options, &bars) {
        Ok(report) => report,
        Err(am_sql::Error::Import(errors)) => {
            drop(bars);
            let mut err = std::io::stderr().lock();
            for row in &errors.errors {
                let message = output::terminal_safe(&row.message);
                let _ = writeln!(err, "{name}:{}: {message}", row.line);
            }
            let more = errors.total.saturating_sub(errors.errors.len() as u64);
            if more > 0 {
                let _ = writeln!(
                    err,
                    "{name}: and {} more",
                    output::plural(more as i64, "bad row")
                );
            }
            let hint = match errors.quote_line {
                // Skipping cannot help: the quote may have swallowed good rows.
                Some(line) => format!(
                    "fix the quote on line {line} first: it may hide rows, so --skip-bad-rows \
                     cannot help"
                ),
                None => "--skip-bad-rows imports the good ones".into(),
            };
            anyhow::bail!(
                "{name}: {}, nothing imported ({hint})",
                output::plural(errors.total as i64, "bad row")
            );
        }
        Err(other) => {
            return Err(anyhow::Error::new(other).context(format!("cannot import {name}")));
        }
    };
    if ctx.json {
        return output::json(&serde_json::json!({
            "table": table.table_name(),
            "imported": report.imported,
            "skipped": report.skipped,
            "errors": report.errors,
        }));
    }
    let mut out = String::new();
    for row in &report.errors {
        let message = output::terminal_safe(&row.message);
        out.push_str(&format!("skipped {name}:{}: {message}\n", row.line));
    }
    out.push_str(&format!(
        "imported {} into {}",
        output::plural(report.imported as i64, "row"),
        table.table_name()
    ));
    if report.skipped > 0 {
        out.push_str(&format!(
            ", skipped {}",
            output::plural(report.skipped as i64, "bad row")
        ));
    }
    out.push('\n');
    output::print(&out)
}
