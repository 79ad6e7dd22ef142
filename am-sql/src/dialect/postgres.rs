//! PostgreSQL: same statements through sea-query's Postgres builder; DDL is transactional, so
//! the swap is a drop and a rename inside the refresh's transaction.

use am_core::rule::RuleId;
use sea_query::{PostgresQueryBuilder, SelectStatement, TableCreateStatement, Values};

use super::{Dialect, insert_next};

/// The PostgreSQL dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn inline(&self, select: &SelectStatement) -> String {
        select.to_string(PostgresQueryBuilder)
    }

    fn build(&self, select: &SelectStatement) -> (String, Values) {
        select.build(PostgresQueryBuilder)
    }

    fn table(&self, create: &TableCreateStatement) -> String {
        create.to_string(PostgresQueryBuilder)
    }

    fn fill_next(&self, rule_id: RuleId, select: SelectStatement) -> (String, Values) {
        insert_next(rule_id, select).build(PostgresQueryBuilder)
    }
}
