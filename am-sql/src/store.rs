//! `Store`: the engine-neutral facade over one database (a SQLite file or a PostgreSQL
//! database) that services, the CLI, the HTTP server and the scheduler use. No driver type
//! appears in its signatures.
//!
//! Clones share a small cache of read-path results that are costly to compute and cheap to
//! validate: the analytics summary, keyed by the data version, and the planned rule set,
//! keyed by a fingerprint of `rule_table`. Each is checked against the database on every
//! call, so a write by any process (the CLI, users' ETL) is seen at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use am_core::plan::Reuse;
use am_core::rule::RuleId;

use crate::backend::Dialect;
use crate::backend::sqlite::SqliteDb;
use crate::catalog::{self, Member, Page, Segment, SegmentId, Summary};
use crate::conn::{Conn, TxMode, transaction};
use crate::error::{Error, Result};
use crate::refresh::Compute;
use crate::rules::StoredRule;
use crate::runs::{self, Owners, Run, RunFilter, RunId, RunTrigger};

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

/// Where a database is: a SQLite file, or a PostgreSQL server and database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file (created on first open).
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a libpq URI: `postgres://USER@HOST:PORT/DB` or
    /// `postgresql://...`, including `?host=/path/to/socket-dir`.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Location {
    /// `postgres://` and `postgresql://` URIs name a PostgreSQL database; anything else is
    /// the path of a SQLite file.
    pub fn parse(text: &str) -> Location {
        #[cfg(feature = "postgres")]
        if crate::backend::postgres::is_uri(text) {
            return Location::Postgres(text.to_owned());
        }
        Location::Sqlite(PathBuf::from(text))
    }
}

impl std::fmt::Display for Location {
    /// The path, or the URI without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            #[cfg(feature = "postgres")]
            Location::Postgres(uri) => f.write_str(&crate::backend::postgres::redacted(uri)),
        }
    }
}

impl From<&str> for Location {
    fn from(text: &str) -> Location {
        Location::parse(text)
    }
}

impl From<String> for Location {
    fn from(text: String) -> Location {
        Location::parse(&text)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        match path.to_str() {
            Some(text) => Location::parse(text),
            None => Location::Sqlite(path.to_path_buf()),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::from(path.as_path())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::from(path.as_path())
    }
}

/// The open database, by engine.
#[derive(Debug)]
enum Database {
    Sqlite(SqliteDb),
    #[cfg(feature = "postgres")]
    Postgres(crate::backend::postgres::PgDb),
}

impl Owners for Database {
    fn alive(&self, token: &str) -> bool {
        match self {
            Database::Sqlite(db) => db.owner_alive(token),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.owner_alive(token),
        }
    }

    fn forget(&self, token: &str) {
        match self {
            Database::Sqlite(db) => db.forget_owner(token),
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => {}
        }
    }
}

/// A handle on one Audience Manager database, whatever its engine: what services, the CLI
/// and the server use. Cheap to clone and share across threads; each operation takes a
/// connection (a new one on SQLite, whose WAL lets readers proceed while a refresh writes;
/// one from a pool on PostgreSQL).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// The engine that computes segments when it is not the store's own (Spark).
    compute: Option<Arc<dyn Compute>>,
}

#[derive(Debug)]
struct Inner {
    location: Location,
    db: Database,
    cache: Mutex<Cache>,
}

/// Cached read results with the key each was computed at.
#[derive(Debug, Default)]
struct Cache {
    summary: Option<(i64, Summary)>,
    rules: Option<(RulesFingerprint, Arc<RuleSet>)>,
}

/// Changes with every write of a rule through the store: an update bumps that rule's
/// `version` (so the sum grows), a create raises `max(id)` (ids are never reused) and a
/// delete without a create lowers the count. `max(updated_at)` also catches most edits made
/// by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RulesFingerprint {
    count: i64,
    version_sum: i64,
    max_id: i64,
    max_updated_at: Option<chrono::NaiveDateTime>,
}

impl RulesFingerprint {
    fn read(conn: &mut dyn Conn) -> Result<RulesFingerprint> {
        let q = sea_query::Query::select()
            .expr(sea_query::Expr::cust("count(*)"))
            .expr(sea_query::Expr::cust(
                "CAST(coalesce(sum(version), 0) AS BIGINT)",
            ))
            .expr(sea_query::Expr::cust("coalesce(max(id), 0)"))
            .expr(sea_query::Expr::cust("max(updated_at)"))
            .from(crate::schema::RULE_TABLE)
            .to_owned();
        let row = conn.row(&q)?;
        Ok(RulesFingerprint {
            count: row.i64(0)?,
            version_sum: row.i64(1)?,
            max_id: row.i64(2)?,
            max_updated_at: row.opt_time(3)?,
        })
    }
}

impl Store {
    /// Opens the database, creating it (a SQLite file; the schema in a PostgreSQL database)
    /// if needed and running any pending migrations (`am init`). Runs whose process is gone
    /// are failed as abandoned.
    pub fn open(location: impl Into<Location>) -> Result<Store> {
        let location = location.into();
        let db = match &location {
            Location::Sqlite(path) => Database::Sqlite(SqliteDb::open(path)?),
            #[cfg(feature = "postgres")]
            Location::Postgres(uri) => {
                Database::Postgres(crate::backend::postgres::PgDb::open(uri, true)?)
            }
        };
        Store::with(location, db)
    }

    /// Opens a database that must already exist (every command but `am init`), running any
    /// pending migrations.
    pub fn open_existing(location: impl Into<Location>) -> Result<Store> {
        let location = location.into();
        let db = match &location {
            Location::Sqlite(path) => Database::Sqlite(SqliteDb::open_existing(path)?),
            #[cfg(feature = "postgres")]
            Location::Postgres(uri) => {
                Database::Postgres(crate::backend::postgres::PgDb::open(uri, false)?)
            }
        };
        Store::with(location, db)
    }

    fn with(location: Location, db: Database) -> Result<Store> {
        let store = Store {
            inner: Arc::new(Inner {
                location,
                db,
                cache: Mutex::default(),
            }),
            compute: None,
        };
        // Best effort: a database that cannot be written is still opened for reading.
        match store.fail_abandoned_runs() {
            Ok(0) => {}
            Ok(abandoned) => {
                tracing::warn!(
                    abandoned,
                    "failed runs whose process ended before they finished"
                );
            }
            Err(e) => tracing::debug!("could not fail abandoned runs: {e}"),
        }
        Ok(store)
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// This store with its segments computed by `compute` (refresh, explain, preview); the
    /// store keeps rules, catalog, runs and members.
    #[cfg_attr(not(feature = "spark"), allow(dead_code))]
    pub(crate) fn with_compute(mut self, compute: Arc<dyn Compute>) -> Store {
        self.compute = Some(compute);
        self
    }

    /// The engine that computes segments, if not the store's own.
    pub(crate) fn compute(&self) -> Option<&dyn Compute> {
        self.compute.as_deref()
    }

    /// The database file, for a SQLite database.
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.db {
            Database::Sqlite(db) => Some(db.path()),
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => None,
        }
    }

    /// The engine's SQL dialect.
    pub fn dialect(&self) -> Dialect {
        match &self.inner.db {
            Database::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The schema version this program writes for the database's engine.
    pub fn schema_version(&self) -> i64 {
        match &self.inner.db {
            Database::Sqlite(_) => crate::backend::sqlite::schema_version(),
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => crate::backend::postgres::schema_version(),
        }
    }

    /// A connection to the database.
    pub fn connection(&self) -> Result<Box<dyn Conn>> {
        Ok(match &self.inner.db {
            Database::Sqlite(db) => Box::new(db.connect()?),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => Box::new(db.connect()?),
        })
    }

    /// This process's token as the owner of runs it creates.
    pub(crate) fn owner_token(&self) -> Result<Option<String>> {
        match &self.inner.db {
            Database::Sqlite(db) => db.owner_token().map(Some),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.owner_token().map(Some),
        }
    }

    /// Whether the database can be written: a read-only file, server or role fails with
    /// [`Error::ReadOnly`] here rather than at the first write. Busy is writable.
    pub fn check_writable(&self) -> Result<()> {
        let mut conn = self.connection()?;
        let probe = sea_query::Query::delete()
            .from_table(crate::schema::REFRESH_RUNS)
            .and_where(sea_query::Expr::cust("1 = 0"))
            .to_owned();
        // A write that changes nothing, to the table the scheduler writes first (`BEGIN
        // IMMEDIATE` alone succeeds on some read-only SQLite files).
        match transaction(conn.as_mut(), TxMode::Write, |conn| {
            conn.exec(&probe)?;
            Err::<(), _>(Error::Refused("rolled back".into()))
        }) {
            Err(Error::Refused(_)) | Err(Error::Busy { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    /// The data tables' version counter (see [`crate::tracking`]).
    pub fn data_version(&self) -> Result<i64> {
        crate::tracking::data_version(self.connection()?.as_mut())
    }

    /// Segments by id, one page (pages from 1).
    pub fn list_segments(&self, page: u32, per_page: u32) -> Result<Page<Segment>> {
        catalog::list_segments(self.connection()?.as_mut(), page, per_page)
    }

    /// One segment; `NotFound` if there is none with that id.
    pub fn segment(&self, id: SegmentId) -> Result<Segment> {
        catalog::segment(self.connection()?.as_mut(), id)
    }

    /// The segment of a rule, if it has been built.
    pub fn segment_for_rule(&self, rule_id: RuleId) -> Result<Option<Segment>> {
        catalog::segment_for_rule(self.connection()?.as_mut(), rule_id)
    }

    /// Who entered and who left a segment at its last refresh, with up to `limit` ids each.
    pub fn membership_diff(&self, id: SegmentId, limit: u32) -> Result<catalog::MembershipDiff> {
        catalog::membership_diff(self.connection()?.as_mut(), id, limit)
    }

    /// Up to `limit` members of a segment with their name and email.
    pub fn sample(&self, id: SegmentId, limit: u32) -> Result<Vec<Member>> {
        catalog::sample(self.connection()?.as_mut(), id, limit)
    }

    /// The cache; a panic elsewhere while it was held leaves nothing half-written in it
    /// (every update is one assignment), so a poisoned lock is still usable.
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every stored rule with the reuse the planner finds for each; planned again only when
    /// `rule_table` changed.
    pub fn rule_set(&self) -> Result<Arc<RuleSet>> {
        let mut conn = self.connection()?;
        // One read transaction: the rules read are the ones the fingerprint describes.
        let (key, rules) = transaction(conn.as_mut(), TxMode::Read, |conn| {
            let key = RulesFingerprint::read(conn)?;
            if let Some((at, rules)) = &self.cache().rules
                && *at == key
            {
                return Ok((key, Arc::clone(rules)));
            }
            let rules = Arc::new(RuleSet::plan(crate::rules::all_rules(conn)?));
            Ok((key, rules))
        })?;
        self.cache().rules = Some((key, Arc::clone(&rules)));
        Ok(rules)
    }

    /// Users, transactions and total spend over both transaction tables; counted again only
    /// when the data version changed.
    pub fn summary(&self) -> Result<Summary> {
        let mut conn = self.connection()?;
        // One read transaction: the summary is of the data at the version read.
        let (version, summary) = transaction(conn.as_mut(), TxMode::Read, |conn| {
            let version = crate::tracking::data_version(conn)?;
            if let Some((at, summary)) = self.cache().summary
                && at == version
            {
                return Ok((version, summary));
            }
            Ok((version, catalog::summary(conn)?))
        })?;
        self.cache().summary = Some((version, summary));
        Ok(summary)
    }

    /// Queues a run of a rule, owned by this process.
    pub fn create_run(&self, rule_id: RuleId, trigger: RunTrigger) -> Result<RunId> {
        let owner = self.owner_token()?;
        runs::create_run(
            self.connection()?.as_mut(),
            rule_id,
            trigger,
            owner.as_deref(),
        )
    }

    /// A queued or running run failed (or was abandoned) with `error`.
    pub fn fail_run(&self, id: RunId, error: &str) -> Result<()> {
        runs::mark_failed(self.connection()?.as_mut(), id, error)
    }

    /// Runs are read as they really are: first the active runs of processes that are gone
    /// are failed (best effort: a database that cannot be written is read as it is).
    fn runs_connection(&self) -> Result<Box<dyn Conn>> {
        let mut conn = self.connection()?;
        if let Err(e) = runs::fail_abandoned_runs(conn.as_mut(), &self.inner.db) {
            tracing::debug!("could not fail abandoned runs: {e}");
        }
        Ok(conn)
    }

    /// One run; `NotFound` if there is none with that id.
    pub fn run(&self, id: RunId) -> Result<Run> {
        runs::get_run(self.runs_connection()?.as_mut(), id)
    }

    /// Runs matching the filter, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        runs::list_runs(self.runs_connection()?.as_mut(), filter)
    }

    /// The rule's queued or running run, if any.
    pub fn active_run_for(&self, rule_id: RuleId) -> Result<Option<Run>> {
        runs::active_run_for(self.runs_connection()?.as_mut(), rule_id)
    }

    /// The newest run of a rule, if any.
    pub fn last_run(&self, rule_id: RuleId) -> Result<Option<Run>> {
        runs::last_run(self.runs_connection()?.as_mut(), rule_id)
    }

    /// Fails the queued or running runs whose process is gone; returns how many.
    pub fn fail_abandoned_runs(&self) -> Result<usize> {
        runs::fail_abandoned_runs(self.connection()?.as_mut(), &self.inner.db)
    }

    /// Every segment, by id.
    pub fn all_segments(&self) -> Result<Vec<Segment>> {
        catalog::all_segments(self.connection()?.as_mut())
    }

    /// Calls `f` with every member of a segment (user id, name, email), by user id, streamed.
    pub fn for_each_member<E>(
        &self,
        id: SegmentId,
        f: impl FnMut(i64, Option<&str>, Option<&str>) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<(), E>> {
        catalog::for_each_member(self.connection()?.as_mut(), id, f)
    }
}
