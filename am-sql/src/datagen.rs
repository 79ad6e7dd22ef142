//! The seeded synthetic data generator: users across city tiers and credit-card and UPI
//! transactions with realistic categories, merchants, amounts and dates.
//!
//! The same options always give the same rows (ChaCha8 seeded from `seed`, one stream for
//! users and one for transactions). Rows are streamed with prepared statements. Transactions
//! are written user by user, each user's in time order, so the
//! `(user_id, transaction_date, amount)` indexes only grow at their right edge.
//!
//! The whole load is one database transaction, so it is all or nothing: a load that fails
//! (a full disk) or is killed leaves the data tables as they were. The data-version triggers
//! are dropped inside that transaction and put back at its end with one bump, so no outcome
//! leaves the database without change tracking.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{Connection, params};

use crate::db::{self, DATA_TABLES};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    pub users: u64,
    /// Credit-card and UPI transactions together (about 60% / 40%).
    pub transactions: u64,
    pub seed: u64,
    /// The last day with data. Passed in rather than taken from the clock so the output
    /// depends on the options alone.
    pub end: NaiveDate,
    /// How many days of transactions, ending with `end`.
    pub days: u32,
    /// Delete the data tables' rows first; without it, non-empty tables are refused.
    pub replace: bool,
}

impl GenerateOptions {
    /// `users` users and `transactions` transactions over the year ending `end`, seed 42.
    pub fn new(users: u64, transactions: u64, end: NaiveDate) -> GenerateOptions {
        GenerateOptions {
            users,
            transactions,
            seed: 42,
            end,
            days: 365,
            replace: false,
        }
    }
}

/// Limits of [`GenerateOptions`], checked by [`GenerateOptions::validate`].
pub const MAX_DAYS: u32 = 36_500;
/// At most this many users (the generator keeps a few bytes per user in memory).
pub const MAX_USERS: u64 = 100_000_000;
/// At most this many transactions.
pub const MAX_TRANSACTIONS: u64 = 2_000_000_000;
/// The first and last years a generated date may fall in (four-digit years).
pub const YEARS: std::ops::RangeInclusive<i32> = 1000..=9999;

impl GenerateOptions {
    /// Checks every option is in range before anything is written: `days` 1 to
    /// [`MAX_DAYS`], the span (`end` and `days` before it) inside years 1000 to 9999,
    /// `users` at most [`MAX_USERS`], `transactions` at most [`MAX_TRANSACTIONS`] and none
    /// without users.
    pub fn validate(&self) -> Result<()> {
        use chrono::Datelike;
        let bad = |msg: String| Err(Error::BadOptions(msg));
        if self.days == 0 || self.days > MAX_DAYS {
            return bad(format!(
                "days must be from 1 to {MAX_DAYS} (got {})",
                self.days
            ));
        }
        if self.users > MAX_USERS {
            return bad(format!(
                "users must be at most {MAX_USERS} (got {})",
                self.users
            ));
        }
        if self.transactions > MAX_TRANSACTIONS {
            return bad(format!(
                "transactions must be at most {MAX_TRANSACTIONS} (got {})",
                self.transactions
            ));
        }
        if self.users == 0 && self.transactions > 0 {
            return bad("transactions need users: ask for at least one user".into());
        }
        // Sign-ups fall up to HISTORY_DAYS before the span; keep those in range too.
        let first = self
            .end
            .checked_sub_days(chrono::Days::new(u64::from(self.days) - 1))
            .and_then(|d| d.checked_sub_days(chrono::Days::new(HISTORY_DAYS as u64)));
        let in_range = |d: NaiveDate| YEARS.contains(&d.year());
        if !in_range(self.end) || !first.is_some_and(in_range) {
            return bad(format!(
                "the {} days ending {} (and two years of sign-ups before them) must fall in years {} to {}",
                self.days,
                self.end,
                YEARS.start(),
                YEARS.end()
            ));
        }
        Ok(())
    }
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    pub users: u64,
    pub users_without_transactions: u64,
    pub credit_card_transactions: u64,
    pub upi_transactions: u64,
    pub elapsed: Duration,
}

/// Rows between progress reports.
const BATCH: u64 = 100_000;

/// Share of users who never transact, in per mille.
const INACTIVE_PER_MILLE: u32 = 50;

const FIRST_NAMES: &[&str] = &[
    "Aarav", "Vivaan", "Aditya", "Vihaan", "Arjun", "Sai", "Reyansh", "Ayaan", "Krishna", "Ishaan",
    "Ananya", "Diya", "Aadhya", "Saanvi", "Pari", "Anika", "Navya", "Myra", "Sara", "Kiara",
    "Rohan", "Priya", "Rahul", "Neha", "Vikram", "Pooja", "Amit", "Sneha", "Karan", "Meera",
    "James", "Maria", "Chen", "Fatima", "Lucas", "Emma", "Omar", "Yuki", "Noah", "Zara",
];

const LAST_NAMES: &[&str] = &[
    "Sharma",
    "Verma",
    "Patel",
    "Gupta",
    "Singh",
    "Kumar",
    "Reddy",
    "Iyer",
    "Nair",
    "Das",
    "Mehta",
    "Joshi",
    "Rao",
    "Chopra",
    "Bose",
    "Malhotra",
    "Kapoor",
    "Banerjee",
    "Pillai",
    "Menon",
    "Shah",
    "Agarwal",
    "Mishra",
    "Khan",
    "Fernandes",
    "Smith",
    "Garcia",
    "Wang",
    "Ali",
    "Costa",
];

const EMAIL_DOMAINS: &[&str] = &["example.com", "mail.example.org", "inbox.example.net"];

/// A spending category: weight among transactions, log-normal amount (median, spread),
/// credit-card merchants and UPI descriptions.
struct Category {
    name: &'static str,
    weight: u32,
    median: f64,
    sigma: f64,
    merchants: &'static [&'static str],
    descriptions: &'static [&'static str],
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "Groceries",
        weight: 20,
        median: 900.0,
        sigma: 0.6,
        merchants: &[
            "BigBasket",
            "DMart",
            "Reliance Fresh",
            "Spencer's",
            "Nature's Basket",
        ],
        descriptions: &[
            "Grocery store",
            "Vegetable vendor",
            "Kirana shop",
            "Milk delivery",
        ],
    },
    Category {
        name: "Dining",
        weight: 16,
        median: 650.0,
        sigma: 0.6,
        merchants: &[
            "Swiggy",
            "Zomato",
            "Barbeque Nation",
            "Haldiram's",
            "Starbucks",
        ],
        descriptions: &["Restaurant bill", "Food delivery", "Cafe", "Street food"],
    },
    Category {
        name: "Fuel",
        weight: 10,
        median: 1800.0,
        sigma: 0.4,
        merchants: &["Indian Oil", "Bharat Petroleum", "HP Petrol", "Shell"],
        descriptions: &["Petrol pump", "CNG refill", "Fuel station"],
    },
    Category {
        name: "Utilities",
        weight: 10,
        median: 1500.0,
        sigma: 0.5,
        merchants: &["Tata Power", "Airtel", "Jio", "BSNL", "Adani Electricity"],
        descriptions: &[
            "Electricity bill",
            "Mobile recharge",
            "Broadband bill",
            "Water bill",
        ],
    },
    Category {
        name: "Fashion",
        weight: 9,
        median: 2200.0,
        sigma: 0.7,
        merchants: &["Myntra", "Ajio", "Westside", "Zara", "Pantaloons"],
        descriptions: &["Clothing store", "Tailor", "Shoe shop"],
    },
    Category {
        name: "Entertainment",
        weight: 9,
        median: 500.0,
        sigma: 0.6,
        merchants: &["BookMyShow", "PVR Cinemas", "Netflix", "Spotify", "Hotstar"],
        descriptions: &[
            "Movie tickets",
            "Streaming subscription",
            "Gaming zone",
            "Concert",
        ],
    },
    Category {
        name: "Travel",
        weight: 8,
        median: 4500.0,
        sigma: 0.8,
        merchants: &["MakeMyTrip", "IndiGo", "Air India", "IRCTC", "Uber", "Ola"],
        descriptions: &[
            "Cab ride",
            "Train ticket",
            "Auto rickshaw",
            "Bus ticket",
            "Hotel",
        ],
    },
    Category {
        name: "Health",
        weight: 7,
        median: 1200.0,
        sigma: 0.8,
        merchants: &["Apollo Pharmacy", "MedPlus", "Practo", "1mg"],
        descriptions: &["Pharmacy", "Doctor consultation", "Lab test"],
    },
    Category {
        name: "Electronics",
        weight: 6,
        median: 6000.0,
        sigma: 0.9,
        merchants: &[
            "Croma",
            "Reliance Digital",
            "Amazon",
            "Flipkart",
            "Vijay Sales",
        ],
        descriptions: &["Electronics shop", "Phone repair", "Accessories"],
    },
    Category {
        name: "Education",
        weight: 5,
        median: 5000.0,
        sigma: 0.8,
        merchants: &["Byju's", "Unacademy", "Coursera", "Udemy"],
        descriptions: &["School fees", "Tuition fees", "Books", "Coaching class"],
    },
];

/// Generates users and transactions into the data tables.
///
/// Refuses (with [`Error::Refused`]) when the data tables hold rows, unless
/// `options.replace` is set, in which case their rows are deleted first.
pub fn generate(
    conn: &mut Connection,
    options: &GenerateOptions,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
    let started = Instant::now();
    options.validate()?;
    if !options.replace {
        for table in DATA_TABLES {
            let any: bool =
                conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                    r.get(0)
                })?;
            if any {
                return Err(Error::Refused(format!(
                    "table {table} already has rows; generate with replace to delete them first"
                )));
            }
        }
    }

    // One transaction for everything: the trigger drop, the rows and the trigger restore
    // commit together or not at all.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let triggers = db::tracking_triggers();
    db::drop_objects(&tx, "trigger", &triggers)?;
    // A bigger page cache for the load (per connection, reset below).
    tx.execute_batch("PRAGMA cache_size = -262144")?;
    let loaded = load(&tx, options, progress).and_then(|report| {
        db::create_objects(&tx, &triggers)?;
        db::bump_data_version(&tx)?;
        Ok(report)
    });
    let result = loaded.and_then(|report| {
        progress.begin("commit", None);
        tx.commit()?;
        progress.finish("committed");
        Ok(report)
    });
    // On an error the transaction rolled back when dropped, the triggers with it.
    conn.execute_batch("PRAGMA cache_size = -2000")?;
    let mut report = result?;
    // The load's pages went through the WAL; fold them into the file now rather than leave
    // a WAL as big as the data behind.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    report.elapsed = started.elapsed();
    Ok(report)
}

fn load(
    conn: &Connection,
    options: &GenerateOptions,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
    if options.replace {
        for table in DATA_TABLES.iter().rev() {
            conn.execute_batch(&format!("DELETE FROM {table}"))?;
        }
    }

    let days = i64::from(options.days);
    let end_secs = options.end.and_time(NaiveTime::MIN).and_utc().timestamp() + 86_400;
    let start_secs = end_secs - days * 86_400;
    let dates = DateTexts::new(options.end, days)?;

    // Users.
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    rng.set_stream(1);
    let users = usize::try_from(options.users).map_err(|_| too_many_users(options.users))?;
    // Allocated fallibly: a large `users` is an error, not an abort.
    let mut active: Vec<u32> = Vec::new();
    active
        .try_reserve_exact(users)
        .map_err(|_| too_many_users(options.users))?;
    let mut email = String::with_capacity(64);
    let mut name = String::with_capacity(32);
    let mut created = TimeText::default();
    progress.begin("users", Some(options.users));
    let mut next_user = 1u64;
    while next_user <= options.users {
        let last = (next_user + BATCH - 1).min(options.users);
        {
            let mut insert = conn.prepare_cached(
                "INSERT INTO users (user_id, name, email, city_tier, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for user_id in next_user..=last {
                let user_id = user_id as i64;
                let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
                let family = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
                name.clear();
                name.push_str(first);
                name.push(' ');
                name.push_str(family);
                let has_email = rng.random_range(0..1000) >= 5;
                email.clear();
                if has_email {
                    use std::fmt::Write;
                    let domain = EMAIL_DOMAINS[rng.random_range(0..EMAIL_DOMAINS.len())];
                    let _ = write!(
                        email,
                        "{}.{}{}@{}",
                        first.to_ascii_lowercase(),
                        family.to_ascii_lowercase(),
                        user_id,
                        domain
                    );
                }
                let tier: Option<i64> = match rng.random_range(0..1000) {
                    0..5 => None,
                    5..300 => Some(1),
                    300..700 => Some(2),
                    _ => Some(3),
                };
                let inactive = rng.random_range(0..1000) < INACTIVE_PER_MILLE;
                // Users who transact joined before the span; the others at any time up to
                // its end, so "new users" rules match someone.
                let joined = if inactive {
                    start_secs - 730 * 86_400 + rng.random_range(0..(730 + days) * 86_400)
                } else {
                    start_secs - 1 - rng.random_range(0..730 * 86_400)
                };
                if !inactive {
                    // validate() keeps user ids under MAX_USERS, well inside u32.
                    active.push(u32::try_from(user_id).unwrap_or(u32::MAX));
                }
                insert.execute(params![
                    user_id,
                    name,
                    has_email.then_some(email.as_str()),
                    tier,
                    created.format(joined, &dates),
                ])?;
            }
        }
        progress.advance(last + 1 - next_user);
        next_user = last + 1;
    }
    progress.finish("users generated");
    let users_without_transactions = options.users - active.len() as u64;

    // How many transactions each user makes. Heavy users are the first of a shuffled list
    // (so activity does not follow user id); squaring a uniform draw gives a heavy head: the
    // first 1% of active users make about 10% of all transactions.
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    rng.set_stream(2);
    for i in (1..active.len()).rev() {
        let j = rng.random_range(0..=i);
        active.swap(i, j);
    }
    let mut per_user: Vec<u32> = Vec::new();
    per_user
        .try_reserve_exact(users)
        .map_err(|_| too_many_users(options.users))?;
    per_user.resize(users, 0);
    if !active.is_empty() {
        for _ in 0..options.transactions {
            let u: f64 = rng.random();
            let pick = (((u * u) * active.len() as f64) as usize).min(active.len() - 1);
            per_user[active[pick] as usize - 1] += 1;
        }
    }
    drop(active);

    // Transactions go in user by user, each user's in time order, so the
    // (user_id, transaction_date, amount) indexes grow at their right edge instead of
    // taking random inserts.
    let total_weight: u32 = CATEGORIES.iter().map(|c| c.weight).sum();
    let mu: Vec<f64> = CATEGORIES.iter().map(|c| c.median.ln()).collect();
    let span = days * 86_400;
    let (mut card_id, mut upi_id) = (0i64, 0i64);
    let mut when = TimeText::default();
    let mut times: Vec<i64> = Vec::new();
    progress.begin("transactions", Some(options.transactions));
    let mut user = 0usize;
    let mut written = 0u64;
    while user < per_user.len() {
        let batch_start = written;
        {
            let mut card = conn.prepare_cached(
                "INSERT INTO credit_card_transactions
                     (transaction_id, user_id, amount, merchant, category, transaction_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut upi = conn.prepare_cached(
                "INSERT INTO upi_transactions
                     (transaction_id, user_id, amount, description, category, transaction_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            while user < per_user.len() && written - batch_start < BATCH {
                let user_id = user as i64 + 1;
                times.clear();
                times.extend((0..per_user[user]).map(|_| start_secs + rng.random_range(0..span)));
                times.sort_unstable();
                user += 1;
                for &at in &times {
                    let mut w = rng.random_range(0..total_weight);
                    let mut c = 0;
                    while w >= CATEGORIES[c].weight {
                        w -= CATEGORIES[c].weight;
                        c += 1;
                    }
                    let category = &CATEGORIES[c];
                    // Log-normal amount via Box-Muller, rounded to the cent.
                    let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                    let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    let cents = ((mu[c] + category.sigma * z).exp() * 100.0).round() as i64;
                    let amount = cents.clamp(100, 50_000_000) as f64 / 100.0;
                    let date = when.format(at, &dates);
                    if rng.random_range(0..10) < 6 {
                        card_id += 1;
                        let merchant =
                            category.merchants[rng.random_range(0..category.merchants.len())];
                        card.execute(params![
                            card_id,
                            user_id,
                            amount,
                            merchant,
                            category.name,
                            date
                        ])?;
                    } else {
                        upi_id += 1;
                        let description =
                            category.descriptions[rng.random_range(0..category.descriptions.len())];
                        upi.execute(params![
                            upi_id,
                            user_id,
                            amount,
                            description,
                            category.name,
                            date
                        ])?;
                    }
                    written += 1;
                }
            }
        }
        progress.advance(written - batch_start);
    }
    progress.finish("transactions generated");

    Ok(GenerateReport {
        users: options.users,
        users_without_transactions,
        credit_card_transactions: card_id as u64,
        upi_transactions: upi_id as u64,
        elapsed: Duration::ZERO,
    })
}

fn too_many_users(users: u64) -> Error {
    Error::BadOptions(format!(
        "not enough memory to generate {users} users; ask for fewer"
    ))
}

/// `YYYY-MM-DD` of every day from three years before the span to its end, so formatting a
/// timestamp is a copy and six digits instead of a calendar computation.
struct DateTexts {
    first_day_secs: i64,
    texts: Vec<[u8; 10]>,
}

/// Days of history before the span that user sign-ups may fall in.
const HISTORY_DAYS: i64 = 731;

impl DateTexts {
    fn new(end: NaiveDate, days: i64) -> Result<DateTexts> {
        let out_of_range = || Error::BadOptions(format!("dates before {end} are out of range"));
        let first = end
            .checked_sub_days(chrono::Days::new((days - 1 + HISTORY_DAYS) as u64))
            .ok_or_else(out_of_range)?;
        let texts = first
            .iter_days()
            .take((days + HISTORY_DAYS) as usize)
            .map(|d| {
                <[u8; 10]>::try_from(d.format("%Y-%m-%d").to_string().as_bytes())
                    .map_err(|_| out_of_range())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DateTexts {
            first_day_secs: first.and_time(NaiveTime::MIN).and_utc().timestamp(),
            texts,
        })
    }
}

/// A reusable `YYYY-MM-DD HH:MM:SS` buffer.
#[derive(Default)]
struct TimeText([u8; 19]);

impl TimeText {
    fn format(&mut self, unix_secs: i64, dates: &DateTexts) -> &str {
        let since = (unix_secs - dates.first_day_secs).max(0);
        let day = ((since / 86_400) as usize).min(dates.texts.len() - 1);
        let secs = since % 86_400;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        self.0[..10].copy_from_slice(&dates.texts[day]);
        self.0[10] = b' ';
        for (at, v) in [(11, h), (14, m), (17, s)] {
            self.0[at] = b'0' + (v / 10) as u8;
            self.0[at + 1] = b'0' + (v % 10) as u8;
        }
        self.0[13] = b':';
        self.0[16] = b':';
        // Only ASCII digits, '-', ' ' and ':' were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}
