//! The crate's error type. Driver errors are translated into its kinds in one module per
//! backend (`backend::<name>::error`): a unique violation is a [`Error::Conflict`], a lock
//! held past the wait is [`Error::Busy`], a database that cannot be written is
//! [`Error::ReadOnly`], a full disk [`Error::DiskFull`]; each keeps the driver's error as
//! its source. Every other module matches on these kinds only.

use am_core::error::{PlanError, ValidationErrors};

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
    /// The database exists but is not ours: not SQLite, or another program's tables.
    #[error("{0} is not an Audience Manager database")]
    NotOurDatabase(String),
    /// The database does not exist and the caller asked not to create it.
    #[error("no database at {0} (run `am init`)")]
    NoDatabase(String),
    /// The database was written by a newer version of Audience Manager.
    #[error(
        "the database at {path} has schema version {found}, newer than this program's {supported}; upgrade Audience Manager"
    )]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    /// Another connection held a lock longer than the wait allows.
    #[error("the database is busy (another process is writing); try again")]
    Busy {
        #[source]
        source: BoxError,
    },
    /// The database cannot be written (a read-only file, or a read-only server or role).
    #[error("the database is read-only: {source}")]
    ReadOnly {
        #[source]
        source: BoxError,
    },
    /// The disk (or the database's quota) is full.
    #[error("the database's disk is full: {source}")]
    DiskFull {
        #[source]
        source: BoxError,
    },
    /// The database server cannot be reached.
    #[error("cannot reach the database at {at}: {source}")]
    Unavailable {
        at: String,
        #[source]
        source: BoxError,
    },
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
    /// Any other database failure, as our own words.
    #[error("database error: {0}")]
    Database(String),
    /// Any other failure the driver reported: its message, short and on one line, with the
    /// driver's error as the source.
    #[error("database error: {message}")]
    Driver {
        message: String,
        #[source]
        source: BoxError,
    },
}

/// A driver's error, kept as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

    /// Whether this is a unique-constraint violation (or another conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Whether this is [`Error::Busy`].
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    /// A failure the driver reported, in its words, short and on one line.
    pub(crate) fn driver(message: &str, source: impl Into<BoxError>) -> Error {
        Error::Driver {
            message: one_line_short(message, MAX_MESSAGE_CHARS),
            source: source.into(),
        }
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
    fn one_line_short_joins_lines_and_cuts_with_an_ellipsis() {
        assert_eq!(one_line_short("  a\n  b\r\nc ", 10), "a b c");
        assert_eq!(one_line_short("abcdef", 6), "abcdef");
        assert_eq!(one_line_short("abcdefg", 6), "abcdef…");
        assert_eq!(one_line_short("ab cd", 3), "ab…");
        assert_eq!(one_line_short("ééé", 2), "éé…");
        assert_eq!(one_line_short("", 5), "");
    }
}
