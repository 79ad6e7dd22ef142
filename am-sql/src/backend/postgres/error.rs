//! The one place that looks inside `postgres::Error`, translating it into our kinds.

use postgres::error::SqlState;

use crate::error::{Error, MAX_MESSAGE_CHARS, one_line_short};

impl From<postgres::Error> for Error {
    fn from(err: postgres::Error) -> Error {
        let Some(db) = err.as_db_error() else {
            // No answer from the server: the connection is gone or could not be made.
            if err.is_closed() || std::error::Error::source(&err).is_some() {
                return Error::Unavailable {
                    at: "the PostgreSQL server".into(),
                    source: err.into(),
                };
            }
            let message = err.to_string();
            return Error::driver(&message, err);
        };
        let message = db.message().to_owned();
        let code = db.code().clone();
        match code {
            c if c == SqlState::UNIQUE_VIOLATION => {
                Error::Conflict(one_line_short(&message, MAX_MESSAGE_CHARS))
            }
            c if c == SqlState::LOCK_NOT_AVAILABLE
                || c == SqlState::T_R_SERIALIZATION_FAILURE
                || c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Error::Busy { source: err.into() }
            }
            c if c == SqlState::READ_ONLY_SQL_TRANSACTION => Error::ReadOnly { source: err.into() },
            c if c == SqlState::DISK_FULL || c == SqlState::OUT_OF_MEMORY => {
                Error::DiskFull { source: err.into() }
            }
            c if c == SqlState::ADMIN_SHUTDOWN
                || c == SqlState::CRASH_SHUTDOWN
                || c == SqlState::CANNOT_CONNECT_NOW
                || c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                Error::Unavailable {
                    at: "the PostgreSQL server".into(),
                    source: err.into(),
                }
            }
            _ => Error::driver(&message, err),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(err: r2d2::Error) -> Error {
        Error::Unavailable {
            at: "the PostgreSQL server".into(),
            source: err.into(),
        }
    }
}
