//! Arrow record batches from Spark as the project's engine-neutral values: rows of
//! [`Cell`]s, or one column of user ids.
//!
//! Integers of every width are `Cell::Int`; a `DECIMAL` is its exact text (`SUM` of a
//! `DECIMAL(12,2)` arrives as `Decimal128(22,2)`: `"1000.00"`, never a float); a
//! `TIMESTAMP` is `Cell::Time` in UTC (Spark sends UTC microseconds whatever the session's
//! time zone); a `DATE` is its `YYYY-MM-DD` text; any other type its text as Arrow prints it.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::DateTime;

use crate::conn::{Cell, Row};
use crate::error::{Error, Result};

/// Every row of `batches`, in order.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let columns: Vec<Column> = batch.columns().iter().map(Column::new).collect();
        for i in 0..batch.num_rows() {
            let row = columns.iter().map(|c| c.cell(i)).collect::<Result<_>>()?;
            rows.push(Row(row));
        }
    }
    Ok(rows)
}

/// The values of a result that must be exactly one `BIGINT` (or narrower integer) column
/// without NULLs: a segment's members.
pub fn user_ids(batches: &[RecordBatch]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        if batch.num_columns() != 1 {
            return Err(Error::Database(format!(
                "Spark: expected one column of user ids, got {} columns ({})",
                batch.num_columns(),
                column_list(batch)
            )));
        }
        let column = batch.column(0);
        let field = batch.schema_ref().field(0).clone();
        if column.null_count() > 0 {
            return Err(Error::Database(format!(
                "Spark: user id column `{}` holds NULL",
                field.name()
            )));
        }
        match column.data_type() {
            DataType::Int64 => ids.extend(
                column
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values(),
            ),
            DataType::Int32 => ids.extend(
                column
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .values()
                    .iter()
                    .map(|&v| i64::from(v)),
            ),
            DataType::Int16 => ids.extend(
                column
                    .as_primitive::<arrow::datatypes::Int16Type>()
                    .values()
                    .iter()
                    .map(|&v| i64::from(v)),
            ),
            other => {
                return Err(Error::Database(format!(
                    "Spark: user id column `{}` is {other}, expected BIGINT or INT",
                    field.name()
                )));
            }
        }
    }
    Ok(ids)
}

fn column_list(batch: &RecordBatch) -> String {
    let schema = batch.schema();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("`{}` {}", f.name(), f.data_type()))
        .collect();
    names.join(", ")
}

/// One column of a batch, with what reading a cell of its type needs.
struct Column<'a> {
    array: &'a ArrayRef,
    /// Arrow's own printing, for the types read as text.
    text: Option<ArrayFormatter<'a>>,
}

const OPTIONS: FormatOptions<'static> = FormatOptions::new();

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef) -> Column<'a> {
        let text = ArrayFormatter::try_new(array.as_ref(), &OPTIONS).ok();
        Column { array, text }
    }

    fn cell(&self, i: usize) -> Result<Cell> {
        let a = self.array;
        if a.is_null(i) {
            return Ok(Cell::Null);
        }
        Ok(match a.data_type() {
            DataType::Boolean => Cell::Bool(downcast::<BooleanArray>(a)?.value(i)),
            DataType::Int8 => Cell::Int(downcast::<Int8Array>(a)?.value(i).into()),
            DataType::Int16 => Cell::Int(downcast::<Int16Array>(a)?.value(i).into()),
            DataType::Int32 => Cell::Int(downcast::<Int32Array>(a)?.value(i).into()),
            DataType::Int64 => Cell::Int(downcast::<Int64Array>(a)?.value(i)),
            DataType::Float32 => Cell::Real(downcast::<Float32Array>(a)?.value(i).into()),
            DataType::Float64 => Cell::Real(downcast::<Float64Array>(a)?.value(i)),
            DataType::Decimal128(_, _) => {
                Cell::Text(downcast::<Decimal128Array>(a)?.value_as_string(i))
            }
            DataType::Utf8 => Cell::Text(a.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Cell::Text(a.as_string::<i64>().value(i).to_string()),
            DataType::Utf8View => Cell::Text(a.as_string_view().value(i).to_string()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let micros = a
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(i);
                let time = DateTime::from_timestamp_micros(micros).ok_or_else(|| {
                    Error::Database(format!("Spark: time stamp {micros} µs out of range"))
                })?;
                Cell::Time(time.naive_utc())
            }
            _ => match &self.text {
                Some(text) => Cell::Text(text.value(i).to_string()),
                None => {
                    return Err(Error::Database(format!(
                        "Spark: cannot read a value of type {}",
                        a.data_type()
                    )));
                }
            },
        })
    }
}

fn downcast<T: 'static>(array: &ArrayRef) -> Result<&T> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        Error::Database(format!(
            "Spark: column of type {} has an unexpected layout",
            array.data_type()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        let arrays = columns.into_iter().map(|(_, a)| a).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("valid batch")
    }

    #[test]
    fn decimals_stay_exact_text() {
        let sum = Decimal128Array::from(vec![Some(100_000), None])
            .with_precision_and_scale(22, 2)
            .expect("valid");
        let rows = rows(&[batch(vec![("total", Arc::new(sum))])]).expect("readable");
        assert_eq!(rows[0].0, vec![Cell::Text("1000.00".into())]);
        assert_eq!(rows[1].0, vec![Cell::Null]);
    }

    #[test]
    fn user_ids_take_bigint_and_int_and_refuse_others() {
        let ids = user_ids(&[
            batch(vec![("id", Arc::new(Int64Array::from(vec![1, 2])))]),
            batch(vec![("id", Arc::new(Int32Array::from(vec![3])))]),
        ])
        .expect("integers");
        assert_eq!(ids, vec![1, 2, 3]);

        let text = batch(vec![("id", Arc::new(StringArray::from(vec!["1"])))]);
        let err = user_ids(&[text])
            .expect_err("text is not an id")
            .to_string();
        assert!(
            err.contains("`id` is Utf8, expected BIGINT or INT"),
            "{err}"
        );

        let nulls = batch(vec![(
            "id",
            Arc::new(Int64Array::from(vec![Some(1), None])),
        )]);
        let err = user_ids(&[nulls])
            .expect_err("NULL is not an id")
            .to_string();
        assert!(err.contains("holds NULL"), "{err}");

        let two = batch(vec![
            ("a", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("b", Arc::new(Int64Array::from(vec![1]))),
        ]);
        let err = user_ids(&[two]).expect_err("two columns").to_string();
        assert!(err.contains("got 2 columns"), "{err}");
    }
}
