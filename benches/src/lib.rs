//! Benchmarks for Audience Manager.
