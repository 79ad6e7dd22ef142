//! Measures the per-user aggregate scans of refresh under different indexes on the
//! transaction tables: `cargo run --release -p am-sql --example index_bench -- DB`
//! on a database filled by `am generate` (or the `generate` example). It drops and creates
//! indexes on the transaction tables: run it on a scratch copy. Prints the median of three
//! runs (after a warm-up) per query and index set; the numbers are recorded in docs/operations.md.

use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The window ends on the generated data's last day (the `generate` example's `end`).
const QUERIES: &[(&str, &str)] = &[
    (
        "spend+count, both tables, last 90 days",
        "SELECT s.user_id, sum(s.cents), count(*) FROM (
           SELECT user_id, CAST(round(amount * 100) AS INTEGER) AS cents FROM credit_card_transactions
            WHERE transaction_date >= '2026-04-01 00:00:00' AND transaction_date <= '2026-06-30 23:59:59'
           UNION ALL
           SELECT user_id, CAST(round(amount * 100) AS INTEGER) AS cents FROM upi_transactions
            WHERE transaction_date >= '2026-04-01 00:00:00' AND transaction_date <= '2026-06-30 23:59:59'
         ) AS s GROUP BY s.user_id",
    ),
    (
        "spend, credit card, last 30 days",
        "SELECT user_id, sum(CAST(round(amount * 100) AS INTEGER)) FROM credit_card_transactions
          WHERE transaction_date >= '2026-06-01 00:00:00' AND transaction_date <= '2026-06-30 23:59:59'
          GROUP BY user_id",
    ),
    (
        "spend, credit card, Travel, whole year",
        "SELECT user_id, sum(CAST(round(amount * 100) AS INTEGER)) FROM credit_card_transactions
          WHERE category = 'Travel' AND transaction_date >= '2025-07-01 00:00:00'
          GROUP BY user_id",
    ),
    (
        "count + last date, both tables, all time",
        "SELECT s.user_id, count(*), max(s.transaction_date) FROM (
           SELECT user_id, transaction_date FROM credit_card_transactions
           UNION ALL SELECT user_id, transaction_date FROM upi_transactions
         ) AS s GROUP BY s.user_id",
    ),
];

const INDEX_SETS: &[(&str, &str)] = &[
    ("none", ""),
    ("(user_id)", "user_id"),
    ("(transaction_date)", "transaction_date"),
    (
        "(user_id, transaction_date, amount)",
        "user_id, transaction_date, amount",
    ),
    (
        "(transaction_date, user_id, amount)",
        "transaction_date, user_id, amount",
    ),
    (
        "(user_id, transaction_date, amount, category)",
        "user_id, transaction_date, amount, category",
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: index_bench DB")?;
    // Optional: which index sets to run, by position (`INDEX_BENCH_SETS=3,0`), and how many
    // timed runs (`INDEX_BENCH_RUNS`, default 3), for big databases.
    let sets: Vec<usize> = match std::env::var("INDEX_BENCH_SETS") {
        Ok(v) => v.split(',').map(str::parse).collect::<Result<_, _>>()?,
        Err(_) => (0..INDEX_SETS.len()).collect(),
    };
    let runs: usize = match std::env::var("INDEX_BENCH_RUNS") {
        Ok(v) => v.parse()?,
        Err(_) => 3,
    };
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA cache_size = -65536;")?;
    for (label, columns) in sets.iter().filter_map(|&i| INDEX_SETS.get(i)) {
        for table in ["credit_card_transactions", "upi_transactions"] {
            let names: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL")?
                .query_map([table], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for name in names {
                conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
            }
            if !columns.is_empty() {
                conn.execute_batch(&format!("CREATE INDEX bench_{table} ON {table}({columns})"))?;
            }
        }
        println!("index {label}");
        for (name, sql) in QUERIES {
            let mut times: Vec<Duration> = Vec::new();
            let mut rows = 0usize;
            // One warm-up run, so every index set starts with the pages cached.
            for _ in 0..=runs {
                let started = Instant::now();
                let mut stmt = conn.prepare(sql)?;
                rows = stmt.query_map([], |_| Ok(()))?.count();
                times.push(started.elapsed());
            }
            times.remove(0);
            times.sort();
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                .query_map([], |r| r.get::<_, String>(3))?
                .collect::<Result<_, _>>()?;
            println!(
                "  {name}: {} ms ({rows} users) plan: {}",
                times[times.len() / 2].as_millis(),
                plan.join(" | ")
            );
        }
    }
    Ok(())
}
