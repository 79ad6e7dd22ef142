//! `am generate` and `am import`: filling the data tables.

use am_sql::Store;
use am_sql::datagen::{self, GenerateOptions, GenerateReport};
use anyhow::Context as _;

use super::Context;
use crate::cli::GenerateArgs;
use crate::output;
use crate::progress::Bars;

/// Opens the database for loading data, creating it when missing: loading data is a natural
/// first step on a new database.
pub fn open_for_data(ctx: &Context) -> anyhow::Result<Store> {
    Store::open(&ctx.db).with_context(|| format!("cannot open database {}", ctx.db.display()))
}

pub fn generate(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<()> {
    let store = open_for_data(ctx)?;
    let options = GenerateOptions {
        users: args.users,
        transactions: args.transactions,
        seed: args.seed,
        end: args.end.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        days: args.days,
        replace: args.replace,
    };
    let report = run_generate(&store, &options)?;
    if ctx.json {
        return output::json(&generate_json(&report));
    }
    output::print(&format!("{}\n", generate_summary(&report)))
}

/// Generates with progress bars; shared with `am demo`.
pub fn run_generate(store: &Store, options: &GenerateOptions) -> anyhow::Result<GenerateReport> {
    let mut conn = store.connection().context("cannot open the database")?;
    let bars = Bars::new();
    datagen::generate(&mut conn, options, &bars).map_err(|e| match e {
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
        "credit_card_transactions": r.credit_card_transactions,
        "upi_transactions": r.upi_transactions,
        "elapsed_ms": r.elapsed.as_millis() as u64,
    })
}
