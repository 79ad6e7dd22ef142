//! A server on 127.0.0.1:0 over a new database with generated data, on any engine.
//!
//! Tests written once for every engine are `async fn name(engine: Engine)` followed by
//! `on_every_engine!(name);`, which makes the tests `name::sqlite` and, when the crate is
//! built with the `postgres` feature, `name::postgres`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use am_http::{Clock, ServerConfig};
use am_sql::Store;
use am_sql::conn::Conn;
use am_sql::datagen::GenerateOptions;
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::{Client, Response, StatusCode};
use sea_query::Values;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The engine a test's database is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A file in the test's temporary directory.
    Sqlite,
    /// A new database on the test server (see `crate::postgres`).
    #[cfg(feature = "postgres")]
    Postgres,
}

/// `name::sqlite` and (with the `postgres` feature) `name::postgres`, each calling
/// `name(engine)`; `#[tokio::test]` unless another test attribute is given first.
macro_rules! on_every_engine {
    ($name:ident) => {
        $crate::support::on_every_engine!(
            #[tokio::test]
            $name
        );
    };
    (#[$test:meta] $name:ident) => {
        mod $name {
            #[$test]
            async fn sqlite() {
                super::$name($crate::support::Engine::Sqlite).await
            }

            #[cfg(feature = "postgres")]
            #[$test]
            async fn postgres() {
                super::$name($crate::support::Engine::Postgres).await
            }
        }
    };
}
pub(crate) use on_every_engine;

/// A clock tests move by hand.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// A new, empty database on `engine`, with the directory that must outlive it.
pub fn new_store(engine: Engine) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match engine {
        Engine::Sqlite => Store::open(dir.path().join("test.db")),
        #[cfg(feature = "postgres")]
        Engine::Postgres => Store::open(crate::postgres::postgres_location()),
    }
    .expect("open store");
    (dir, store)
}

/// A new database on `engine` with `users` users and `transactions` transactions.
pub fn store_with_data(
    engine: Engine,
    users: u64,
    transactions: u64,
) -> (tempfile::TempDir, Store) {
    let (dir, store) = new_store(engine);
    let end = NaiveDate::from_ymd_opt(2025, 6, 30).expect("date");
    store
        .generate(
            &GenerateOptions::new(users, transactions, end),
            &am_sql::NoProgress,
        )
        .expect("generate data");
    (dir, store)
}

/// A connection of the test's own, writing as users' ETL would.
pub fn conn(store: &Store) -> Box<dyn Conn> {
    store.connection().expect("connection")
}

/// Runs a query given as SQL text (a segment's stored `sql_query`, ours), calling `each` for
/// every row.
fn query_text(store: &Store, sql: &str, each: &mut dyn FnMut(am_sql::conn::Row)) {
    conn(store)
        .query_sql(sql, Values(Vec::new()), &mut |row| {
            each(row);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// How many rows a stored segment SQL returns over the current data.
pub fn count_of_sql(store: &Store, sql: &str) -> i64 {
    let mut count = None;
    query_text(
        store,
        &format!("SELECT count(*) FROM ({sql}) AS counted"),
        &mut |row| count = Some(row.i64(0).expect("a count")),
    );
    count.expect("a count row")
}

/// The users a stored segment SQL selects over the current data.
pub fn users_of_sql(store: &Store, sql: &str) -> BTreeSet<i64> {
    let mut users = BTreeSet::new();
    query_text(
        store,
        &format!("SELECT user_id FROM ({sql}) AS selected"),
        &mut |row| {
            users.insert(row.i64(0).expect("a user id"));
        },
    );
    users
}

pub struct TestServer {
    pub base: String,
    /// Where clients connect: the bound port on 127.0.0.1.
    pub addr: SocketAddr,
    pub client: Client,
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), am_http::ServeError>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(engine: Engine) -> TestServer {
        TestServer::start_with(engine, |_| {}, 300, 3000).await
    }

    pub async fn start_with(
        engine: Engine,
        configure: impl FnOnce(&mut ServerConfig),
        users: u64,
        transactions: u64,
    ) -> TestServer {
        TestServer::start_on(engine, "127.0.0.1:0", configure, users, transactions).await
    }

    /// A server listening on `bind` (`0.0.0.0:0` for all interfaces).
    pub async fn start_on(
        engine: Engine,
        bind: &str,
        configure: impl FnOnce(&mut ServerConfig),
        users: u64,
        transactions: u64,
    ) -> TestServer {
        let (dir, store) = store_with_data(engine, users, transactions);
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let bound = listener.local_addr().expect("addr");
        let addr = SocketAddr::from(([127, 0, 0, 1], bound.port()));
        let mut config = ServerConfig {
            addr: bound,
            ..ServerConfig::default()
        };
        configure(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(am_http::serve_on(
            listener,
            store.clone(),
            config,
            Arc::new(am_http::SystemClock),
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            base: format!("http://{addr}"),
            addr,
            client: Client::new(),
            store,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let resp = self.get(path).await;
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// Creates a rule and returns its id.
    pub async fn create_rule(&self, body: &Value) -> i64 {
        let (status, json) = self.post_json("/api/rules", body).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json["rule_id"].as_i64().expect("rule_id")
    }

    /// Triggers a rule and returns the run id.
    pub async fn trigger(&self, rule_id: i64) -> i64 {
        let (status, json) = self
            .post_json(&format!("/api/rules/{rule_id}/trigger"), &json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        json["run_id"].as_i64().expect("run_id")
    }

    /// Polls a run until it finishes; returns it. Gives up after a minute.
    pub async fn wait_run(&self, run_id: i64) -> Value {
        for _ in 0..3000 {
            let (status, run) = self.get_json(&format!("/api/runs/{run_id}")).await;
            assert_eq!(status, StatusCode::OK, "{run}");
            if run["status"] == "succeeded" || run["status"] == "failed" {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("run {run_id} did not finish within a minute");
    }

    /// A rule that refreshes, waits for it, and returns its segment id.
    pub async fn built(&self, rule_id: i64) -> i64 {
        let run = self.wait_run(self.trigger(rule_id).await).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let (_, rule) = self.get_json(&format!("/api/rules/{rule_id}")).await;
        rule["segment_id"]
            .as_i64()
            .expect("segment_id after a refresh")
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server result");
        }
    }
}

/// A valid rule body.
pub fn rule(name: &str) -> Value {
    json!({
        "rule_name": name,
        "description": "test rule",
        "conditions": [{"field": "total_spend", "operator": ">", "value": 1000}],
        "schedule": "0 0 * * *",
        "depends_on": [],
        "operation": null
    })
}

/// Asserts the error body shape and returns it.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response (head and a `Content-Length` body) from `stream`.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    RawResponse { status, head, body }
}

/// Sends `request` (head and body) on a new connection and reads the response.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send request");
    read_response(&mut stream).await
}

/// A GET of `path` naming `host`, on a connection of its own.
pub async fn get_with_host(addr: SocketAddr, path: &str, host: &str) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw_request(addr, request.as_bytes()).await
}
