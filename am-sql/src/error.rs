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
    /// A CSV file's header does not name the table's columns: the whole file is refused
    /// (skipping bad rows cannot help). `message` says what is wrong and what is expected.
    #[error("header: {message}")]
    BadHeader {
        table: &'static str,
        message: String,
    },
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

/// The longest message a translated database error carries, in characters. SQLite's own
/// messages are far shorter; anything longer is quoting a statement or data.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// `text` on one line (line breaks and runs of spaces become one space), cut at `max`
/// characters with `…`. For user-facing messages that may quote SQL or data.
pub fn one_line_short(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4 + 4));
    let mut chars = 0;
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        let needed = usize::from(space) + 1;
        if chars + needed > max {
            out.push('…');
            return out;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
        chars += needed;
    }
    out
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        let short = |text: &str| one_line_short(text, MAX_MESSAGE_CHARS);
        let (e, msg) = match &err {
            rusqlite::Error::SqliteFailure(e, msg) => (e, msg.as_deref()),
            // Its Display appends the whole statement ("... in SELECT ... at offset N"),
            // which can be ~100 KB for a big rule: keep SQLite's message only.
            rusqlite::Error::SqlInputError { error, msg, .. } => (error, Some(msg.as_str())),
            _ => return Error::Database(short(&err.to_string())),
        };
        match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Busy,
            ErrorCode::ConstraintViolation
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Error::Conflict(short(&msg.map_or_else(|| e.to_string(), str::to_string)))
            }
            ErrorCode::NotADatabase => {
                Error::Database("the file is not an Audience Manager database".into())
            }
            _ => Error::Database(short(msg.unwrap_or(&e.to_string()))),
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
    fn sql_errors_do_not_carry_the_statement() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let conditions = vec!["1 > 0"; 5000].join(" AND ");
        let deep = format!("SELECT 1 WHERE {conditions}");
        let err = Error::from(conn.prepare(&deep).map(|_| ()).expect_err("too deep"));
        assert_eq!(
            err.to_string(),
            "database error: Expression tree is too large (maximum depth 1000)"
        );
        let columns = vec!["1"; 5000].join(", ");
        let syntax = format!("SELECT {columns} WHERE )");
        let raw = conn.prepare(&syntax).map(|_| ()).expect_err("syntax");
        assert!(
            raw.to_string().len() > syntax.len(),
            "rusqlite quotes the SQL"
        );
        let err = Error::from(raw);
        assert_eq!(err.to_string(), "database error: near \")\": syntax error");

        let err = Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("near {}: syntax error", "x".repeat(1000))),
        ));
        let text = err.to_string();
        assert_eq!(
            text.chars().count(),
            "database error: ".len() + MAX_MESSAGE_CHARS + "…".chars().count()
        );
        assert!(text.ends_with("xx…"), "{text}");
    }

    #[test]
    fn one_line_short_joins_lines_and_cuts_with_an_ellipsis() {
        assert_eq!(one_line_short("  a\n  b\r\nc ", 10), "a b c");
        assert_eq!(one_line_short("abcdef", 6), "abcdef");
        assert_eq!(one_line_short("abcdefg", 6), "abcdef…");
        assert_eq!(one_line_short("ab cd", 3), "ab…");
        assert_eq!(one_line_short("ééé", 2), "éé…");
        assert_eq!(one_line_short("", 5), "");
    }

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
