//! `--days N`: a day in the life of an installation, N days in a row.
//!
//! The rules are the mix's, over a relative window (`last_days: 90`), refreshed as `am run`
//! refreshes them (planned with the finder's reuse). After one full refresh, each day:
//! an ETL job appends one day of transactions with plain SQL (a copy of the day four weeks
//! earlier, so about transactions / 365 rows), updates 1,000 users' profiles, and the as-of
//! time moves one day on; then a refresh updates the segments from the change log. On the
//! first and the last day a full rebuild follows, timed beside it, and must find that nobody
//! enters or leaves: the update's members are a rebuild's.
//!
//! It writes to the database: the default SQLite file is copied to `...-days.db` first.

use std::error::Error;

use am_core::expr::Timestamp;
use am_core::rule::{RuleId, RuleSpec};
use am_sql::refresh::{RefreshMode, RefreshReport, RefreshRequest, RefreshTargets};
use am_sql::runs::RunTrigger;
use am_sql::{Dialect, NoProgress, Store};
use chrono::{Duration, NaiveDate};
use sea_query::{Alias, Expr, ExprTrait, Query};

use super::{Mix, Server, Timing, conditions, timed};

/// How the transactions of an earlier day are moved to the appended day.
const COPIED_FROM_DAYS_BEFORE: i64 = 28;

pub(crate) fn run(
    store: &Store,
    server: Option<Server>,
    mix: Mix,
    rules: usize,
    days: u32,
    end: NaiveDate,
) -> Result<(), Box<dyn Error>> {
    let ids = daily_rules(store, mix, rules)?;
    let targets = RefreshTargets::Rules(ids);
    let at = |day: i64| -> Result<Timestamp, Box<dyn Error>> {
        (end + Duration::days(day))
            .and_hms_opt(23, 59, 59)
            .ok_or_else(|| "the as-of time leaves the calendar".into())
    };
    let refresh = |mode: RefreshMode, as_of: Timestamp| {
        let mut request = RefreshRequest::new(targets.clone(), RunTrigger::Cli);
        request.as_of = Some(as_of);
        request.mode = mode;
        timed(server, || store.refresh(&request, &NoProgress))
    };
    let (first, full) = refresh(RefreshMode::Full, at(0)?);
    let first = succeeded(first?)?;
    let members: i64 = first.nodes.iter().filter_map(|n| n.row_count).sum();
    println!(
        "{} rules over the last 90 days, {members} member rows; full refresh {:.2} s wall, {} s CPU",
        first.nodes.len(),
        full.wall.as_secs_f64(),
        cpu(&full)
    );
    println!();
    println!(
        "| day | ETL rows | affected users | updated | entered / left | update wall (s) | update CPU (s) | rebuild wall (s) | rebuild CPU (s) | update / rebuild CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut conn = store.connection()?;
    for day in 1..=i64::from(days) {
        let written = etl_day(conn.as_mut(), end + Duration::days(day), day)?;
        let (update, timing) = refresh(RefreshMode::Auto, at(day)?);
        let update = succeeded(update?)?;
        let updated = update.nodes.iter().filter(|n| n.incremental).count();
        let entered: i64 = update.nodes.iter().filter_map(|n| n.entered).sum();
        let left: i64 = update.nodes.iter().filter_map(|n| n.left).sum();
        let check = day == 1 || day == i64::from(days);
        let rebuild = if check {
            let (full, full_timing) = refresh(RefreshMode::Full, at(day)?);
            let full = succeeded(full?)?;
            if let Some(n) = full
                .nodes
                .iter()
                .find(|n| n.entered != Some(0) || n.left != Some(0))
            {
                return Err(format!(
                    "day {day}: a rebuild changed rule {} after the update: {n:?}",
                    n.rule_id
                )
                .into());
            }
            Some(full_timing)
        } else {
            None
        };
        let or_dash = |t: &Option<Timing>, f: &dyn Fn(&Timing) -> String| {
            t.as_ref().map_or("-".to_owned(), f)
        };
        let ratio = rebuild
            .as_ref()
            .and_then(|r| Some(timing.cpu?.as_secs_f64() / r.cpu?.as_secs_f64()))
            .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        println!(
            "| {day} | {written} | {} | {updated} of {} | {entered} / {left} | {:.2} | {} | {} | {} | {ratio} |",
            update
                .affected_users
                .map_or("-".to_owned(), |n| n.to_string()),
            update.nodes.len(),
            timing.wall.as_secs_f64(),
            cpu(&timing),
            or_dash(&rebuild, &|t| format!("{:.2}", t.wall.as_secs_f64())),
            or_dash(&rebuild, &cpu),
        );
    }
    Ok(())
}

fn cpu(t: &Timing) -> String {
    t.cpu
        .map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn succeeded(report: RefreshReport) -> Result<RefreshReport, Box<dyn Error>> {
    match report.nodes.iter().find(|n| n.error.is_some()) {
        Some(n) => Err(format!("rule {} failed: {:?}", n.rule_id, n.error).into()),
        None => Ok(report),
    }
}

/// The mix's rules over the last 90 days, created once.
fn daily_rules(store: &Store, mix: Mix, rules: usize) -> Result<Vec<RuleId>, Box<dyn Error>> {
    let mut ids = Vec::new();
    for k in 0..rules {
        let name = format!(
            "bench daily {}rule {k}",
            if mix == Mix::Targeted {
                "targeted "
            } else {
                ""
            }
        );
        let mut conditions = conditions(mix, k);
        for c in &mut conditions {
            if c["field"] != "city_tier" {
                c["window"] = serde_json::json!({"last_days": 90});
            }
        }
        let spec = RuleSpec {
            rule_name: name.clone(),
            conditions: serde_json::Value::Array(conditions),
            ..RuleSpec::default()
        };
        ids.push(match store.rule_by_name(&name) {
            Ok(r) => r.id,
            Err(_) => store.create_rule(&spec)?,
        });
    }
    Ok(ids)
}

/// What an ETL job writes for `day`, with plain SQL: the transactions of the day four weeks
/// earlier again, dated `day`, and a new city tier for 1,000 users. Returns the rows written.
fn etl_day(
    conn: &mut dyn am_sql::conn::Conn,
    day: NaiveDate,
    n: i64,
) -> Result<u64, Box<dyn Error>> {
    let d = conn.dialect();
    let source = day - Duration::days(COPIED_FROM_DAYS_BEFORE);
    let (from, to) = (
        source.and_hms_opt(0, 0, 0).ok_or("bad day")?,
        source.and_hms_opt(23, 59, 59).ok_or("bad day")?,
    );
    let shifted = match d {
        Dialect::Sqlite => format!("datetime(transaction_date, '+{COPIED_FROM_DAYS_BEFORE} days')"),
        _ => format!("transaction_date + interval '{COPIED_FROM_DAYS_BEFORE} days'"),
    };
    let mut written = 0;
    for (table, text) in [
        ("credit_card_transactions", "merchant"),
        ("upi_transactions", "description"),
    ] {
        let select = Query::select()
            .columns(["user_id", "amount", text, "category"])
            .expr(Expr::cust(shifted.clone()))
            .from(Alias::new(table))
            .and_where(Expr::col("transaction_date").gte(d.time_value(from)))
            .and_where(Expr::col("transaction_date").lte(d.time_value(to)))
            .to_owned();
        let mut insert = Query::insert();
        insert.into_table(Alias::new(table)).columns([
            "user_id",
            "amount",
            text,
            "category",
            "transaction_date",
        ]);
        insert.select_from(select)?;
        written += conn.exec(&insert)?;
    }
    // 1,000 users, different ones each day.
    let first = 1 + (n * 1_000) % 900_000;
    let update = Query::update()
        .table("users")
        .value("city_tier", Expr::cust("(city_tier % 3) + 1"))
        .and_where(Expr::col("user_id").between(first, first + 999))
        .to_owned();
    written += conn.exec(&update)?;
    Ok(written)
}
