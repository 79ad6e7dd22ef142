//! The scheduler with an injected clock: dependency order, catch-up after downtime, joining
//! active runs, and abandoned runs after a crash.

use std::time::Duration;

use am_core::rule::RuleSpec;
use am_http::scheduler::Scheduler;
use am_sql::Store;
use am_sql::runs::{RunStatus, RunTrigger};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::support::{Engine, ManualClock, conn, on_every_engine, store_with_data};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid time")
}

fn spec(name: &str, schedule: Option<&str>, depends_on: Vec<i64>) -> RuleSpec {
    RuleSpec {
        rule_name: name.into(),
        conditions: json!([{"field": "total_spend", "operator": ">", "value": 100}]),
        schedule: schedule.map(String::from),
        depends_on,
        ..RuleSpec::default()
    }
}

/// Read without failing abandoned runs first (as `Store::run` would), so the tests see what
/// the scheduler itself did.
fn raw_run(store: &Store, run: i64) -> am_sql::Result<am_sql::runs::Run> {
    am_sql::runs::get_run(conn(store).as_mut(), run)
}

async fn wait_idle(store: &Store, run_ids: &[i64]) {
    for _ in 0..3000 {
        let done = run_ids
            .iter()
            .all(|id| raw_run(store, *id).is_ok_and(|r| !r.status.is_active()));
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("runs {run_ids:?} did not finish within a minute");
}

fn status(store: &Store, run: i64) -> RunStatus {
    raw_run(store, run).expect("run").status
}

on_every_engine!(due_rules_fire_in_dependency_order_and_catch_up_once);
async fn due_rules_fire_in_dependency_order_and_catch_up_once(engine: Engine) {
    let (_dir, store) = store_with_data(engine, 100, 1000);
    // The dependant gets the lower id: order must come from dependencies, not ids.
    let child = store
        .create_rule(&spec("child", Some("0 0 * * *"), vec![]))
        .expect("child");
    let parent = store
        .create_rule(&spec("parent", Some("0 0 * * *"), vec![]))
        .expect("parent");
    store
        .update_rule(child, &spec("child", Some("0 0 * * *"), vec![parent]))
        .expect("child depends on parent");
    let manual = store
        .create_rule(&spec("manual", None, vec![]))
        .expect("manual");

    let clock = ManualClock::new(at(2025, 1, 1, 0, 0) + chrono::Duration::seconds(30));
    let scheduler = Scheduler::start(store.clone(), clock.clone())
        .await
        .expect("start");

    let (fired, next) = scheduler.tick(at(2025, 1, 1, 12, 0)).await.expect("tick");
    assert!(
        fired.is_empty(),
        "nothing is due before midnight: {fired:?}"
    );
    assert_eq!(next, Some(at(2025, 1, 2, 0, 0)));

    clock.set(at(2025, 1, 2, 0, 0));
    let (fired, _) = scheduler.tick(at(2025, 1, 2, 0, 0)).await.expect("tick");
    let order: Vec<i64> = fired.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        order,
        vec![parent, child],
        "parent first; the manual rule never fires"
    );
    assert!(!order.contains(&manual));
    let runs: Vec<i64> = fired.iter().map(|(_, t)| t.run_id).collect();
    wait_idle(&store, &runs).await;
    assert!(
        runs.iter()
            .all(|r| status(&store, *r) == RunStatus::Succeeded)
    );

    // The same instant again fires nothing.
    let (again, _) = scheduler.tick(at(2025, 1, 2, 0, 0)).await.expect("tick");
    assert!(again.is_empty(), "{again:?}");

    // Five missed midnights: one catch-up run per rule.
    clock.set(at(2025, 1, 7, 9, 0));
    let (catch_up, _) = scheduler.tick(at(2025, 1, 7, 9, 0)).await.expect("tick");
    assert_eq!(
        catch_up.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![parent, child]
    );
    let runs: Vec<i64> = catch_up.iter().map(|(_, t)| t.run_id).collect();
    wait_idle(&store, &runs).await;
    let (after, _) = scheduler.tick(at(2025, 1, 7, 9, 1)).await.expect("tick");
    assert!(after.is_empty(), "{after:?}");
    scheduler.shutdown().await;

    // A restart after more downtime: the last fire comes from run history; one catch-up.
    clock.set(at(2025, 1, 10, 8, 0));
    let restarted = Scheduler::start(store.clone(), clock.clone())
        .await
        .expect("restart");
    let (fired, _) = restarted.tick(at(2025, 1, 10, 8, 0)).await.expect("tick");
    assert_eq!(
        fired.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![parent, child]
    );
    let (none, _) = restarted.tick(at(2025, 1, 10, 8, 0)).await.expect("tick");
    assert!(none.is_empty());
    let runs: Vec<i64> = fired.iter().map(|(_, t)| t.run_id).collect();
    wait_idle(&store, &runs).await;
    restarted.shutdown().await;

    let scheduled = am_sql::runs::list_runs(
        conn(&store).as_mut(),
        &am_sql::runs::RunFilter {
            rule_id: Some(parent),
            status: None,
            limit: Some(100),
        },
    )
    .expect("runs")
    .into_iter()
    .filter(|r| r.trigger == RunTrigger::Schedule)
    .count();
    assert_eq!(scheduled, 3, "one run per tick that found the rule due");
}

on_every_engine!(triggers_join_the_active_run_and_crashes_leave_no_active_runs);
async fn triggers_join_the_active_run_and_crashes_leave_no_active_runs(engine: Engine) {
    let (_dir, store) = store_with_data(engine, 100, 1000);
    let id = store.create_rule(&spec("r", None, vec![])).expect("rule");

    // A run left running by a crashed process.
    let stale = {
        let mut conn = conn(&store);
        // Owned by a process that is gone: no live process holds its token.
        let run = am_sql::runs::create_run(conn.as_mut(), id, RunTrigger::Api, Some("1.dead"))
            .expect("run");
        am_sql::runs::mark_running(conn.as_mut(), run, at(2025, 1, 1, 0, 0).naive_utc())
            .expect("running");
        run
    };
    assert_eq!(status(&store, stale), RunStatus::Running);
    let clock = ManualClock::new(at(2025, 3, 1, 0, 0));
    let scheduler = Scheduler::start(store.clone(), clock).await.expect("start");
    assert_eq!(
        status(&store, stale),
        RunStatus::Failed,
        "abandoned run marked failed at start"
    );

    let first = scheduler
        .trigger(id, RunTrigger::Manual)
        .await
        .expect("trigger");
    let second = scheduler
        .trigger(id, RunTrigger::Api)
        .await
        .expect("trigger");
    // Either the second joined the first, or the first had already finished.
    if second.joined {
        assert_eq!(second.run_id, first.run_id);
    } else {
        assert_ne!(second.run_id, first.run_id);
    }
    assert!(!first.joined);
    wait_idle(&store, &[first.run_id, second.run_id]).await;
    assert_eq!(status(&store, first.run_id), RunStatus::Succeeded);
    assert_eq!(status(&store, second.run_id), RunStatus::Succeeded);
    // The worker forgets the run just after the database records its end; wait for that.
    let mut active = scheduler.active_run(id).await;
    for _ in 0..200 {
        if active.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        active = scheduler.active_run(id).await;
    }
    assert_eq!(active, None, "no run stays active once its refresh ended");

    scheduler.shutdown().await;
    let refused = scheduler.trigger(id, RunTrigger::Manual).await;
    assert!(
        matches!(
            refused,
            Err(am_http::scheduler::SchedulerError::ShuttingDown)
        ),
        "{refused:?}"
    );
}
