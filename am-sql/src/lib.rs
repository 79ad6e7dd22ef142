//! Audience Manager SQL engine: schema and migrations, the rule store, the segment catalog,
//! run history, data generation and import, plan rendering with sea-query, and refresh.

pub mod bind;
pub mod catalog;
pub mod csv_text;
pub mod datagen;
pub mod db;
pub mod dialect;
pub mod error;
pub mod import;
pub mod owner;
pub mod progress;
pub mod refresh;
pub mod render;
pub mod rules;
pub mod runs;
pub mod store;

pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
pub use store::Store;
