//! Test harness for the Audience Manager workspace (dev-only, not published).
//!
//! [`postgres`]: a throwaway PostgreSQL server per test process, with a fresh database per
//! test. See that module for what it needs on the machine and what it costs.
//!
//! [`spark`]: throwaway Apache Spark Connect servers (one shared per test process, a
//! standalone cluster, or a private one a test may kill), from `scripts/install-spark`.

pub mod postgres;
pub mod spark;
