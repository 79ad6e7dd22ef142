//! Request bodies: read within the size limit and a deadline, and refused at once when their
//! declared length is over the limit. A refused body is still read and thrown away in the
//! background, up to [`DRAIN_LIMIT`] and the body deadline: a client that sends its whole
//! body before reading the answer (Python's `http.client`, so `urllib` and `requests`) then
//! reads the 413 instead of failing with a broken pipe when the server closes on it.

use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, EXPECT};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;

/// The most of a refused body the server reads to let the client see the answer; a client
/// sending more has its connection closed.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads and discards the rest of a refused body in the background, within `DRAIN_LIMIT`
/// bytes and `timeout`; dropping the stream afterwards lets the connection close.
fn drain(mut stream: BodyDataStream, timeout: Duration) {
    tokio::spawn(async move {
        let read_all = async {
            let mut read = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                read = read.saturating_add(chunk.len());
                if read > DRAIN_LIMIT {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, read_all).await;
    });
}

/// The body, whole, if it fits in `limit` bytes and arrives within `timeout`.
pub async fn read_limited(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let deadline = Instant::now() + timeout;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(ApiError::request_timeout(timeout)),
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the request body: {e}"
                )));
            }
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    drain(stream, deadline.saturating_duration_since(Instant::now()));
                    return Err(ApiError::payload_too_large(limit));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// Middleware: a request whose `Content-Length` is over the limit gets 413 before any of
/// its body is read.
pub async fn refuse_oversized(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.body_limit;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_none_or(|n| n <= limit as u64) {
        return next.run(req).await;
    }
    // A client that asked `Expect: 100-continue` waits for the answer before sending: there
    // is nothing to drain, and reading would tell it to go ahead.
    let waits = req
        .headers()
        .get(EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if !waits {
        drain(
            req.into_body().into_data_stream(),
            state.config.body_timeout,
        );
    }
    ApiError::payload_too_large(limit).into_response()
}
