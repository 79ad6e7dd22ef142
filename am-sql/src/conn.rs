//! One connection to the database, whatever the engine: statements built with sea-query go
//! in with their values bound, rows come back as engine-neutral [`Cell`]s.
//!
//! Every module above the backends (rules, catalog, runs, refresh, import) talks to the
//! database through `&mut dyn Conn` only; each backend (`crate::backend::<name>`) implements
//! it over its driver and is the only code that names the driver's types.

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_query::{
    DeleteStatement, InsertStatement, SelectStatement, TableCreateStatement, UpdateStatement,
    Values,
};

use crate::backend::Dialect;
use crate::error::{Error, Result};

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// A `TIMESTAMP` (UTC), from engines that have the type.
    Time(NaiveDateTime),
    Bool(bool),
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Database(format!("result row has no column {i}")))
    }

    fn wrong(&self, i: usize, want: &str) -> Error {
        Error::Database(format!(
            "column {i} of a result row is {:?}, expected {want}",
            self.0.get(i)
        ))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            Cell::Bool(b) => Ok(Some(i64::from(*b))),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    pub fn bool(&self, i: usize) -> Result<bool> {
        match self.cell(i)? {
            Cell::Bool(b) => Ok(*b),
            Cell::Int(v) => Ok(*v != 0),
            _ => Err(self.wrong(i, "a boolean")),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.wrong(i, "text")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    /// A time we stored: a `TIMESTAMP`, or UTC text `YYYY-MM-DD HH:MM:SS[.fff]`.
    pub fn opt_time(&self, i: usize) -> Result<Option<NaiveDateTime>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Time(t) => Ok(Some(*t)),
            Cell::Text(s) => parse_time(s).map(Some),
            _ => Err(self.wrong(i, "a time")),
        }
    }

    pub fn time(&self, i: usize) -> Result<NaiveDateTime> {
        self.opt_time(i)?.ok_or_else(|| self.wrong(i, "a time"))
    }

    pub fn utc(&self, i: usize) -> Result<DateTime<Utc>> {
        Ok(self.time(i)?.and_utc())
    }

    pub fn opt_utc(&self, i: usize) -> Result<Option<DateTime<Utc>>> {
        Ok(self.opt_time(i)?.map(|t| t.and_utc()))
    }
}

/// Parses a time as our tables store it as text: UTC `YYYY-MM-DD HH:MM:SS`, with or without
/// a fraction of a second.
pub fn parse_time(text: &str) -> Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|e| Error::Database(format!("stored timestamp {text:?} is malformed: {e}")))
}

/// A connection to one database.
pub trait Conn: Send {
    /// The SQL dialect statements must be built in.
    fn dialect(&self) -> Dialect;

    /// Runs one statement with its values bound; returns the rows it changed.
    fn execute_sql(&mut self, sql: &str, values: Values) -> Result<u64>;

    /// Runs one query with its values bound, calling `each` for every row in order; stops
    /// at the first error `each` returns.
    fn query_sql(
        &mut self,
        sql: &str,
        values: Values,
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()>;

    /// Runs statements without parameters (DDL, transaction control).
    fn batch(&mut self, sql: &str) -> Result<()>;

    /// Bulk-loads rows into one of our tables: `fill` writes every row, each with a value
    /// per column, through the engine's fastest path (a prepared insert, `COPY`).
    fn load(
        &mut self,
        table: &str,
        columns: &[&str],
        fill: &mut dyn FnMut(&mut dyn RowWriter) -> Result<()>,
    ) -> Result<()>;
}

/// One value of a row being bulk-loaded, borrowed so a loader allocates nothing per row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Datum<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

/// Where a bulk load writes its rows.
pub trait RowWriter {
    fn row(&mut self, values: &[Datum<'_>]) -> Result<()>;
}

/// A statement sea-query can build for any of our dialects.
pub trait Statement {
    /// The SQL with placeholders, and the values to bind.
    fn build_for(&self, dialect: Dialect) -> (String, Values);
}

macro_rules! statement {
    ($($t:ty),*) => {$(
        impl Statement for $t {
            fn build_for(&self, dialect: Dialect) -> (String, Values) {
                dialect.build(self)
            }
        }
    )*};
}
statement!(
    SelectStatement,
    InsertStatement,
    UpdateStatement,
    DeleteStatement
);

impl Statement for TableCreateStatement {
    fn build_for(&self, dialect: Dialect) -> (String, Values) {
        (dialect.table(self), Values(Vec::new()))
    }
}

impl dyn Conn + '_ {
    /// Runs a statement; returns the rows it changed.
    pub fn exec(&mut self, stmt: &impl Statement) -> Result<u64> {
        let (sql, values) = stmt.build_for(self.dialect());
        self.execute_sql(&sql, values)
    }

    /// Every row of a query.
    pub fn rows(&mut self, stmt: &impl Statement) -> Result<Vec<Row>> {
        let (sql, values) = stmt.build_for(self.dialect());
        let mut out = Vec::new();
        self.query_sql(&sql, values, &mut |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query, if any.
    pub fn opt_row(&mut self, stmt: &impl Statement) -> Result<Option<Row>> {
        Ok(self.rows(stmt)?.into_iter().next())
    }

    /// The first row of a query, which must have one.
    pub fn row(&mut self, stmt: &impl Statement) -> Result<Row> {
        self.opt_row(stmt)?
            .ok_or_else(|| Error::Database("a query that returns a row returned none".into()))
    }

    /// How many rows a select returns.
    pub fn count(&mut self, select: &SelectStatement) -> Result<i64> {
        let q = sea_query::Query::select()
            .expr(sea_query::Expr::cust("count(*)"))
            .from_subquery(select.clone(), "counted")
            .to_owned();
        self.row(&q)?.i64(0)
    }

    /// Calls `each` for every row of a query, without holding them all.
    pub fn for_each(
        &mut self,
        stmt: &impl Statement,
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        let (sql, values) = stmt.build_for(self.dialect());
        self.query_sql(&sql, values, each)
    }
}

/// What a transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// It writes: the write lock (or its engine's equivalent) is taken at the start, so two
    /// writers cannot both read, then both write.
    Write,
    /// It only reads, from one snapshot.
    Read,
}

/// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
pub fn transaction<T>(
    conn: &mut dyn Conn,
    mode: TxMode,
    f: impl FnOnce(&mut dyn Conn) -> Result<T>,
) -> Result<T> {
    let begin = conn.dialect().begin(mode);
    conn.batch(begin)?;
    match f(conn) {
        Ok(value) => match conn.batch("COMMIT") {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(e)
            }
        },
        Err(e) => {
            // The error that matters is the first; a failed rollback leaves nothing behind
            // (the engine rolls back an unfinished transaction when the connection ends).
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}
