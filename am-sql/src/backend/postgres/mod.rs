//! PostgreSQL as store and engine: a connection pool (r2d2), migrations by refinery,
//! change tracking by statement-level triggers (INSERT, UPDATE, DELETE, COPY and TRUNCATE
//! all count), the atomic swap as one transaction that applies the changed members to the
//! live table (readers never wait and see the old members or the new ones), bulk loads with
//! `COPY`, and run owners as session advisory locks.

pub(crate) mod conn;
pub(crate) mod error;
pub(crate) mod swap;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::NaiveDate;
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use sea_query::{Alias, ExprTrait, Func};

use crate::conn::Conn;
use crate::error::{Error, Result};

pub use conn::PgConn;

type SqlExpr = sea_query::Expr;
type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

mod embedded {
    refinery::embed_migrations!("src/backend/postgres/migrations");
}

/// How long a statement waits for a lock another session holds before failing with
/// [`Error::Busy`].
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections the pool keeps at most: the server's requests, the scheduler's refreshes and
/// their parallel builds.
const POOL_SIZE: u32 = 16;

/// Where refinery records the migrations it ran (its default name is shared by every
/// program that uses it).
const HISTORY_TABLE: &str = "am_schema_history";

/// The tables our schema creates; finding one without our history means the database is
/// another program's.
const OUR_TABLES: [&str; 8] = [
    "users",
    "user_locations",
    "credit_card_transactions",
    "upi_transactions",
    "rule_table",
    "segment_catalog",
    "refresh_runs",
    "data_version",
];

/// The key of the advisory lock that serialises migrations of one database.
const MIGRATION_LOCK: i64 = 0x414D_4731;

/// Whether `text` is a PostgreSQL URI (`postgres://...` or `postgresql://...`).
pub fn is_uri(text: &str) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The URI without its password (in the user part or a `password=` parameter).
pub fn redacted(uri: &str) -> String {
    let mut out = uri.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let user_info = &out[rest_start..rest_start + at];
            if let Some(colon) = user_info.find(':') {
                out.replace_range(rest_start + colon..rest_start + at, ":***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|kv| {
                if kv.to_ascii_lowercase().starts_with("password=") {
                    "password=***".to_owned()
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// The schema version this program writes: the number of migrations.
pub fn schema_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// One PostgreSQL database.
pub struct PgDb {
    uri: String,
    /// Always `Some` but while dropping (see the `Drop` impl).
    pool: Option<Pool>,
}

impl Drop for PgDb {
    /// The driver's connections shut down by blocking on their own runtime, which panics
    /// inside an async task: a store dropped at the end of `am serve` closes them on a
    /// thread of their own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb")
            .field("uri", &redacted(&self.uri))
            .finish()
    }
}

/// Settings every pooled connection gets once, when it is opened.
#[derive(Debug)]
struct Session;

impl r2d2::CustomizeConnection<postgres::Client, postgres::Error> for Session {
    fn on_acquire(
        &self,
        client: &mut postgres::Client,
    ) -> std::result::Result<(), postgres::Error> {
        client.batch_execute(&format!(
            "SET lock_timeout = '{}ms'; SET TIME ZONE 'UTC'",
            LOCK_TIMEOUT.as_millis()
        ))
    }
}

/// Connects once, directly, so a server that refuses us (no such database, a wrong user, a
/// socket directory without a server) fails at once with the server's own reason; the pool
/// would only wait for its connection timeout and then say "db error".
fn first_contact(config: &postgres::Config, uri: &str) -> Result<()> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    match config.connect(NoTls) {
        Ok(client) => {
            drop(client);
            Ok(())
        }
        Err(e) => {
            let reason: crate::error::BoxError = match e.as_db_error() {
                Some(db) => db.message().to_owned().into(),
                None => e.into(),
            };
            Err(Error::Unavailable {
                at: redacted(uri),
                source: reason,
            })
        }
    }
}

impl PgDb {
    /// Connects to the database at `uri` and brings its schema up to date. With `create`
    /// unset, a database without our schema is refused with [`Error::NoDatabase`] (as `am`
    /// commands other than `init` want); one with tables of another program is refused
    /// with [`Error::NotOurDatabase`] either way, and one from a newer version with
    /// [`Error::TooNew`].
    pub fn open(uri: &str, create: bool) -> Result<PgDb> {
        conn::off_runtime(|| PgDb::open_here(uri, create))
    }

    fn open_here(uri: &str, create: bool) -> Result<PgDb> {
        let config = postgres::Config::from_str(uri).map_err(|e| Error::Unavailable {
            at: redacted(uri),
            source: e.into(),
        })?;
        first_contact(&config, uri)?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(Session))
            .build_unchecked(manager);
        let db = PgDb {
            uri: uri.to_owned(),
            pool: Some(pool),
        };
        db.migrate(create)?;
        Ok(db)
    }

    /// A pooled connection.
    pub fn connect(&self) -> Result<PgConn> {
        conn::off_runtime(|| self.connect_here())
    }

    fn connect_here(&self) -> Result<PgConn> {
        let pool = self.pool.as_ref().ok_or_else(|| Error::Unavailable {
            at: redacted(&self.uri),
            source: "the connection pool is closed".into(),
        })?;
        let client = pool.get().map_err(|e| Error::Unavailable {
            at: redacted(&self.uri),
            source: e.into(),
        })?;
        Ok(PgConn::new(client))
    }

    fn migrate(&self, create: bool) -> Result<()> {
        let mut client = self.connect()?;
        let client = client.client();
        client.query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let result = self.migrate_locked(client, create);
        let unlocked = client.query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        result?;
        unlocked?;
        Ok(())
    }

    fn migrate_locked(&self, client: &mut postgres::Client, create: bool) -> Result<()> {
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema()",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let ours = tables.iter().any(|t| t == HISTORY_TABLE);
        // Other programs' tables may share the database; tables with our names may not.
        if !ours && tables.iter().any(|t| OUR_TABLES.contains(&t.as_str())) {
            return Err(Error::NotOurDatabase(redacted(&self.uri)));
        }
        if !ours && !create {
            return Err(Error::NoDatabase(redacted(&self.uri)));
        }
        if ours {
            let found: Option<i32> = client
                .query_one(&format!("SELECT max(version) FROM {HISTORY_TABLE}"), &[])?
                .get(0);
            let found = i64::from(found.unwrap_or(0));
            if found > schema_version() {
                return Err(Error::TooNew {
                    path: redacted(&self.uri),
                    found,
                    supported: schema_version(),
                });
            }
            if found == schema_version() {
                // Up to date: nothing to write, so a read-only database opens too.
                repair_change_tracking(client)?;
                return Ok(());
            }
        }
        embedded::migrations::runner()
            .set_migration_table_name(HISTORY_TABLE)
            .run(client)
            .map_err(|e| Error::Database(format!("migration failed: {e}")))?;
        repair_change_tracking(client)?;
        Ok(())
    }

    /// This process's owner token for runs: a session of its own holds an advisory lock
    /// named by the token for as long as the process lives (and the session stays up).
    pub fn owner_token(&self) -> Result<String> {
        conn::off_runtime(|| self.owner_token_here())
    }

    fn owner_token_here(&self) -> Result<String> {
        let held = OWNERS.get_or_init(Mutex::default);
        let mut held = held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, client)) = held.get(&self.uri)
            && !client.is_closed()
        {
            return Ok(token.clone());
        }
        let mut client =
            postgres::Client::connect(&self.uri, NoTls).map_err(|e| Error::Unavailable {
                at: redacted(&self.uri),
                source: e.into(),
            })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let pid = std::process::id();
        // 63 bits of the pid and the time: unique among live processes.
        let key = ((u64::from(pid) << 40) ^ (nanos as u64)) & (i64::MAX as u64);
        let key = key as i64;
        client.query_one("SELECT pg_advisory_lock($1)", &[&key])?;
        let token = format!("{pid}.{key:x}");
        held.insert(self.uri.clone(), (token.clone(), client));
        Ok(token)
    }

    /// Whether the process owning runs under `token` still holds its lock. A token that
    /// cannot be read owns nothing; a database that cannot be asked is assumed alive, so a
    /// live process's runs are never failed under it.
    pub fn owner_alive(&self, token: &str) -> bool {
        conn::off_runtime(|| self.owner_alive_here(token))
    }

    fn owner_alive_here(&self, token: &str) -> bool {
        let Some(key) = token
            .split_once('.')
            .and_then(|(_, k)| i64::from_str_radix(k, 16).ok())
        else {
            return false;
        };
        let Ok(mut conn) = self.connect() else {
            return true;
        };
        // An advisory lock on a bigint key shows its high and low 32 bits as classid and
        // objid, with objsubid 1.
        let high = ((key as u64) >> 32) as i64;
        let low = ((key as u64) & 0xFFFF_FFFF) as i64;
        conn.client()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                   AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1
                   AND granted)",
                &[&high, &low],
            )
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(true)
    }
}

/// Puts back a missing change-tracking trigger (dropped by hand, or by a load of one's own
/// that did not restore it), counting that as a data change: writes made while it was
/// missing went unseen, and the change log may miss them, so it starts again. Returns whether
/// it repaired anything.
fn repair_change_tracking(client: &mut postgres::Client) -> Result<bool> {
    let triggers = tracking_triggers();
    let names: Vec<&str> = triggers.iter().map(|(name, _, _)| name.as_str()).collect();
    let present: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger
             WHERE NOT tgisinternal AND tgname = ANY($1)",
            &[&names],
        )?
        .get(0);
    if present == triggers.len() as i64 {
        return Ok(false);
    }
    let mut tx = client.transaction()?;
    for (name, table, create) in &triggers {
        tx.batch_execute(&format!(
            "DROP TRIGGER IF EXISTS {name} ON {table}; {create}"
        ))?;
    }
    tx.batch_execute(
        "UPDATE data_version SET version = version + 1 WHERE id = 1;
         UPDATE data_version SET changes_from = version WHERE id = 1;
         DELETE FROM data_changes;",
    )?;
    tx.commit()?;
    tracing::warn!("the data-change triggers were missing and have been put back");
    Ok(true)
}

/// The change-tracking triggers the schema creates (migrations 1 to 3): name, table, DDL.
fn tracking_triggers() -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for table in crate::schema::DATA_TABLES {
        let bump = format!("{table}_data_version");
        out.push((
            bump.clone(),
            table,
            format!(
                "CREATE TRIGGER {bump} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION am_bump_data_version();"
            ),
        ));
        for (op, rows) in [
            ("INSERT", "NEW TABLE AS am_new_rows"),
            (
                "UPDATE",
                "OLD TABLE AS am_old_rows NEW TABLE AS am_new_rows",
            ),
            ("DELETE", "OLD TABLE AS am_old_rows"),
        ] {
            let name = format!("{bump}_log_{}", op.to_ascii_lowercase());
            let create = format!(
                "CREATE TRIGGER {name} AFTER {op} ON {table} REFERENCING {rows} \
                 FOR EACH STATEMENT EXECUTE FUNCTION am_log_changes();"
            );
            out.push((name, table, create));
        }
    }
    out
}

/// This process's owner sessions, by database URI.
static OWNERS: OnceLock<Mutex<BTreeMap<String, (String, postgres::Client)>>> = OnceLock::new();

/// `(DATE 'as_of' - CAST(last AS DATE))`: whole days from the date of the last transaction to
/// the as-of date, as a `BIGINT`.
pub(crate) fn days_since(as_of: NaiveDate, last: SqlExpr) -> SqlExpr {
    let as_of: SqlExpr = Func::cast_as(as_of.format("%Y-%m-%d").to_string(), "DATE").into();
    let last: SqlExpr = Func::cast_as(last, "DATE").into();
    Func::cast_as(as_of.sub(last), "BIGINT").into()
}

/// `strpos(translate(x, 'A..Z', 'a..z'), 'needle')`: PostgreSQL's `lower` folds every letter
/// its locale knows (`Ä` to `ä`), which would let `contains` match more than on SQLite; the
/// contract folds ASCII letters only.
pub(crate) fn ascii_position(x: SqlExpr, needle: &str) -> SqlExpr {
    Func::cust("strpos")
        .args([super::ascii_lower(x), SqlExpr::val(needle.to_owned())])
        .into()
}

/// Whether a table of ours exists in the current schema.
pub(crate) fn table_exists(conn: &mut dyn Conn, name: &str) -> Result<bool> {
    let mut q = sea_query::Query::select();
    q.expr(SqlExpr::exists(
        sea_query::Query::select()
            .expr(SqlExpr::val(1))
            .from(("information_schema", "tables"))
            .and_where(
                SqlExpr::col(Alias::new("table_schema")).eq(SqlExpr::cust("current_schema()")),
            )
            .and_where(SqlExpr::col(Alias::new("table_name")).eq(name))
            .to_owned(),
    ));
    conn.row(&q)?.bool(0)
}

/// After a bulk load with explicit ids, the identity columns' sequences continue after the
/// largest id, so an ETL insert without an id gets a new one.
pub(crate) fn sync_identities(conn: &mut dyn Conn) -> Result<()> {
    for (table, column) in [
        ("users", "user_id"),
        ("credit_card_transactions", "transaction_id"),
        ("upi_transactions", "transaction_id"),
    ] {
        conn.batch(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_recognised_and_shown_without_passwords() {
        assert!(is_uri("postgres://am@/db?host=/tmp"));
        assert!(is_uri("PostgreSQL://h/db"));
        assert!(!is_uri("./postgres.db"));
        assert_eq!(
            redacted("postgres://am:s3cret@db.example:5432/am?sslmode=disable"),
            "postgres://am:***@db.example:5432/am?sslmode=disable"
        );
        assert_eq!(
            redacted("postgresql:///am?host=/run/postgresql&password=s3cret&user=am"),
            "postgresql:///am?host=/run/postgresql&password=***&user=am"
        );
        assert_eq!(redacted("postgres://am@/am"), "postgres://am@/am");
    }

    #[test]
    fn days_since_is_a_date_difference() {
        let q = sea_query::Query::select()
            .expr(days_since(
                NaiveDate::from_ymd_opt(2025, 6, 30).expect("date"),
                SqlExpr::col("last_date"),
            ))
            .to_owned();
        assert_eq!(
            q.to_string(sea_query::PostgresQueryBuilder),
            r#"SELECT CAST((CAST('2025-06-30' AS DATE) - CAST("last_date" AS DATE)) AS BIGINT)"#
        );
    }
}
