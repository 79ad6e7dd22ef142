//! The store operations the API and the scheduler use, in one place: each is a blocking call
//! into `am_sql`, run on the blocking pool by the caller.

use std::collections::HashMap;

use am_core::plan::{Plan, Reuse};
use am_core::rule::{RuleId, RuleSpec};
use am_sql::Store;
use am_sql::catalog::Page;
use am_sql::runs::RunId;
use chrono::{DateTime, NaiveDateTime, Utc};

pub type Result<T> = std::result::Result<T, am_sql::Error>;

/// A stored rule.
#[derive(Debug, Clone)]
pub struct RuleRecord {
    pub id: RuleId,
    pub spec: RuleSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rule's plan with the SQL of every node.
#[derive(Debug, Clone)]
pub struct Explained {
    pub plan: Plan,
    pub sql: HashMap<RuleId, String>,
}

/// What a rule would select now, without saving it.
#[derive(Debug, Clone)]
pub struct Previewed {
    pub audience_size: i64,
    pub explained: Explained,
    /// The id the previewed rule has in `explained`.
    pub target: RuleId,
    pub reuse: Option<Reuse>,
    pub sql: String,
}

fn unavailable<T>() -> Result<T> {
    Err(am_sql::Error::Refused("not available in this build".into()))
}

pub fn list_rules(_store: &Store, _page: u32, _per_page: u32) -> Result<Page<RuleRecord>> {
    unavailable()
}

pub fn all_rules(_store: &Store) -> Result<Vec<RuleRecord>> {
    unavailable()
}

pub fn rule(_store: &Store, _id: RuleId) -> Result<RuleRecord> {
    unavailable()
}

pub fn create_rule(_store: &Store, _spec: &RuleSpec) -> Result<RuleId> {
    unavailable()
}

pub fn update_rule(_store: &Store, _id: RuleId, _spec: &RuleSpec) -> Result<()> {
    unavailable()
}

pub fn delete_rule(_store: &Store, _id: RuleId) -> Result<()> {
    unavailable()
}

/// The reuse the planner finds for each rule, over all current rules.
pub fn reuses(_store: &Store) -> Result<HashMap<RuleId, Reuse>> {
    unavailable()
}

pub fn explain(_store: &Store, _rule_id: RuleId) -> Result<Explained> {
    unavailable()
}

pub fn preview(_store: &Store, _spec: &RuleSpec, _as_of: NaiveDateTime) -> Result<Previewed> {
    unavailable()
}

/// Refreshes `rule_id` (and its stale upstream, in plan order) as run `run_id`, marking the
/// run running and then succeeded or failed.
pub fn refresh_run(
    _store: &Store,
    _run_id: RunId,
    _rule_id: RuleId,
    _as_of: NaiveDateTime,
) -> Result<()> {
    unavailable()
}
