//! Extractors whose rejections answer with the API's error body: JSON bodies (400 for
//! syntax, 408 too slow, 413 over the limit, 415 without a JSON content type), rule bodies (422 with the
//! path of every problem), query strings and path parameters (400), and pagination.

use am_core::rule::RuleSpec;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body, checked for content type, size and syntax.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Requiring a JSON content type also keeps browsers on other sites from posting "simple"
/// cross-origin requests (text/plain forms) to a local server.
fn is_json(parts: &Request) -> bool {
    parts
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// The body of a JSON request, within the size limit and the body deadline.
async fn json_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    if !is_json(&req) {
        return Err(ApiError::unsupported_media_type());
    }
    let config = &state.config;
    crate::body::read_limited(req.into_body(), config.body_limit, config.body_timeout).await
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        let value = serde_json::from_slice::<T>(&bytes).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(format!("the body has the wrong shape: {e}"), Vec::new())
            } else {
                ApiError::bad_request(format!("malformed JSON: {e}"))
            }
        })?;
        Ok(ApiJson(value))
    }
}

/// A rule body: parsed from JSON by the core's validator so every wrong type is reported
/// with its path (`conditions[0].value`), not only the first serde stops at. The text is
/// kept so the store can save the conditions exactly as written.
#[derive(Debug)]
pub struct RuleBody {
    pub spec: RuleSpec,
    pub text: String,
}

impl FromRequest<AppState> for RuleBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        let spec = am_core::validate::parse_rule(&value)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        Ok(RuleBody { spec, text })
    }
}

/// A query string; a malformed one is a 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(format!("bad query parameters: {}", e.body_text())))
    }
}

/// Path parameters; `/api/rules/abc` is a 400, not a plain-text rejection.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request(format!("bad path parameter: {}", e.body_text())))
    }
}

/// `?page=1&per_page=10`, the seed's pagination.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 4294967295_i64)]
    pub page: Option<i64>,
    /// Items per page, 1..=100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// `POST /api/rules/preview?rule_id=N`: the stored rule the previewed body would replace.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// When editing: the rule being edited (absent for a new rule).
    pub rule_id: Option<i64>,
}

/// Pagination that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

pub const MAX_PER_PAGE: i64 = 100;

/// Pages are counted in `u32`.
pub const MAX_PAGE: i64 = u32::MAX as i64;

impl PageQuery {
    pub fn validate(self) -> Result<Page, ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(10);
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(ApiError::bad_request(format!(
                "page must be between 1 and {MAX_PAGE}, got {page}"
            )));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::bad_request(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}"
            )));
        }
        // Both fit in u32: checked just above.
        Ok(Page {
            page: page as u32,
            per_page: per_page as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn q(page: Option<i64>, per_page: Option<i64>) -> Result<Page, ApiError> {
        PageQuery { page, per_page }.validate()
    }

    #[test]
    fn pagination_defaults_and_bounds() {
        assert_eq!(
            q(None, None).ok(),
            Some(Page {
                page: 1,
                per_page: 10
            })
        );
        assert_eq!(
            q(Some(3), Some(100)).ok(),
            Some(Page {
                page: 3,
                per_page: 100
            })
        );
        for (page, per_page) in [
            (Some(0), None),
            (Some(-1), None),
            (None, Some(0)),
            (None, Some(101)),
        ] {
            let err = q(page, per_page).expect_err("out of range");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert_eq!(err.code(), "bad_request");
        }
    }

    #[test]
    fn a_page_beyond_u32_names_both_bounds() {
        let err = q(Some(4_294_967_296), None).expect_err("out of range");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message(),
            "page must be between 1 and 4294967295, got 4294967296"
        );
        assert!(q(Some(4_294_967_295), None).is_ok());
    }
}
