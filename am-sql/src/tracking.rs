//! The data-version counter: it grows with every write to the data tables, whoever makes it
//! (our loaders, or users' ETL through the backend's triggers), so a segment built at an
//! older version is stale.

use sea_query::{Expr, ExprTrait, Query};

use crate::conn::Conn;
use crate::error::Result;
use crate::schema::DATA_VERSION;

/// The data tables' version now.
pub fn data_version(conn: &mut dyn Conn) -> Result<i64> {
    let q = Query::select()
        .column("version")
        .from(DATA_VERSION)
        .and_where(Expr::col("id").eq(1))
        .to_owned();
    conn.row(&q)?.i64(0)
}

/// Adds one to the data version; bulk loaders call it once instead of once per row.
pub fn bump_data_version(conn: &mut dyn Conn) -> Result<()> {
    let q = Query::update()
        .table(DATA_VERSION)
        .value("version", Expr::col("version").add(1))
        .and_where(Expr::col("id").eq(1))
        .to_owned();
    conn.exec(&q)?;
    Ok(())
}
