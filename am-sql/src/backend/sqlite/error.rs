//! The one place that looks inside `rusqlite::Error`, translating it into our kinds.

use std::path::Path;

use rusqlite::ErrorCode;

use crate::error::{Error, MAX_MESSAGE_CHARS, one_line_short};

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        let (e, msg) = match &err {
            rusqlite::Error::SqliteFailure(e, msg) => (*e, msg.clone()),
            // Its Display appends the whole statement ("... in SELECT ... at offset N"),
            // which can be ~100 KB for a big rule: keep SQLite's message only.
            rusqlite::Error::SqlInputError { error, msg, .. } => (*error, Some(msg.clone())),
            _ => {
                let message = err.to_string();
                return Error::driver(&message, err);
            }
        };
        let message = msg.unwrap_or_else(|| e.to_string());
        match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                Error::Busy { source: err.into() }
            }
            ErrorCode::ReadOnly => Error::ReadOnly { source: err.into() },
            ErrorCode::DiskFull => Error::DiskFull { source: err.into() },
            ErrorCode::ConstraintViolation
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Error::Conflict(one_line_short(&message, MAX_MESSAGE_CHARS))
            }
            ErrorCode::NotADatabase => {
                Error::Database("the file is not an Audience Manager database".into())
            }
            _ => Error::driver(&message, err),
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

/// Translates an error from opening or first reading the file at `path`, so "file is not
/// a database" names the file.
pub(crate) fn at_path(err: rusqlite::Error, path: &Path) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotOurDatabase(path.display().to_string()),
        Some(ErrorCode::CannotOpen) => Error::Io {
            context: format!("cannot open {}", path.display()),
            source: std::io::Error::other(err.to_string()),
        },
        _ => Error::from(err),
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
        assert!(
            std::error::Error::source(&err).is_some(),
            "the driver's error is kept"
        );

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
    fn driver_errors_become_our_kinds() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x TEXT UNIQUE); INSERT INTO t VALUES ('a');")
            .expect("setup");
        let err = conn
            .execute("INSERT INTO t VALUES ('a')", [])
            .map_err(Error::from)
            .expect_err("duplicate");
        assert!(err.is_conflict(), "{err:?}");

        let code = |c| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(c), None);
        assert!(Error::from(code(rusqlite::ffi::SQLITE_BUSY)).is_busy());
        assert!(matches!(
            Error::from(code(rusqlite::ffi::SQLITE_READONLY)),
            Error::ReadOnly { .. }
        ));
        assert!(matches!(
            Error::from(code(rusqlite::ffi::SQLITE_FULL)),
            Error::DiskFull { .. }
        ));
    }
}
