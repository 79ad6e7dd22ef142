//! Audience Manager SQL engine: schema and migrations, the rule store, the segment catalog,
//! run history, data generation and import, plan rendering with sea-query, and refresh, on
//! SQLite (the embedded default) and PostgreSQL, one folder per engine under `backend/`.

pub mod backend;
pub mod catalog;
pub mod conn;
pub mod csv_text;
pub mod datagen;
pub mod error;
pub mod geo;
pub mod import;
pub mod incremental;
pub mod progress;
pub mod refresh;
pub mod render;
pub mod rules;
pub mod runs;
pub mod scheduler;
pub mod schema;
pub mod store;
pub mod tracking;

pub use backend::Dialect;
pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
pub use store::{Location, Store};
