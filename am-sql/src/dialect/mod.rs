//! What differs per engine, and only that: which sea-query builder renders the statements,
//! how a segment's next table is created and filled, and how it is swapped in atomically.
//!
//! Plans render once into backend-free sea-query statements ([`crate::render`]); a dialect
//! turns them into its engine's SQL text. SQLite is the embedded default and the one the
//! refresh engine executes; PostgreSQL shows the seam holds for a server engine.

pub mod postgres;
pub mod sqlite;

use am_core::rule::RuleId;
use sea_query::{
    ColumnDef, Expr, Order, Query, SelectStatement, Table, TableCreateStatement, Values,
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

    /// The statements that replace a rule's segment table with its next table, keeping the
    /// replaced members as `segment_output_<id>__previous` (what `diff` compares against);
    /// the engine runs them inside one transaction together with the catalog update.
    /// Renames cost nothing, whatever the segment's size.
    fn swap_statements(&self, rule_id: RuleId, has_live: bool) -> Vec<String> {
        let live = segment_table_name(rule_id);
        let previous = previous_table_name(rule_id);
        let mut statements = vec![format!("DROP TABLE IF EXISTS \"{previous}\"")];
        if has_live {
            statements.push(format!("ALTER TABLE \"{live}\" RENAME TO \"{previous}\""));
        }
        statements.push(format!(
            "ALTER TABLE \"{}\" RENAME TO \"{live}\"",
            next_table_name(rule_id)
        ));
        statements
    }

    /// `INSERT INTO <next> (user_id) <select>`, with placeholders and values.
    fn fill_next(&self, rule_id: RuleId, select: SelectStatement) -> (String, Values);
}

/// The table a refresh builds before swapping it in: `segment_output_<id>__next`.
pub fn next_table_name(rule_id: RuleId) -> String {
    format!("{}__next", segment_table_name(rule_id))
}

/// The members a segment had before its last refresh: `segment_output_<id>__previous`.
pub fn previous_table_name(rule_id: RuleId) -> String {
    format!("{}__previous", segment_table_name(rule_id))
}

/// `CREATE TABLE segment_output_<id>__next (user_id INTEGER PRIMARY KEY)`, the contract's
/// shape of a segment table.
pub fn create_next_table(rule_id: RuleId) -> TableCreateStatement {
    Table::create()
        .table(next_table_name(rule_id))
        .col(ColumnDef::new(USER_ID).integer().primary_key())
        .to_owned()
}

/// `INSERT INTO segment_output_<id>__next (user_id) <select> ORDER BY 1`.
///
/// In user_id order each row appends to the end of the table's B-tree. The order is free:
/// SQLite's plans for segment selects already produce it, and it turns `UNION`, `INTERSECT`
/// and `EXCEPT` into merges instead of temporary B-trees.
pub(crate) fn insert_next(
    rule_id: RuleId,
    mut select: SelectStatement,
) -> sea_query::InsertStatement {
    // Positional, so it names the one result column of a compound select too.
    select.order_by_expr(Expr::cust("1"), Order::Asc);
    let mut insert = Query::insert();
    insert
        .into_table(next_table_name(rule_id))
        .columns([USER_ID]);
    // The select returns exactly one column, so the column counts always match.
    let _ = insert.select_from(select);
    insert
}
