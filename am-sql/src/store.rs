//! `Store`: the facade over one database file that the CLI, the HTTP server and the scheduler
//! use. It holds the path and opens a connection per operation, so it is cheap to clone and
//! share across threads; WAL mode lets readers proceed while a refresh writes.
//!
//! Clones share a small cache of read-path results that are costly to compute and cheap to
//! validate: the analytics summary, keyed by the data version, and the planned rule set,
//! keyed by a fingerprint of `rule_table`. Each is checked against the database on every
//! call, so a write by any process (the CLI, users' ETL) is seen at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use am_core::plan::Reuse;
use am_core::rule::RuleId;

use crate::catalog::{self, Member, Page, Segment, SegmentId, Summary};
use crate::db;
use crate::error::{Error, Result};
use crate::rules::StoredRule;
use crate::runs::{self, Run, RunFilter, RunId, RunTrigger};

/// Every stored rule with the reuse the planner finds for each: what views of rules show.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    /// Every rule, by id.
    pub rules: Vec<StoredRule>,
    /// How the planner answers rules from other segments, over all current rules (as a
    /// refresh plans them); `Err` with the reason when the stored rules cannot be planned.
    pub reuses: std::result::Result<BTreeMap<RuleId, Reuse>, String>,
}

impl RuleSet {
    fn plan(rules: Vec<StoredRule>) -> RuleSet {
        let reuses = crate::refresh::engine_rules_of(&rules)
            .and_then(|engine| crate::refresh::planner_of(&engine))
            .map(|planner| {
                planner
                    .plan_all()
                    .nodes
                    .into_iter()
                    .filter_map(|n| n.reuse.map(|r| (n.rule_id, r)))
                    .collect()
            })
            .map_err(|e| e.to_string());
        RuleSet { rules, reuses }
    }

    /// A rule's name, if it exists.
    pub fn name_of(&self, id: RuleId) -> Option<&str> {
        self.rules
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .and_then(|i| self.rules.get(i))
            .map(|r| r.spec.rule_name.as_str())
    }
}

/// A handle on one Audience Manager database.
#[derive(Debug, Clone)]
pub struct Store {
    path: Arc<PathBuf>,
    cache: Arc<Mutex<Cache>>,
}

/// Cached read results with the key each was computed at.
#[derive(Debug, Default)]
struct Cache {
    summary: Option<(i64, Summary)>,
    rules: Option<(RulesFingerprint, Arc<RuleSet>)>,
}

/// Changes with every write of a rule through the store: an update bumps that rule's
/// `version` (so the sum grows), a create raises `max(id)` (AUTOINCREMENT never reuses an
/// id) and a delete without a create lowers the count. `max(updated_at)` also catches most
/// edits made by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RulesFingerprint {
    count: i64,
    version_sum: i64,
    max_id: i64,
    max_updated_at: Option<String>,
}

impl RulesFingerprint {
    fn read(conn: &Connection) -> Result<RulesFingerprint> {
        Ok(conn.query_row(
            "SELECT count(*), coalesce(sum(version), 0), coalesce(max(id), 0), max(updated_at)
             FROM rule_table",
            [],
            |r| {
                Ok(RulesFingerprint {
                    count: r.get(0)?,
                    version_sum: r.get(1)?,
                    max_id: r.get(2)?,
                    max_updated_at: r.get(3)?,
                })
            },
        )?)
    }
}

impl Store {
    /// Opens the database at `path`, creating the file and the schema if needed and running
    /// any pending migrations (`am init`).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        db::open(path)?;
        Ok(Store {
            path: Arc::new(path.to_path_buf()),
            cache: Arc::default(),
        })
    }

    /// Opens a database that must already exist (every command but `am init`), running any
    /// pending migrations.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::NoDatabase(path.to_path_buf()));
        }
        Store::open(path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection, configured (WAL, foreign keys, busy timeout).
    pub fn connection(&self) -> Result<Connection> {
        db::connect(&self.path)
    }

    /// The data tables' version counter (see [`db::data_version`]).
    pub fn data_version(&self) -> Result<i64> {
        db::data_version(&self.connection()?)
    }

    /// Segments by id, one page (pages from 1).
    pub fn list_segments(&self, page: u32, per_page: u32) -> Result<Page<Segment>> {
        catalog::list_segments(&self.connection()?, page, per_page)
    }

    /// One segment; `NotFound` if there is none with that id.
    pub fn segment(&self, id: SegmentId) -> Result<Segment> {
        catalog::segment(&self.connection()?, id)
    }

    /// The segment of a rule, if it has been built.
    pub fn segment_for_rule(&self, rule_id: RuleId) -> Result<Option<Segment>> {
        catalog::segment_for_rule(&self.connection()?, rule_id)
    }

    /// Who entered and who left a segment at its last refresh, with up to `limit` ids each.
    pub fn membership_diff(&self, id: SegmentId, limit: u32) -> Result<catalog::MembershipDiff> {
        catalog::membership_diff(&self.connection()?, id, limit)
    }

    /// Up to `limit` members of a segment with their name and email.
    pub fn sample(&self, id: SegmentId, limit: u32) -> Result<Vec<Member>> {
        catalog::sample(&self.connection()?, id, limit)
    }

    /// The cache; a panic elsewhere while it was held leaves nothing half-written in it
    /// (every update is one assignment), so a poisoned lock is still usable.
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every stored rule with the reuse the planner finds for each; planned again only when
    /// `rule_table` changed.
    pub fn rule_set(&self) -> Result<Arc<RuleSet>> {
        let mut conn = self.connection()?;
        // One read transaction: the rules read are the ones the fingerprint describes.
        let tx = conn.transaction()?;
        let key = RulesFingerprint::read(&tx)?;
        if let Some((at, rules)) = &self.cache().rules
            && *at == key
        {
            return Ok(Arc::clone(rules));
        }
        let rules = Arc::new(RuleSet::plan(crate::rules::all_rules(&tx)?));
        tx.finish()?;
        self.cache().rules = Some((key, Arc::clone(&rules)));
        Ok(rules)
    }

    /// Users, transactions and total spend over both transaction tables; counted again only
    /// when the data version changed.
    pub fn summary(&self) -> Result<Summary> {
        let mut conn = self.connection()?;
        // One read transaction: the summary is of the data at the version read.
        let tx = conn.transaction()?;
        let version = db::data_version(&tx)?;
        if let Some((at, summary)) = self.cache().summary
            && at == version
        {
            return Ok(summary);
        }
        let summary = catalog::summary(&tx)?;
        tx.finish()?;
        self.cache().summary = Some((version, summary));
        Ok(summary)
    }

    /// Queues a run of a rule.
    pub fn create_run(&self, rule_id: RuleId, trigger: RunTrigger) -> Result<RunId> {
        runs::create_run(&self.connection()?, rule_id, trigger)
    }

    /// Runs are read as they really are: first the active runs of processes that are gone
    /// are failed (best effort: a database that cannot be written is read as it is).
    fn runs_connection(&self) -> Result<Connection> {
        let conn = self.connection()?;
        if let Err(e) = runs::fail_abandoned_runs(&conn) {
            tracing::debug!("could not fail abandoned runs: {e}");
        }
        Ok(conn)
    }

    /// One run; `NotFound` if there is none with that id.
    pub fn run(&self, id: RunId) -> Result<Run> {
        runs::get_run(&self.runs_connection()?, id)
    }

    /// Runs matching the filter, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        runs::list_runs(&self.runs_connection()?, filter)
    }

    /// The rule's queued or running run, if any.
    pub fn active_run_for(&self, rule_id: RuleId) -> Result<Option<Run>> {
        runs::active_run_for(&self.runs_connection()?, rule_id)
    }

    /// The newest run of a rule, if any.
    pub fn last_run(&self, rule_id: RuleId) -> Result<Option<Run>> {
        runs::last_run(&self.runs_connection()?, rule_id)
    }

    /// Fails the queued or running runs whose process is gone; returns how many.
    pub fn fail_abandoned_runs(&self) -> Result<usize> {
        runs::fail_abandoned_runs(&self.connection()?)
    }
}
