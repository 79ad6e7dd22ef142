//! The store operations the API and the scheduler use, in one place: each is a blocking call
//! into `am_sql`, run on the blocking pool by the caller.

use std::collections::HashMap;

use am_core::plan::{Plan, Reuse};
use am_core::rule::{RuleId, RuleSpec};
use am_sql::Store;
use am_sql::catalog::Page;
use am_sql::runs::RunId;
use chrono::NaiveDateTime;

pub type Result<T> = std::result::Result<T, am_sql::Error>;

/// A stored rule.
pub type RuleRecord = am_sql::rules::StoredRule;

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

pub fn list_rules(store: &Store, page: u32, per_page: u32) -> Result<Page<RuleRecord>> {
    store.list_rules(page, per_page)
}

pub fn all_rules(store: &Store) -> Result<Vec<RuleRecord>> {
    store.all_rules()
}

pub fn rule(store: &Store, id: RuleId) -> Result<RuleRecord> {
    store.rule(id)
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
