//! The REST API under `/api` (contract section 3, docs/api.md), collected with utoipa-axum
//! so the OpenAPI document is generated from the handlers themselves.

pub mod doc;
pub mod meta;
pub mod rules;
pub mod runs;
pub mod segments;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Audience Manager API", description = "Rules, segments, runs and analytics. Errors answer `{\"error\": {\"code\", \"message\", \"details\"?}}`."),
    tags(
        (name = "rules", description = "Rules: CRUD, trigger, preview, plan"),
        (name = "segments", description = "Built segments: catalog, sample, lineage, export"),
        (name = "runs", description = "Run history"),
        (name = "meta", description = "Health, analytics, field catalog, schedules"),
    ),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

/// The `/api` routes and the OpenAPI document describing them.
pub fn routes() -> (Router<AppState>, OpenApiDoc) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(rules::preview_rule))
        .routes(routes!(
            rules::get_rule,
            rules::update_rule,
            rules::delete_rule
        ))
        .routes(routes!(rules::trigger_rule))
        .routes(routes!(rules::rule_plan))
        .routes(routes!(segments::list_segments))
        .routes(routes!(segments::get_segment))
        .routes(routes!(segments::sample_data))
        .routes(routes!(segments::lineage))
        .routes(routes!(segments::export))
        .routes(routes!(runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(meta::health))
        .routes(routes!(meta::summary))
        .routes(routes!(meta::fields))
        .routes(routes!(meta::describe_schedule))
        .split_for_parts();
    let mut doc = doc;
    doc::CommonResponses.modify(&mut doc);
    let json = doc.clone();
    let router = router.route(
        "/api/openapi.json",
        get(move || {
            let json = json.clone();
            async move { Json(json) }
        }),
    );
    (router, doc)
}

/// The OpenAPI document of the API.
pub fn openapi() -> OpenApiDoc {
    routes().1
}
