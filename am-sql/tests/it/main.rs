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
#[cfg(feature = "spark")]
mod spark;
#[cfg(feature = "spark")]
mod spark_engine;
mod store;

/// CI runs every engine's suite: a build without one of them would pass by testing less.
#[test]
fn ci_builds_every_engine() {
    let missing: Vec<&str> = [
        ("postgres", cfg!(feature = "postgres")),
        ("spark", cfg!(feature = "spark")),
    ]
    .into_iter()
    .filter_map(|(engine, built)| (!built).then_some(engine))
    .collect();
    if std::env::var_os("CI").is_some() {
        assert!(
            missing.is_empty(),
            "CI must test every engine, but {missing:?} were not built: use --all-features"
        );
    }
}
