//! The one place that looks inside the Spark Connect client's errors, translating them into
//! our kinds: a server that cannot be reached (gRPC `UNAVAILABLE`, a failed transport) is
//! [`Error::Unavailable`] naming the URL; a missing table or view is a message that names
//! it; anything else the server's message, short and on one line. Each keeps the client's
//! error as its source.

use spark_connect::SparkError;
use spark_connect_core::SparkErrorKind;

use crate::error::{Error, MAX_MESSAGE_CHARS, one_line_short};

/// gRPC status codes that mean the server did not answer (the client reports them with
/// `grpc_code` set): CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE.
const GONE: [i32; 3] = [1, 4, 14];

/// Words of a transport failure the client reports as gRPC UNKNOWN (code 2): the
/// connection broke under a call.
const BROKEN: [&str; 3] = ["h2 protocol error", "transport error", "connection reset"];

/// Translates a client error from a call to the server at `url`.
pub(crate) fn translate(err: SparkError, url: &str) -> Error {
    let broken = err.grpc_code == Some(2) && BROKEN.iter().any(|w| err.message.contains(w));
    if broken || err.grpc_code.is_some_and(|code| GONE.contains(&code)) {
        return gone(err, url);
    }
    let class = err.error_class.as_str();
    if err.kind == SparkErrorKind::Analysis
        && matches!(class, "TABLE_OR_VIEW_NOT_FOUND" | "SCHEMA_NOT_FOUND")
    {
        let what = if class == "SCHEMA_NOT_FOUND" {
            "database"
        } else {
            "table or view"
        };
        let name = err
            .params
            .get("relationName")
            .or_else(|| err.params.get("schemaName"))
            .cloned()
            .unwrap_or_else(|| one_line_short(&err.message, MAX_MESSAGE_CHARS));
        return Error::Driver {
            message: format!("Spark: {what} {name} not found"),
            source: err.into(),
        };
    }
    let message = if err.message.is_empty() {
        err.to_string()
    } else {
        err.message.clone()
    };
    Error::driver(&format!("Spark: {message}"), err)
}

/// The server at `url` is not there (any more): `err` is how the client saw it.
pub(crate) fn gone(err: SparkError, url: &str) -> Error {
    Error::Unavailable {
        at: url.to_string(),
        source: err.into(),
    }
}

/// An error of our own when the server at `url` stopped answering, with `cause` as its
/// source.
pub(crate) fn unavailable(url: &str, cause: impl Into<String>) -> Error {
    Error::Unavailable {
        at: url.to_string(),
        source: cause.into().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_status_is_unavailable_naming_the_url() {
        let ours = translate(unavailable_status(), "sc://127.0.0.1:1");
        assert!(
            matches!(&ours, Error::Unavailable { at, .. } if at == "sc://127.0.0.1:1"),
            "{ours:?}"
        );
        assert!(std::error::Error::source(&ours).is_some());
    }

    #[test]
    fn a_connection_broken_under_a_call_is_unavailable() {
        let mut err = SparkError::connect_msg(
            "[Unknown error] h2 protocol error: error reading a body from connection",
        );
        err.grpc_code = Some(2);
        let ours = translate(err, "sc://127.0.0.1:1");
        assert!(matches!(ours, Error::Unavailable { .. }), "{ours:?}");
    }

    #[test]
    fn other_client_errors_keep_their_message_and_source() {
        let ours = translate(SparkError::connect_msg("boom\nsecond line"), "sc://h:1");
        assert_eq!(ours.to_string(), "database error: Spark: boom second line");
        assert!(std::error::Error::source(&ours).is_some());
    }

    /// What the client builds for a gRPC UNAVAILABLE status (code 14) without details.
    fn unavailable_status() -> SparkError {
        let mut err = SparkError::connect_msg("[Unavailable] connection refused");
        err.grpc_code = Some(14);
        err
    }
}
