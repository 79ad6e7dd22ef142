//! The JSON shapes the API answers with (docs/api.md), with their OpenAPI schemas.
//!
//! They are separate from the store's types so the wire format is stated in one place and
//! changes to the library do not silently change what clients see.

use am_sql::catalog::Segment;
use am_sql::runs::Run;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"message"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// `POST /api/rules` → 201.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub message: String,
    pub rule_id: i64,
}

/// `POST /api/rules/{id}/trigger` → 202.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerAccepted {
    pub message: String,
    pub run_id: i64,
}

/// A rule by id and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleRef {
    pub id: i64,
    pub rule_name: String,
}

/// A reuse the planner found for a rule, with the reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReuseView {
    /// `equal`, `conjunction`, `disjunction`, `negation` or `narrowing`.
    pub kind: String,
    pub parents: Vec<RuleRef>,
    pub reason: String,
}

/// A rule as written, plus what the platform knows about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub id: i64,
    pub rule_name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(schema_with = crate::api::doc::conditions_schema)]
    pub conditions: serde_json::Value,
    #[schema(required = true)]
    pub schedule: Option<String>,
    #[schema(required = true)]
    pub start_date: Option<String>,
    #[schema(required = true)]
    pub end_date: Option<String>,
    pub depends_on: Vec<i64>,
    #[schema(required = true)]
    pub operation: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The schedule in words; null for manual-only rules.
    #[schema(required = true)]
    pub schedule_description: Option<String>,
    #[schema(required = true)]
    pub next_run_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_run: Option<RunView>,
    #[schema(required = true)]
    pub segment_id: Option<i64>,
    pub reuses: Vec<ReuseView>,
}

/// A page of rules in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulePage {
    pub items: Vec<RuleView>,
    pub total: i64,
    #[schema(value_type = u64)]
    pub page: u32,
    #[schema(value_type = u64)]
    pub pages: u32,
}

/// One refresh of one rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    /// Null once the rule has been deleted.
    #[schema(required = true)]
    pub rule_id: Option<i64>,
    pub rule_name: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// `manual`, `schedule`, `cli`, `api` or `upstream`.
    pub trigger: String,
    pub queued_at: DateTime<Utc>,
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub row_count: Option<i64>,
    #[schema(required = true)]
    pub entered: Option<i64>,
    #[schema(required = true)]
    pub left: Option<i64>,
    #[schema(required = true)]
    pub error: Option<String>,
}

impl From<Run> for RunView {
    fn from(run: Run) -> RunView {
        RunView {
            id: run.id,
            rule_id: run.rule_id,
            rule_name: run.rule_name,
            status: run.status.as_str().to_string(),
            trigger: run.trigger.as_str().to_string(),
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            row_count: run.row_count,
            entered: run.entered,
            left: run.left,
            error: run.error,
        }
    }
}

/// `GET /api/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub items: Vec<RunView>,
}

/// A built segment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    pub id: i64,
    pub rule_id: i64,
    pub segment_name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub table_name: String,
    pub row_count: i64,
    pub last_refreshed_at: DateTime<Utc>,
    /// Members that joined at the last refresh.
    pub entered: i64,
    /// Members that left at the last refresh.
    pub left: i64,
    /// The rules this segment's rule names in `depends_on`.
    pub depends_on: Vec<RuleRef>,
    /// The segments the last refresh computed it from (automatic reuse).
    pub reuses: Vec<RuleRef>,
}

/// A segment with its SQL and its rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentDetail {
    #[serde(flatten)]
    pub segment: SegmentView,
    /// The complete SELECT that produced the members, values inlined.
    pub sql_query: String,
    pub rule: RuleRef,
}

/// A page of segments in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentPage {
    pub items: Vec<SegmentView>,
    pub total: i64,
    #[schema(value_type = u64)]
    pub page: u32,
    #[schema(value_type = u64)]
    pub pages: u32,
}

/// A segment view from the catalog row; `name_of` names rules by id.
pub fn segment_view(
    seg: &Segment,
    depends_on: &[i64],
    name_of: &dyn Fn(i64) -> String,
) -> SegmentView {
    let refs = |ids: &[i64]| {
        ids.iter()
            .map(|&id| RuleRef {
                id,
                rule_name: name_of(id),
            })
            .collect::<Vec<_>>()
    };
    SegmentView {
        id: seg.id,
        rule_id: seg.rule_id,
        segment_name: seg.segment_name.clone(),
        description: seg.description.clone(),
        table_name: seg.table_name.clone(),
        row_count: seg.row_count,
        last_refreshed_at: seg.last_refreshed_at,
        entered: seg.entered,
        left: seg.left,
        depends_on: refs(depends_on),
        reuses: refs(&seg.reused_from),
    }
}

/// `GET /api/segments/{id}/sample_data`, the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleData {
    pub columns: Vec<String>,
    #[schema(schema_with = crate::api::doc::sample_rows_schema)]
    pub data: Vec<Vec<serde_json::Value>>,
}

/// `GET /api/analytics/summary`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    pub total_users: i64,
    pub total_transactions: i64,
    pub total_spend: f64,
}

/// One rule of a plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanNodeView {
    pub rule_id: i64,
    pub rule_name: String,
    /// Rules this node reads (explicit dependencies and reused segments).
    pub upstream: Vec<i64>,
    #[schema(required = true)]
    pub reuse: Option<ReuseView>,
    /// The SELECT that computes this node's members.
    pub sql: String,
}

/// `GET /api/rules/{id}/plan`: the plan of a rule and everything upstream of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// The indented text form.
    pub text: String,
    /// Graphviz DOT.
    pub dot: String,
    /// In execution order.
    pub nodes: Vec<PlanNodeView>,
}

/// `POST /api/rules/preview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    /// How many users the rule would select now.
    pub audience_size: i64,
    pub plan: PlanView,
    pub reuses: Vec<ReuseView>,
    /// The SELECT for the previewed rule.
    pub sql: String,
}

/// A node of the lineage graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageNode {
    pub rule_id: i64,
    pub rule_name: String,
    #[schema(required = true)]
    pub segment_id: Option<i64>,
    #[schema(required = true)]
    pub row_count: Option<i64>,
    /// `target` or `upstream`.
    pub role: String,
}

/// An edge of the lineage graph, from parent to child (rule ids).
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageEdge {
    pub from: i64,
    pub to: i64,
    /// `depends_on` or `reuse`.
    pub kind: String,
    /// For `depends_on`: the child's operation; for `reuse`: the reuse kind.
    #[schema(required = true)]
    pub operation: Option<String>,
}

/// `GET /api/segments/{id}/lineage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

/// A field of the condition language, for the condition builder.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldView {
    pub name: String,
    /// `profile`, `aggregate` or `transaction`.
    pub kind: String,
    /// `integer`, `money`, `text` or `timestamp`.
    #[serde(rename = "type")]
    pub value_type: String,
    pub operators: Vec<String>,
    pub doc: String,
}

/// `GET /api/schedules/describe`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDescription {
    pub description: String,
    pub next_runs: Vec<DateTime<Utc>>,
}

/// `GET /api/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}
