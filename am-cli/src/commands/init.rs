//! `am init`: create the database or bring its schema up to date.

use am_sql::Store;
use anyhow::Context as _;

use super::Context;
use crate::output;

pub fn run(ctx: &Context) -> anyhow::Result<()> {
    let existed = ctx.db.exists();
    let store = Store::open(&ctx.db)
        .with_context(|| format!("cannot initialise database {}", ctx.db.display()))?;
    let version = am_sql::db::schema_version();
    if ctx.json {
        return output::json(&serde_json::json!({
            "database": store.path(),
            "created": !existed,
            "schema_version": version,
        }));
    }
    let verb = if existed { "is up to date" } else { "created" };
    output::print(&format!(
        "{} {verb} (schema version {version})\n",
        store.path().display()
    ))
}
