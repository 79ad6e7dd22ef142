//! Graceful shutdown: once the shutdown future completes the server takes no new work,
//! finishes the refresh in progress or abandons queued ones (their old segments intact),
//! and exits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use am_core::rule::RuleSpec;
use am_sql::Store;
use am_sql::catalog::{Segment, segment_table_name};
use am_sql::refresh::{RefreshRequest, RefreshTargets};
use am_sql::render::{CREDIT_CARD, UPI, USER_ID};
use am_sql::runs::{ABANDONED, Run, RunStatus, RunTrigger};
use am_sql::schema::REFRESH_RUNS;
use reqwest::{Client, StatusCode};
use sea_query::{Alias, Expr, ExprTrait, Query};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{Engine, conn, on_every_engine, store_with_data, users_of_sql};

/// The longest any wait in this test may take; only a bound, never an expectation.
const BOUND: Duration = Duration::from_secs(30);

fn spec(name: &str, conditions: Value) -> RuleSpec {
    RuleSpec {
        rule_name: name.into(),
        conditions,
        ..RuleSpec::default()
    }
}

fn members(store: &Store, rule_id: i64) -> BTreeSet<i64> {
    let q = Query::select()
        .column(USER_ID)
        .from(Alias::new(segment_table_name(rule_id)))
        .to_owned();
    conn(store)
        .rows(&q)
        .expect("read members")
        .iter()
        .map(|r| r.i64(0).expect("a user id"))
        .collect()
}

/// The users a segment's stored SQL selects over the current data.
fn selected_by(store: &Store, segment: &Segment) -> BTreeSet<i64> {
    users_of_sql(store, &segment.sql_query)
}

/// How many runs match `filter` (every run without one), counted in the database.
fn runs_where(store: &Store, filter: Option<sea_query::Expr>) -> i64 {
    let mut q = Query::select().column("id").from(REFRESH_RUNS).to_owned();
    if let Some(filter) = filter {
        q.and_where(filter);
    }
    conn(store).count(&q).expect("count runs")
}

fn segment(store: &Store, rule_id: i64) -> Segment {
    store
        .segment_for_rule(rule_id)
        .expect("catalog")
        .expect("a segment")
}

fn run(store: &Store, run_id: i64) -> Run {
    store.run(run_id).expect("run")
}

fn run_count(store: &Store) -> i64 {
    runs_where(store, None)
}

/// A rule's state before the shutdown: its segment as built by the first refresh, and the
/// members the next refresh would give over the changed data.
struct Before {
    rule_id: i64,
    catalog: Segment,
    members: BTreeSet<i64>,
    next_members: BTreeSet<i64>,
}

/// Asserts two member sets are equal, saying how they differ rather than listing them.
fn assert_same(got: &BTreeSet<i64>, want: &BTreeSet<i64>, what: &str) {
    let extra: Vec<_> = got.difference(want).take(10).collect();
    let missing: Vec<_> = want.difference(got).take(10).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: {} members, want {}; extra {extra:?}, missing {missing:?}",
        got.len(),
        want.len()
    );
}

/// Asserts the segment of `before.rule_id` is whole: the old one untouched when its run was
/// abandoned, the new one, consistent with its catalog row and run, when the run finished.
fn assert_whole(store: &Store, before: &Before, run_id: i64) {
    let id = before.rule_id;
    let run = run(store, run_id);
    let now = members(store, id);
    let catalog = segment(store, id);
    assert!(!now.is_empty(), "rule {id}: segment table left empty");
    match run.status {
        RunStatus::Failed => {
            assert_eq!(
                run.error.as_deref(),
                Some(ABANDONED),
                "rule {id}: a failed run must be the abandoned one: {run:?}"
            );
            assert_eq!(
                now, before.members,
                "rule {id}: abandoned, old members kept"
            );
            assert_eq!(
                catalog, before.catalog,
                "rule {id}: abandoned, old row kept"
            );
            assert_eq!(run.row_count, None, "{run:?}");
        }
        RunStatus::Succeeded => {
            assert_same(&now, &before.next_members, "finished: the new members");
            assert_eq!(catalog.id, before.catalog.id);
            assert_eq!(catalog.row_count, now.len() as i64, "{catalog:?}");
            assert_eq!(run.row_count, Some(catalog.row_count), "{run:?}");
            assert_same(
                &selected_by(store, &catalog),
                &now,
                "the catalog SQL's users",
            );
            assert_eq!(
                catalog.data_version,
                store.data_version().expect("data version"),
                "built from the changed data"
            );
            let entered = now.difference(&before.members).count() as i64;
            let left = before.members.difference(&now).count() as i64;
            assert_eq!((catalog.entered, catalog.left), (entered, left));
            assert_eq!((run.entered, run.left), (Some(entered), Some(left)));
        }
        other => panic!("rule {id}: run {run_id} left {other:?} after shutdown: {run:?}"),
    }
}

async fn trigger(client: &Client, base: &str, rule_id: i64) -> i64 {
    let resp = client
        .post(format!("{base}/api/rules/{rule_id}/trigger"))
        .json(&json!({}))
        .send()
        .await
        .expect("trigger");
    let status = resp.status();
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["run_id"].as_i64().expect("run_id")
}

on_every_engine!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    shutdown_finishes_or_abandons_runs_whole_and_exits
);
async fn shutdown_finishes_or_abandons_runs_whole_and_exits(engine: Engine) {
    let (_dir, store) = store_with_data(engine, 3000, 60_000);
    // Two rules on different fields, so neither is computed from the other's segment.
    let big = store
        .create_rule(&spec(
            "Big spenders",
            json!([{"field": "total_spend", "operator": ">", "value": 1000}]),
        ))
        .expect("rule");
    let busy = store
        .create_rule(&spec(
            "Busy buyers",
            json!([{"field": "transaction_count", "operator": ">", "value": 20}]),
        ))
        .expect("rule");
    let first = store
        .refresh(
            &RefreshRequest::new(RefreshTargets::Rules(vec![big, busy]), RunTrigger::Cli),
            &am_sql::NoProgress,
        )
        .expect("first refresh");
    assert!(first.succeeded(), "{first:?}");

    // Change the data so the next refresh gives different members.
    for table in [CREDIT_CARD, UPI] {
        let delete = Query::delete()
            .from_table(table)
            .and_where(Expr::col(USER_ID).modulo(2).eq(0))
            .to_owned();
        conn(&store).exec(&delete).expect("change data");
    }
    let before: Vec<Before> = [big, busy]
        .into_iter()
        .map(|rule_id| {
            let catalog = segment(&store, rule_id);
            assert!(catalog.reused_from.is_empty(), "{catalog:?}");
            let members = members(&store, rule_id);
            let next_members = selected_by(&store, &catalog);
            assert!(!members.is_empty(), "rule {rule_id} has members");
            assert!(!next_members.is_empty(), "rule {rule_id} keeps members");
            assert!(
                members != next_members,
                "rule {rule_id}: the change matters"
            );
            Before {
                rule_id,
                catalog,
                members,
                next_members,
            }
        })
        .collect();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(am_http::serve_on(
        listener,
        store.clone(),
        am_http::ServerConfig {
            addr,
            ..am_http::ServerConfig::default()
        },
        Arc::new(am_http::SystemClock),
        async {
            let _ = stopped.await;
        },
    ));

    // The second run queues behind the first: the worker refreshes one run at a time.
    let client = Client::new();
    let run_ids = [
        trigger(&client, &base, big).await,
        trigger(&client, &base, busy).await,
    ];
    // Wait (bounded) until the first run has left the queue, then stop the server.
    tokio::time::timeout(BOUND, async {
        while run(&store, run_ids[0]).status == RunStatus::Queued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first run starts");
    stop.send(()).expect("server still listening for shutdown");
    tokio::time::timeout(BOUND, server)
        .await
        .expect("the server exits after shutdown")
        .expect("server task")
        .expect("server result");
    let runs_at_exit = run_count(&store);

    for (before, run_id) in before.iter().zip(run_ids) {
        assert_whole(&store, before, run_id);
    }
    let active = runs_where(
        &store,
        Some(Expr::col("status").is_in(["queued", "running"])),
    );
    assert_eq!(active, 0, "no run left queued or running");

    // The port is closed: a new trigger cannot reach the server, and no run was created.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port still accepts connections"
    );
    let late = Client::new()
        .post(format!("{base}/api/rules/{big}/trigger"))
        .json(&json!({}))
        .timeout(BOUND)
        .send()
        .await;
    assert!(
        late.is_err(),
        "a trigger after shutdown was answered: {late:?}"
    );
    assert_eq!(run_count(&store), runs_at_exit, "no run after shutdown");
}
