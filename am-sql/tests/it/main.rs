//! am-sql's integration tests: one binary, one module per area.

mod datagen;
mod differential;
mod engine;
mod import;
mod store;
