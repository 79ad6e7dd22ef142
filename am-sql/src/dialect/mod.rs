//! What differs per engine, and only that: which sea-query builder renders the statements,
//! and how a segment table is rebuilt and swapped in atomically.
//!
//! Plans render once into backend-free sea-query statements ([`crate::render`]); a dialect
//! turns them into its engine's SQL text. SQLite is the embedded default and the one the
//! refresh engine executes; PostgreSQL shows the seam holds for a server engine.

pub mod postgres;
pub mod sqlite;

use am_core::rule::RuleId;
use sea_query::{
    Alias, ColumnDef, Expr, InsertStatement, Order, Query, SelectStatement, Table,
    TableCreateStatement, Values,
};

use crate::catalog::segment_table_name;
use crate::render::USER_ID;

/// The SQL an engine needs to build and publish a segment.
pub trait Dialect {
    /// The engine's name, for explain output.
    fn name(&self) -> &'static str;

    /// A statement with values inlined (stored `sql_query`, explain).
    fn inline(&self, select: &SelectStatement) -> String;

    /// A statement with placeholders, and the values to bind.
    fn build(&self, select: &SelectStatement) -> (String, Values);

    /// A schema statement in this engine's SQL.
    fn table(&self, create: &TableCreateStatement) -> String;

    /// How this engine rebuilds `segment_output_<id>` from `select` inside one transaction,
    /// keeping the replaced members as `segment_output_<id>__previous` (what `diff` compares
    /// against). `has_live` says whether the segment table exists now.
    fn rebuild(&self, rule_id: RuleId, has_live: bool, select: SelectStatement) -> Rebuild;
}

/// The statements of one segment rebuild, run in order inside one transaction together with
/// the catalog update: `before`, then `fill`, then (after the engine has counted who entered
/// and left by comparing `new_table` with `old_table`) `after`.
#[derive(Debug, Clone)]
pub struct Rebuild {
    pub before: Vec<String>,
    /// `INSERT INTO <new_table> (user_id) <select> ORDER BY 1`, with placeholders and values.
    pub fill: (String, Values),
    /// The table holding the new members once `fill` has run.
    pub new_table: String,
    /// The table holding the old members then, if the segment existed.
    pub old_table: Option<String>,
    pub after: Vec<String>,
}

/// The table a refresh builds before swapping it in, where an engine needs one:
/// `segment_output_<id>__next`.
pub fn next_table_name(rule_id: RuleId) -> String {
    format!("{}__next", segment_table_name(rule_id))
}

/// The members a segment had before its last refresh: `segment_output_<id>__previous`.
pub fn previous_table_name(rule_id: RuleId) -> String {
    format!("{}__previous", segment_table_name(rule_id))
}

/// `CREATE TABLE <table> (user_id INTEGER PRIMARY KEY)`, the contract's shape of a segment
/// table.
pub fn create_segment_table(table: &str) -> TableCreateStatement {
    Table::create()
        .table(Alias::new(table))
        .col(ColumnDef::new(USER_ID).integer().primary_key())
        .to_owned()
}

/// `INSERT INTO <table> (user_id) <select> ORDER BY 1`.
///
/// In user_id order each row appends to the end of the table's B-tree. The order is free:
/// SQLite's plans for segment selects already produce it, and it turns `UNION`, `INTERSECT`
/// and `EXCEPT` into merges instead of temporary B-trees.
pub(crate) fn insert_members(table: &str, mut select: SelectStatement) -> InsertStatement {
    // Positional, so it names the one result column of a compound select too.
    select.order_by_expr(Expr::cust("1"), Order::Asc);
    let mut insert = Query::insert();
    insert.into_table(Alias::new(table)).columns([USER_ID]);
    // The select returns exactly one column, so the column counts always match.
    let _ = insert.select_from(select);
    insert
}
