//! The names of our tables and the times we stamp into them: what every backend's schema
//! shares (each backend's migrations create them with its own types).

use chrono::NaiveDateTime;

/// The tables users' ETL writes, in load order (users first, for the foreign keys).
pub const DATA_TABLES: [&str; 4] = [
    "users",
    "user_locations",
    "credit_card_transactions",
    "upi_transactions",
];

pub const RULE_TABLE: &str = "rule_table";
pub const SEGMENT_CATALOG: &str = "segment_catalog";
pub const REFRESH_RUNS: &str = "refresh_runs";
pub const DATA_VERSION: &str = "data_version";
/// Which users each data change touched, by data version (see `tracking`).
pub const DATA_CHANGES: &str = "data_changes";

/// Now, UTC, to the millisecond: how our own tables (runs, catalog, rules) stamp times, so a
/// run's duration can be read from its times.
pub fn now() -> NaiveDateTime {
    let now = chrono::Utc::now().naive_utc();
    let millis = chrono::Timelike::nanosecond(&now) / 1_000_000 * 1_000_000;
    chrono::Timelike::with_nanosecond(&now, millis).unwrap_or(now)
}
