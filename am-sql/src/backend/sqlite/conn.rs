//! [`Conn`] over a rusqlite connection.

use rusqlite::types::ValueRef;
use sea_query::Values;

use crate::backend::Dialect;
use crate::conn::{Cell, Conn, Datum, Row, RowWriter};
use crate::error::Result;

/// One SQLite connection.
pub struct SqliteConn(pub(crate) rusqlite::Connection);

impl SqliteConn {
    /// The rusqlite connection, for the backend's own work (pragmas, the database path).
    pub(crate) fn inner(&self) -> &rusqlite::Connection {
        &self.0
    }
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Text(String::from_utf8_lossy(b).into_owned()),
    }
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute_sql(&mut self, sql: &str, values: Values) -> Result<u64> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let changed = stmt.execute(rusqlite::params_from_iter(super::bind::params(values)))?;
        Ok(changed as u64)
    }

    fn query_sql(
        &mut self,
        sql: &str,
        values: Values,
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(super::bind::params(values)))?;
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(cell(row.get_ref(i)?));
            }
            each(Row(cells))?;
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn load(
        &mut self,
        table: &str,
        columns: &[&str],
        fill: &mut dyn FnMut(&mut dyn RowWriter) -> Result<()>,
    ) -> Result<()> {
        let d = Dialect::Sqlite;
        let names: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let marks = vec!["?"; columns.len()].join(", ");
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            d.quote(table),
            names.join(", ")
        );
        let mut writer = Inserts(self.0.prepare_cached(&sql)?);
        fill(&mut writer)
    }
}

/// A bulk load on SQLite: one prepared insert run per row, inside the caller's transaction.
struct Inserts<'c>(rusqlite::CachedStatement<'c>);

impl RowWriter for Inserts<'_> {
    fn row(&mut self, values: &[Datum<'_>]) -> Result<()> {
        for (i, v) in values.iter().enumerate() {
            let at = i + 1;
            match *v {
                Datum::Null => self.0.raw_bind_parameter(at, rusqlite::types::Null)?,
                Datum::Int(x) => self.0.raw_bind_parameter(at, x)?,
                Datum::Real(x) => self.0.raw_bind_parameter(at, x)?,
                Datum::Text(x) => self.0.raw_bind_parameter(at, x)?,
            }
        }
        self.0.raw_execute()?;
        Ok(())
    }
}
