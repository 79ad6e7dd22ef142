//! Integration tests of the HTTP server over a real socket with a real HTTP client, and of
//! the scheduler with an injected clock.

mod api_errors;
mod api_rules;
mod api_segments;
mod auth_and_ui;
mod concurrency;
mod guard;
mod limits;
mod openapi;
mod scheduler;
mod shutdown;
mod startup;
mod support;
