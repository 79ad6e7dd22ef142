//! `/api/runs`: run history.

use am_sql::runs::{RunFilter, RunId, RunStatus};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::views::{RunList, RunView};

/// Filters of `GET /api/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this rule.
    pub rule_id: Option<i64>,
    /// `queued`, `running`, `succeeded` or `failed` (empty: any).
    #[param(pattern = "^(queued|running|succeeded|failed)?$")]
    pub status: Option<String>,
    /// At most this many, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Recent runs, newest first.
#[utoipa::path(get, path = "/api/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be one of queued, running, succeeded, failed; got {s:?}"
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and 100, got {limit}"
        )));
    }
    let filter = RunFilter {
        rule_id: query.rule_id,
        status,
        // In 1..=100: checked above.
        limit: Some(limit as u32),
    };
    let runs = state
        .blocking(move |store| Ok(store.list_runs(&filter)?))
        .await?;
    Ok(Json(RunList {
        items: runs.into_iter().map(RunView::from).collect(),
    }))
}

/// One run.
#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", params(("id" = i64, Path)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RunId>,
) -> Result<Json<RunView>, ApiError> {
    let run = state.blocking(move |store| Ok(store.run(id)?)).await?;
    Ok(Json(run.into()))
}
