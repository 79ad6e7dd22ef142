//! The data-version counter and the change log: the counter grows with every write to the
//! data tables, whoever makes it (our loaders, or users' ETL through the backend's triggers),
//! so a segment built at an older version is stale; the log records which users each write
//! touched, so a refresh can re-evaluate only those.
//!
//! The log holds every change after `changes_from`. A load that cannot list the users it
//! touched (our generator, a `TRUNCATE`) moves `changes_from` to its version and
//! empties the log, so segments built before it are rebuilt in full.

use std::collections::BTreeSet;

use sea_query::{Expr, ExprTrait, Order, Query};

use crate::conn::Conn;
use crate::error::Result;
use crate::schema::{DATA_CHANGES, DATA_VERSION};

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

/// The data version the change log starts after: it lists every user changed since.
pub fn changes_from(conn: &mut dyn Conn) -> Result<i64> {
    let q = Query::select()
        .column("changes_from")
        .from(DATA_VERSION)
        .and_where(Expr::col("id").eq(1))
        .to_owned();
    conn.row(&q)?.i64(0)
}

/// Starts the change log again at the current version, after a load whose users it does not
/// list: segments built before it can only be rebuilt in full.
pub fn restart_change_log(conn: &mut dyn Conn) -> Result<()> {
    conn.exec(&Query::delete().from_table(DATA_CHANGES).to_owned())?;
    let q = Query::update()
        .table(DATA_VERSION)
        .value("changes_from", Expr::col("version"))
        .and_where(Expr::col("id").eq(1))
        .to_owned();
    conn.exec(&q)?;
    Ok(())
}

/// Drops the changes every segment has seen (at or below `seen`, the oldest data version a
/// segment was built at), and beyond that the oldest changes while the log holds more than
/// `limit` rows, so it never grows without bound; segments older than what is dropped are
/// then rebuilt in full.
pub fn prune_change_log(conn: &mut dyn Conn, seen: i64, limit: u64) -> Result<()> {
    // The version of the `limit`-th newest row: everything older goes.
    let cut = Query::select()
        .column("version")
        .from(DATA_CHANGES)
        .order_by("version", Order::Desc)
        .limit(1)
        .offset(limit)
        .to_owned();
    let over = conn.rows(&cut)?.first().map(|r| r.i64(0)).transpose()?;
    let up_to = over.map_or(seen, |v| std::cmp::max(v, seen));
    let q = Query::update()
        .table(DATA_VERSION)
        .value("changes_from", Expr::val(up_to))
        .and_where(Expr::col("id").eq(1))
        .and_where(Expr::col("changes_from").lt(up_to))
        .to_owned();
    conn.exec(&q)?;
    conn.exec(
        &Query::delete()
            .from_table(DATA_CHANGES)
            .and_where(Expr::col("version").lte(up_to))
            .to_owned(),
    )?;
    Ok(())
}

/// Logs `users` as changed at the current version, for a load that paused the triggers.
pub fn log_changed_users(conn: &mut dyn Conn, users: &BTreeSet<i64>) -> Result<()> {
    let version = data_version(conn)?;
    let ids: Vec<i64> = users.iter().copied().collect();
    for chunk in ids.chunks(500) {
        let mut insert = Query::insert();
        insert
            .into_table(DATA_CHANGES)
            .columns(["version", "user_id"]);
        for &user in chunk {
            insert.values_panic([version.into(), user.into()]);
        }
        conn.exec(&insert)?;
    }
    Ok(())
}
