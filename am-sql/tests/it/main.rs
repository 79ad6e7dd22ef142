//! am-sql's integration tests: one binary, one module per area.

mod differential;
mod engine;
mod store;
mod import;
mod datagen;
