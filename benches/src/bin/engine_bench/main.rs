//! The SQL engine benchmark (docs/benchmarks.md, "SQL engine (am-sql)").
//!
//! `cargo run --release -p am-benches --bin engine_bench -- --users 1000000 --transactions 20000000`
//!
//! Builds (or reuses a cached) generated database, then times:
//! 1. one aggregate rule refreshed through the engine;
//! 2. 100 rules over the same window refreshed together through the engine (one shared scan);
//! 3. the same 100 rules as independent standalone queries, one by one (the seed's way).
//!
//! Every rule's member count from (2) is checked against (3), so the speed is not bought with
//! a wrong answer.
//!
//! `--db postgres://...` runs it on PostgreSQL (the server's CPU counts when it is local);
//! `--engine sc://HOST:PORT` (built with `--features spark`) computes the segments on Spark
//! from a Parquet copy of the data (`--server-pid` of the Connect server counts its CPU).
//!
//! `--days N` instead lives N days of an installation: daily ETL, then incremental refreshes
//! beside full rebuilds (`days.rs`).
//!
//! `--mix broad` (the default) gives the rules audiences of up to 95% of users (mean 35%),
//! `--mix targeted` marketing-sized ones (0.6% to 18%, mean 5%): beyond the shared scan, a
//! rule costs a scan of the shared aggregates and the writing of its members.
//!
//! Besides wall time it prints the process's CPU time (user + system, from `/proc/self/stat`
//! on Linux) of each step: on a shared machine the wall time swings with other load, the CPU
//! time much less.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use am_core::expr::{TIMESTAMP_FORMAT, Timestamp};
use am_core::plan::{Plan, PlanNode};
use am_core::planner::{PlanOptions, Planner, RuleInput};
use am_core::rule::{RuleId, RuleSpec};
use am_sql::datagen::{GenerateOptions, generate};
use am_sql::refresh::{EngineRule, RefreshMode, RefreshRequest, RefreshTargets, refresh_plan};
use am_sql::render::{Aggregates, RenderContext, render_set};
use am_sql::runs::RunTrigger;
use am_sql::{Location, NoProgress, Store};
use chrono::NaiveDate;

mod days;

const CATEGORIES: [&str; 10] = [
    "Groceries",
    "Dining",
    "Fuel",
    "Utilities",
    "Fashion",
    "Entertainment",
    "Travel",
    "Health",
    "Electronics",
    "Education",
];

/// How large the rules' audiences are: what each rule costs beyond the shared scan is
/// mostly writing its members.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Bounds that select up to 95% of users (mean about 35% at 1M users).
    Broad,
    /// Marketing-sized audiences: 0.6% to 18% of users (mean about 5% at 1M users).
    Targeted,
}

struct Args {
    users: u64,
    transactions: u64,
    rules: usize,
    /// Give each rule a category filter (100 scopes over one window) instead of sharing one
    /// scope.
    filters: bool,
    mix: Mix,
    /// A SQLite file or a `postgres://` URI.
    db: Option<Location>,
    /// Skip (3) and its cross-check: for profiling the engine alone.
    engine_only: bool,
    /// Also refresh the rules as `am run` plans them, with the finder's reuse between them.
    reuse: bool,
    /// Compute the segments on Spark (`sc://HOST:PORT`), from a Parquet copy of the data in
    /// Spark's catalog (feature `spark`).
    engine: Option<String>,
    /// A local process whose CPU time counts too (the Spark Connect server's JVM).
    server_pid: Option<u32>,
    /// Instead of the steps above, a day in the life, this many days in a row (`days.rs`).
    days: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        users: 100_000,
        transactions: 2_000_000,
        rules: 100,
        filters: false,
        mix: Mix::Broad,
        db: None,
        engine_only: false,
        reuse: false,
        engine: None,
        server_pid: None,
        days: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--users" => args.users = value()?.parse().map_err(|e| format!("--users: {e}"))?,
            "--transactions" => {
                args.transactions = value()?
                    .parse()
                    .map_err(|e| format!("--transactions: {e}"))?;
            }
            "--rules" => args.rules = value()?.parse().map_err(|e| format!("--rules: {e}"))?,
            "--db" => args.db = Some(Location::from(value()?)),
            "--filters" => args.filters = true,
            "--mix" => {
                args.mix = match value()?.as_str() {
                    "broad" => Mix::Broad,
                    "targeted" => Mix::Targeted,
                    other => return Err(format!("--mix: {other}: expected broad or targeted")),
                }
            }
            "--engine-only" => args.engine_only = true,
            "--reuse" => args.reuse = true,
            "--engine" => args.engine = Some(value()?),
            "--days" => args.days = value()?.parse().map_err(|e| format!("--days: {e}"))?,
            "--server-pid" => {
                args.server_pid = Some(value()?.parse().map_err(|e| format!("--server-pid: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// contain spaces): index 1 is the parent's pid, 11 and 12 utime and stime, 13 and 14 the
/// same of waited-for children, in USER_HZ ticks (100 per second on Linux).
fn proc_stat(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 10)
}

/// The CPU time (user + system) so far of this process and, for a PostgreSQL server on this
/// machine, of the server: its postmaster with every child it has reaped, plus its live
/// children (backends, parallel workers, background writers). `None` where `/proc` is
/// missing.
fn cpu_time(server: Option<Server>) -> Option<Duration> {
    let me = proc_stat("self")?;
    let mut total = me.get(11)? + me.get(12)?;
    if let Some(Server::Process(pid)) = server {
        let p = proc_stat(&pid.to_string())?;
        total += p.get(11)? + p.get(12)?;
    }
    if let Some(Server::Postmaster(postmaster)) = server {
        let pm = proc_stat(&postmaster.to_string())?;
        total += pm.get(11)? + pm.get(12)? + pm.get(13)? + pm.get(14)?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some(child) = proc_stat(pid)
                && child.get(1) == Some(&u64::from(postmaster))
            {
                total += child.get(11).unwrap_or(&0) + child.get(12).unwrap_or(&0);
            }
        }
    }
    Some(ticks(total))
}

/// The postmaster of the PostgreSQL server behind `conn`, when it runs on this machine: the
/// parent of the connection's backend process.
fn local_postmaster(conn: &mut dyn am_sql::conn::Conn) -> Option<u32> {
    let mut backend = None;
    conn.query_sql(
        "SELECT pg_backend_pid()",
        sea_query::Values(Vec::new()),
        &mut |row| {
            backend = row.i64(0).ok();
            Ok(())
        },
    )
    .ok()?;
    let stat = proc_stat(&backend?.to_string())?;
    u32::try_from(*stat.get(1)?).ok()
}

/// Wall and CPU time of one step.
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

/// A server on this machine whose CPU time counts as the engine's.
#[derive(Clone, Copy)]
enum Server {
    /// PostgreSQL: the postmaster and its children.
    Postmaster(u32),
    /// One process (all its threads), e.g. a Spark Connect server running `local[N]`.
    Process(u32),
}

fn timed<T>(server: Option<Server>, step: impl FnOnce() -> T) -> (T, Timing) {
    let cpu = cpu_time(server);
    let started = Instant::now();
    let out = step();
    let wall = started.elapsed();
    let cpu = cpu.zip(cpu_time(server)).map(|(a, b)| b.saturating_sub(a));
    (out, Timing { wall, cpu })
}

/// Where a refresh's wall time went: the shared aggregates, the segments' builds and swaps
/// (with the member rows they wrote), and the rest (runs, catalog, change log).
struct Split {
    aggregates: Duration,
    segments: Duration,
    rest: Duration,
    members: i64,
}

impl Split {
    fn of(report: &am_sql::refresh::RefreshReport) -> Split {
        let segments: Duration = report.nodes.iter().map(|n| n.duration).sum();
        Split {
            aggregates: report.aggregates,
            segments,
            rest: report
                .elapsed
                .saturating_sub(report.aggregates)
                .saturating_sub(segments),
            members: report.nodes.iter().filter_map(|n| n.row_count).sum(),
        }
    }

    fn line(&self) -> String {
        let per_member = self.segments.as_secs_f64() * 1e9 / self.members.max(1) as f64;
        format!(
            "shared aggregates {:.2} s, segments {:.2} s ({} member rows, {per_member:.0} ns each), runs and catalog {:.2} s",
            self.aggregates.as_secs_f64(),
            self.segments.as_secs_f64(),
            self.members,
            self.rest.as_secs_f64(),
        )
    }
}

/// The first rule of the mix (`total_spend >` a bound over the window, with its category
/// under `--filters`) as the fastest SQLite query found for it by hand: each table grouped
/// in its covering index's order, the two sums added per user. Materialized like a segment,
/// and dropped again; returns its member count.
fn hand_written(
    conn: &mut dyn am_sql::conn::Conn,
    mix: Mix,
    filters: bool,
) -> Result<i64, Box<dyn std::error::Error>> {
    let bound = conditions(mix, 0)[0]["value"].clone();
    let category = if filters { "AND category = ?4" } else { "" };
    let branch = |table: &str| {
        format!(
            "SELECT user_id, SUM(amount) AS spend FROM {table} \
             WHERE transaction_date >= ?1 AND transaction_date <= ?2 {category} GROUP BY user_id"
        )
    };
    let sql = format!(
        "CREATE TEMP TABLE hand_written AS SELECT user_id FROM ({} UNION ALL {}) \
         GROUP BY user_id HAVING SUM(spend) > ?3",
        branch("credit_card_transactions"),
        branch("upi_transactions")
    );
    let mut values = vec![
        sea_query::Value::from("2025-04-01 00:00:00"),
        sea_query::Value::from("2025-06-30 23:59:59"),
        sea_query::Value::from(bound.as_i64().ok_or("the first rule's bound")?),
    ];
    if filters {
        values.push(sea_query::Value::from(CATEGORIES[0]));
    }
    conn.execute_sql(
        "DROP TABLE IF EXISTS temp.hand_written",
        sea_query::Values(Vec::new()),
    )?;
    conn.execute_sql(&sql, sea_query::Values(values))?;
    let mut members = 0;
    conn.query_sql(
        "SELECT count(*) FROM temp.hand_written",
        sea_query::Values(Vec::new()),
        &mut |row| {
            members = row.i64(0)?;
            Ok(())
        },
    )?;
    conn.execute_sql(
        "DROP TABLE temp.hand_written",
        sea_query::Values(Vec::new()),
    )?;
    Ok(members)
}

/// Rule `k`'s conditions: five shapes in turn, bounds tightening every five rules.
fn conditions(mix: Mix, k: usize) -> Vec<serde_json::Value> {
    use serde_json::json;
    let step = k / 5 + 1;
    match (mix, k % 5) {
        (Mix::Broad, 0) => {
            vec![json!({"field": "total_spend", "operator": ">", "value": 1000 * step})]
        }
        (Mix::Broad, 1) => {
            vec![json!({"field": "transaction_count", "operator": ">=", "value": step})]
        }
        (Mix::Broad, 2) => {
            vec![json!({"field": "avg_transaction_amount", "operator": "<", "value": 100 * step})]
        }
        (Mix::Broad, 3) => vec![
            json!({"field": "max_transaction_amount", "operator": ">", "value": 500 * step}),
            json!({"field": "city_tier", "operator": "=", "value": 1 + k % 3}),
        ],
        (Mix::Broad, _) => {
            vec![json!({"field": "total_spend", "operator": "<", "value": 2000 * step})]
        }
        (Mix::Targeted, 0) => {
            vec![json!({"field": "total_spend", "operator": ">", "value": 25_000 + 2500 * step})]
        }
        (Mix::Targeted, 1) => {
            vec![json!({"field": "transaction_count", "operator": ">=", "value": 8 + step})]
        }
        (Mix::Targeted, 2) => vec![
            json!({"field": "avg_transaction_amount", "operator": "<", "value": 300 + 30 * step}),
        ],
        (Mix::Targeted, 3) => vec![
            json!({"field": "max_transaction_amount", "operator": ">", "value": 6000 + 1000 * step}),
            json!({"field": "city_tier", "operator": "=", "value": 1 + k % 3}),
        ],
        // Users without transactions in the window, and the lightest spenders.
        (Mix::Targeted, _) => {
            vec![json!({"field": "total_spend", "operator": "<", "value": 100 * step})]
        }
    }
}

/// The store with its segments computed on Spark from a Parquet copy of its data in the
/// Spark database `am_bench_<users>_<transactions>` (copied through JDBC once).
#[cfg(feature = "spark")]
fn on_spark(
    store: &Store,
    url: &str,
    location: &Location,
    users: u64,
    transactions: u64,
) -> Result<Store, Box<dyn std::error::Error>> {
    use am_sql::backend::spark::{SparkEngine, SparkOptions, SparkSource, attach_store_tables};
    let engine = SparkEngine::connect(url)?;
    let database = format!("am_bench_{users}_{transactions}");
    let copied = engine
        .rows(&format!(
            "SELECT count(*) FROM `{database}`.`credit_card_transactions`"
        ))
        .is_ok();
    if copied {
        println!("reusing the Spark database {database}");
    } else {
        println!("copying the data into the Spark database {database} (Parquet)");
        let started = Instant::now();
        engine.execute("SET spark.sql.session.timeZone = UTC")?;
        attach_store_tables(&engine, location)?;
        engine.execute(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))?;
        for table in ["users", "credit_card_transactions", "upi_transactions"] {
            engine.execute(&format!(
                "CREATE TABLE `{database}`.`{table}` USING parquet AS SELECT * FROM `{table}`"
            ))?;
        }
        println!("copied in {:.1?}", started.elapsed());
    }
    let mut options = SparkOptions::new(url);
    options.source = SparkSource::Catalog(Some(database));
    Ok(store.clone().with_spark(options)?)
}

#[cfg(not(feature = "spark"))]
fn on_spark(
    _: &Store,
    _: &str,
    _: &Location,
    _: u64,
    _: u64,
) -> Result<Store, Box<dyn std::error::Error>> {
    Err("--engine needs the bench built with --features spark".into())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let end = NaiveDate::from_ymd_opt(2025, 6, 30).ok_or("bad end date")?;
    let path = args.db.clone().unwrap_or_else(|| {
        Location::from(PathBuf::from(format!(
            "target/engine-bench/am-{}-{}.db",
            args.users, args.transactions
        )))
    });
    if let Location::Sqlite(file) = &path
        && let Some(dir) = file.parent()
    {
        std::fs::create_dir_all(dir)?;
    }
    // A day in the life writes to the data: the default database is copied first.
    let path = match (&path, args.days > 0 && args.db.is_none()) {
        (Location::Sqlite(base), true) => {
            let copy = base.with_extension("days.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
            }
            if base.exists() {
                println!("copying {} to {}", base.display(), copy.display());
                std::fs::copy(base, &copy)?;
            }
            Location::from(copy)
        }
        _ => path,
    };
    let store = Store::open(path.clone())?;
    let mut conn = store.connection()?;
    // On PostgreSQL the work is the server's: its CPU counts too.
    let server = match (&path, args.server_pid) {
        (_, Some(pid)) => Some(Server::Process(pid)),
        (Location::Sqlite(_), None) => None,
        _ => local_postmaster(conn.as_mut()).map(Server::Postmaster),
    };
    let spark = match &args.engine {
        Some(url) => Some(on_spark(&store, url, &path, args.users, args.transactions)?),
        None => None,
    };
    let has_data = store.summary()?.total_users > 0;
    if !has_data {
        println!(
            "generating {} users / {} transactions into {}",
            args.users, args.transactions, path
        );
        let started = Instant::now();
        generate(
            conn.as_mut(),
            &GenerateOptions::new(args.users, args.transactions, end),
            &NoProgress,
        )?;
        println!("generated in {:.1?}", started.elapsed());
    } else {
        println!("reusing {}", path);
    }
    if args.days > 0 {
        return days::run(&store, server, args.mix, args.rules, args.days, end);
    }

    // 100 rules over the same 90-day window, by default all over the same transactions
    // (aggregate, operator and threshold vary, some with a profile field); with `--filters`
    // each also keeps only one category (the seed's flat list), so every rule has its own
    // scope and they share only the scan.
    let mut rules = BTreeMap::new();
    for k in 0..args.rules {
        let name = format!(
            "bench {}rule {k}{}",
            if args.mix == Mix::Targeted {
                "targeted "
            } else {
                ""
            },
            if args.filters { " by category" } else { "" }
        );
        let mut conditions = conditions(args.mix, k);
        if args.filters {
            let category = CATEGORIES[k % CATEGORIES.len()];
            conditions
                .push(serde_json::json!({"field": "category", "operator": "=", "value": category}));
        }
        let spec = RuleSpec {
            rule_name: name.clone(),
            conditions: serde_json::Value::Array(conditions),
            start_date: Some("2025-04-01".into()),
            end_date: Some("2025-06-30".into()),
            ..RuleSpec::default()
        };
        let id = match store.rule_by_name(&name) {
            Ok(r) => r.id,
            Err(_) => store.create_rule(&spec)?,
        };
        let stored = store.rule(id)?;
        rules.insert(
            id,
            EngineRule {
                id,
                name,
                description: None,
                version: stored.version,
                rule: stored.checked()?,
            },
        );
    }
    let plan = Plan {
        nodes: rules
            .values()
            .map(|r| PlanNode {
                rule_id: r.id,
                rule_name: r.name.clone(),
                compute: am_core::evaluate::rule_set_expr(&r.rule),
                upstream: Vec::new(),
                reuse: None,
            })
            .collect(),
        stages: Vec::new(),
    };
    let as_of = Timestamp::parse_from_str("2025-06-30 23:59:59", TIMESTAMP_FORMAT)?;
    // Every step rebuilds: the data do not change between them.
    let mut request = RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli);
    request.mode = RefreshMode::Full;
    let all: BTreeSet<RuleId> = rules.keys().copied().collect();
    let first: BTreeSet<RuleId> = all.iter().take(1).copied().collect();

    // Refreshes `selected` of a plan through the engine, timed.
    let mut refresh = |plan: &Plan, selected: &BTreeSet<RuleId>| {
        timed(server, || match &spark {
            Some(spark) => {
                let mut part = plan.clone();
                part.nodes.retain(|n| selected.contains(&n.rule_id));
                spark.refresh_planned(&part, &rules, as_of, &NoProgress)
            }
            None => refresh_plan(
                conn.as_mut(),
                plan,
                selected,
                &rules,
                &request,
                selected,
                as_of,
                &NoProgress,
            ),
        })
    };

    // (1) one rule through the engine.
    let (report, one) = refresh(&plan, &first);
    let report = report?;
    if !report.succeeded() {
        return Err(format!("one-rule refresh failed: {report:?}").into());
    }

    let one_members = report.nodes.first().and_then(|n| n.row_count);
    let one_split = Split::of(&report);

    // (1b) the same rule as the best SQL a person would write for it, then the engine's
    // refresh again, twice: each pair runs with the same warm caches ((1) ran first, cold).
    let hand = match store.dialect() {
        am_sql::Dialect::Sqlite => {
            let mut own = store.connection()?;
            let mut timings = Vec::new();
            for _ in 0..2 {
                let (members, timing) = timed(server, || {
                    hand_written(own.as_mut(), args.mix, args.filters)
                });
                let members = members?;
                if Some(members) != one_members {
                    return Err(format!(
                        "the hand-written query finds {members} members, the engine {one_members:?}"
                    )
                    .into());
                }
                timings.push(("one aggregate rule, hand-written SQL", timing));
                let (again, timing) = refresh(&plan, &first);
                if !again?.succeeded() {
                    return Err("one-rule refresh failed".into());
                }
                timings.push(("one aggregate rule (engine), again", timing));
            }
            timings
        }
        _ => Vec::new(),
    };

    // (2) every rule through the engine, sharing the window's scan.
    let (report, shared) = refresh(&plan, &all);
    let report = report?;
    if !report.succeeded() {
        return Err(format!("refresh of all rules failed: {report:?}").into());
    }

    // (2b) the same rules planned as `am run` plans them: the finder computes some from
    // others' segments (a stricter bound over the looser rule's members). Run twice,
    // alternating with (2) again, so the comparison is not one order's luck.
    let reused = if args.reuse {
        let inputs = rules
            .values()
            .map(|r| RuleInput {
                id: r.id,
                rule: r.rule.clone(),
            })
            .collect();
        let planned = Planner::new(inputs, PlanOptions { reuse: true })?.plan_all();
        let found = planned.nodes.iter().filter(|n| n.reuse.is_some()).count();
        let mut refresh_with = |plan: &Plan| {
            let (out, timing) = refresh(plan, &all);
            let out = out.map_err(|e| e.to_string())?;
            // Each refresh compares its members with the previous refresh's: nobody entered
            // or left means the same members as (2).
            if let Some(n) = out
                .nodes
                .iter()
                .find(|n| n.entered != Some(0) || n.left != Some(0))
            {
                return Err(format!(
                    "rule {} changed between refreshes of the same data: {n:?}",
                    n.rule_id
                ));
            }
            Ok::<_, String>((out, timing))
        };
        let (with_reuse, first) = refresh_with(&planned)?;
        let (_, plain_again) = refresh_with(&plan)?;
        let (_, second) = refresh_with(&planned)?;
        let read = with_reuse
            .nodes
            .iter()
            .filter(|n| !n.reused_from.is_empty())
            .count();
        Some((found, read, [first, second], plain_again))
    } else {
        None
    };

    // (3) every rule as its own standalone query.
    let ctx = RenderContext {
        dialect: store.dialect(),
        as_of,
        aggregates: Aggregates::Standalone,
        base_first: false,
    };
    let (naive_counts, naive) = timed(server, || {
        let mut counts = BTreeMap::new();
        if args.engine_only {
            return Ok(counts);
        }
        for node in &plan.nodes {
            let n = conn.count(&render_set(&node.compute, &ctx))?;
            counts.insert(node.rule_id, n);
        }
        Ok::<_, am_sql::Error>(counts)
    });
    let naive_counts = naive_counts?;

    for node in report.nodes.iter().filter(|_| !args.engine_only) {
        let expected = naive_counts.get(&node.rule_id).copied();
        if node.row_count != expected {
            return Err(format!(
                "rule {} has {:?} members through the engine but {:?} standalone",
                node.rule_id, node.row_count, expected
            )
            .into());
        }
    }

    let secs = |d: Duration| d.as_secs_f64();
    let cpu = |t: &Timing| t.cpu.map_or("-".to_owned(), |d| format!("{:.2}", secs(d)));
    let ratio = |a: Option<Duration>, b: Option<Duration>| {
        a.zip(b).map_or("-".to_owned(), |(a, b)| {
            format!("{:.2}x", secs(a) / secs(b))
        })
    };
    println!();
    println!(
        "engine {}: {} users, {} transactions, {} rules over one 90-day window{}",
        report.engine,
        args.users,
        args.transactions,
        rules.len(),
        if args.filters {
            ", each with its own category filter"
        } else {
            ""
        }
    );
    let sizes: Vec<i64> = report.nodes.iter().filter_map(|n| n.row_count).collect();
    let written: i64 = sizes.iter().sum();
    println!(
        "segments: {} to {} members, mean {}; {} member rows written by the {} rules",
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        written / i64::try_from(sizes.len().max(1)).unwrap_or(1),
        written,
        rules.len()
    );
    println!("| measurement | wall (s) | CPU (s) |");
    println!("|---|---|---|");
    println!(
        "| one aggregate rule (engine) | {:.2} | {} |",
        secs(one.wall),
        cpu(&one)
    );
    for (what, t) in &hand {
        println!("| {what} | {:.2} | {} |", secs(t.wall), cpu(t));
    }
    println!(
        "| {} rules sharing the window (engine) | {:.2} | {} |",
        rules.len(),
        secs(shared.wall),
        cpu(&shared)
    );
    if let Some((found, read, with_reuse, plain_again)) = &reused {
        println!(
            "| {} rules sharing the window (engine), again | {:.2} | {} |",
            rules.len(),
            secs(plain_again.wall),
            cpu(plain_again)
        );
        for (k, t) in with_reuse.iter().enumerate() {
            println!(
                "| {} rules with the finder's reuse, run {} (found for {found}, {read} read the segment) | {:.2} | {} |",
                rules.len(),
                k + 1,
                secs(t.wall),
                cpu(t)
            );
        }
    }
    if !args.engine_only {
        println!(
            "| {} rules one by one (standalone queries) | {:.2} | {} |",
            rules.len(),
            secs(naive.wall),
            cpu(&naive)
        );
    }
    println!();
    println!("one rule, where the time went: {}", one_split.line());
    println!(
        "{} rules, where the time went: {}",
        rules.len(),
        Split::of(&report).line()
    );
    if let [(_, h1), (_, e1), (_, h2), (_, e2)] = hand.as_slice() {
        println!(
            "one rule through the engine / hand-written, each pair warm: {} and {} CPU (target <= 1.3x)",
            ratio(e1.cpu, h1.cpu),
            ratio(e2.cpu, h2.cpu)
        );
    }
    println!(
        "{} rules through the engine / one rule: {:.2}x wall, {} CPU (target <= 3x)",
        rules.len(),
        secs(shared.wall) / secs(one.wall),
        ratio(shared.cpu, one.cpu)
    );
    if !args.engine_only {
        println!(
            "one by one / through the engine: {:.1}x wall, {} CPU",
            secs(naive.wall) / secs(shared.wall),
            ratio(naive.cpu, shared.cpu)
        );
    }
    Ok(())
}
