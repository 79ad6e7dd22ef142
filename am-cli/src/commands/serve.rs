//! `am serve`: the HTTP API, the web UI and the scheduler on this database.

use super::Context;
use crate::cli::ServeArgs;

pub fn run(ctx: &Context, args: &ServeArgs) -> anyhow::Result<()> {
    let _store = ctx.store()?;
    let _ = (&args.addr, &args.token);
    anyhow::bail!("the HTTP server is not there yet in this build (am-http has no `serve`)")
}
