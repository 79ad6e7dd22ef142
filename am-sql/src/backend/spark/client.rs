//! [`SparkEngine`]: a small synchronous client of one Spark Connect server, over the
//! `apache-spark-connect` crate, that fails fast when the server is not there.
//!
//! The crate retries a call to a server that does not answer for about 640 s (15 retries,
//! back-off from 1 s doubling to 64 s) and its session builder offers no way to change that.
//! So [`SparkEngine::connect`] first probes the TCP port (a closed port fails in
//! milliseconds, an unroutable host after [`PROBE_TIMEOUT`]) and then asks the server its
//! version within [`HANDSHAKE_TIMEOUT`] (a port that accepts connections but does not speak
//! Spark Connect fails there); and every call runs on a thread of its own while the calling
//! thread re-probes the port every [`WATCH_INTERVAL`], failing the call as
//! [`Error::Unavailable`] once the port stops answering (a call that failed while the port
//! no longer answers is `Unavailable` too, however the client worded it). The abandoned call
//! goes on in the background until the crate gives up (for a peer that accepts connections
//! and never answers, possibly never): it holds a thread and a socket, not a lock.
//!
//! What this cannot see: a server whose port still accepts connections but which no longer
//! works (a JVM stopped with `SIGSTOP`, a hung driver); such a call waits as long as Spark
//! does.
//!
//! Blocking: every method blocks its thread until Spark answers (seconds for a query). From
//! async code call it through `tokio::task::spawn_blocking`: the crate drives its gRPC
//! calls on its own global runtime with `block_on`, which panics inside a tokio task. (The
//! call itself runs on a plain thread here, so it would not panic, but it would stall the
//! async worker for the whole query.)
//!
//! Statements are sea-query's MySQL builder output (backtick identifiers, `?` placeholders),
//! which Spark SQL parses; values are bound through `sql_with_args` (see `bind`).
//! `spark.sql()` only builds a plan, so every statement here is collected, DDL and DML too.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use sea_query::Values;
use spark_connect::{SparkError, SparkSession, SparkSessionBuilder};

use super::{bind, error, read};
use crate::conn::Row;
use crate::error::{Error, Result};

/// How long a TCP connection to the server may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to answer the first request after the port answered.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a running call checks that the server's port still answers.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

const URL_FORM: &str = "a Spark Connect URL is sc://HOST:PORT, optionally followed by \
    /;key=value;... parameters (e.g. sc://127.0.0.1:15002)";

/// A session on one Spark Connect server; see the module docs. Cheap to clone (the session
/// is shared); `Send` and `Sync`.
#[derive(Clone)]
pub struct SparkEngine {
    session: SparkSession,
    url: String,
    /// `HOST:PORT`, probed before and during every call.
    authority: String,
}

impl std::fmt::Debug for SparkEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparkEngine")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SparkEngine {
    /// Connects to the Spark Connect server at `url` (`sc://HOST:PORT`, optionally with
    /// `/;key=value` parameters the client understands, such as `user_id` or `token`).
    ///
    /// A malformed URL is [`Error::BadOptions`] naming the expected form; a server that does
    /// not answer within [`PROBE_TIMEOUT`] plus [`HANDSHAKE_TIMEOUT`] is
    /// [`Error::Unavailable`]. Blocks: see the module docs.
    pub fn connect(url: &str) -> Result<SparkEngine> {
        let authority = authority(url)?;
        // Builds the channel only (the session dials on its first request), on a plain
        // thread like every call, as the client's `block_on` panics on a runtime's thread.
        let session = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    SparkSessionBuilder::new()
                        .remote(url)
                        .get_or_create()
                        .map_err(Box::new)
                })
                .join()
        })
        .map_err(|_| Error::Database("the Spark Connect client panicked connecting".into()))?
        .map_err(|e| error::translate(*e, url))?;
        let engine = SparkEngine {
            session,
            url: url.to_string(),
            authority,
        };
        // One cheap request (the port is probed first) shows whether Spark is there.
        engine
            .call(Some(HANDSHAKE_TIMEOUT), |session| {
                session.version().map_err(Box::new)
            })
            .map(drop)?;
        Ok(engine)
    }

    /// The URL this engine connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's Spark version, e.g. `4.2.1`.
    pub fn version(&self) -> Result<String> {
        self.call(None, |session| session.version().map_err(Box::new))
    }

    /// Runs a statement (DDL or DML) to completion.
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.batches(sql, Vec::new()).map(drop)
    }

    /// Runs a statement with its `?` placeholders bound to `values`, to completion.
    pub fn execute_bound(&self, sql: &str, values: &Values) -> Result<()> {
        self.batches(sql, bind::literals(values)?).map(drop)
    }

    /// Every row of a query, as engine-neutral cells (see `read` for the types).
    pub fn rows(&self, sql: &str) -> Result<Vec<Row>> {
        read::rows(&self.batches(sql, Vec::new())?)
    }

    /// Every row of a query with its `?` placeholders bound to `values`.
    pub fn query_bound(&self, sql: &str, values: &Values) -> Result<Vec<Row>> {
        read::rows(&self.batches(sql, bind::literals(values)?)?)
    }

    /// The user ids a query returns: exactly one `BIGINT` or `INT` column without NULLs,
    /// else an error that names the column and its type.
    pub fn user_ids(&self, sql: &str) -> Result<Vec<i64>> {
        read::user_ids(&self.batches(sql, Vec::new())?)
    }

    /// [`SparkEngine::user_ids`] with the query's `?` placeholders bound to `values`.
    pub fn user_ids_bound(&self, sql: &str, values: &Values) -> Result<Vec<i64>> {
        read::user_ids(&self.batches(sql, bind::literals(values)?)?)
    }

    fn batches(&self, sql: &str, args: Vec<spark_connect::Expression>) -> Result<Vec<RecordBatch>> {
        let sql = sql.to_string();
        self.call(None, move |session| {
            let frame = session
                .sql_with_args(&sql, args, Default::default())
                .map_err(Box::new)?;
            frame.collect_record_batches().map_err(Box::new)
        })
    }

    /// Runs `f` on a thread of its own and waits for it, re-probing the server every
    /// [`WATCH_INTERVAL`]; fails once the port stops answering or `deadline` has passed.
    fn call<T: Send + 'static>(
        &self,
        deadline: Option<Duration>,
        // The client's error is large; boxed, as it crosses a channel.
        f: impl FnOnce(SparkSession) -> Result<T, Box<SparkError>> + Send + 'static,
    ) -> Result<T> {
        // A server gone since the last call fails here, not after the first watch interval.
        probe(&self.authority).map_err(|e| {
            error::unavailable(
                &self.url,
                format!("nothing answers on {}: {e}", self.authority),
            )
        })?;
        let (tx, rx) = mpsc::sync_channel(1);
        let session = self.session.clone();
        std::thread::Builder::new()
            .name("am-spark-call".into())
            .spawn(move || {
                // The receiver may be gone (the call was given up): nothing to tell then.
                let _ = tx.send(f(session));
            })
            .map_err(|e| Error::Io {
                context: "cannot start a thread for a Spark call".into(),
                source: e,
            })?;
        let started = Instant::now();
        loop {
            let wait = match deadline {
                Some(limit) => match limit.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left.min(WATCH_INTERVAL),
                    _ => {
                        return Err(error::unavailable(
                            &self.url,
                            format!(
                                "no Spark Connect answer within {} s (is it a Spark Connect \
                                 server?)",
                                limit.as_secs()
                            ),
                        ));
                    }
                },
                None => WATCH_INTERVAL,
            };
            match rx.recv_timeout(wait) {
                Ok(Ok(value)) => return Ok(value),
                // However the client words a broken connection, a port that no longer
                // answers means the server went away.
                Ok(Err(e)) if probe(&self.authority).is_err() => {
                    return Err(error::gone(*e, &self.url));
                }
                Ok(Err(e)) => return Err(error::translate(*e, &self.url)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = probe(&self.authority) {
                        return Err(error::unavailable(
                            &self.url,
                            format!("the server stopped answering during the call: {e}"),
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Database(
                        "the Spark Connect client panicked during a call".into(),
                    ));
                }
            }
        }
    }
}

/// `HOST:PORT` of a Spark Connect URL, or why it is not one.
pub(crate) fn authority(url: &str) -> Result<String> {
    let bad = |why: &str| Error::BadOptions(format!("{why} in {url:?}: {URL_FORM}"));
    let rest = url
        .strip_prefix("sc://")
        .ok_or_else(|| bad("not an sc:// URL"))?;
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !(tail.is_empty() || tail == "/" || tail.starts_with("/;")) {
        return Err(bad("a path other than /;parameters"));
    }
    if authority.contains(['?', '#', '@']) || tail.contains(['?', '#']) {
        return Err(bad("a query, fragment or user part"));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(authority.to_string()),
        _ => Err(bad("a port that is not a number from 1 to 65535")),
    }
}

/// Whether something accepts TCP connections at `authority` (any of its addresses).
fn probe(authority: &str) -> std::io::Result<()> {
    let addrs: Vec<SocketAddr> = authority.to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_sc_host_and_port() {
        for good in [
            "sc://127.0.0.1:15002",
            "sc://localhost:1/",
            "sc://spark.example:443/;use_ssl=true;token=x",
            "sc://[::1]:15002",
        ] {
            assert!(authority(good).is_ok(), "{good}");
        }
        for bad in [
            "http://127.0.0.1:15002",
            "127.0.0.1:15002",
            "sc://127.0.0.1",
            "sc://:15002",
            "sc://127.0.0.1:0",
            "sc://127.0.0.1:99999",
            "sc://127.0.0.1:port",
            "sc://127.0.0.1:15002/db",
            "sc://127.0.0.1:15002?x=1",
            "sc://u@127.0.0.1:15002",
            "sc://::1:15002",
            "",
        ] {
            let err = authority(bad).expect_err(bad);
            assert!(matches!(err, Error::BadOptions(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("sc://HOST:PORT"), "{err}");
        }
    }
}
