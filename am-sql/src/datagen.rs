//! The seeded synthetic data generator: users across city tiers, most with a location near a
//! real city of their tier, and credit-card and UPI transactions with realistic categories,
//! merchants, amounts and dates.
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

use am_core::expr::Source;
use chrono::{NaiveDate, NaiveTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sea_query::{Alias, Expr, Query};

use crate::conn::{Conn, Datum, TxMode, transaction};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::schema::DATA_TABLES;

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
    /// Rows of `user_locations`.
    pub user_locations: u64,
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

/// Cities users live around, by tier: (latitude, longitude, spread in km).
const TIER_1_CITIES: &[(f64, f64, f64)] = &[
    (19.0760, 72.8777, 15.0), // Mumbai
    (28.6139, 77.2090, 18.0), // Delhi
    (12.9716, 77.5946, 12.0), // Bengaluru
    (13.0827, 80.2707, 12.0), // Chennai
    (22.5726, 88.3639, 12.0), // Kolkata
    (17.3850, 78.4867, 12.0), // Hyderabad
];
const TIER_2_CITIES: &[(f64, f64, f64)] = &[
    (18.5204, 73.8567, 8.0), // Pune
    (26.9124, 75.7873, 8.0), // Jaipur
    (26.8467, 80.9462, 8.0), // Lucknow
    (9.9312, 76.2673, 6.0),  // Kochi
    (22.7196, 75.8577, 6.0), // Indore
    (21.1702, 72.8311, 7.0), // Surat
];
const TIER_3_CITIES: &[(f64, f64, f64)] = &[
    (12.2958, 76.6394, 4.0), // Mysuru
    (20.0059, 73.7910, 4.0), // Nashik
    (24.5854, 73.7125, 3.0), // Udaipur
    (15.4909, 73.8278, 4.0), // Panaji
    (30.7333, 76.7794, 4.0), // Chandigarh
    (11.0168, 76.9558, 5.0), // Coimbatore
];

/// Users with a location, per mille.
const LOCATED_PER_MILLE: u32 = 900;

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
    conn: &mut dyn Conn,
    options: &GenerateOptions,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
    let started = Instant::now();
    options.validate()?;
    if !options.replace {
        for table in DATA_TABLES {
            let any = Query::select()
                .expr(Expr::exists(
                    Query::select()
                        .expr(Expr::val(1))
                        .from(Alias::new(table))
                        .to_owned(),
                ))
                .to_owned();
            if conn.row(&any)?.bool(0)? {
                return Err(Error::Refused(format!(
                    "table {table} already has rows; generate with replace to delete them first"
                )));
            }
        }
    }
    let dialect = conn.dialect();
    // One transaction for everything: the rows and the change tracking around them commit
    // together or not at all.
    let mut report = transaction(conn, TxMode::Write, |conn| {
        dialect.bulk_load_begin(conn)?;
        if options.replace {
            for table in DATA_TABLES.iter().rev() {
                conn.exec(&Query::delete().from_table(Alias::new(*table)).to_owned())?;
            }
        }
        let report = load(conn, options, progress)?;
        dialect.bulk_load_end(conn)?;
        crate::tracking::bump_data_version(conn)?;
        // Every user may have changed: segments built before are rebuilt in full.
        crate::tracking::restart_change_log(conn)?;
        progress.begin("commit", None);
        Ok(report)
    })?;
    progress.finish("committed");
    dialect.after_bulk_load(conn);
    report.elapsed = started.elapsed();
    Ok(report)
}

const USER_COLUMNS: [&str; 5] = ["user_id", "name", "email", "city_tier", "created_at"];
const LOCATION_COLUMNS: [&str; 4] = ["user_id", "latitude", "longitude", "updated_at"];
const CARD_COLUMNS: [&str; 6] = [
    "transaction_id",
    "user_id",
    "amount",
    "merchant",
    "category",
    "transaction_date",
];
const UPI_COLUMNS: [&str; 6] = [
    "transaction_id",
    "user_id",
    "amount",
    "description",
    "category",
    "transaction_date",
];

fn load(
    conn: &mut dyn Conn,
    options: &GenerateOptions,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
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
    // Each user's tier (0 for none), for the locations.
    let mut tiers: Vec<u8> = Vec::new();
    tiers
        .try_reserve_exact(users)
        .map_err(|_| too_many_users(options.users))?;
    progress.begin("users", Some(options.users));
    conn.load("users", &USER_COLUMNS, &mut |rows| {
        for user_id in 1..=options.users {
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
            tiers.push(tier.map_or(0, |t| t as u8));
            rows.row(&[
                Datum::Int(user_id as i64),
                Datum::Text(&name),
                if has_email {
                    Datum::Text(&email)
                } else {
                    Datum::Null
                },
                tier.map_or(Datum::Null, Datum::Int),
                Datum::Text(created.format(joined, &dates)),
            ])?;
            if user_id % BATCH == 0 {
                progress.advance(BATCH);
            }
        }
        Ok(())
    })?;
    progress.advance(options.users % BATCH);
    progress.finish("users generated");
    let users_without_transactions = options.users - active.len() as u64;
    let user_locations = load_locations(conn, options, &tiers, start_secs, days, &dates)?;
    drop(tiers);

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

    // Each table is loaded on its own (a bulk load fills one table at a time), each from the
    // same sequence of draws, keeping its own rows: the data are the same as one pass would
    // give.
    progress.begin("transactions", Some(options.transactions));
    let from = TransactionDraws {
        rng,
        per_user: &per_user,
        start_secs,
        span: days * 86_400,
        dates: &dates,
    };
    let card = from.load(conn, Source::CreditCard, progress)?;
    let upi = from.load(conn, Source::Upi, progress)?;
    progress.finish("transactions generated");

    Ok(GenerateReport {
        users: options.users,
        users_without_transactions,
        user_locations,
        credit_card_transactions: card,
        upi_transactions: upi,
        elapsed: Duration::ZERO,
    })
}

/// Where the transactions' draws start, replayed once per table.
/// Locations of most users, around a city of their tier (any tier for a user without one),
/// from their own random stream so users and transactions stay as they were. Coordinates
/// have six decimals, as a phone reports them; the update time falls in the span.
fn load_locations(
    conn: &mut dyn Conn,
    options: &GenerateOptions,
    tiers: &[u8],
    start_secs: i64,
    days: i64,
    dates: &DateTexts,
) -> Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    rng.set_stream(3);
    let mut updated = TimeText::default();
    let mut written = 0u64;
    conn.load("user_locations", &LOCATION_COLUMNS, &mut |rows| {
        for (user, &tier) in tiers.iter().enumerate() {
            if rng.random_range(0..1000) >= LOCATED_PER_MILLE {
                continue;
            }
            let cities = match tier {
                1 => TIER_1_CITIES,
                2 => TIER_2_CITIES,
                3 => TIER_3_CITIES,
                _ => [TIER_1_CITIES, TIER_2_CITIES, TIER_3_CITIES][rng.random_range(0..3)],
            };
            let (lat, lon, spread) = cities[rng.random_range(0..cities.len())];
            // Distance from the centre: a sum of uniforms, dense near it and thinning out.
            let km = spread * (0..3).map(|_| rng.random::<f64>()).sum::<f64>() / 1.5;
            let bearing = rng.random::<f64>() * std::f64::consts::TAU;
            let dlat = km * bearing.cos() / 111.2;
            let dlon = km * bearing.sin() / (111.2 * lat.to_radians().cos());
            let six_places = |x: f64| (x * 1e6).round() / 1e6;
            let at = start_secs + rng.random_range(0..days * 86_400);
            rows.row(&[
                Datum::Int(user as i64 + 1),
                Datum::Real(six_places(lat + dlat)),
                Datum::Real(six_places(lon + dlon)),
                Datum::Text(updated.format(at, dates)),
            ])?;
            written += 1;
        }
        Ok(())
    })?;
    Ok(written)
}

struct TransactionDraws<'a> {
    rng: ChaCha8Rng,
    per_user: &'a [u32],
    start_secs: i64,
    span: i64,
    dates: &'a DateTexts,
}

impl TransactionDraws<'_> {
    /// Writes the transactions of one table; returns how many.
    ///
    /// Transactions go in user by user, each user's in time order, so the
    /// (user_id, transaction_date, amount) indexes grow at their right edge instead of
    /// taking random inserts.
    fn load(&self, conn: &mut dyn Conn, keep: Source, progress: &dyn Progress) -> Result<u64> {
        let mut rng = self.rng.clone();
        let total_weight: u32 = CATEGORIES.iter().map(|c| c.weight).sum();
        let mu: Vec<f64> = CATEGORIES.iter().map(|c| c.median.ln()).collect();
        let (mut card_id, mut upi_id) = (0i64, 0i64);
        let mut when = TimeText::default();
        let mut times: Vec<i64> = Vec::new();
        let (table, columns) = match keep {
            Source::Upi => ("upi_transactions", &UPI_COLUMNS),
            _ => ("credit_card_transactions", &CARD_COLUMNS),
        };
        let mut since_report = 0u64;
        conn.load(table, columns, &mut |rows| {
            for (user, &n) in self.per_user.iter().enumerate() {
                let user_id = user as i64 + 1;
                times.clear();
                times.extend((0..n).map(|_| self.start_secs + rng.random_range(0..self.span)));
                times.sort_unstable();
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
                    let date = when.format(at, self.dates);
                    if rng.random_range(0..10) < 6 {
                        card_id += 1;
                        let merchant =
                            category.merchants[rng.random_range(0..category.merchants.len())];
                        if keep == Source::CreditCard {
                            rows.row(&[
                                Datum::Int(card_id),
                                Datum::Int(user_id),
                                Datum::Real(amount),
                                Datum::Text(merchant),
                                Datum::Text(category.name),
                                Datum::Text(date),
                            ])?;
                        }
                    } else {
                        upi_id += 1;
                        let description =
                            category.descriptions[rng.random_range(0..category.descriptions.len())];
                        if keep == Source::Upi {
                            rows.row(&[
                                Datum::Int(upi_id),
                                Datum::Int(user_id),
                                Datum::Real(amount),
                                Datum::Text(description),
                                Datum::Text(category.name),
                                Datum::Text(date),
                            ])?;
                        }
                    }
                    since_report += 1;
                    if since_report == BATCH * 2 {
                        // Each pass sees every draw: half of them per table.
                        progress.advance(BATCH);
                        since_report = 0;
                    }
                }
            }
            progress.advance(since_report / 2);
            Ok(())
        })?;
        Ok(if keep == Source::Upi { upi_id } else { card_id } as u64)
    }
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

impl crate::Store {
    /// Generates users and transactions into the data tables (see [`generate`]).
    pub fn generate(
        &self,
        options: &GenerateOptions,
        progress: &dyn Progress,
    ) -> Result<GenerateReport> {
        generate(self.connection()?.as_mut(), options, progress)
    }
}
