//! Integration tests of the HTTP server over a real socket with a real HTTP client, and of
//! the scheduler with an injected clock, on every engine the crate is built for (SQLite
//! always; PostgreSQL with the `postgres` feature, see `postgres.rs`).

mod api_errors;
mod api_rules;
mod api_segments;
mod auth_and_ui;
mod concurrency;
mod guard;
mod limits;
mod openapi;
#[cfg(feature = "postgres")]
mod postgres;
mod scheduler;
mod shutdown;
mod startup;
mod support;
