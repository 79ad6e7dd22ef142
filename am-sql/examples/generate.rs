//! Times the data generator: `cargo run --release -p am-sql --example generate -- DB USERS TRANSACTIONS`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use am_sql::Progress;
use am_sql::datagen::GenerateOptions;

/// Prints each phase's duration.
struct Phases {
    started: std::sync::Mutex<Option<(String, Instant)>>,
    done: AtomicU64,
}

impl Progress for Phases {
    fn begin(&self, label: &str, _total: Option<u64>) {
        if let Ok(mut s) = self.started.lock() {
            *s = Some((label.to_owned(), Instant::now()));
        }
        self.done.store(0, Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    fn finish(&self, _message: &str) {
        if let Ok(s) = self.started.lock()
            && let Some((label, at)) = s.as_ref()
        {
            println!(
                "{label}: {} rows in {:.2?}",
                self.done.load(Ordering::Relaxed),
                at.elapsed()
            );
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, users, transactions] = args.as_slice() else {
        return Err(
            "usage: generate DB USERS TRANSACTIONS (DB: a SQLite path or a postgres:// URI)".into(),
        );
    };
    let store = am_sql::Store::open(db.as_str())?;
    let end = chrono::NaiveDate::from_ymd_opt(2026, 6, 30).ok_or("bad date")?;
    let mut options = GenerateOptions::new(users.parse()?, transactions.parse()?, end);
    options.replace = true;
    let progress = Phases {
        started: std::sync::Mutex::new(None),
        done: AtomicU64::new(0),
    };
    let report = store.generate(&options, &progress)?;
    println!("{report:?}");
    Ok(())
}
