//! Rule schedules: crontab lines and `@` names, next fire time, a description in words.

/// A parsed, valid schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The schedule as the user wrote it.
    pub source: String,
}
