//! The web UI's static files, embedded in the binary at build time: `am-http/ui/<path>` is
//! served at `/assets/<path>`, and the page routes (`/`, `/rules`, `/segments/7`, ...) answer
//! `index.html` so the single-page app can route on the client.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::error::ApiError;

static UI: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui");

/// Browsers refuse module scripts served with a non-JavaScript type, so types are explicit.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file_response(path: &str, contents: &'static [u8]) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        contents,
    )
        .into_response()
}

/// The UI's entry page.
pub fn index() -> Response {
    match UI.get_file("index.html") {
        Some(file) => file_response("index.html", file.contents()),
        None => (
            StatusCode::NOT_FOUND,
            "the web UI is not part of this build",
        )
            .into_response(),
    }
}

/// `GET /assets/{*path}`.
pub async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    // The README documents the folder; it is not an asset.
    if path == "README.md" || path.contains("..") {
        return ApiError::not_found("no such asset").into_response();
    }
    match UI.get_file(&path) {
        Some(file) => file_response(&path, file.contents()),
        None => ApiError::not_found(format!("no asset {path:?}")).into_response(),
    }
}

/// The fallback for everything the router does not know: `/api/...` is a JSON 404, any other
/// GET is a page of the app.
pub async fn fallback(method: axum::http::Method, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") || path.starts_with("/assets/") {
        return ApiError::not_found(format!("no endpoint {path}")).into_response();
    }
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return index();
    }
    ApiError::method_not_allowed().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_javascript() {
        assert_eq!(
            content_type("pages/rules.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("styles.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
    }
}
