//! sea-query's values as rusqlite parameters, so every user value reaches SQLite bound.
//!
//! A few lines of our own instead of sea-query-rusqlite: that crate pins an older rusqlite
//! whose bundled SQLite (3.51.1) can deadlock when connections open and close concurrently,
//! as the server's per-request connections do.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rusqlite::types::{ToSql, ToSqlOutput, Value as SqlValue};
use sea_query::{Value, Values};

use am_core::expr::TIMESTAMP_FORMAT;

/// One bound value.
#[derive(Debug, Clone)]
pub struct Param(Value);

/// Turns a statement's values into parameters for `params_from_iter`.
pub fn params(values: Values) -> impl Iterator<Item = Param> {
    values.into_iter().map(Param)
}

fn text<T>(v: &Option<T>, f: impl Fn(&T) -> String) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(v.as_ref().map_or(SqlValue::Null, |x| SqlValue::Text(f(x))))
}

fn int<T: Copy + Into<i64>>(v: &Option<T>) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(v.map_or(SqlValue::Null, |x| SqlValue::Integer(x.into())))
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match &self.0 {
            Value::Bool(v) => int(&v.map(i64::from)),
            Value::TinyInt(v) => int(v),
            Value::SmallInt(v) => int(v),
            Value::Int(v) => int(v),
            Value::BigInt(v) => int(v),
            Value::TinyUnsigned(v) => int(v),
            Value::SmallUnsigned(v) => int(v),
            Value::Unsigned(v) => int(v),
            Value::BigUnsigned(v) => match v.map(i64::try_from) {
                None => ToSqlOutput::Owned(SqlValue::Null),
                Some(Ok(x)) => ToSqlOutput::Owned(SqlValue::Integer(x)),
                Some(Err(e)) => return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
            },
            Value::Float(v) => {
                ToSqlOutput::Owned(v.map_or(SqlValue::Null, |x| SqlValue::Real(x.into())))
            }
            Value::Double(v) => ToSqlOutput::Owned(v.map_or(SqlValue::Null, SqlValue::Real)),
            Value::String(v) => text(v, String::clone),
            Value::Char(v) => text(v, char::to_string),
            Value::Bytes(v) => ToSqlOutput::Owned(v.clone().map_or(SqlValue::Null, SqlValue::Blob)),
            Value::ChronoDate(v) => text(v, |d: &NaiveDate| d.format("%Y-%m-%d").to_string()),
            Value::ChronoTime(v) => text(v, |t: &NaiveTime| t.format("%H:%M:%S").to_string()),
            Value::ChronoDateTime(v) => text(v, |t: &NaiveDateTime| {
                t.format(TIMESTAMP_FORMAT).to_string()
            }),
            Value::ChronoDateTimeUtc(v) => text(v, |t: &DateTime<Utc>| {
                t.format(TIMESTAMP_FORMAT).to_string()
            }),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("unsupported value type {other:?}").into(),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn values_round_trip_through_sqlite() {
        let conn = Connection::open_in_memory().expect("memory db");
        let values = Values(vec![
            Value::BigInt(Some(7)),
            Value::String(Some("x'; DROP TABLE users; --".into())),
            Value::Double(Some(1.5)),
            Value::Int(None),
            Value::ChronoDateTime(Some(
                NaiveDate::from_ymd_opt(2025, 1, 2)
                    .and_then(|d| d.and_hms_opt(3, 4, 5))
                    .expect("valid"),
            )),
        ]);
        let row: (i64, String, f64, Option<i64>, String) = conn
            .query_row(
                "SELECT ?, ?, ?, ?, ?",
                rusqlite::params_from_iter(params(values)),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .expect("query");
        assert_eq!(
            row,
            (
                7,
                "x'; DROP TABLE users; --".into(),
                1.5,
                None,
                "2025-01-02 03:04:05".into()
            )
        );
    }
}
