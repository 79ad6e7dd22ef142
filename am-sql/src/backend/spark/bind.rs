//! sea-query's values as Spark literals for `sql_with_args`, so every user value reaches
//! Spark bound to a `?` placeholder (the MySQL builder's), never spliced into the text.
//!
//! Each value keeps its width (an `i32` is an `INT` literal, an `i64` a `BIGINT`); a NULL is
//! typed after its variant, so `? IS NULL` and comparisons resolve as they would with a
//! value. Time stamps are UTC: a `NaiveDateTime` is read as UTC (the project stores UTC) and
//! bound as a `TIMESTAMP` instant, so the session's time zone cannot shift it. A time of day
//! is bound as its `HH:MM:SS` text, as SQLite keeps it (Spark's `TIME` type is off by
//! default).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_query::{Value, Values};
use spark_connect::expression::{Expression, LiteralExpression};
use spark_connect::types::DataType;

use crate::error::{Error, Result};

/// The literals for a statement's values, in placeholder order.
pub fn literals(values: &Values) -> Result<Vec<Expression>> {
    values
        .0
        .iter()
        .map(|value| literal(value).map(Expression::Literal))
        .collect()
}

fn literal(value: &Value) -> Result<LiteralExpression> {
    use LiteralExpression as L;
    let or_null = |lit: Option<L>, null: DataType| lit.unwrap_or(L::Null(null));
    Ok(match value {
        Value::Bool(v) => or_null(v.map(L::Boolean), DataType::Boolean),
        Value::TinyInt(v) => or_null(v.map(|x| L::Byte(x.into())), DataType::Byte),
        Value::SmallInt(v) => or_null(v.map(|x| L::Short(x.into())), DataType::Short),
        Value::Int(v) => or_null(v.map(L::Integer), DataType::Integer),
        Value::BigInt(v) => or_null(v.map(L::Long), DataType::Long),
        // Unsigned values take the next wider signed type, so none is read as negative.
        Value::TinyUnsigned(v) => or_null(v.map(|x| L::Short(x.into())), DataType::Short),
        Value::SmallUnsigned(v) => or_null(v.map(|x| L::Integer(x.into())), DataType::Integer),
        Value::Unsigned(v) => or_null(v.map(|x| L::Long(x.into())), DataType::Long),
        Value::BigUnsigned(v) => match v {
            None => L::Null(DataType::Long),
            Some(x) => match i64::try_from(*x) {
                Ok(x) => L::Long(x),
                // Beyond BIGINT: an exact DECIMAL(20, 0).
                Err(_) => L::Decimal {
                    value: x.to_string(),
                    precision: 20,
                    scale: 0,
                },
            },
        },
        Value::Float(v) => or_null(v.map(L::Float), DataType::Float),
        Value::Double(v) => or_null(v.map(L::Double), DataType::Double),
        Value::String(v) => or_null(v.clone().map(L::String), string_type()),
        Value::Char(v) => or_null(v.map(|c| L::String(c.to_string())), string_type()),
        Value::Bytes(v) => or_null(v.clone().map(L::Binary), DataType::Binary),
        Value::ChronoDate(v) => match v {
            None => L::Null(DataType::Date),
            Some(d) => L::Date(days_since_epoch(d)?),
        },
        Value::ChronoTime(v) => or_null(
            v.map(|t: NaiveTime| L::String(t.format("%H:%M:%S").to_string())),
            string_type(),
        ),
        Value::ChronoDateTime(v) => match v {
            None => L::Null(DataType::Timestamp),
            Some(t) => L::Timestamp(micros(t)?),
        },
        Value::ChronoDateTimeUtc(v) => match v {
            None => L::Null(DataType::Timestamp),
            Some(t) => L::Timestamp(micros(&t.naive_utc())?),
        },
        other => {
            return Err(Error::Database(format!(
                "Spark: cannot bind a value of this type: {other:?}"
            )));
        }
    })
}

fn string_type() -> DataType {
    DataType::String {
        collation: String::new(),
    }
}

/// Days since 1970-01-01, Spark's `DATE` literal.
fn days_since_epoch(date: &NaiveDate) -> Result<i32> {
    let days = date.signed_duration_since(NaiveDate::default()).num_days();
    i32::try_from(days).map_err(|_| Error::Database(format!("Spark: date {date} out of range")))
}

/// Microseconds since the epoch of a UTC time, Spark's `TIMESTAMP` literal.
fn micros(time: &NaiveDateTime) -> Result<i64> {
    let utc: DateTime<Utc> = time.and_utc();
    Ok(utc.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: Value) -> LiteralExpression {
        literal(&value).expect("bindable")
    }

    #[test]
    fn widths_and_nulls_keep_their_types() {
        assert!(matches!(
            one(Value::Int(Some(7))),
            LiteralExpression::Integer(7)
        ));
        assert!(matches!(
            one(Value::BigInt(Some(-7))),
            LiteralExpression::Long(-7)
        ));
        assert!(matches!(
            one(Value::Unsigned(Some(u32::MAX))),
            LiteralExpression::Long(4_294_967_295)
        ));
        assert!(matches!(
            one(Value::BigUnsigned(Some(u64::MAX))),
            LiteralExpression::Decimal {
                precision: 20,
                scale: 0,
                ..
            }
        ));
        assert!(matches!(
            one(Value::BigInt(None)),
            LiteralExpression::Null(DataType::Long)
        ));
        assert!(matches!(
            one(Value::String(None)),
            LiteralExpression::Null(DataType::String { .. })
        ));
    }

    #[test]
    fn dates_and_times_are_days_and_utc_microseconds() {
        let date = NaiveDate::from_ymd_opt(1970, 1, 11).expect("valid");
        assert!(matches!(
            one(Value::ChronoDate(Some(date))),
            LiteralExpression::Date(10)
        ));
        let before = NaiveDate::from_ymd_opt(1969, 12, 31).expect("valid");
        assert!(matches!(
            one(Value::ChronoDate(Some(before))),
            LiteralExpression::Date(-1)
        ));
        let time = date.and_hms_micro_opt(0, 0, 1, 5).expect("valid");
        let expected = 10 * 86_400_000_000 + 1_000_005;
        assert!(
            matches!(one(Value::ChronoDateTime(Some(time))), LiteralExpression::Timestamp(t) if t == expected)
        );
    }
}
