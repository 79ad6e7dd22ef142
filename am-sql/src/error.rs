//! The crate's error type, and the one place that looks inside `rusqlite::Error`.
//!
//! Every other module converts SQLite failures with `?` (or [`Error::at_path`] when a file is
//! involved) and matches on our own kinds: a unique violation is a [`Error::Conflict`], a
//! locked database is [`Error::Busy`], a file that is not SQLite is
//! [`Error::NotOurDatabase`].

use std::path::{Path, PathBuf};

use am_core::error::{PlanError, ValidationErrors};
use rusqlite::ErrorCode;

use crate::import::ImportErrors;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in am-sql.
///
/// The HTTP layer maps `NotFound` to 404, `Conflict` to 409, `Invalid` and `Plan` to 422,
/// and everything else to 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No rule, segment or run with that id or name.
    #[error("{what} {key} not found")]
    NotFound {
        what: &'static str,
        /// `#3` for an id, `"name"` (quoted) for a name.
        key: String,
    },
    /// A duplicate rule name, or deleting a rule other rules depend on.
    #[error("{0}")]
    Conflict(String),
    /// The rule fails validation; every problem carries its JSON path.
    #[error("invalid rule: {0}")]
    Invalid(#[from] ValidationErrors),
    /// The rules cannot be planned together: a cycle or an unknown dependency.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The file exists but is not SQLite, or is a SQLite database of another program.
    #[error("{} is not an Audience Manager database", .0.display())]
    NotOurDatabase(PathBuf),
    /// The database file does not exist and the caller asked not to create it.
    #[error("no database at {} (run `am init`)", .0.display())]
    NoDatabase(PathBuf),
    /// The database was written by a newer version of Audience Manager.
    #[error("the database at {} has schema version {found}, newer than this program's {supported}; upgrade Audience Manager", .path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// Another connection held a lock longer than the busy timeout.
    #[error("the database is busy (another process is writing); try again")]
    Busy,
    /// A CSV file has bad rows; nothing was imported.
    #[error(transparent)]
    Import(#[from] ImportErrors),
    /// An operation was refused as asked, e.g. generating into tables that hold data.
    #[error("{0}")]
    Refused(String),
    /// Options out of their allowed range, e.g. `days` of the data generator.
    #[error("{0}")]
    BadOptions(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be read at all (not a bad row: those are `Import`).
    #[error("csv: {0}")]
    Csv(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
}

impl Error {
    pub(crate) fn not_found_id(what: &'static str, id: i64) -> Error {
        Error::NotFound {
            what,
            key: format!("#{id}"),
        }
    }

    pub(crate) fn not_found_name(what: &'static str, name: &str) -> Error {
        Error::NotFound {
            what,
            key: format!("{name:?}"),
        }
    }

    /// Translates an error from opening or first reading the file at `path`, so "file is not
    /// a database" names the file.
    pub(crate) fn at_path(err: rusqlite::Error, path: &Path) -> Error {
        match err.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => Error::NotOurDatabase(path.to_path_buf()),
            Some(ErrorCode::CannotOpen) => Error::Io {
                context: format!("cannot open {}", path.display()),
                source: std::io::Error::other(err.to_string()),
            },
            _ => Error::from(err),
        }
    }

    /// Whether this is a unique-constraint violation (or another conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        match &err {
            rusqlite::Error::SqliteFailure(e, msg) => match e.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Busy,
                ErrorCode::ConstraintViolation
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    Error::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
                }
                ErrorCode::NotADatabase => {
                    Error::Database("the file is not an Audience Manager database".into())
                }
                _ => Error::Database(err.to_string()),
            },
            _ => Error::Database(err.to_string()),
        }
    }
}

impl From<rusqlite_migration::Error> for Error {
    fn from(err: rusqlite_migration::Error) -> Error {
        match err {
            rusqlite_migration::Error::RusqliteError { err, .. } => Error::from(err),
            other => Error::Database(format!("migration failed: {other}")),
        }
    }
}

impl From<csv::Error> for Error {
    fn from(err: csv::Error) -> Error {
        Error::Csv(err.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Error {
        Error::Database(format!("stored JSON is malformed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violation_is_a_conflict_and_busy_is_busy() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x TEXT UNIQUE); INSERT INTO t VALUES ('a');")
            .expect("setup");
        let err = conn
            .execute("INSERT INTO t VALUES ('a')", [])
            .map_err(Error::from)
            .expect_err("duplicate");
        assert!(err.is_conflict(), "{err:?}");

        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(Error::from(busy), Error::Busy));
    }
}
