//! `Store`: the facade over one database file that the CLI, the HTTP server and the scheduler
//! use. It holds only the path and opens a connection per operation, so it is cheap to clone
//! and share across threads; WAL mode lets readers proceed while a refresh writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;

use crate::db;
use crate::error::{Error, Result};

/// A handle on one Audience Manager database.
#[derive(Debug, Clone)]
pub struct Store {
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens the database at `path`, creating the file and the schema if needed and running
    /// any pending migrations (`am init`).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        db::open(path)?;
        Ok(Store {
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Opens a database that must already exist (every command but `am init`), running any
    /// pending migrations.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::NoDatabase(path.to_path_buf()));
        }
        Store::open(path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection, configured (WAL, foreign keys, busy timeout).
    pub fn connection(&self) -> Result<Connection> {
        db::connect(&self.path)
    }

    /// The data tables' version counter (see [`db::data_version`]).
    pub fn data_version(&self) -> Result<i64> {
        db::data_version(&self.connection()?)
    }
}
