//! am-sql's integration tests: one binary, one module per area. Tests of semantics run on
//! every engine (see `engines`); tests of one engine's files and settings on that engine.

#[macro_use]
mod engines;

mod datagen;
mod differential;
mod engine;
mod geo;
mod import;
mod incremental;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "spark")]
mod spark;
#[cfg(feature = "spark")]
mod spark_engine;
mod store;

/// The test command (README) builds every engine's suite; a build without one would pass by
/// testing less, so it fails here instead, naming the command.
#[test]
fn every_engine_is_built() {
    let missing: Vec<&str> = [
        ("postgres", cfg!(feature = "postgres")),
        ("spark", cfg!(feature = "spark")),
    ]
    .into_iter()
    .filter_map(|(engine, built)| (!built).then_some(engine))
    .collect();
    assert!(
        missing.is_empty(),
        "the suites of {missing:?} were not built: run `scripts/install-spark && cargo test --workspace --all-features`"
    );
}
