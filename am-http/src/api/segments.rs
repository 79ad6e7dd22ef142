//! `/api/segments`: the catalog, samples, lineage and the streamed CSV export.

use std::collections::HashMap;

use am_core::plan_display::reuse_kind_name;
use am_sql::catalog::SegmentId;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::rules::{name_of, names};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, PageQuery};
use crate::state::AppState;
use crate::views::{
    Lineage, LineageEdge, LineageNode, RuleRef, SampleData, SegmentDetail, SegmentPage,
    segment_view,
};

/// Rows in a sample (the seed's "e.g. 100 rows").
const SAMPLE_ROWS: u32 = 100;

/// Rows per chunk of the CSV export: large enough to keep overhead low, small enough that a
/// slow client holds little memory.
const EXPORT_CHUNK_ROWS: usize = 1000;

fn depends_on_of(rules: &[am_sql::rules::StoredRule]) -> HashMap<i64, Vec<i64>> {
    rules
        .iter()
        .map(|r| (r.id, r.spec.depends_on.clone()))
        .collect()
}

/// List segments, a page at a time.
#[utoipa::path(get, path = "/api/segments", tag = "segments", params(PageQuery),
    responses((status = 200, body = SegmentPage), (status = 400, body = ErrorBody)))]
pub async fn list_segments(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<SegmentPage>, ApiError> {
    let page = query.validate()?;
    let view = state
        .blocking(move |store| {
            let segments = store.list_segments(page.page, page.per_page)?;
            let rules = store.all_rules()?;
            let names = names(&rules);
            let deps = depends_on_of(&rules);
            let items = segments
                .items
                .iter()
                .map(|s| {
                    let d = deps.get(&s.rule_id).map(Vec::as_slice).unwrap_or_default();
                    segment_view(s, d, &|id| name_of(&names, id))
                })
                .collect();
            Ok(SegmentPage {
                items,
                total: segments.total,
                page: segments.page,
                pages: segments.pages,
            })
        })
        .await?;
    Ok(Json(view))
}

/// One segment, with its SQL and its rule.
#[utoipa::path(get, path = "/api/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = SegmentDetail), (status = 404, body = ErrorBody)))]
pub async fn get_segment(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<SegmentId>,
) -> Result<Json<SegmentDetail>, ApiError> {
    let view = state
        .blocking(move |store| {
            let seg = store.segment(id)?;
            let rules = store.all_rules()?;
            let names = names(&rules);
            let deps = depends_on_of(&rules);
            let d = deps
                .get(&seg.rule_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            Ok(SegmentDetail {
                segment: segment_view(&seg, d, &|id| name_of(&names, id)),
                sql_query: seg.sql_query.clone(),
                rule: RuleRef {
                    id: seg.rule_id,
                    rule_name: name_of(&names, seg.rule_id),
                },
            })
        })
        .await?;
    Ok(Json(view))
}

/// Up to 100 members with name and email, in the seed's shape.
#[utoipa::path(get, path = "/api/segments/{id}/sample_data", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = SampleData), (status = 404, body = ErrorBody)))]
pub async fn sample_data(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<SegmentId>,
) -> Result<Json<SampleData>, ApiError> {
    let rows = state
        .blocking(move |store| Ok(store.sample(id, SAMPLE_ROWS)?))
        .await?;
    Ok(Json(SampleData {
        columns: vec!["user_id".into(), "name".into(), "email".into()],
        data: rows
            .into_iter()
            .map(|(user_id, name, email)| vec![user_id.into(), name.into(), email.into()])
            .collect(),
    }))
}

/// The graph of what a segment is built from: explicit dependencies and reuse.
#[utoipa::path(get, path = "/api/segments/{id}/lineage", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = Lineage), (status = 404, body = ErrorBody)))]
pub async fn lineage(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<SegmentId>,
) -> Result<Json<Lineage>, ApiError> {
    let view = state
        .blocking(move |store| {
            let target = store.segment(id)?;
            let explained = store.explain(target.rule_id)?;
            let rules = store.all_rules()?;
            let deps = depends_on_of(&rules);
            let operations: HashMap<i64, Option<String>> = rules
                .iter()
                .map(|r| (r.id, r.spec.operation.clone()))
                .collect();
            let segments: HashMap<i64, am_sql::catalog::Segment> = store
                .all_segments()?
                .into_iter()
                .map(|s| (s.rule_id, s))
                .collect();
            let mut nodes = Vec::new();
            let mut edges = Vec::new();
            for node in &explained.nodes {
                let seg = segments.get(&node.rule_id);
                nodes.push(LineageNode {
                    rule_id: node.rule_id,
                    rule_name: node.rule_name.clone(),
                    segment_id: seg.map(|s| s.id),
                    row_count: seg.map(|s| s.row_count),
                    role: if node.rule_id == target.rule_id {
                        "target"
                    } else {
                        "upstream"
                    }
                    .into(),
                });
                let explicit = deps.get(&node.rule_id).cloned().unwrap_or_default();
                for &parent in &node.upstream {
                    let edge = if explicit.contains(&parent) {
                        LineageEdge {
                            from: parent,
                            to: node.rule_id,
                            kind: "depends_on".into(),
                            operation: Some(
                                operations
                                    .get(&node.rule_id)
                                    .cloned()
                                    .flatten()
                                    .unwrap_or_else(|| "INTERSECTION".into()),
                            ),
                        }
                    } else {
                        LineageEdge {
                            from: parent,
                            to: node.rule_id,
                            kind: "reuse".into(),
                            operation: node
                                .reuse
                                .as_ref()
                                .map(|r| reuse_kind_name(r.kind).to_string()),
                        }
                    };
                    edges.push(edge);
                }
            }
            Ok(Lineage { nodes, edges })
        })
        .await?;
    Ok(Json(view))
}

/// One CSV field, by the rule the CLI's export shares: quoted when needed, a leading
/// `= + - @` defused with `'` so spreadsheets do not run it as a formula.
fn csv_field(out: &mut String, value: &str) {
    out.push_str(&am_sql::csv_text::csv_safe(value));
}

/// Every member as CSV (`user_id,name,email`), streamed in chunks as the database reads them.
#[utoipa::path(get, path = "/api/segments/{id}/export", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<SegmentId>,
) -> Result<Response, ApiError> {
    // Look the segment up first so an unknown id is a 404, not a broken stream.
    let seg = state.blocking(move |store| Ok(store.segment(id)?)).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = String::from("user_id,name,email\n");
        let mut rows = 0usize;
        let result = store.for_each_member(id, |user_id, name, email| {
            buf.push_str(&user_id.to_string());
            buf.push(',');
            csv_field(&mut buf, name.unwrap_or(""));
            buf.push(',');
            csv_field(&mut buf, email.unwrap_or(""));
            buf.push('\n');
            rows += 1;
            if rows.is_multiple_of(EXPORT_CHUNK_ROWS) {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                // The client went away: stop reading.
                tx.blocking_send(Ok(chunk)).map_err(|_| ())?;
            }
            Ok(())
        });
        match result {
            Ok(Ok(())) => {
                if !buf.is_empty() {
                    let _ = tx.blocking_send(Ok(Bytes::from(buf)));
                }
            }
            Ok(Err(())) => {}
            Err(e) => {
                // Headers are gone already: end the body with an error so the client sees a
                // truncated transfer rather than a short file that looks complete.
                tracing::error!(error = %e, segment = id, "export failed");
                let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
            }
        }
    });
    let filename = format!("attachment; filename=\"segment_{}.csv\"", seg.id);
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    fn field(v: &str) -> String {
        let mut s = String::new();
        csv_field(&mut s, v);
        s
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("Ada"), "Ada");
        assert_eq!(field("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=1+1"), "\"'=1+1\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
    }
}
