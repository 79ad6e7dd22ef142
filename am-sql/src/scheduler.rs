//! The scheduler: fires rules at their schedule, runs manual triggers in the background, and
//! records every run (queued, running, succeeded, failed).
//!
//! One worker task takes runs from a queue and refreshes them one after another on the
//! blocking pool: SQLite has one writer anyway, and serial refreshes mean two runs never
//! rebuild the same upstream segment at once. A rule has at most one run queued or running:
//! a trigger while it has one joins it and gets its id (there is no "already running" error
//! in any form). Missed fire times collapse into one catch-up run; runs a crash left active
//! are marked failed when the scheduler starts.
//!
//! Usable without the HTTP server: a service that links the library calls
//! [`Scheduler::start`], [`Scheduler::trigger`] and [`Scheduler::shutdown`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::Store;
use crate::refresh::{NodeStatus, RefreshRequest, RefreshTargets};
use crate::rules::StoredRule;
use crate::runs::{RunId, RunTrigger};
use am_core::rule::RuleId;
use am_core::schedule::Schedule;
use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

/// The time, injectable so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why a trigger was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The scheduler is shutting down and takes no new work.
    #[error("the server is shutting down and takes no new runs")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggered {
    pub run_id: RunId,
    /// True when the rule already had a run queued or running and the trigger joined it.
    pub joined: bool,
}

#[derive(Default)]
struct Queue {
    /// Runs waiting for the worker, in order.
    pending: VecDeque<(RunId, RuleId)>,
    /// The run each rule has queued or running.
    active: HashMap<RuleId, RunId>,
    /// When each scheduled rule last fired (scheduler clock).
    last_fired: HashMap<RuleId, DateTime<Utc>>,
    accepting: bool,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    queue: Mutex<Queue>,
    /// Wakes the worker: a run was queued, or shutdown began.
    work: Notify,
    /// Wakes the ticker: rules changed, so the next fire time may have moved.
    rules_changed: Notify,
    shutdown: watch::Sender<bool>,
    /// When the scheduler started (scheduler clock): the baseline of rules never fired.
    started_at: DateTime<Utc>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Handle on the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// The longest the ticker sleeps without looking at the rules again.
const MAX_TICK_SLEEP: Duration = Duration::from_secs(30);

impl Scheduler {
    /// A scheduler over `store`, not yet running: marks runs a previous process left queued
    /// or running as failed, and starts the worker that executes runs. Call
    /// [`Scheduler::spawn_ticker`] for schedules to fire on their own (tests call
    /// [`Scheduler::tick`] with times of their choosing instead).
    pub async fn start(store: Store, clock: Arc<dyn Clock>) -> Result<Scheduler, SchedulerError> {
        let abandoned = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.fail_abandoned_runs()).await??
        };
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "marked runs left active by a previous process as failed"
            );
        }
        let (shutdown, _) = watch::channel(false);
        let started_at = clock.now();
        let scheduler = Scheduler {
            inner: Arc::new(Inner {
                store,
                clock,
                queue: Mutex::new(Queue {
                    accepting: true,
                    ..Queue::default()
                }),
                work: Notify::new(),
                rules_changed: Notify::new(),
                shutdown,
                started_at,
                tasks: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let worker = tokio::spawn(scheduler.clone().worker());
        scheduler.keep(worker);
        Ok(scheduler)
    }

    fn keep(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.push(task);
        }
    }

    /// The scheduler's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Queues a refresh of `rule_id`, or joins the run it already has queued or running.
    /// Returns at once; the work happens on the worker.
    pub async fn trigger(
        &self,
        rule_id: RuleId,
        trigger: RunTrigger,
    ) -> Result<Triggered, SchedulerError> {
        // The lock is held across the insert so two triggers of one rule cannot both create a
        // run: the second sees the first's entry in `active`.
        let mut queue = self.inner.queue.lock().await;
        if !queue.accepting {
            return Err(SchedulerError::ShuttingDown);
        }
        if let Some(&run_id) = queue.active.get(&rule_id) {
            return Ok(Triggered {
                run_id,
                joined: true,
            });
        }
        let store = self.inner.store.clone();
        let run_id =
            tokio::task::spawn_blocking(move || store.create_run(rule_id, trigger)).await??;
        queue.active.insert(rule_id, run_id);
        queue.pending.push_back((run_id, rule_id));
        drop(queue);
        self.inner.work.notify_one();
        Ok(Triggered {
            run_id,
            joined: false,
        })
    }

    /// The run a rule has queued or running, if any.
    pub async fn active_run(&self, rule_id: RuleId) -> Option<RunId> {
        self.inner.queue.lock().await.active.get(&rule_id).copied()
    }

    /// Tells the ticker that rules changed (created, updated, deleted).
    pub fn rules_changed(&self) {
        self.inner.rules_changed.notify_one();
    }

    /// Fires every rule whose schedule has a fire time after its last fire and at or before
    /// `now`, in dependency order, once each however many times were missed. Returns the
    /// fired rules with their runs, and the next time a rule is due (if any).
    pub async fn tick(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Vec<(RuleId, Triggered)>, Option<DateTime<Utc>>), SchedulerError> {
        let store = self.inner.store.clone();
        let (rules, last_scheduled) = tokio::task::spawn_blocking(move || {
            let rules = store.all_rules()?;
            let mut last = HashMap::new();
            for rule in &rules {
                if rule.spec.schedule.is_some()
                    && let Some(at) = last_scheduled_fire(&store, rule.id)?
                {
                    last.insert(rule.id, at);
                }
            }
            Ok::<_, crate::Error>((rules, last))
        })
        .await??;

        let mut due = Vec::new();
        let mut next_due: Option<DateTime<Utc>> = None;
        {
            let queue = self.inner.queue.lock().await;
            for rule in &rules {
                let Some(line) = rule.spec.schedule.as_deref() else {
                    continue;
                };
                // Stored rules were validated; a schedule that no longer parses is skipped,
                // not fatal to the others.
                let Ok(schedule) = Schedule::parse(line) else {
                    tracing::warn!(rule_id = rule.id, "stored schedule does not parse");
                    continue;
                };
                let baseline = queue
                    .last_fired
                    .get(&rule.id)
                    .copied()
                    .or_else(|| last_scheduled.get(&rule.id).copied())
                    .unwrap_or_else(|| rule.updated_at.min(self.inner.started_at));
                match schedule.next_after(baseline) {
                    Some(at) if at <= now => due.push(rule.id),
                    Some(_) => {}
                    None => continue,
                }
                if let Some(next) = schedule.next_after(now.max(baseline)) {
                    next_due = Some(next_due.map_or(next, |n| n.min(next)));
                }
            }
        }

        let order = dependency_order(&rules, &due);
        let mut fired = Vec::new();
        for rule_id in order {
            let triggered = match self.trigger(rule_id, RunTrigger::Schedule).await {
                Ok(t) => t,
                Err(SchedulerError::Store(crate::Error::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            };
            self.inner
                .queue
                .lock()
                .await
                .last_fired
                .insert(rule_id, now);
            fired.push((rule_id, triggered));
        }
        Ok((fired, next_due))
    }

    /// Starts the task that calls [`Scheduler::tick`] whenever a rule is due.
    pub fn spawn_ticker(&self) {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut shutdown = this.inner.shutdown.subscribe();
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let now = this.inner.clock.now();
                let sleep = match this.tick(now).await {
                    Ok((_, Some(next))) => (next - now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_TICK_SLEEP),
                    Ok((_, None)) => MAX_TICK_SLEEP,
                    Err(SchedulerError::ShuttingDown) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "scheduler tick failed");
                        MAX_TICK_SLEEP
                    }
                };
                // Cron has one-second resolution: never spin on a due time already handled.
                let sleep = sleep.max(Duration::from_millis(200));
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = this.inner.rules_changed.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
        });
        self.keep(task);
    }

    /// Stops taking work, fails runs that were queued but not started, lets the refresh in
    /// progress finish (its segment is swapped in whole or not at all), and waits for the
    /// scheduler's tasks to end.
    pub async fn shutdown(&self) {
        let dropped: Vec<(RunId, RuleId)> = {
            let mut queue = self.inner.queue.lock().await;
            queue.accepting = false;
            let dropped: Vec<_> = queue.pending.drain(..).collect();
            for (_, rule_id) in &dropped {
                queue.active.remove(rule_id);
            }
            dropped
        };
        if !dropped.is_empty() {
            let store = self.inner.store.clone();
            let result = tokio::task::spawn_blocking(move || {
                for (run_id, _) in dropped {
                    store.fail_run(run_id, crate::runs::ABANDONED)?;
                }
                Ok::<_, crate::Error>(())
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not mark queued runs failed"),
                Err(e) => tracing::error!(error = %e, "could not mark queued runs failed"),
            }
        }
        self.inner.shutdown.send_replace(true);
        self.inner.work.notify_one();
        let tasks: Vec<_> = match self.inner.tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "scheduler task ended abnormally");
            }
        }
    }

    async fn worker(self) {
        loop {
            let next = {
                let mut queue = self.inner.queue.lock().await;
                match queue.pending.pop_front() {
                    Some(job) => Some(job),
                    None if !queue.accepting => return,
                    None => None,
                }
            };
            let Some((run_id, rule_id)) = next else {
                self.inner.work.notified().await;
                continue;
            };
            let as_of = self.inner.clock.now();
            let store = self.inner.store.clone();
            let outcome =
                tokio::task::spawn_blocking(move || execute(&store, run_id, rule_id, as_of)).await;
            match outcome {
                Ok(Ok(())) => tracing::info!(run_id, rule_id, "run succeeded"),
                Ok(Err(e)) => tracing::warn!(run_id, rule_id, error = %e, "run failed"),
                Err(e) => {
                    tracing::error!(run_id, rule_id, error = %e, "run panicked");
                    let store = self.inner.store.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        store.fail_run(run_id, "internal error")
                    })
                    .await;
                }
            }
            let mut queue = self.inner.queue.lock().await;
            if queue.active.get(&rule_id) == Some(&run_id) {
                queue.active.remove(&rule_id);
            }
        }
    }
}

/// The scheduler-clock time of a rule's last scheduled run: its as-of, which the worker sets
/// from the scheduler's clock when the run starts.
fn last_scheduled_fire(
    store: &Store,
    rule_id: RuleId,
) -> Result<Option<DateTime<Utc>>, crate::Error> {
    let runs = store.list_runs(&crate::runs::RunFilter {
        rule_id: Some(rule_id),
        status: None,
        limit: Some(50),
    })?;
    Ok(runs
        .iter()
        .filter(|r| r.trigger == RunTrigger::Schedule)
        .map(|r| r.as_of.map(|t| t.and_utc()).unwrap_or(r.queued_at))
        .max())
}

/// `due` ordered so every rule comes after the due rules it depends on (ties by id).
fn dependency_order(rules: &[StoredRule], due: &[RuleId]) -> Vec<RuleId> {
    let due_set: HashSet<RuleId> = due.iter().copied().collect();
    let deps: HashMap<RuleId, Vec<RuleId>> = rules
        .iter()
        .filter(|r| due_set.contains(&r.id))
        .map(|r| {
            let mut d: Vec<RuleId> = r
                .spec
                .depends_on
                .iter()
                .copied()
                .filter(|id| due_set.contains(id))
                .collect();
            d.sort_unstable();
            (r.id, d)
        })
        .collect();
    let mut ids: Vec<RuleId> = due.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut order = Vec::with_capacity(ids.len());
    let mut placed = HashSet::new();
    // Repeated passes: each places every rule whose due dependencies are placed. Stored
    // rules have no cycles; should one appear, the rest are placed by id rather than lost.
    while order.len() < ids.len() {
        let before = order.len();
        for id in &ids {
            if placed.contains(id) {
                continue;
            }
            let ready = deps
                .get(id)
                .is_none_or(|d| d.iter().all(|dep| placed.contains(dep)));
            if ready {
                placed.insert(*id);
                order.push(*id);
            }
        }
        if order.len() == before {
            for id in &ids {
                if placed.insert(*id) {
                    order.push(*id);
                }
            }
        }
    }
    order
}

/// Runs one refresh: marks the run running, refreshes the rule (and its stale upstream, in
/// plan order), and records the outcome on the run.
fn execute(
    store: &Store,
    run_id: RunId,
    rule_id: RuleId,
    as_of: DateTime<Utc>,
) -> Result<(), crate::Error> {
    let result = refresh_run(store, run_id, rule_id, as_of.naive_utc());
    if let Err(e) = &result {
        // The refresh records its own failure when it got that far; this covers errors
        // before it could (the rule deleted meanwhile, the database locked).
        if let Ok(run) = store.run(run_id)
            && run.status.is_active()
        {
            let _ = store.fail_run(run_id, &e.to_string());
        }
    }
    result
}

/// Refreshes `rule_id` (and its stale upstream, in plan order) as the queued run `run_id`.
fn refresh_run(
    store: &Store,
    run_id: RunId,
    rule_id: RuleId,
    as_of: NaiveDateTime,
) -> Result<(), crate::Error> {
    // Refreshing an unknown rule would fail to plan; say plainly that it is gone.
    store.rule(rule_id)?;
    let mut request = RefreshRequest::new(RefreshTargets::Rules(vec![rule_id]), RunTrigger::Api);
    request.as_of = Some(as_of.with_nanosecond(0).unwrap_or(as_of));
    request.runs.insert(rule_id, run_id);
    let report = store.refresh(&request, &crate::NoProgress)?;
    match report.node(rule_id) {
        Some(node) if node.status == NodeStatus::Succeeded => Ok(()),
        Some(node) => Err(crate::Error::Refused(
            node.error
                .clone()
                .unwrap_or_else(|| "refresh failed".into()),
        )),
        None => Err(crate::Error::Refused("the rule was not refreshed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_rules_are_ordered_after_their_due_dependencies() {
        let rule = |id: RuleId, deps: Vec<RuleId>| StoredRule {
            id,
            spec: am_core::rule::RuleSpec {
                rule_name: format!("r{id}"),
                depends_on: deps,
                ..Default::default()
            },
            conditions_text: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        };
        // 1 <- 3 <- 2, and 4 on its own; 5 is not due.
        let rules = vec![
            rule(1, vec![]),
            rule(2, vec![3, 5]),
            rule(3, vec![1]),
            rule(4, vec![]),
            rule(5, vec![]),
        ];
        assert_eq!(dependency_order(&rules, &[2, 4, 3, 1]), vec![1, 3, 4, 2]);
    }
}
