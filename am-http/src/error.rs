//! `ApiError`: the one error type of the HTTP layer. Every failure a handler, an extractor or
//! the router produces becomes the body `{"error": {"code", "message", "details"?}}`.
//!
//! Library errors convert with `From` so handlers use `?`. Anything that is the server's own
//! fault is logged with its detail and answered with a generic 500: internals never leave.

use am_core::error::{PlanError, Problem, ValidationErrors};
use am_core::schedule::ScheduleError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Problem>,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// What went wrong: a stable `code`, a sentence for people, and the paths of a rule's problems.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// One of `bad_request`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `request_timeout`, `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `invalid_rule`, `unavailable`, `internal`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ProblemBody>,
}

/// One problem in a rule, with its JSON path.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// e.g. `conditions[1].operator`
    pub path: String,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    /// A request the server refuses whoever sends it: a foreign `Host`, a cross-site write.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        )
    }

    pub fn request_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} seconds",
                limit.as_secs_f64()
            ),
        )
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON with `Content-Type: application/json`",
        )
    }

    /// A rule (or a schedule) that fails validation, with one entry per problem.
    pub fn invalid(message: impl Into<String>, details: Vec<Problem>) -> ApiError {
        ApiError {
            details,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_rule", message)
        }
    }

    /// The server cannot take the request now (shutting down, database locked); retrying helps.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The server's own failure: the detail goes to the log, the client gets a generic line.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code,
                message: self.message.clone(),
                details: self
                    .details
                    .iter()
                    .map(|p| ProblemBody {
                        path: p.path.clone(),
                        message: p.message.clone(),
                    })
                    .collect(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(err: ValidationErrors) -> ApiError {
        let message = format!("invalid rule: {err}");
        ApiError::invalid(message, err.0)
    }
}

impl From<ScheduleError> for ApiError {
    fn from(err: ScheduleError) -> ApiError {
        let problem = Problem {
            path: "schedule".into(),
            message: err.reason.clone(),
        };
        ApiError::invalid(err.to_string(), vec![problem])
    }
}

impl From<PlanError> for ApiError {
    fn from(err: PlanError) -> ApiError {
        let path = match err {
            PlanError::UnknownRule { .. } | PlanError::Cycle { .. } => "depends_on",
            _ => "",
        };
        let details = if path.is_empty() {
            Vec::new()
        } else {
            vec![Problem {
                path: path.into(),
                message: err.to_string(),
            }]
        };
        ApiError::invalid(err.to_string(), details)
    }
}

impl From<am_sql::Error> for ApiError {
    fn from(err: am_sql::Error) -> ApiError {
        match err {
            am_sql::Error::NotFound { .. } => ApiError::not_found(err.to_string()),
            am_sql::Error::Conflict(message) => ApiError::conflict(message),
            am_sql::Error::Invalid(errors) => errors.into(),
            am_sql::Error::Plan(plan) => plan.into(),
            am_sql::Error::Busy { .. } => {
                ApiError::unavailable("the database is busy; try again in a moment")
            }
            am_sql::Error::ReadOnly { .. } => {
                ApiError::unavailable("the database is read-only; nothing can be changed")
            }
            am_sql::Error::DiskFull { .. } => {
                ApiError::unavailable("the database's disk is full; nothing can be changed")
            }
            am_sql::Error::Unavailable { .. } => {
                tracing::error!(error = %err, "the database cannot be reached");
                ApiError::unavailable("the database cannot be reached; try again in a moment")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("background task failed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_keep_every_path() {
        let err: ApiError = ValidationErrors(vec![
            Problem {
                path: "conditions[0].field".into(),
                message: "unknown field".into(),
            },
            Problem {
                path: "schedule".into(),
                message: "bad".into(),
            },
        ])
        .into();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = serde_json::to_value(err.body()).expect("serialize");
        assert_eq!(body["error"]["code"], "invalid_rule");
        assert_eq!(body["error"]["details"][0]["path"], "conditions[0].field");
        assert_eq!(body["error"]["details"][1]["path"], "schedule");
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let err = ApiError::internal("disk I/O error at /secret/path");
        let body = serde_json::to_value(err.body()).expect("serialize");
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret"));
        assert!(body["error"].get("details").is_none());
    }

    #[test]
    fn sql_not_found_and_conflict_map_to_404_and_409() {
        let nf: ApiError = am_sql::Error::NotFound {
            what: "rule",
            key: "#9".into(),
        }
        .into();
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        let c: ApiError = am_sql::Error::Conflict("duplicate rule name".into()).into();
        assert_eq!(c.status(), StatusCode::CONFLICT);
        assert_eq!(c.code(), "conflict");
    }
}
