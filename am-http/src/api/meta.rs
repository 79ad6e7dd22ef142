//! Everything else under `/api`: health, the analytics summary, the field catalog for the
//! condition builder, and schedule descriptions.

use am_core::field::{Field, FieldKind, ValueType};
use am_core::schedule::Schedule;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::views::{FieldView, Health, ScheduleDescription, Summary};

/// How many upcoming fire times `describe` lists.
const NEXT_RUNS: usize = 5;

/// Liveness.
#[utoipa::path(get, path = "/api/health", tag = "meta", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Users, transactions (both tables) and total spend.
#[utoipa::path(get, path = "/api/analytics/summary", tag = "meta", responses((status = 200, body = Summary)))]
pub async fn summary(State(state): State<AppState>) -> Result<Json<Summary>, ApiError> {
    let s = state.blocking(|store| Ok(store.summary()?)).await?;
    Ok(Json(Summary {
        total_users: s.total_users,
        total_transactions: s.total_transactions,
        total_spend: s.total_spend(),
    }))
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Profile => "profile",
        FieldKind::Aggregate => "aggregate",
        FieldKind::Transaction => "transaction",
    }
}

fn type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Integer => "integer",
        ValueType::Money => "money",
        ValueType::Text => "text",
        ValueType::Timestamp => "timestamp",
        ValueType::Location => "location",
    }
}

/// The catalog of fields a condition may name.
#[utoipa::path(get, path = "/api/fields", tag = "meta", responses((status = 200, body = Vec<FieldView>)))]
pub async fn fields() -> Json<Vec<FieldView>> {
    Json(
        Field::ALL
            .iter()
            .map(|f| FieldView {
                name: f.name().into(),
                kind: kind_name(f.kind()).into(),
                value_type: type_name(f.value_type()).into(),
                operators: am_core::validate::operators_for(f.value_type())
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                doc: f.doc().into(),
            })
            .collect(),
    )
}

/// `?schedule=...`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DescribeQuery {
    /// A crontab line or `@` name.
    #[param(min_length = 1)]
    pub schedule: String,
}

/// A schedule in words with its next fire times; 422 when it does not parse.
#[utoipa::path(get, path = "/api/schedules/describe", tag = "meta", params(DescribeQuery),
    responses((status = 200, body = ScheduleDescription), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn describe_schedule(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DescribeQuery>,
) -> Result<Json<ScheduleDescription>, ApiError> {
    let schedule = Schedule::parse(&query.schedule)?;
    let mut next_runs = Vec::with_capacity(NEXT_RUNS);
    let mut at = state.scheduler.clock().now();
    while next_runs.len() < NEXT_RUNS {
        match schedule.next_after(at) {
            Some(next) => {
                next_runs.push(next);
                at = next;
            }
            None => break,
        }
    }
    Ok(Json(ScheduleDescription {
        description: schedule.describe(),
        next_runs,
    }))
}
