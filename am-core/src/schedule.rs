//! Rule schedules: standard 5-field crontab lines, 6-field lines with seconds, and the `@`
//! names; the next fire time after an instant; a description in words for the UI.

use chrono::{DateTime, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed, valid schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    cron: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why a schedule line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {reason}")]
pub struct ScheduleError {
    pub schedule: String,
    pub reason: String,
}

const NAMES: &[&str] = &[
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

impl Schedule {
    /// Parses a crontab line: 5 fields (minute hour day-of-month month day-of-week, weekday
    /// 0 or 7 = Sunday), 6 fields with seconds first, or one of the `@` names.
    pub fn parse(line: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = line.trim();
        let fail = |reason: String| ScheduleError {
            schedule: line.to_string(),
            reason,
        };
        if trimmed.is_empty() {
            return Err(fail("the schedule is empty".into()));
        }
        if trimmed.starts_with('@') {
            if !NAMES.iter().any(|n| n.eq_ignore_ascii_case(trimmed)) {
                return Err(fail(format!("unknown name; allowed: {}", NAMES.join(", "))));
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 && fields.len() != 6 {
                return Err(fail(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {}",
                    fields.len()
                )));
            }
            check_ranges(&fields).map_err(fail)?;
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(trimmed)
            .map_err(|e| fail(lower_first(&e.to_string())))?;
        // A line such as `0 0 31 2 *` parses but never fires.
        let probe = DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default();
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(fail("it never fires".into()));
        }
        Ok(Schedule {
            source: trimmed.to_string(),
            cron,
        })
    }

    /// The schedule as the user wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`, if any, on a whole second.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        // croner carries the start's fraction of a second over; fire times are whole seconds.
        next.with_nanosecond(0)
    }

    /// The latest fire time at or before `at`, if any: the scheduler uses it to collapse
    /// every time missed during downtime into one catch-up run.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let last = self.cron.find_previous_occurrence(&at, true).ok()?;
        last.with_nanosecond(0)
    }

    /// The schedule in words, e.g. "At 00:00" for `0 0 * * *`.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

/// Checks the numbers of each field against its range, so the error names the field; croner's
/// own message does not.
fn check_ranges(fields: &[&str]) -> Result<(), String> {
    const FIVE: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day-of-month", 1, 31),
        ("month", 1, 12),
        ("day-of-week", 0, 7),
    ];
    let seconds = ("second", 0, 59);
    let specs: Vec<(&str, u32, u32)> = if fields.len() == 6 {
        std::iter::once(seconds).chain(FIVE).collect()
    } else {
        FIVE.to_vec()
    };
    for (field, (name, lo, hi)) in fields.iter().zip(specs) {
        for part in field.split(',') {
            // After a `/` comes a step, not a value of the field.
            let (values, step) = part.split_once('/').unwrap_or((part, ""));
            if let Ok(n) = step.parse::<u32>()
                && n == 0
            {
                return Err(format!("{name} step must be at least 1 in {field:?}"));
            }
            for value in values.split('-') {
                if let Ok(n) = value.parse::<u32>()
                    && (n < lo || n > hi)
                {
                    return Err(format!("{name} {n} is out of range {lo}-{hi}"));
                }
            }
        }
    }
    Ok(())
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c
            .to_lowercase()
            .chain(chars)
            .collect::<String>()
            .trim_end_matches('.')
            .to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test time")
    }

    #[test]
    fn seed_daily_line_parses_and_fires_at_midnight() {
        let s = Schedule::parse("0 0 * * *").expect("seed schedule");
        assert_eq!(
            s.next_after(at(2025, 3, 4, 10, 0, 0)),
            Some(at(2025, 3, 5, 0, 0, 0))
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let s = Schedule::parse("30 0 12 * * *").expect("six fields");
        assert_eq!(
            s.next_after(at(2025, 3, 4, 10, 0, 0)),
            Some(at(2025, 3, 4, 12, 0, 30))
        );
    }

    #[test]
    fn weekday_zero_and_seven_are_sunday() {
        // 2025-03-09 is a Sunday.
        for line in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
            let s = Schedule::parse(line).expect(line);
            assert_eq!(
                s.next_after(at(2025, 3, 4, 0, 0, 0)),
                Some(at(2025, 3, 9, 9, 0, 0)),
                "{line}"
            );
        }
    }

    #[test]
    fn at_names() {
        let from = at(2025, 3, 4, 10, 30, 0);
        let cases = [
            ("@hourly", at(2025, 3, 4, 11, 0, 0)),
            ("@daily", at(2025, 3, 5, 0, 0, 0)),
            ("@weekly", at(2025, 3, 9, 0, 0, 0)),
            ("@monthly", at(2025, 4, 1, 0, 0, 0)),
            ("@yearly", at(2026, 1, 1, 0, 0, 0)),
            ("@annually", at(2026, 1, 1, 0, 0, 0)),
        ];
        for (line, next) in cases {
            let s = Schedule::parse(line).expect(line);
            assert_eq!(s.next_after(from), Some(next), "{line}");
        }
    }

    #[test]
    fn fire_times_are_whole_seconds() {
        let s = Schedule::parse("0 0 * * *").expect("daily");
        let after = at(2025, 3, 4, 10, 0, 0) + chrono::Duration::nanoseconds(818_188_935);
        assert_eq!(s.next_after(after), Some(at(2025, 3, 5, 0, 0, 0)));
        assert_eq!(s.last_at_or_before(after), Some(at(2025, 3, 4, 0, 0, 0)));
    }

    #[test]
    fn missed_times_collapse_to_the_latest() {
        let s = Schedule::parse("@hourly").expect("hourly");
        assert_eq!(
            s.last_at_or_before(at(2025, 3, 4, 10, 30, 0)),
            Some(at(2025, 3, 4, 10, 0, 0))
        );
    }

    #[test]
    fn rejects_with_reasons() {
        let reason = |line: &str| Schedule::parse(line).expect_err(line).reason;
        assert_eq!(reason(""), "the schedule is empty");
        assert!(reason("@fortnightly").starts_with("unknown name; allowed: @hourly"));
        assert!(reason("0 0 * *").starts_with("expected 5 fields"));
        assert!(reason("0 0 0 * * * 2025").starts_with("expected 5 fields"));
        assert_eq!(reason("0 0 31 2 *"), "it never fires");
        assert_eq!(reason("61 0 * * *"), "minute 61 is out of range 0-59");
        assert_eq!(reason("0 0 0 * *"), "day-of-month 0 is out of range 1-31");
        assert_eq!(reason("0 0 * 13 *"), "month 13 is out of range 1-12");
        assert_eq!(reason("0 0 * * 1-8"), "day-of-week 8 is out of range 0-7");
        assert_eq!(reason("60 0 0 * * *"), "second 60 is out of range 0-59");
        assert_eq!(
            reason("*/0 * * * *"),
            "minute step must be at least 1 in \"*/0\""
        );
        assert!(!reason("a b c d e").is_empty());
    }

    #[test]
    fn describes_in_words() {
        let s = Schedule::parse("0 0 * * *").expect("daily");
        assert!(!s.describe().is_empty());
    }
}
