//! Spark as the engine of refreshes, explain and preview: the store (SQLite or PostgreSQL)
//! keeps rules, catalog, runs and members; Spark computes each segment.
//!
//! A refresh on Spark, per node in plan order: render the node's self-contained set (the
//! segments it reads inlined, so it reads only the data tables) as Spark SQL, write the
//! members into the Spark table `<database>.segment_output_<id>` (`INSERT OVERWRITE`), read
//! them back, and swap them into the store's `segment_output_<id>` with the store's own
//! atomic swap, catalog row and run. The catalog records `spark` as the engine and the Spark
//! SQL that ran as `sql_query`. Sharing one scan of the window between rules (cached
//! aggregates) was measured and saved nothing at 1M/20M: moving the members dominates.
//!
//! Where the data are ([`SparkSource`]): tables of Spark's catalog (`users`,
//! `credit_card_transactions`, `upi_transactions`, e.g. Parquet in a lake), or the store's
//! own tables read through JDBC (as temporary views of the session, with the contract's
//! types: `BIGINT` ids, `DECIMAL(12,2)` money, `TIMESTAMP` times read as UTC).
//!
//! Freshness: through JDBC the data are the store's, so the store's change counter holds.
//! For catalog tables a refresh reads each table's row count and its files' paths and
//! modification times (`_metadata`, offered by every file-based format); a table without
//! file metadata (a view, a JDBC table) makes every refresh recompute.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use am_core::expr::Timestamp;
use am_core::plan::{PlanNode, SetExpr};
use am_core::rule::RuleId;
use sea_query::{Alias, Query, Table};

use super::SparkEngine;
use super::sql::string_literal;
use crate::backend::{Dialect, SwapCounts};
use crate::catalog::segment_table_name;
use crate::conn::{Conn, Datum, TxMode, transaction};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::refresh::{Builder, Compute, Job};
use crate::render::{Aggregates, RenderContext, USER_ID, render_set};
use crate::store::{Location, Store};

/// Where Spark reads the data tables from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SparkSource {
    /// Tables of Spark's catalog, in this database or the session's current one.
    Catalog(Option<String>),
    /// The store's own tables, through JDBC.
    Jdbc,
}

impl FromStr for SparkSource {
    type Err = Error;

    /// `catalog`, `catalog:DATABASE` or `jdbc`.
    fn from_str(text: &str) -> Result<SparkSource> {
        match text.split_once(':') {
            None if text == "catalog" => Ok(SparkSource::Catalog(None)),
            None if text == "jdbc" => Ok(SparkSource::Jdbc),
            Some(("catalog", database)) => Ok(SparkSource::Catalog(Some(
                database_name(database, "--spark-source catalog:DATABASE")?.to_owned(),
            ))),
            _ => Err(Error::BadOptions(format!(
                "spark source {text:?}: expected catalog, catalog:DATABASE or jdbc"
            ))),
        }
    }
}

impl std::fmt::Display for SparkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SparkSource::Catalog(None) => write!(f, "catalog"),
            SparkSource::Catalog(Some(db)) => write!(f, "catalog:{db}"),
            SparkSource::Jdbc => write!(f, "jdbc"),
        }
    }
}

/// How to reach Spark and where the data and segments are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkOptions {
    /// `sc://HOST:PORT`.
    pub url: String,
    pub source: SparkSource,
    /// The Spark database the segment tables are written to; by default the catalog
    /// source's database, else `default`.
    pub database: Option<String>,
}

impl SparkOptions {
    pub fn new(url: impl Into<String>) -> SparkOptions {
        SparkOptions {
            url: url.into(),
            source: SparkSource::Catalog(None),
            database: None,
        }
    }

    /// The Spark database segment tables are written to.
    pub fn segment_database(&self) -> &str {
        match (&self.database, &self.source) {
            (Some(db), _) | (None, SparkSource::Catalog(Some(db))) => db,
            _ => "default",
        }
    }
}

/// A database name we put into Spark SQL: letters, digits and `_`, not starting with a digit.
fn database_name<'a>(name: &'a str, what: &str) -> Result<&'a str> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(Error::BadOptions(format!(
            "{what}: {name:?} is not a database name (letters, digits and _, not starting with a digit)"
        )))
    }
}

impl Store {
    /// This store with its segments computed on Spark (refresh, explain, preview); see the
    /// module docs. Checks the options only; Spark is reached when a refresh starts, so a
    /// server that is down fails that refresh's runs, within seconds.
    pub fn with_spark(self, options: SparkOptions) -> Result<Store> {
        if let Some(db) = &options.database {
            database_name(db, "--spark-database")?;
        }
        if let SparkSource::Catalog(Some(db)) = &options.source {
            database_name(db, "--spark-source catalog:DATABASE")?;
        }
        super::client::authority(&options.url)?;
        let compute = SparkCompute {
            store: self.location().clone(),
            options,
        };
        Ok(self.with_compute(Arc::new(compute)))
    }
}

/// The data tables, as the rendered SQL names them.
const DATA_TABLES: [&str; 3] = ["users", "credit_card_transactions", "upi_transactions"];

/// Users' locations: optional in a lake, where only rules with `within_km` need it.
const LOCATIONS: &str = "user_locations";

#[derive(Debug)]
struct SparkCompute {
    options: SparkOptions,
    /// The store, for JDBC.
    store: Location,
}

impl SparkCompute {
    /// A session with the time zone set to UTC (the data's times are UTC) and the data
    /// tables in reach.
    fn session(&self) -> Result<SparkEngine> {
        let engine = SparkEngine::connect(&self.options.url)?;
        engine.execute("SET spark.sql.session.timeZone = UTC")?;
        match &self.options.source {
            SparkSource::Catalog(None) => {}
            SparkSource::Catalog(Some(db)) => engine.execute(&format!("USE `{db}`"))?,
            SparkSource::Jdbc => attach_store_tables(&engine, &self.store)?,
        }
        Ok(engine)
    }
}

/// The store's data tables as temporary views `users`, `user_locations`,
/// `credit_card_transactions` and `upi_transactions` of Spark session `engine`, read through
/// JDBC: ids as `BIGINT` (SQLite's
/// integers would arrive as 32-bit otherwise), times and money read as text and cast, so
/// times stay UTC whatever the JVM's zone and money stays exact. Also a way to copy the
/// store's data into a lake (`CREATE TABLE lake.users USING parquet AS SELECT * FROM users`).
pub fn attach_store_tables(engine: &SparkEngine, store: &Location) -> Result<()> {
    let (url, driver) = jdbc_url(store)?;
    // Text columns cast to STRING: JDBC's VARCHAR lengths (0 for SQLite's TEXT) would
    // otherwise follow the columns into tables copied from these views.
    let tables: [(&str, &str, &str); 4] = [
        (
            "users",
            "user_id BIGINT, name STRING, email STRING, city_tier BIGINT, created_at STRING",
            "user_id, CAST(name AS STRING) AS name, CAST(email AS STRING) AS email, city_tier, \
             CAST(created_at AS TIMESTAMP) AS created_at",
        ),
        (
            LOCATIONS,
            "user_id BIGINT, latitude DOUBLE, longitude DOUBLE, updated_at STRING",
            "user_id, latitude, longitude, CAST(updated_at AS TIMESTAMP) AS updated_at",
        ),
        (
            "credit_card_transactions",
            "transaction_id BIGINT, user_id BIGINT, amount STRING, merchant STRING, \
             category STRING, transaction_date STRING",
            "transaction_id, user_id, CAST(amount AS DECIMAL(12,2)) AS amount, \
             CAST(merchant AS STRING) AS merchant, CAST(category AS STRING) AS category, \
             CAST(transaction_date AS TIMESTAMP) AS transaction_date",
        ),
        (
            "upi_transactions",
            "transaction_id BIGINT, user_id BIGINT, amount STRING, description STRING, \
             category STRING, transaction_date STRING",
            "transaction_id, user_id, CAST(amount AS DECIMAL(12,2)) AS amount, \
             CAST(description AS STRING) AS description, CAST(category AS STRING) AS category, \
             CAST(transaction_date AS TIMESTAMP) AS transaction_date",
        ),
    ];
    for (table, schema, columns) in tables {
        engine.execute(&format!(
            "CREATE OR REPLACE TEMPORARY VIEW `am_jdbc_{table}` USING jdbc OPTIONS \
                 (url {}, dbtable {}, driver {}, customSchema {})",
            string_literal(&url),
            string_literal(table),
            string_literal(driver),
            string_literal(schema)
        ))?;
        engine.execute(&format!(
            "CREATE OR REPLACE TEMPORARY VIEW `{table}` AS SELECT {columns} FROM `am_jdbc_{table}`"
        ))?;
    }
    Ok(())
}

impl SparkCompute {
    /// A value that changes whenever the catalog tables' rows or files do; a table without
    /// file metadata gives a value no refresh recorded, so every refresh recomputes.
    fn catalog_signature(&self, engine: &SparkEngine) -> Result<i64> {
        let mut text = String::new();
        let located = !engine
            .rows(&format!("SHOW TABLES LIKE '{LOCATIONS}'"))?
            .is_empty();
        for table in DATA_TABLES.into_iter().chain(located.then_some(LOCATIONS)) {
            let q = format!(
                "SELECT count(*), count(DISTINCT _metadata.file_path), \
                 CAST(max(_metadata.file_modification_time) AS STRING), \
                 CAST(sum(DISTINCT hash(_metadata.file_path, _metadata.file_modification_time, \
                 _metadata.file_size)) AS STRING) FROM `{table}`"
            );
            match engine.rows(&q) {
                Ok(rows) => {
                    let _ = write!(text, "{table}:{rows:?};");
                }
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) => {
                    tracing::info!(
                        "{table} has no file metadata ({e}); every refresh on Spark recomputes"
                    );
                    return Ok(never_recorded());
                }
            }
        }
        Ok(fnv1a(&text))
    }
}

/// A data version no refresh recorded: the negated time now in microseconds.
fn never_recorded() -> i64 {
    -chrono::Utc::now().timestamp_micros()
}

/// FNV-1a, as a stable 63-bit fingerprint of the signature text.
fn fnv1a(text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::try_from(h >> 1).unwrap_or(i64::MAX)
}

/// The store as a JDBC URL and driver class: SQLite by its file, PostgreSQL over TCP (JDBC
/// cannot use a unix socket).
fn jdbc_url(store: &Location) -> Result<(String, &'static str)> {
    match store {
        Location::Sqlite(path) => {
            let path = std::path::absolute(path).map_err(|source| Error::Io {
                context: format!("cannot resolve {}", path.display()),
                source,
            })?;
            Ok((format!("jdbc:sqlite:{}", path.display()), "org.sqlite.JDBC"))
        }
        #[cfg(feature = "postgres")]
        Location::Postgres(uri) => Ok((postgres_jdbc_url(uri)?, "org.postgresql.Driver")),
    }
}

#[cfg(feature = "postgres")]
fn postgres_jdbc_url(uri: &str) -> Result<String> {
    let config = ::postgres::Config::from_str(uri)
        .map_err(|e| Error::BadOptions(format!("the store's URI: {e}")))?;
    let host = config
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            ::postgres::config::Host::Tcp(name) => Some(name.clone()),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .ok_or_else(|| {
            Error::BadOptions(
                "--spark-source jdbc reads a PostgreSQL store over TCP: give the store's URI \
                 a host name or address (JDBC cannot use a unix socket)"
                    .into(),
            )
        })?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut url = format!(
        "jdbc:postgresql://{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    );
    let mut params = Vec::new();
    if let Some(user) = config.get_user() {
        params.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        params.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    Ok(url)
}

impl Compute for SparkCompute {
    fn dialect(&self) -> Dialect {
        Dialect::Spark
    }

    fn data_version(&self, conn: &mut dyn Conn) -> Result<i64> {
        match self.options.source {
            SparkSource::Jdbc => crate::tracking::data_version(conn),
            SparkSource::Catalog(_) => self.catalog_signature(&self.session()?),
        }
    }

    fn count(&self, set: &SetExpr, as_of: Timestamp) -> Result<i64> {
        let select = render_set(set, &standalone(as_of));
        let (sql, values) = Dialect::Spark.build(&select);
        let rows = self.session()?.query_bound(
            &format!("SELECT count(*) FROM ({sql}) AS `members`"),
            &values,
        )?;
        rows.first()
            .ok_or_else(|| Error::Database("Spark returned no count".into()))?
            .i64(0)
    }

    fn builder<'a>(
        &'a self,
        _conn: &mut dyn Conn,
        _nodes: &[&PlanNode],
        as_of: Timestamp,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Builder + 'a>> {
        let began = Instant::now();
        progress.begin("connecting to Spark", None);
        let engine = self.session()?;
        let database = self.options.segment_database().to_owned();
        engine.execute(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))?;
        progress.finish("Spark ready");
        Ok(Box::new(SparkBuilder {
            engine,
            database,
            as_of,
            took: began.elapsed(),
        }))
    }
}

fn standalone(as_of: Timestamp) -> RenderContext<'static> {
    RenderContext {
        dialect: Dialect::Spark,
        as_of,
        aggregates: Aggregates::Standalone,
        base_first: false,
    }
}

/// One refresh's session on Spark.
struct SparkBuilder {
    engine: SparkEngine,
    database: String,
    as_of: Timestamp,
    took: Duration,
}

impl Builder for SparkBuilder {
    fn dialect(&self) -> Dialect {
        Dialect::Spark
    }

    fn engine_name(&self) -> &'static str {
        Dialect::Spark.name()
    }

    fn prepared_in(&self) -> Duration {
        self.took
    }

    fn unusable(&self) -> Option<String> {
        None
    }

    fn job(&mut self, _conn: &mut dyn Conn, node: &PlanNode) -> Job {
        // Self-contained SQL reads no segment: Spark plans the whole definition itself.
        Job {
            compute: node.compute.clone(),
            incremental: false,
            base_first: false,
            reused_from: Vec::new(),
        }
    }

    fn build(
        &mut self,
        conn: &mut dyn Conn,
        rule_id: RuleId,
        _job: &Job,
        self_contained: &SetExpr,
        publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
    ) -> Result<SwapCounts> {
        let select = render_set(self_contained, &standalone(self.as_of));
        let (sql, values) = Dialect::Spark.build(&select);
        let table = format!("`{}`.`{}`", self.database, segment_table_name(rule_id));
        self.engine.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (user_id BIGINT) USING parquet"
        ))?;
        self.engine
            .execute_bound(&format!("INSERT OVERWRITE TABLE {table} {sql}"), &values)?;
        let members = self
            .engine
            .user_ids(&format!("SELECT user_id FROM {table}"))?;
        swap_in(conn, rule_id, &members, publish)
    }

    fn finish(&mut self, _conn: &mut dyn Conn) {}
}

/// The scratch table members computed elsewhere are loaded into before the swap.
const MEMBERS: &str = "am_spark_members";

/// Loads `members` into a temporary table of the store and swaps them in with the store's
/// own atomic swap; the temporary table is dropped either way.
fn swap_in(
    conn: &mut dyn Conn,
    rule_id: RuleId,
    members: &[i64],
    publish: &mut dyn FnMut(&mut dyn Conn, &SwapCounts) -> Result<()>,
) -> Result<SwapCounts> {
    let d = conn.dialect();
    let drop = format!("DROP TABLE IF EXISTS {}", d.scratch_table(MEMBERS));
    conn.batch(&drop)?;
    let create = Table::create()
        .table(Alias::new(MEMBERS))
        .temporary()
        .col(d.key_column(USER_ID))
        .to_owned();
    conn.batch(&d.table(&create))?;
    let result = transaction(conn, TxMode::Write, |conn| {
        conn.load(MEMBERS, &[USER_ID], &mut |rows| {
            for &id in members {
                rows.row(&[Datum::Int(id)])?;
            }
            Ok(())
        })
    })
    .and_then(|()| {
        let select = Query::select()
            .column(USER_ID)
            .from(Alias::new(MEMBERS))
            .to_owned();
        d.rebuild_segment(conn, rule_id, select, publish)
    });
    // Temporary: gone with the connection anyway.
    let _ = conn.batch(&drop);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for text in ["catalog", "catalog:lake_1", "jdbc"] {
            assert_eq!(SparkSource::from_str(text).expect(text).to_string(), text);
        }
        let err = SparkSource::from_str("catalog:lake; DROP").expect_err("not a name");
        assert!(err.to_string().contains("not a database name"), "{err}");
        let err = SparkSource::from_str("parquet").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "spark source \"parquet\": expected catalog, catalog:DATABASE or jdbc"
        );
    }

    #[test]
    fn options_built_in_code_are_checked_too() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path().join("am.db")).expect("store");
        let mut o = SparkOptions::new("sc://127.0.0.1:15002");
        o.source = SparkSource::Catalog(Some("x`; DROP".into()));
        let err = store.clone().with_spark(o).expect_err("bad name");
        assert!(err.to_string().contains("not a database name"), "{err}");
        let err = store
            .with_spark(SparkOptions::new("127.0.0.1:15002"))
            .expect_err("not a URL");
        assert!(err.to_string().contains("sc://HOST:PORT"), "{err}");
    }

    #[test]
    fn segments_go_to_the_named_database_else_the_sources_else_default() {
        let mut o = SparkOptions::new("sc://127.0.0.1:15002");
        assert_eq!(o.segment_database(), "default");
        o.source = SparkSource::Catalog(Some("lake".into()));
        assert_eq!(o.segment_database(), "lake");
        o.database = Some("segments".into());
        assert_eq!(o.segment_database(), "segments");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgres_store_is_reached_over_tcp_only() {
        assert_eq!(
            postgres_jdbc_url("postgres://am:secret@db.example:5433/audience").expect("tcp"),
            "jdbc:postgresql://db.example:5433/audience?user=am&password=secret"
        );
        let err =
            postgres_jdbc_url("postgres://am@/audience?host=/run/postgresql").expect_err("socket");
        assert!(err.to_string().contains("over TCP"), "{err}");
    }
}
