//! `/api/rules`: the seed's rule endpoints, plus delete, preview and plan.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use am_core::plan::Reuse;
use am_core::plan_display::reuse_kind_name;
use am_core::rule::RuleId;
use am_core::schedule::Schedule;
use am_sql::Store;
use am_sql::refresh::Explain;
use am_sql::rules::StoredRule;
use am_sql::runs::RunTrigger;
use am_sql::store::RuleSet;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, PageQuery, PreviewQuery, RuleBody};
use crate::scheduler::SchedulerError;
use crate::state::AppState;
use crate::views::{
    Created, Message, PlanNodeView, PlanView, PreviewView, ReuseView, RulePage, RuleRef, RuleView,
    TriggerAccepted,
};

/// Names of rules by id, for references in views.
pub(crate) fn names(rules: &[StoredRule]) -> HashMap<RuleId, String> {
    rules
        .iter()
        .map(|r| (r.id, r.spec.rule_name.clone()))
        .collect()
}

pub(crate) fn name_of(names: &HashMap<RuleId, String>, id: RuleId) -> String {
    names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("rule #{id}"))
}

pub(crate) fn reuse_view(reuse: &Reuse, names: &HashMap<RuleId, String>) -> ReuseView {
    ReuseView {
        kind: reuse_kind_name(reuse.kind).to_string(),
        parents: reuse
            .parents
            .iter()
            .map(|&id| RuleRef {
                id,
                rule_name: name_of(names, id),
            })
            .collect(),
        reason: reuse.reason.clone(),
    }
}

/// Everything a rule's view needs beyond the rule, read once per request.
struct Context {
    rules: Arc<RuleSet>,
    /// Empty when the stored rules cannot be planned.
    names: HashMap<RuleId, String>,
    now: DateTime<Utc>,
}

impl Context {
    fn reuses(&self) -> &BTreeMap<RuleId, Reuse> {
        static NONE: BTreeMap<RuleId, Reuse> = BTreeMap::new();
        self.rules.reuses.as_ref().unwrap_or(&NONE)
    }
}

fn rule_view(store: &Store, record: StoredRule, ctx: &Context) -> Result<RuleView, ApiError> {
    let last_run = store.last_run(record.id)?.map(Into::into);
    let segment_id = store.segment_for_rule(record.id)?.map(|s| s.id);
    // Stored schedules were validated on write; one that no longer parses shows no times.
    let schedule = record
        .spec
        .schedule
        .as_deref()
        .and_then(|s| Schedule::parse(s).ok());
    let spec = record.spec;
    Ok(RuleView {
        id: record.id,
        rule_name: spec.rule_name,
        description: spec.description,
        conditions: spec.conditions,
        schedule: spec.schedule,
        start_date: spec.start_date,
        end_date: spec.end_date,
        depends_on: spec.depends_on,
        operation: spec.operation,
        created_at: record.created_at,
        updated_at: record.updated_at,
        schedule_description: schedule.as_ref().map(Schedule::describe),
        next_run_at: schedule.as_ref().and_then(|s| s.next_after(ctx.now)),
        last_run,
        segment_id,
        reuses: ctx
            .reuses()
            .get(&record.id)
            .map(|r| vec![reuse_view(r, &ctx.names)])
            .unwrap_or_default(),
    })
}

fn context(store: &am_sql::Store, now: DateTime<Utc>) -> Result<Context, ApiError> {
    let rules = store.rule_set()?;
    // Reuse is an optimisation: if planning fails the views still answer, without it.
    if let Err(e) = &rules.reuses {
        tracing::warn!(error = %e, "could not plan rules for reuse information");
    }
    Ok(Context {
        names: names(&rules.rules),
        rules,
        now,
    })
}

/// List rules, a page at a time.
#[utoipa::path(get, path = "/api/rules", tag = "rules", params(PageQuery),
    responses((status = 200, body = RulePage), (status = 400, body = ErrorBody)))]
pub async fn list_rules(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<RulePage>, ApiError> {
    let page = query.validate()?;
    let now = state.scheduler.clock().now();
    let view = state
        .blocking(move |store| {
            let rules = store.list_rules(page.page, page.per_page)?;
            let ctx = context(store, now)?;
            let items = rules
                .items
                .into_iter()
                .map(|r| rule_view(store, r, &ctx))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RulePage {
                items,
                total: rules.total,
                page: rules.page,
                pages: rules.pages,
            })
        })
        .await?;
    Ok(Json(view))
}

/// Create a rule.
#[utoipa::path(post, path = "/api/rules", tag = "rules",
    request_body(content = crate::api::doc::RuleInput, description = "a rule (contract section 2)"),
    responses((status = 201, body = Created), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_rule(
    State(state): State<AppState>,
    body: RuleBody,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let id = state
        .blocking(move |store| Ok(store.create_rule_json(&body.text)?))
        .await?;
    state.scheduler.rules_changed();
    Ok((
        StatusCode::CREATED,
        Json(Created {
            message: "Rule created successfully".into(),
            rule_id: id,
        }),
    ))
}

/// One rule, with its schedule in words, next run, last run and reuses.
#[utoipa::path(get, path = "/api/rules/{id}", tag = "rules", params(("id" = i64, Path)),
    responses((status = 200, body = RuleView), (status = 404, body = ErrorBody)))]
pub async fn get_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RuleId>,
) -> Result<Json<RuleView>, ApiError> {
    let now = state.scheduler.clock().now();
    let view = state
        .blocking(move |store| {
            let record = store.rule(id)?;
            let ctx = context(store, now)?;
            rule_view(store, record, &ctx)
        })
        .await?;
    Ok(Json(view))
}

/// Replace a rule.
#[utoipa::path(put, path = "/api/rules/{id}", tag = "rules", params(("id" = i64, Path)),
    request_body(content = crate::api::doc::RuleInput, description = "a rule (contract section 2)"),
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RuleId>,
    body: RuleBody,
) -> Result<Json<Message>, ApiError> {
    state
        .blocking(move |store| Ok(store.update_rule_json(id, &body.text)?))
        .await?;
    state.scheduler.rules_changed();
    Ok(Json(Message {
        message: "Rule updated successfully".into(),
    }))
}

/// Delete a rule; 409 while other rules depend on it.
#[utoipa::path(delete, path = "/api/rules/{id}", tag = "rules", params(("id" = i64, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RuleId>,
) -> Result<Json<Message>, ApiError> {
    state
        .blocking(move |store| Ok(store.delete_rule(id)?))
        .await?;
    state.scheduler.rules_changed();
    Ok(Json(Message {
        message: "Rule deleted successfully".into(),
    }))
}

/// Queue a refresh of a rule (and whatever it is built from that is stale). Answers at once
/// with the run's id; a trigger while the rule has a run queued or running joins that run.
#[utoipa::path(post, path = "/api/rules/{id}/trigger", tag = "rules", params(("id" = i64, Path)),
    responses((status = 202, body = TriggerAccepted), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn trigger_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RuleId>,
) -> Result<(StatusCode, Json<TriggerAccepted>), ApiError> {
    let triggered = state
        .scheduler
        .trigger(id, RunTrigger::Api)
        .await
        .map_err(|e| match e {
            SchedulerError::ShuttingDown => ApiError::unavailable(e.to_string()),
            SchedulerError::Store(e) => ApiError::from(e),
            other => ApiError::internal(other),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TriggerAccepted {
            message: "Rule trigger has been scheduled".into(),
            run_id: triggered.run_id,
        }),
    ))
}

pub(crate) fn plan_view(explained: &Explain, names: &HashMap<RuleId, String>) -> PlanView {
    PlanView {
        text: explained.plan_text.clone(),
        dot: explained.dot.clone(),
        nodes: explained
            .nodes
            .iter()
            .map(|n| PlanNodeView {
                rule_id: n.rule_id,
                rule_name: n.rule_name.clone(),
                upstream: n.upstream.clone(),
                reuse: n.reuse.as_ref().map(|r| reuse_view(r, names)),
                sql: n.sql.clone(),
            })
            .collect(),
    }
}

/// Validate a rule and say how many users it would select now, with its plan, without
/// saving it. With `rule_id`, the rule is an edit of that stored rule: it is planned in place
/// of the saved version (never reusing it, 422 for a dependency cycle through it).
#[utoipa::path(post, path = "/api/rules/preview", tag = "rules", params(PreviewQuery),
    request_body(content = crate::api::doc::RuleInput, description = "a rule (contract section 2)"),
    responses((status = 200, body = PreviewView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preview_rule(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
    RuleBody { spec, .. }: RuleBody,
) -> Result<Json<PreviewView>, ApiError> {
    let as_of = state.scheduler.clock().now().naive_utc();
    let view = state
        .blocking(move |store| {
            let rule_name = spec.rule_name.clone();
            let previewed = store.preview(&spec, query.rule_id, Some(as_of))?;
            let mut names = names(&store.rule_set()?.rules);
            names.insert(previewed.rule_id, rule_name);
            Ok(PreviewView {
                audience_size: previewed.audience_size,
                plan: plan_view(&previewed.plan, &names),
                reuses: previewed
                    .reuse
                    .iter()
                    .map(|r| reuse_view(r, &names))
                    .collect(),
                sql: previewed.sql,
            })
        })
        .await?;
    Ok(Json(view))
}

/// Explain a rule: its plan with everything upstream, the reuse found and the SQL per node.
#[utoipa::path(get, path = "/api/rules/{id}/plan", tag = "rules", params(("id" = i64, Path)),
    responses((status = 200, body = PlanView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rule_plan(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RuleId>,
) -> Result<Json<PlanView>, ApiError> {
    let view = state
        .blocking(move |store| {
            let explained = store.explain(id)?;
            let names = names(&store.rule_set()?.rules);
            Ok(plan_view(&explained, &names))
        })
        .await?;
    Ok(Json(view))
}
