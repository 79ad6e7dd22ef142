//! Apache Spark as a compute engine, through Spark Connect (feature `spark`).
//!
//! [`SparkEngine`] is a synchronous client of one Spark Connect server (`sc://HOST:PORT`):
//! statements rendered with sea-query's MySQL builder (backtick identifiers, `?`
//! placeholders) with their values bound as Spark literals (`bind`), results read from
//! Arrow batches into the project's [`Cell`](crate::conn::Cell)s or a column of user ids
//! (`read`), the client's errors translated into our kinds (`error`). It fails within
//! seconds when the server is down or goes away mid-call, where the client alone would
//! retry for minutes; see `client`.
//!
//! Building the client needs `protoc` (Debian `protobuf-compiler`); `scripts/install-spark`
//! installs it, Java and a Spark server for the tests.

mod bind;
mod client;
mod compute;
mod error;
mod read;
mod sql;

pub use client::{HANDSHAKE_TIMEOUT, PROBE_TIMEOUT, SparkEngine, WATCH_INTERVAL};
pub use compute::{SparkOptions, SparkSource, attach_store_tables};
pub(crate) use sql::{ascii_position, days_since, not_a_store};
