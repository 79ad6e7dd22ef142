//! PostgreSQL: same statements through sea-query's Postgres builder. A rename takes an
//! exclusive lock that blocks readers until commit, so the new members are built in
//! `segment_output_<id>__next` first and the renames come last, inside the refresh's
//! transaction (DDL is transactional): readers wait only for the swap itself.

use am_core::rule::RuleId;
use sea_query::{PostgresQueryBuilder, SelectStatement, TableCreateStatement, Values};

use crate::catalog::segment_table_name;

use super::{
    Dialect, Rebuild, create_segment_table, insert_members, next_table_name, previous_table_name,
};

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

    fn rebuild(&self, rule_id: RuleId, has_live: bool, select: SelectStatement) -> Rebuild {
        let live = segment_table_name(rule_id);
        let next = next_table_name(rule_id);
        let previous = previous_table_name(rule_id);
        let mut after = vec![format!("DROP TABLE IF EXISTS \"{previous}\"")];
        if has_live {
            after.push(format!("ALTER TABLE \"{live}\" RENAME TO \"{previous}\""));
        }
        after.push(format!("ALTER TABLE \"{next}\" RENAME TO \"{live}\""));
        Rebuild {
            before: vec![
                format!("DROP TABLE IF EXISTS \"{next}\""),
                self.table(&create_segment_table(&next)),
            ],
            fill: insert_members(&next, select).build(PostgresQueryBuilder),
            new_table: next,
            old_table: has_live.then_some(live),
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_query::{Expr, ExprTrait, Query};

    use super::*;

    #[test]
    fn the_new_members_are_built_aside_and_renamed_in_last() {
        let mut select = Query::select();
        select
            .column("user_id")
            .from("users")
            .and_where(Expr::col("city_tier").eq(1));
        let rebuild = Postgres.rebuild(7, true, select);
        assert_eq!(
            rebuild.before,
            [
                r#"DROP TABLE IF EXISTS "segment_output_7__next""#,
                r#"CREATE TABLE "segment_output_7__next" ( "user_id" integer PRIMARY KEY )"#,
            ]
        );
        assert_eq!(
            rebuild.fill.0,
            r#"INSERT INTO "segment_output_7__next" ("user_id") SELECT "user_id" FROM "users" WHERE "city_tier" = $1 ORDER BY 1 ASC"#
        );
        assert_eq!(rebuild.new_table, "segment_output_7__next");
        assert_eq!(rebuild.old_table.as_deref(), Some("segment_output_7"));
        assert_eq!(
            rebuild.after,
            [
                r#"DROP TABLE IF EXISTS "segment_output_7__previous""#,
                r#"ALTER TABLE "segment_output_7" RENAME TO "segment_output_7__previous""#,
                r#"ALTER TABLE "segment_output_7__next" RENAME TO "segment_output_7""#,
            ]
        );
    }
}
