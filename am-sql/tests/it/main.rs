//! am-sql's integration tests: one binary, one module per area. Tests of semantics run on
//! every engine (see `engines`); tests of one engine's files and settings on that engine.

#[macro_use]
mod engines;

mod datagen;
mod differential;
mod engine;
mod import;
#[cfg(feature = "postgres")]
mod postgres;
mod store;
