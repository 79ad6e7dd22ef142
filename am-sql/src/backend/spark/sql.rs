//! The SQL functions Spark spells differently from the stores (see `Dialect`).

use chrono::NaiveDate;
use sea_query::Func;

use crate::error::Error;

type SqlExpr = sea_query::Expr;

/// `CAST(datediff(CAST('as_of' AS DATE), CAST(last AS DATE)) AS BIGINT)`: whole days from the
/// date of the last transaction to the as-of date (Spark has no `julianday`).
pub(crate) fn days_since(as_of: NaiveDate, last: SqlExpr) -> SqlExpr {
    let as_of: SqlExpr = Func::cast_as(as_of.format("%Y-%m-%d").to_string(), "DATE").into();
    let last: SqlExpr = Func::cast_as(last, "DATE").into();
    let days: SqlExpr = Func::cust("datediff").args([as_of, last]).into();
    Func::cast_as(days, "BIGINT").into()
}

/// `instr(translate(x, 'A..Z', 'a..z'), 'needle')`: Spark's `lower` folds every letter (`Ä`
/// to `ä`); the contract folds ASCII letters only, as SQLite's `lower` does.
pub(crate) fn ascii_position(x: SqlExpr, needle: &str) -> SqlExpr {
    Func::cust("instr")
        .args([
            crate::backend::ascii_lower(x),
            SqlExpr::val(needle.to_owned()),
        ])
        .into()
}

/// What a store operation asked of Spark says: Spark computes segments, a store keeps them.
pub(crate) fn not_a_store() -> Error {
    Error::Refused(
        "Spark computes segments; rules, catalog, runs and members live in the store".into(),
    )
}

/// `'text'` as a Spark SQL string literal: Spark reads backslash escapes inside quotes.
pub(crate) fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Dialect;
    use sea_query::ExprTrait;

    #[test]
    fn functions_render_in_spark_sql() {
        let q = sea_query::Query::select()
            .expr(days_since(
                NaiveDate::from_ymd_opt(2025, 6, 30).expect("date"),
                SqlExpr::col("last"),
            ))
            .expr(ascii_position(SqlExpr::col("merchant"), "indi").gt(0))
            .to_owned();
        assert_eq!(
            Dialect::Spark.inline(&q),
            "SELECT CAST(datediff(CAST('2025-06-30' AS DATE), CAST(`last` AS DATE)) AS BIGINT), \
             instr(translate(`merchant`, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), 'indi') > 0"
        );
    }

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(string_literal(r"a'b\c"), r"'a\'b\\c'");
    }
}
