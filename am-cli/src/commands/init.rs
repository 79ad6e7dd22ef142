//! `am init`: create the database or bring its schema up to date.

use am_sql::{Location, Store};
use anyhow::Context as _;

use super::Context;
use crate::output;

pub fn run(ctx: &Context) -> anyhow::Result<()> {
    let location = ctx.location();
    // A server's database exists; whether it has our schema is what `init` settles.
    let existed = !matches!(&location, Location::Sqlite(path) if !path.exists());
    let store = Store::open(location.clone())
        .with_context(|| format!("cannot initialise database {location}"))?;
    let version = store.schema_version();
    if ctx.json {
        return output::json(&serde_json::json!({
            "database": location.to_string(),
            "created": !existed,
            "schema_version": version,
        }));
    }
    let verb = if existed { "is up to date" } else { "created" };
    output::print(&format!("{location} {verb} (schema version {version})\n"))
}
