//! One module per command; each takes the global [`Context`] and its own arguments.

pub mod data;
pub mod demo;
pub mod explain;
pub mod init;
pub mod rules;
pub mod run;
pub mod runs;
pub mod segments;
pub mod serve;

use std::path::{Path, PathBuf};

use am_sql::{Location, Store};
use anyhow::Context as _;

/// What every command may use: the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    pub db: PathBuf,
    pub json: bool,
    /// `--engine` and its Spark settings: segments computed elsewhere than the database.
    pub engine: Option<Engine>,
}

/// `--engine URL --spark-source SOURCE --spark-database DATABASE`.
#[derive(Debug, Clone)]
// Read only by the Spark build; without it `--engine` is refused by its URL alone.
#[cfg_attr(not(feature = "spark"), allow(dead_code))]
pub struct Engine {
    pub url: String,
    pub source: String,
    pub database: Option<String>,
}

impl Context {
    /// Where the database is: `--db` as a path or a `postgres://` URI.
    pub fn location(&self) -> Location {
        Location::from(&self.db)
    }

    /// Opens the database, which must exist (everything but `init` and `demo`).
    pub fn store(&self) -> anyhow::Result<Store> {
        let location = self.location();
        let store = Store::open_existing(location.clone())
            .with_context(|| format!("cannot open database {location}"))?;
        match &self.engine {
            None => Ok(store),
            Some(engine) => with_engine(store, engine),
        }
    }
}

/// The store with its segments computed on Spark.
#[cfg(feature = "spark")]
fn with_engine(store: Store, engine: &Engine) -> anyhow::Result<Store> {
    use am_sql::backend::spark::{SparkOptions, SparkSource};
    let source: SparkSource = engine.source.parse().context("--spark-source")?;
    let options = SparkOptions {
        url: engine.url.clone(),
        source,
        database: engine.database.clone(),
    };
    store.with_spark(options).context("--engine")
}

#[cfg(not(feature = "spark"))]
fn with_engine(_store: Store, engine: &Engine) -> anyhow::Result<Store> {
    anyhow::bail!(
        "--engine {}: this am was built without Spark; build it with `cargo install --path am-cli --features spark`",
        engine.url
    )
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}
