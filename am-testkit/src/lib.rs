//! Test harness for the Audience Manager workspace (dev-only, not published).
//!
//! [`postgres`]: a throwaway PostgreSQL server per test process, with a fresh database per
//! test. See that module for what it needs on the machine and what it costs.

pub mod postgres;
