//! [`Conn`] over a pooled `postgres` client.
//!
//! PostgreSQL infers each parameter's type from the statement, and the driver refuses a
//! value of another Rust type at run time (`SUM(amount) > $1` with an `i32`). So values are
//! bound by what the server inferred: each statement is prepared first, and every sea-query
//! value is converted to the Rust type of its parameter's type (an integer to `int4` or
//! `int8` or `numeric`, text to `timestamp`, ...), or refused with a clear error.
//!
//! The driver blocks on a runtime of its own, which tokio forbids on a thread that drives
//! async tasks. So a call made there (a service calling the store from an `async fn`) runs on
//! a short-lived thread of its own; rows and bulk-load data cross over through a channel.

use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{NoTls, Statement};
use r2d2::PooledConnection;
use r2d2_postgres::PostgresConnectionManager;
use rust_decimal::Decimal;
use sea_query::{Value, Values};

use crate::backend::Dialect;
use crate::conn::{Cell, Conn, Datum, Row, RowWriter};
use crate::error::{Error, Result};

type Client = PooledConnection<PostgresConnectionManager<NoTls>>;

/// One pooled PostgreSQL connection, with its prepared statements.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Inside a transaction, and whether a statement in it failed: PostgreSQL then ignores
    /// everything up to the end of the transaction, and a `COMMIT` silently rolls back.
    in_transaction: bool,
    failed: bool,
}

impl PgConn {
    pub(crate) fn new(client: Client) -> PgConn {
        PgConn {
            client,
            statements: HashMap::new(),
            in_transaction: false,
            failed: false,
        }
    }

    /// The driver's client, for the backend's own work (migrations, locks).
    pub(crate) fn client(&mut self) -> &mut postgres::Client {
        &mut self.client
    }

    fn prepared(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        // A bounded cache: a connection that runs ever new statements keeps the last ones.
        if self.statements.len() >= 256 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Notes a failure inside a transaction (see [`PgConn::failed`]).
    fn noting<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() && self.in_transaction {
            self.failed = true;
        }
        result
    }

    fn bind(stmt: &Statement, values: Values) -> Result<Vec<Box<dyn ToSql + Sync>>> {
        let types = stmt.params();
        if types.len() != values.0.len() {
            return Err(Error::Database(format!(
                "a statement takes {} values, {} were given",
                types.len(),
                values.0.len()
            )));
        }
        values
            .0
            .into_iter()
            .zip(types)
            .enumerate()
            .map(|(i, (v, ty))| param(v, ty).map_err(|why| bind_error(i + 1, ty, &why)))
            .collect()
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // A connection goes back to the pool outside any transaction.
        if self.in_transaction {
            let _ = self.batch_here("ROLLBACK");
        }
    }
}

fn bind_error(at: usize, ty: &Type, why: &str) -> Error {
    Error::Database(format!("value ${at} cannot be sent as {ty}: {why}"))
}

fn cell(row: &postgres::Row, i: usize) -> Result<Cell> {
    let ty = row.columns()[i].type_();
    let cell = match *ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(Cell::Bool),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Cell::Int(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Cell::Int(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
        Type::OID => row
            .try_get::<_, Option<u32>>(i)?
            .map(|v| Cell::Int(v.into())),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| Cell::Real(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Cell::Real),
        // Exact, as text; whole numbers that fit are integers.
        Type::NUMERIC => row.try_get::<_, Option<Decimal>>(i)?.map(|d| {
            if d.fract().is_zero() {
                i64::try_from(d).map_or_else(|_| Cell::Text(d.to_string()), Cell::Int)
            } else {
                Cell::Text(d.to_string())
            }
        }),
        Type::TIMESTAMP => row.try_get::<_, Option<NaiveDateTime>>(i)?.map(Cell::Time),
        Type::TIMESTAMPTZ => row
            .try_get::<_, Option<DateTime<Utc>>>(i)?
            .map(|t| Cell::Time(t.naive_utc())),
        Type::DATE => row
            .try_get::<_, Option<NaiveDate>>(i)?
            .map(|d| Cell::Time(d.and_time(chrono::NaiveTime::MIN))),
        _ => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
    };
    Ok(cell.unwrap_or(Cell::Null))
}

/// Whether this thread drives an async runtime, where the driver must not block.
fn on_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs `f` where the driver may block: here, or on a thread of its own when this thread
/// drives an async runtime.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if on_runtime() { elsewhere(f) } else { f() }
}

/// Runs `f` on a thread of its own and waits for it.
fn elsewhere<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// How many rows (or bulk-load chunks) wait in a channel between two threads.
const IN_FLIGHT: usize = 256;

impl PgConn {
    fn execute_here(&mut self, sql: &str, values: Values) -> Result<u64> {
        let stmt = self.prepared(sql)?;
        let params = PgConn::bind(&stmt, values)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        Ok(self.client.execute(&stmt, &refs)?)
    }

    /// Runs a query, passing each row's cells to `sink` until it returns an error.
    fn query_here(
        &mut self,
        sql: &str,
        values: Values,
        sink: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
    ) -> Result<()> {
        let stmt = self.prepared(sql)?;
        let params = PgConn::bind(&stmt, values)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let mut rows = self.client.query_raw(&stmt, refs)?;
        while let Some(row) = rows.next()? {
            let cells = (0..row.len())
                .map(|i| cell(&row, i))
                .collect::<Result<Vec<_>>>()?;
            sink(cells)?;
        }
        Ok(())
    }

    fn batch_here(&mut self, sql: &str) -> Result<()> {
        if on_runtime() {
            let client = &mut self.client;
            return elsewhere(move || client.batch_execute(sql)).map_err(Error::from);
        }
        Ok(self.client.batch_execute(sql)?)
    }
}

/// The sink's side hung up: it stopped reading rows.
fn hung_up() -> Error {
    Error::Database("the reader of a query's rows stopped".into())
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute_sql(&mut self, sql: &str, values: Values) -> Result<u64> {
        let result = if on_runtime() {
            elsewhere(|| self.execute_here(sql, values))
        } else {
            self.execute_here(sql, values)
        };
        self.noting(result)
    }

    fn query_sql(
        &mut self,
        sql: &str,
        values: Values,
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        if !on_runtime() {
            let result = self.query_here(sql, values, &mut |cells| each(Row(cells)));
            return self.noting(result);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Cell>>(IN_FLIGHT);
        let this = &mut *self;
        let result = std::thread::scope(|s| {
            // The sender moves to the producer, so the rows end when its query does.
            let producer = s.spawn(move || {
                this.query_here(sql, values, &mut |cells| {
                    tx.send(cells).map_err(|_| hung_up())
                })
            });
            let mut consumed = Ok(());
            for cells in &rx {
                if let Err(e) = each(Row(cells)) {
                    consumed = Err(e);
                    break;
                }
            }
            // Hanging up stops the producer at its next row.
            drop(rx);
            let produced = match producer.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            consumed.and(produced)
        });
        self.noting(result)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        let word = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match word.as_str() {
            "BEGIN" => {
                self.batch_here(sql)?;
                self.in_transaction = true;
                self.failed = false;
                Ok(())
            }
            "COMMIT" if self.failed => {
                self.in_transaction = false;
                self.failed = false;
                self.batch_here("ROLLBACK")?;
                Err(Error::Database(
                    "the transaction was rolled back: a statement in it failed".into(),
                ))
            }
            "COMMIT" | "ROLLBACK" => {
                self.in_transaction = false;
                self.failed = false;
                self.batch_here(sql)
            }
            _ => {
                let result = self.batch_here(sql);
                self.noting(result)
            }
        }
    }

    fn load(
        &mut self,
        table: &str,
        columns: &[&str],
        fill: &mut dyn FnMut(&mut dyn RowWriter) -> Result<()>,
    ) -> Result<()> {
        let d = Dialect::Postgres;
        let names: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let copy = format!("COPY {} ({}) FROM STDIN", d.quote(table), names.join(", "));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(IN_FLIGHT);
        let client = &mut self.client;
        let copy_rows = move || -> Result<()> {
            let mut writer = client.copy_in(copy.as_str())?;
            for chunk in rx {
                match chunk {
                    Chunk::Data(bytes) => {
                        writer.write_all(&bytes).map_err(|source| Error::Io {
                            context: "cannot write rows to the database".into(),
                            source,
                        })?;
                    }
                    Chunk::End => {
                        writer.finish()?;
                        return Ok(());
                    }
                }
            }
            // The rows' writer stopped without an end: dropping the copy unfinished aborts
            // it.
            Err(Error::Database(
                "the bulk load stopped before its end".into(),
            ))
        };
        let result = std::thread::scope(|s| {
            let copier = s.spawn(copy_rows);
            let mut rows = CopyRows {
                tx,
                buffer: Vec::with_capacity(CHUNK_BYTES),
                line: String::with_capacity(256),
            };
            let filled = fill(&mut rows).and_then(|()| rows.end());
            drop(rows);
            let copied = match copier.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            // The rows' own error says more than the copy's consequence of it.
            filled.and(copied)
        });
        self.noting(result)
    }
}

/// What crosses from the rows' writer to the `COPY`.
enum Chunk {
    Data(Vec<u8>),
    End,
}

/// Bytes of `COPY` text sent at once.
const CHUNK_BYTES: usize = 1 << 16;

/// A bulk load on PostgreSQL: rows in `COPY ... FROM STDIN`'s text format, sent in chunks
/// to the thread that writes the copy (the driver's copy writer blocks, so it may have to
/// run off an async runtime's thread).
struct CopyRows {
    tx: std::sync::mpsc::SyncSender<Chunk>,
    buffer: Vec<u8>,
    line: String,
}

impl CopyRows {
    fn send(&mut self, chunk: Chunk) -> Result<()> {
        self.tx
            .send(chunk)
            .map_err(|_| Error::Database("the bulk load's copy stopped".into()))
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.send(Chunk::Data(bytes))
    }

    fn end(&mut self) -> Result<()> {
        self.flush()?;
        self.send(Chunk::End)
    }
}

impl RowWriter for CopyRows {
    fn row(&mut self, values: &[Datum<'_>]) -> Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.line.push('\t');
            }
            match *v {
                Datum::Null => self.line.push_str("\\N"),
                Datum::Int(x) => {
                    let _ = write!(self.line, "{x}");
                }
                Datum::Real(x) => {
                    let _ = write!(self.line, "{x}");
                }
                Datum::Text(text) => {
                    for c in text.chars() {
                        match c {
                            '\\' => self.line.push_str("\\\\"),
                            '\n' => self.line.push_str("\\n"),
                            '\r' => self.line.push_str("\\r"),
                            '\t' => self.line.push_str("\\t"),
                            c => self.line.push(c),
                        }
                    }
                }
            }
        }
        self.line.push('\n');
        self.buffer.extend_from_slice(self.line.as_bytes());
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

/// A time written as text: `YYYY-MM-DD HH:MM:SS[.fff]`, `YYYY-MM-DDTHH:MM:SS`, or a date.
fn parse_time_text(text: &str) -> std::result::Result<NaiveDateTime, String> {
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN))
        .map_err(|_| format!("{text:?} is not a time"))
}

/// `value` as the Rust type the driver sends as `ty`.
fn param(value: Value, ty: &Type) -> std::result::Result<Box<dyn ToSql + Sync>, String> {
    fn boxed<T: ToSql + Sync + 'static>(v: Option<T>) -> Box<dyn ToSql + Sync> {
        Box::new(v)
    }
    let int = integer_of(&value);
    let float = float_of(&value);
    let text = text_of(&value);
    let is_null = value_is_null(&value);
    let out: Box<dyn ToSql + Sync> = match *ty {
        _ if is_null => null_of(ty),
        Type::INT8 => boxed(Some(int.ok_or("not an integer")?)),
        Type::INT4 => boxed(Some(
            i32::try_from(int.ok_or("not an integer")?).map_err(|_| "out of range")?,
        )),
        Type::INT2 => boxed(Some(
            i16::try_from(int.ok_or("not an integer")?).map_err(|_| "out of range")?,
        )),
        Type::FLOAT8 => boxed(Some(float.ok_or("not a number")?)),
        Type::FLOAT4 => boxed(Some(float.ok_or("not a number")? as f32)),
        Type::NUMERIC => {
            // Through the number's shortest text: 999.7 stays 999.7, not its binary value.
            let text = match (&value, int) {
                (_, Some(i)) => i.to_string(),
                (Value::Double(Some(f)), _) => f.to_string(),
                (Value::Float(Some(f)), _) => f.to_string(),
                _ => text.ok_or("not a number")?,
            };
            boxed(Some(Decimal::from_str(&text).map_err(|e| e.to_string())?))
        }
        Type::BOOL => boxed(Some(match value {
            Value::Bool(Some(b)) => b,
            _ => int.ok_or("not a boolean")? != 0,
        })),
        Type::TIMESTAMP => boxed(Some(match value {
            Value::ChronoDateTime(Some(t)) => t,
            Value::ChronoDateTimeUtc(Some(t)) => t.naive_utc(),
            _ => parse_time_text(&text.ok_or("not a time")?)?,
        })),
        Type::TIMESTAMPTZ => boxed(Some(match value {
            Value::ChronoDateTime(Some(t)) => t.and_utc(),
            Value::ChronoDateTimeUtc(Some(t)) => t,
            _ => parse_time_text(&text.ok_or("not a time")?)?.and_utc(),
        })),
        Type::DATE => boxed(Some(match value {
            Value::ChronoDate(Some(d)) => d,
            Value::ChronoDateTime(Some(t)) => t.date(),
            _ => parse_time_text(&text.ok_or("not a date")?)?.date(),
        })),
        _ => boxed(Some(text.ok_or("not text")?)),
    };
    Ok(out)
}

fn value_is_null(value: &Value) -> bool {
    matches!(
        value,
        Value::Bool(None)
            | Value::TinyInt(None)
            | Value::SmallInt(None)
            | Value::Int(None)
            | Value::BigInt(None)
            | Value::TinyUnsigned(None)
            | Value::SmallUnsigned(None)
            | Value::Unsigned(None)
            | Value::BigUnsigned(None)
            | Value::Float(None)
            | Value::Double(None)
            | Value::String(None)
            | Value::Char(None)
            | Value::Bytes(None)
            | Value::ChronoDate(None)
            | Value::ChronoTime(None)
            | Value::ChronoDateTime(None)
            | Value::ChronoDateTimeUtc(None)
    )
}

/// A typed null for a parameter of type `ty`.
fn null_of(ty: &Type) -> Box<dyn ToSql + Sync> {
    match *ty {
        Type::INT8 => Box::new(None::<i64>),
        Type::INT4 => Box::new(None::<i32>),
        Type::INT2 => Box::new(None::<i16>),
        Type::FLOAT8 => Box::new(None::<f64>),
        Type::FLOAT4 => Box::new(None::<f32>),
        Type::NUMERIC => Box::new(None::<Decimal>),
        Type::BOOL => Box::new(None::<bool>),
        Type::TIMESTAMP => Box::new(None::<NaiveDateTime>),
        Type::TIMESTAMPTZ => Box::new(None::<DateTime<Utc>>),
        Type::DATE => Box::new(None::<NaiveDate>),
        _ => Box::new(None::<String>),
    }
}

fn integer_of(value: &Value) -> Option<i64> {
    match *value {
        Value::Bool(Some(b)) => Some(i64::from(b)),
        Value::TinyInt(Some(v)) => Some(v.into()),
        Value::SmallInt(Some(v)) => Some(v.into()),
        Value::Int(Some(v)) => Some(v.into()),
        Value::BigInt(Some(v)) => Some(v),
        Value::TinyUnsigned(Some(v)) => Some(v.into()),
        Value::SmallUnsigned(Some(v)) => Some(v.into()),
        Value::Unsigned(Some(v)) => Some(v.into()),
        Value::BigUnsigned(Some(v)) => i64::try_from(v).ok(),
        Value::Double(Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        Value::String(Some(ref s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float_of(value: &Value) -> Option<f64> {
    match *value {
        Value::Float(Some(f)) => Some(f.into()),
        Value::Double(Some(f)) => Some(f),
        Value::String(Some(ref s)) => s.trim().parse().ok(),
        _ => integer_of(value).map(|i| i as f64),
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(Some(s)) => Some(s.clone()),
        Value::Char(Some(c)) => Some(c.to_string()),
        Value::ChronoDateTime(Some(t)) => Some(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Value::ChronoDate(Some(d)) => Some(d.format("%Y-%m-%d").to_string()),
        Value::Double(Some(f)) => Some(f.to_string()),
        Value::Float(Some(f)) => Some(f.to_string()),
        _ => integer_of(value).map(|i| i.to_string()),
    }
}
