//! `am serve`: the HTTP API, the web UI and the scheduler on this database, until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use am_http::{Server, ServerConfig, SystemClock};
use anyhow::Context as _;
use tokio::net::TcpListener;

use super::Context;
use crate::cli::ServeArgs;

pub fn run(ctx: &Context, args: &ServeArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Bind first: the banner promises a server that is really listening.
        let listener = bind(&args.addr).await?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let mut config = ServerConfig::from_env(addr);
        // `--token` (or AM_API_TOKEN through clap) wins; an empty token means none.
        if let Some(token) = args.token.as_ref().filter(|t| !t.trim().is_empty()) {
            config.token = Some(token.clone());
        }
        config.allowed_hosts = args.allowed_hosts.clone();
        let path = store.location().to_string();
        let token_required = config.token.is_some();
        // Start before announcing: a read-only database or a scheduler that cannot start
        // fails here, and the banner promises a server that is really serving.
        let server = Server::start(listener, store, config, Arc::new(SystemClock))
            .await
            .with_context(|| format!("cannot serve {path}"))?;
        eprintln!(
            "serving {} on http://{} (API under /api{}); press Ctrl-C to stop",
            path,
            addr,
            if token_required {
                ", token required"
            } else {
                ""
            }
        );
        server
            .run(shutdown_signal())
            .await
            .context("the server stopped")
    })?;
    eprintln!("stopped");
    Ok(())
}

/// Resolves `HOST:PORT` and binds the first of its addresses that can be bound.
async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let candidates: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    let mut last = None;
    for candidate in candidates {
        match TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow::Error::new(e).context(format!("cannot listen on {addr}"))),
        None => anyhow::bail!("cannot resolve {addr}: no addresses"),
    }
}

/// Completes on Ctrl-C (or SIGTERM on Unix), so a refresh in progress can finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, never complete: the process still dies on
        // the signal's default action.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Server logs on stderr; `RUST_LOG` adjusts them (default: info for our crates).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,am_http=info,am_sql=info"));
    // Fails only if a subscriber is already set, which then keeps logging.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
