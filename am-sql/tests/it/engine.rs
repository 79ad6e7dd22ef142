//! The SQL engine against the contract's semantics: money to the cent, users without
//! transactions, inclusive windows, nulls, case-insensitive text tests, explicit dependencies,
//! atomic swaps and failures that leave the old segment untouched.

use std::collections::{BTreeMap, BTreeSet};

use am_core::evaluate::Dataset;
use am_core::expr::{
    CmpOp, Expr, Pred, Scope, Source, TIMESTAMP_FORMAT, Test, Timestamp, Value, Window,
};
use am_core::field::Field;
use am_core::plan::{Plan, PlanNode, SetExpr};
use am_core::rule::{CheckedRule, Operation, RuleId};
use am_sql::progress::NoProgress;
use am_sql::refresh::{
    EngineRule, NodeStatus, RefreshReport, RefreshRequest, RefreshTargets, refresh_plan,
};
use am_sql::render::segments_read;
use am_sql::runs::RunTrigger;
use am_sql::store::Store;
use rusqlite::{Connection, params};
use tempfile::TempDir;

/// A fresh database in a temporary directory.
pub(crate) struct Db {
    pub dir: TempDir,
    pub store: Store,
    pub conn: Connection,
}

pub(crate) fn new_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("am.db")).unwrap();
    let conn = store.connection().unwrap();
    Db { dir, store, conn }
}

pub(crate) fn ts(s: &str) -> Timestamp {
    Timestamp::parse_from_str(s, TIMESTAMP_FORMAT).unwrap()
}

fn text(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.format(TIMESTAMP_FORMAT).to_string())
}

/// Writes a dataset the way an ETL job would: amounts as decimal numbers, times as text.
/// Foreign keys are off on this connection, since random data has transactions of users
/// that do not exist.
pub(crate) fn load_dataset(conn: &Connection, ds: &Dataset) {
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    for u in ds.users() {
        conn.execute(
            "INSERT INTO users (user_id, name, email, city_tier, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.user_id, u.name, u.email, u.city_tier, text(u.created_at)],
        )
        .unwrap();
    }
    for t in ds.credit_card() {
        conn.execute(
            "INSERT INTO credit_card_transactions (transaction_id, user_id, amount, merchant, category, transaction_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.transaction_id, t.user_id, t.amount.map(|c| c as f64 / 100.0), t.merchant, t.category, text(t.transaction_date)],
        )
        .unwrap();
    }
    for t in ds.upi() {
        conn.execute(
            "INSERT INTO upi_transactions (transaction_id, user_id, amount, description, category, transaction_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.transaction_id, t.user_id, t.amount.map(|c| c as f64 / 100.0), t.description, t.category, text(t.transaction_date)],
        )
        .unwrap();
    }
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
}

/// A row in `rule_table` for the runs and catalog rows to refer to.
pub(crate) fn insert_rule_row(conn: &Connection, id: RuleId, name: &str) {
    conn.execute(
        "INSERT INTO rule_table (id, rule_name, conditions, depends_on, created_at, updated_at, version)
         VALUES (?1, ?2, 'null', '[]', '2025-01-01 00:00:00', '2025-01-01 00:00:00', 1)",
        params![id, name],
    )
    .unwrap();
}

pub(crate) fn checked(
    condition: Option<Expr>,
    depends_on: Vec<RuleId>,
    operation: Option<Operation>,
) -> CheckedRule {
    CheckedRule {
        name: String::new(),
        condition,
        window: Window::UNBOUNDED,
        depends_on,
        operation,
        schedule: None,
    }
}

/// Rules with hand-made computations, in the given (dependency) order.
pub(crate) struct Case {
    pub rules: BTreeMap<RuleId, EngineRule>,
    pub plan: Plan,
}

impl Case {
    pub(crate) fn new() -> Self {
        Case {
            rules: BTreeMap::new(),
            plan: Plan::default(),
        }
    }

    /// Adds rule `id` computed by `compute` (its reads become its upstream).
    pub(crate) fn add(
        &mut self,
        conn: &Connection,
        id: RuleId,
        rule: CheckedRule,
        compute: SetExpr,
    ) {
        let name = format!("rule {id}");
        insert_rule_row(conn, id, &name);
        let mut upstream = BTreeSet::new();
        segments_read(&compute, &mut upstream);
        self.plan.nodes.push(PlanNode {
            rule_id: id,
            rule_name: name.clone(),
            compute,
            upstream: upstream.into_iter().collect(),
            reuse: None,
        });
        self.rules.insert(
            id,
            EngineRule {
                id,
                name,
                description: None,
                version: 1,
                rule,
            },
        );
    }

    /// Adds rule `id` computed directly from its own definition.
    pub(crate) fn add_direct(&mut self, conn: &Connection, id: RuleId, rule: CheckedRule) {
        let compute = am_core::evaluate::rule_set_expr(&rule);
        self.add(conn, id, rule, compute);
    }

    pub(crate) fn refresh(&self, conn: &mut Connection, as_of: Timestamp) -> RefreshReport {
        let all: BTreeSet<RuleId> = self.rules.keys().copied().collect();
        let request = RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli);
        refresh_plan(
            conn,
            &self.plan,
            &all,
            &self.rules,
            &request,
            &all,
            as_of,
            &NoProgress,
        )
        .unwrap()
    }
}

pub(crate) fn members(conn: &Connection, rule_id: RuleId) -> BTreeSet<i64> {
    let mut stmt = conn
        .prepare(&format!("SELECT user_id FROM segment_output_{rule_id}"))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Runs a stored `sql_query` as pasted into the shell.
pub(crate) fn replay(conn: &Connection, rule_id: RuleId) -> BTreeSet<i64> {
    let sql: String = conn
        .query_row(
            "SELECT sql_query FROM segment_catalog WHERE rule_id = ?1",
            [rule_id],
            |r| r.get(0),
        )
        .unwrap();
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn agg(field: Field, scope: Scope, test: Test) -> Expr {
    Expr::Pred(Pred::Aggregate { field, scope, test })
}

fn all_scope() -> Scope {
    Scope {
        source: Source::All,
        window: Window::UNBOUNDED,
        filter: None,
    }
}

fn tx(field: Field, test: Test) -> Expr {
    Expr::Pred(Pred::Tx { field, test })
}

fn profile(field: Field, test: Test) -> Expr {
    Expr::Pred(Pred::Profile { field, test })
}

fn ids(xs: &[i64]) -> BTreeSet<i64> {
    xs.iter().copied().collect()
}

const AS_OF: &str = "2025-06-30 12:00:00";

/// Users 1..=5; user 1 pays 0.10 + 0.20 + 999.70 by card, user 2 exactly 1000.01 by UPI,
/// user 3 999.99, users 4 and 5 nothing.
fn money_db() -> Db {
    let db = new_db();
    db.conn
        .execute_batch(
            "INSERT INTO users (user_id, name, email, city_tier, created_at) VALUES
               (1, 'Asha Rao', 'asha@example.com', 1, '2025-01-01 00:00:00'),
               (2, 'Ben Li', 'ben@test.org', 2, '2025-01-02 00:00:00'),
               (3, 'asha k', NULL, NULL, NULL),
               (4, NULL, 'x@example.com', 3, '2025-01-03 00:00:00'),
               (5, 'Cy', NULL, 1, NULL);
             INSERT INTO credit_card_transactions (user_id, amount, merchant, category, transaction_date) VALUES
               (1, 0.10, 'Acme Air', 'Travel', '2025-06-01 00:00:00'),
               (1, 0.20, 'Acme Air', 'Travel', '2025-06-15 10:00:00'),
               (1, 999.70, 'Globex', 'Travel', '2025-06-30 12:00:00'),
               (3, 999.99, 'acme', 'Food', '2025-05-31 23:59:59');
             INSERT INTO upi_transactions (user_id, amount, description, category, transaction_date) VALUES
               (2, 1000.01, 'Rent', 'Groceries', '2025-06-30 00:00:00');",
        )
        .unwrap();
    db
}

/// Refreshes one condition as rule 1 and returns its members (checking the stored SQL too).
fn members_of(db: &mut Db, condition: Expr) -> BTreeSet<i64> {
    db.conn.execute_batch("DELETE FROM segment_catalog; DELETE FROM refresh_runs; DELETE FROM rule_table; DROP TABLE IF EXISTS segment_output_1;").unwrap();
    let mut case = Case::new();
    case.add_direct(&db.conn, 1, checked(Some(condition), vec![], None));
    let report = case.refresh(&mut db.conn, ts(AS_OF));
    assert!(report.succeeded(), "{report:?}");
    let got = members(&db.conn, 1);
    assert_eq!(
        replay(&db.conn, 1),
        got,
        "stored sql_query disagrees with the segment"
    );
    got
}

#[test]
fn money_is_exact_to_the_cent() {
    let mut db = money_db();
    let spend = |op, cents| {
        agg(
            Field::TotalSpend,
            all_scope(),
            Test::Cmp(op, Value::Money(cents)),
        )
    };
    assert_eq!(members_of(&mut db, spend(CmpOp::Ge, 100_000)), ids(&[1, 2]));
    assert_eq!(members_of(&mut db, spend(CmpOp::Gt, 100_000)), ids(&[2]));
    assert_eq!(members_of(&mut db, spend(CmpOp::Eq, 100_000)), ids(&[1]));
    // avg of user 1 is 1000.00 / 3 = 333.333..: not equal to 333.33, above it.
    let avg = |op, cents| {
        agg(
            Field::AvgTransactionAmount,
            all_scope(),
            Test::Cmp(op, Value::Money(cents)),
        )
    };
    assert_eq!(members_of(&mut db, avg(CmpOp::Eq, 33_333)), ids(&[]));
    assert_eq!(members_of(&mut db, avg(CmpOp::Gt, 33_333)), ids(&[1, 2, 3]));
}

#[test]
fn users_without_transactions_have_zero_spend_and_null_dates() {
    let mut db = money_db();
    let under_100 = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Lt, Value::Money(10_000)),
    );
    assert_eq!(members_of(&mut db, under_100), ids(&[4, 5]));
    let none = agg(
        Field::TransactionCount,
        all_scope(),
        Test::Cmp(CmpOp::Eq, Value::Int(0)),
    );
    assert_eq!(members_of(&mut db, none), ids(&[4, 5]));
    let no_last = agg(Field::LastTransactionDate, all_scope(), Test::IsNull);
    assert_eq!(members_of(&mut db, no_last), ids(&[4, 5]));
    // Null is not below anything: `max < 1000` misses users with no transactions...
    let max_small = agg(
        Field::MaxTransactionAmount,
        all_scope(),
        Test::Cmp(CmpOp::Lt, Value::Money(100_000)),
    );
    assert_eq!(members_of(&mut db, max_small.clone()), ids(&[1, 3]));
    // ...and `not` is the exact complement.
    assert_eq!(
        members_of(&mut db, Expr::Not(Box::new(max_small))),
        ids(&[2, 4, 5])
    );
}

#[test]
fn windows_include_both_ends_and_last_days_follows_as_of() {
    let mut db = money_db();
    let in_window = |window| {
        agg(
            Field::TransactionCount,
            Scope {
                source: Source::All,
                window,
                filter: None,
            },
            Test::Cmp(CmpOp::Ge, Value::Int(1)),
        )
    };
    let june = Window::Range {
        start: Some(ts("2025-06-01 00:00:00")),
        end: Some(ts("2025-06-30 12:00:00")),
    };
    assert_eq!(members_of(&mut db, in_window(june)), ids(&[1, 2]));
    let may_end = Window::Range {
        start: Some(ts("2025-05-31 23:59:59")),
        end: Some(ts("2025-05-31 23:59:59")),
    };
    assert_eq!(members_of(&mut db, in_window(may_end)), ids(&[3]));
    // [2025-05-31 12:00:00, 2025-06-30 12:00:00]
    assert_eq!(
        members_of(&mut db, in_window(Window::LastDays(30))),
        ids(&[1, 2, 3])
    );
    assert_eq!(
        members_of(&mut db, in_window(Window::LastDays(0))),
        ids(&[1])
    );
    let days = agg(
        Field::DaysSinceLastTransaction,
        all_scope(),
        Test::Cmp(CmpOp::Eq, Value::Int(30)),
    );
    assert_eq!(members_of(&mut db, days), ids(&[3]));
}

#[test]
fn null_profile_values_fail_every_test_but_is_null() {
    let mut db = money_db();
    let tier_ne_1 = profile(Field::CityTier, Test::Cmp(CmpOp::Ne, Value::Int(1)));
    assert_eq!(members_of(&mut db, tier_ne_1.clone()), ids(&[2, 4]));
    assert_eq!(
        members_of(&mut db, Expr::Not(Box::new(tier_ne_1))),
        ids(&[1, 3, 5])
    );
    let not_in = profile(Field::CityTier, Test::NotIn(vec![Value::Int(2)]));
    assert_eq!(members_of(&mut db, not_in), ids(&[1, 4, 5]));
    assert_eq!(
        members_of(&mut db, profile(Field::Email, Test::IsNull)),
        ids(&[3, 5])
    );
}

#[test]
fn contains_and_starts_with_ignore_ascii_case_and_equals_is_exact() {
    let mut db = money_db();
    assert_eq!(
        members_of(&mut db, profile(Field::Name, Test::Contains("ASHA".into()))),
        ids(&[1, 3])
    );
    assert_eq!(
        members_of(&mut db, profile(Field::Name, Test::StartsWith("b".into()))),
        ids(&[2])
    );
    assert_eq!(
        members_of(&mut db, profile(Field::Name, Test::StartsWith("%".into()))),
        ids(&[])
    );
    assert_eq!(
        members_of(
            &mut db,
            profile(
                Field::Name,
                Test::Cmp(CmpOp::Eq, Value::Text("asha rao".into()))
            )
        ),
        ids(&[])
    );
    // The seed's flat list: a transaction filter scoping the aggregate.
    let acme = Scope {
        source: Source::CreditCard,
        window: Window::UNBOUNDED,
        filter: Some(Box::new(tx(
            Field::Merchant,
            Test::StartsWith("ACME".into()),
        ))),
    };
    let has_acme = agg(
        Field::TransactionCount,
        acme,
        Test::Cmp(CmpOp::Ge, Value::Int(1)),
    );
    assert_eq!(members_of(&mut db, has_acme), ids(&[1, 3]));
}

#[test]
fn explicit_dependencies_combine_and_conditions_narrow() {
    let mut db = money_db();
    let tier1 = profile(Field::CityTier, Test::Cmp(CmpOp::Eq, Value::Int(1)));
    let spender = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Gt, Value::Money(0)),
    );
    let mut case = Case::new();
    case.add_direct(&db.conn, 1, checked(Some(tier1), vec![], None));
    case.add_direct(&db.conn, 2, checked(Some(spender), vec![], None));
    case.add_direct(
        &db.conn,
        3,
        checked(None, vec![1, 2], Some(Operation::Difference)),
    );
    case.add_direct(
        &db.conn,
        4,
        checked(None, vec![1, 2], Some(Operation::Union)),
    );
    case.add_direct(&db.conn, 5, checked(None, vec![1, 2], None));
    let narrow = profile(Field::UserId, Test::Cmp(CmpOp::Gt, Value::Int(1)));
    case.add_direct(
        &db.conn,
        6,
        checked(Some(narrow), vec![2, 1], Some(Operation::Union)),
    );
    let report = case.refresh(&mut db.conn, ts(AS_OF));
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(members(&db.conn, 1), ids(&[1, 5]));
    assert_eq!(members(&db.conn, 2), ids(&[1, 2, 3]));
    assert_eq!(members(&db.conn, 3), ids(&[5]));
    assert_eq!(members(&db.conn, 4), ids(&[1, 2, 3, 5]));
    assert_eq!(members(&db.conn, 5), ids(&[1]));
    assert_eq!(members(&db.conn, 6), ids(&[2, 3, 5]));
    for id in 1..=6 {
        assert_eq!(
            replay(&db.conn, id),
            members(&db.conn, id),
            "sql_query of rule {id}"
        );
    }
    let n6 = report.node(6).unwrap();
    assert_eq!(
        (n6.row_count, n6.entered, n6.left),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(n6.status, NodeStatus::Succeeded);
}

/// The catalog row of a rule, every column as text, for byte-for-byte comparison.
fn catalog_row(conn: &Connection, rule_id: RuleId) -> Vec<Option<String>> {
    let mut stmt = conn
        .prepare("SELECT * FROM segment_catalog WHERE rule_id = ?1")
        .unwrap();
    let n = stmt.column_count();
    stmt.query_row([rule_id], |r| {
        (0..n)
            .map(|i| {
                r.get_ref(i).map(|v| match v {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(i) => Some(format!("i{i}")),
                    rusqlite::types::ValueRef::Real(f) => Some(format!("r{f}")),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                })
            })
            .collect()
    })
    .unwrap()
}

/// The money data with rule 1, `total_spend > 0`, refreshed once.
fn spenders_built() -> (Db, Case) {
    let mut db = money_db();
    let spender = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Gt, Value::Money(0)),
    );
    let mut case = Case::new();
    case.add_direct(&db.conn, 1, checked(Some(spender), vec![], None));
    assert!(case.refresh(&mut db.conn, ts(AS_OF)).succeeded());
    (db, case)
}

#[test]
fn a_refresh_failing_midway_leaves_the_old_segment_and_catalog_row() {
    let (mut db, case) = spenders_built();
    let before_members = members(&db.conn, 1);
    let before_row = catalog_row(&db.conn, 1);
    assert_eq!(before_members, ids(&[1, 2, 3]));

    // New data changes the members; then the rebuild fails after the old table is renamed
    // aside and the new one built, when the catalog row is written.
    db.conn
        .execute_batch(
            "INSERT INTO credit_card_transactions (user_id, amount, category, transaction_date)
               VALUES (4, 5.00, 'Food', '2025-06-02 00:00:00');
             CREATE TRIGGER fail_catalog BEFORE UPDATE ON segment_catalog
             BEGIN SELECT RAISE(ABORT, 'forced failure for the test'); END;",
        )
        .unwrap();
    let report = case.refresh(&mut db.conn, ts(AS_OF));
    let node = report.node(1).unwrap();
    assert_eq!(node.status, NodeStatus::Failed);
    let error = node.error.clone().unwrap();
    assert!(error.contains("forced failure for the test"), "{error}");

    assert_eq!(members(&db.conn, 1), before_members);
    assert_eq!(catalog_row(&db.conn, 1), before_row);
    let previous: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'segment_output_1__previous'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(previous, 0, "the rename aside is rolled back too");
    let run = am_sql::runs::get_run(&db.conn, node.run_id.unwrap()).unwrap();
    assert_eq!(run.status, am_sql::runs::RunStatus::Failed);
    assert_eq!(run.error.as_deref(), Some(error.as_str()));

    // Once the cause is gone the next refresh publishes the new members.
    db.conn.execute_batch("DROP TRIGGER fail_catalog").unwrap();
    assert!(case.refresh(&mut db.conn, ts(AS_OF)).succeeded());
    assert_eq!(members(&db.conn, 1), ids(&[1, 2, 3, 4]));
}

#[test]
fn a_users_view_on_a_segment_keeps_reading_the_segment_across_refreshes() {
    let (mut db, case) = spenders_built();
    db.conn
        .execute_batch("CREATE VIEW vip AS SELECT user_id FROM segment_output_1")
        .unwrap();
    let view = |conn: &Connection| -> BTreeSet<i64> {
        let mut stmt = conn.prepare("SELECT user_id FROM vip").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    // Twice: the second rebuild drops the `__previous` table the first one made.
    for (amount, expected) in [(5.0, ids(&[1, 2, 3, 4])), (7.0, ids(&[1, 2, 3, 4, 5]))] {
        db.conn
            .execute(
                "INSERT INTO upi_transactions (user_id, amount, category, transaction_date)
                 VALUES (?1, ?2, 'Food', '2025-06-02 00:00:00')",
                params![if amount == 5.0 { 4 } else { 5 }, amount],
            )
            .unwrap();
        let report = case.refresh(&mut db.conn, ts(AS_OF));
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(view(&db.conn), expected);
    }
    let sql: String = db
        .conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'vip'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sql,
        "CREATE VIEW vip AS SELECT user_id FROM segment_output_1"
    );
}

#[test]
fn a_failed_rule_skips_the_rules_built_from_it() {
    let mut db = money_db();
    let tier1 = profile(Field::CityTier, Test::Cmp(CmpOp::Eq, Value::Int(1)));
    let mut case = Case::new();
    case.add_direct(&db.conn, 1, checked(Some(tier1), vec![], None));
    case.add_direct(&db.conn, 2, checked(None, vec![1], None));
    db.conn
        .execute_batch(
            "CREATE TRIGGER fail_catalog BEFORE INSERT ON segment_catalog WHEN NEW.rule_id = 1
             BEGIN SELECT RAISE(ABORT, 'rule 1 cannot be written'); END;",
        )
        .unwrap();
    let report = case.refresh(&mut db.conn, ts(AS_OF));
    assert_eq!(report.node(1).unwrap().status, NodeStatus::Failed);
    let skipped = report.node(2).unwrap();
    assert_eq!(skipped.status, NodeStatus::Skipped);
    assert_eq!(skipped.error.as_deref(), Some("upstream rule #1 failed"));
    let run = am_sql::runs::get_run(&db.conn, skipped.run_id.unwrap()).unwrap();
    assert_eq!(run.error.as_deref(), Some("upstream rule #1 failed"));
    let tables: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'segment_output_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}

/// Rule 1 reads users without transactions (`total_spend < 1000`), rule 2 a profile field next
/// to an aggregate: both are read from the refresh's per-user table of shared aggregates.
fn users_table_case(db: &Db) -> Case {
    let under = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Lt, Value::Money(100_000)),
    );
    let tier1_buyer = Expr::All(vec![
        agg(
            Field::MaxTransactionAmount,
            all_scope(),
            Test::Cmp(CmpOp::Gt, Value::Money(50_000)),
        ),
        profile(Field::CityTier, Test::Cmp(CmpOp::Eq, Value::Int(1))),
    ]);
    let mut case = Case::new();
    case.add_direct(&db.conn, 1, checked(Some(under), vec![], None));
    case.add_direct(&db.conn, 2, checked(Some(tier1_buyer), vec![], None));
    case
}

#[test]
fn rules_needing_users_read_one_shared_per_user_table() {
    let mut db = money_db();
    let case = users_table_case(&db);
    // What the refresh reads: the per-user table, not `users` and the aggregates joined.
    let needs = {
        let mut needs = am_sql::render::AggregateNeeds::new();
        for node in &case.plan.nodes {
            am_sql::render::collect_set_needs(&node.compute, &mut needs);
        }
        needs
    };
    let mut layout = am_sql::render::AggregateLayout::new(&needs);
    layout.plan_users_table(case.plan.nodes.iter().map(|n| &n.compute), ts(AS_OF));
    let ctx = am_sql::render::RenderContext {
        as_of: ts(AS_OF),
        aggregates: am_sql::render::Aggregates::Shared(&layout),
        base_first: false,
    };
    for node in &case.plan.nodes {
        let sql = am_sql::render::render_set(&node.compute, &ctx)
            .to_string(sea_query::SqliteQueryBuilder);
        assert!(sql.contains("FROM \"agg_users\""), "{sql}");
        assert!(!sql.contains("\"users\""), "{sql}");
    }

    let report = case.refresh(&mut db.conn, ts(AS_OF));
    assert!(report.succeeded(), "{report:?}");
    // User 1 spent exactly 1000.00, user 2 1000.01; 4 and 5 nothing.
    assert_eq!(members(&db.conn, 1), ids(&[3, 4, 5]));
    // User 1's largest payment is 999.70 and they are tier 1; user 2 is tier 2.
    assert_eq!(members(&db.conn, 2), ids(&[1]));
}

#[test]
fn a_profile_column_gone_fails_only_the_rules_that_read_it() {
    let mut db = money_db();
    let case = users_table_case(&db);
    // Someone else's migration renames a column rule 2 reads; the per-user table, which would
    // copy it, cannot be built, and rule 1 must not fail with it.
    db.conn
        .execute_batch("ALTER TABLE users RENAME COLUMN city_tier TO tier")
        .unwrap();
    let report = case.refresh(&mut db.conn, ts(AS_OF));
    let one = report.node(1).unwrap();
    assert_eq!(one.status, NodeStatus::Succeeded, "{one:?}");
    assert_eq!(members(&db.conn, 1), ids(&[3, 4, 5]));
    let two = report.node(2).unwrap();
    assert_eq!(two.status, NodeStatus::Failed);
    assert!(
        two.error.as_deref().unwrap_or("").contains("city_tier"),
        "{two:?}"
    );
}

#[test]
fn readers_never_see_an_empty_or_partial_segment() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (mut db, case) = spenders_built();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = db.store.clone();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let conn = store.connection().unwrap();
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let count: i64 = conn
                    .query_row("SELECT count(*) FROM segment_output_1", [], |r| r.get(0))
                    .unwrap();
                seen.push(count);
            }
            seen
        })
    };
    for _ in 0..30 {
        assert!(case.refresh(&mut db.conn, ts(AS_OF)).succeeded());
    }
    done.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|&c| c == 3), "a reader saw {seen:?}");
}

fn spec(name: &str, conditions: serde_json::Value) -> am_core::rule::RuleSpec {
    am_core::rule::RuleSpec {
        rule_name: name.into(),
        conditions,
        ..Default::default()
    }
}

fn refresh(store: &Store, targets: RefreshTargets) -> RefreshReport {
    let mut request = RefreshRequest::new(targets, RunTrigger::Cli);
    request.as_of = Some(ts(AS_OF));
    store.refresh(&request, &NoProgress).unwrap()
}

fn refreshed(report: &RefreshReport) -> Vec<RuleId> {
    report.nodes.iter().map(|n| n.rule_id).collect()
}

#[test]
fn store_refresh_plans_reuses_and_skips_fresh_segments() {
    let db = money_db();
    // Users without transactions, so the looser segment (3 members) is small enough to be
    // read member by member.
    add_users_without_transactions(&db.conn, 40);
    let store = &db.store;
    let (over_100, over_1000) = looser_and_stricter(store);
    let mut diff = spec("over 100 not 1000", serde_json::Value::Null);
    diff.depends_on = vec![over_100, over_1000];
    diff.operation = Some("DIFFERENCE".into());
    let diff = store.create_rule(&diff).unwrap();

    // The target brings what it is built from.
    let report = refresh(store, RefreshTargets::Rules(vec![over_1000]));
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(refreshed(&report), vec![over_100, over_1000]);
    let node = report.node(over_1000).unwrap();
    assert_eq!(
        node.reused_from,
        vec![over_100],
        "narrowing reuse of the looser bound"
    );
    assert_eq!(members(&db.conn, over_1000), ids(&[2]));
    assert_eq!(replay(&db.conn, over_1000), ids(&[2]));
    let catalog = am_sql::catalog::segment_for_rule(&db.conn, over_1000)
        .unwrap()
        .unwrap();
    assert_eq!(catalog.reused_from, vec![over_100]);
    assert!(
        !catalog.sql_query.contains("segment_output_"),
        "the stored query reads only the data tables: {}",
        catalog.sql_query
    );

    // Only what is not fresh: the rule never built.
    let report = refresh(store, RefreshTargets::Stale);
    assert_eq!(refreshed(&report), vec![diff]);
    assert_eq!(members(&db.conn, diff), ids(&[1, 3]));
    assert!(refresh(store, RefreshTargets::Stale).nodes.is_empty());
    let first = am_sql::catalog::segment_for_rule(&db.conn, diff)
        .unwrap()
        .unwrap()
        .id;
    let changes = store.membership_diff(first, 10).unwrap();
    assert_eq!(
        (changes.entered, changes.left),
        (vec![1, 3], vec![]),
        "first build: everyone entered"
    );

    // New data makes everything stale.
    db.conn
        .execute(
            "INSERT INTO upi_transactions (user_id, amount, category, transaction_date) VALUES (3, 0.02, 'Food', '2025-06-01 00:00:00')",
            [],
        )
        .unwrap();
    let report = refresh(store, RefreshTargets::Stale);
    assert_eq!(refreshed(&report), vec![over_100, over_1000, diff]);
    assert_eq!(members(&db.conn, over_1000), ids(&[2, 3]));
    assert_eq!(members(&db.conn, diff), ids(&[1]));
    // Who entered and who left at that refresh, against the members kept from before it.
    let segment_of = |rule| {
        am_sql::catalog::segment_for_rule(&db.conn, rule)
            .unwrap()
            .unwrap()
            .id
    };
    let changes = store.membership_diff(segment_of(over_1000), 10).unwrap();
    assert_eq!((changes.entered, changes.left), (vec![3], vec![]));
    let changes = store.membership_diff(segment_of(diff), 10).unwrap();
    assert_eq!((changes.entered_total, changes.left_total), (0, 1));
    assert_eq!((changes.entered, changes.left), (vec![], vec![3]));
    let changes = store.membership_diff(segment_of(diff), 0).unwrap();
    assert_eq!(
        (changes.entered_total, changes.left_total, changes.left),
        (0, 1, vec![])
    );
    let run = am_sql::runs::get_run(&db.conn, report.node(diff).unwrap().run_id.unwrap()).unwrap();
    assert_eq!(run.status, am_sql::runs::RunStatus::Succeeded);
    assert_eq!(run.row_count, Some(1));

    // Explain shows the rule with what it reads; preview counts without writing.
    let explain = store.explain(over_1000).unwrap();
    let explained: Vec<RuleId> = explain.nodes.iter().map(|n| n.rule_id).collect();
    assert_eq!(explained, vec![over_100, over_1000]);
    assert!(explain.nodes[1].reuse.is_some());
    assert!(explain.dot.starts_with("digraph"));
    let preview = store
        .preview(
            &spec(
                "preview",
                serde_json::json!([{"field": "total_spend", "operator": ">", "value": 2000}]),
            ),
            None,
            Some(ts(AS_OF)),
        )
        .unwrap();
    assert_eq!(preview.audience_size, 0);
    assert_eq!(preview.reuse.map(|r| r.parents), Some(vec![over_1000]));
    let mut narrowed = spec(
        "preview deps",
        serde_json::json!([{"field": "city_tier", "operator": "=", "value": 2}]),
    );
    narrowed.depends_on = vec![diff, over_1000];
    narrowed.operation = Some("UNION".into());
    assert_eq!(
        store
            .preview(&narrowed, None, Some(ts(AS_OF)))
            .unwrap()
            .audience_size,
        1
    );
}

fn add_users_without_transactions(conn: &Connection, n: i64) {
    conn.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
         INSERT INTO users (user_id, name) SELECT 1000 + i, 'no purchases' FROM k",
        [n],
    )
    .unwrap();
}

fn looser_and_stricter(store: &Store) -> (RuleId, RuleId) {
    let looser = store
        .create_rule(&spec(
            "over 100",
            serde_json::json!([{"field": "total_spend", "operator": ">", "value": 100}]),
        ))
        .unwrap();
    let stricter = store
        .create_rule(&spec(
            "over 1000",
            serde_json::json!([{"field": "total_spend", "operator": ">", "value": 1000}]),
        ))
        .unwrap();
    (looser, stricter)
}

#[test]
fn a_rule_reused_from_a_large_segment_is_evaluated_from_its_own_condition() {
    let db = money_db();
    let store = &db.store;
    let (looser, stricter) = looser_and_stricter(store);
    // The finder still answers the stricter rule from the looser one.
    let explained = store.explain(stricter).unwrap();
    let node = explained
        .nodes
        .iter()
        .find(|n| n.rule_id == stricter)
        .unwrap();
    assert_eq!(
        node.reuse.as_ref().map(|r| r.parents.clone()),
        Some(vec![looser])
    );

    // But the looser segment holds 3 of the 5 users: looking each one up costs more than the
    // scan of the aggregates the stricter bound needs anyway.
    let report = refresh(store, RefreshTargets::All);
    assert!(report.succeeded(), "{report:?}");
    let node = report.node(stricter).unwrap();
    assert_eq!(node.reused_from, Vec::<RuleId>::new());
    assert_eq!(members(&db.conn, looser), ids(&[1, 2, 3]));
    assert_eq!(members(&db.conn, stricter), ids(&[2]));
    assert_eq!(replay(&db.conn, stricter), ids(&[2]));
    let catalog = am_sql::catalog::segment_for_rule(&db.conn, stricter)
        .unwrap()
        .unwrap();
    assert!(catalog.reused_from.is_empty());
    assert!(
        !catalog.sql_query.contains("segment_output_"),
        "the stored SQL is the one that ran: {}",
        catalog.sql_query
    );

    // With many more users the same segment is small, and is read member by member.
    add_users_without_transactions(&db.conn, 40);
    let report = refresh(store, RefreshTargets::All);
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.node(stricter).unwrap().reused_from, vec![looser]);
    assert_eq!(members(&db.conn, stricter), ids(&[2]));
    assert_eq!(replay(&db.conn, stricter), ids(&[2]));
}

#[test]
fn a_small_segment_is_read_member_by_member_for_rules_that_need_users() {
    let db = money_db();
    add_users_without_transactions(&db.conn, 40);
    let store = &db.store;
    let tier_1 = store
        .create_rule(&spec(
            "tier 1",
            serde_json::json!([{"field": "city_tier", "operator": "=", "value": 1}]),
        ))
        .unwrap();
    // True for users without transactions, so it reads the per-user table.
    let quiet_tier_1 = store
        .create_rule(&spec(
            "quiet tier 1",
            serde_json::json!([
                {"field": "city_tier", "operator": "=", "value": 1},
                {"field": "total_spend", "operator": "<", "value": 100}
            ]),
        ))
        .unwrap();
    let report = refresh(store, RefreshTargets::All);
    assert!(report.succeeded(), "{report:?}");
    // Tier 1 is users 1 and 5 of 45: small, so the refresh reads it.
    assert_eq!(report.node(quiet_tier_1).unwrap().reused_from, vec![tier_1]);
    // User 1 spent 1000.00; user 5 nothing.
    assert_eq!(members(&db.conn, quiet_tier_1), ids(&[5]));
    assert_eq!(replay(&db.conn, quiet_tier_1), ids(&[5]));
}

#[test]
fn a_small_base_drives_the_filter_over_it() {
    let over_100 = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Gt, Value::Money(10_000)),
    );
    let mut needs = am_sql::render::AggregateNeeds::new();
    am_sql::render::collect_expr_needs(&over_100, &mut needs);
    let layout = am_sql::render::AggregateLayout::new(&needs);
    let filter = SetExpr::Filter(Box::new(SetExpr::Segment(7)), over_100);
    let sql = |base_first| {
        let ctx = am_sql::render::RenderContext {
            as_of: ts(AS_OF),
            aggregates: am_sql::render::Aggregates::Shared(&layout),
            base_first,
        };
        am_sql::render::render_set(&filter, &ctx).to_string(sea_query::SqliteQueryBuilder)
    };
    let table = &layout.tables[0].name;
    let scan_first = sql(false);
    assert!(
        scan_first.contains(&format!(
            "FROM \"{table}\" AS \"a0\" INNER JOIN \"segment_output_7\" AS \"b\""
        )),
        "{scan_first}"
    );
    let base_first = sql(true);
    assert!(
        base_first.contains(&format!(
            "SELECT \"b\".\"user_id\" FROM \"segment_output_7\" AS \"b\" CROSS JOIN \"{table}\" AS \"a0\" WHERE \"b\".\"user_id\" = \"a0\".\"user_id\" AND "
        )),
        "{base_first}"
    );
}

#[test]
fn preview_of_an_edited_rule_replaces_its_saved_version() {
    let db = money_db();
    let store = &db.store;
    let over_1000 = store
        .create_rule(&spec(
            "over 1000",
            serde_json::json!([{"field": "total_spend", "operator": ">", "value": 1000}]),
        ))
        .unwrap();
    let mut tier_2 = spec(
        "over 1000 tier 2",
        serde_json::json!([{"field": "city_tier", "operator": "=", "value": 2}]),
    );
    tier_2.depends_on = vec![over_1000];
    let tier_2 = store.create_rule(&tier_2).unwrap();
    let same = spec(
        "over 1000 again",
        serde_json::json!([{"field": "total_spend", "operator": ">", "value": 1000}]),
    );

    // A new rule with the saved conditions is answered from the saved segment...
    let new = store.preview(&same, None, Some(ts(AS_OF))).unwrap();
    assert_eq!(new.reuse.map(|r| r.parents), Some(vec![over_1000]));
    assert!(new.rule_id > tier_2, "a fresh id: {}", new.rule_id);
    assert_eq!(new.audience_size, 1);

    // ...but the same rule being edited is not answered from its own saved version.
    let edited = store
        .preview(&same, Some(over_1000), Some(ts(AS_OF)))
        .unwrap();
    assert_eq!(edited.rule_id, over_1000);
    assert_eq!(edited.reuse, None);
    assert_eq!(edited.audience_size, 1);
    let planned: Vec<(RuleId, &str)> = edited
        .plan
        .nodes
        .iter()
        .map(|n| (n.rule_id, n.rule_name.as_str()))
        .collect();
    assert_eq!(planned, vec![(over_1000, "over 1000 again")]);

    // The candidate's conditions, not the saved ones, decide the count: user 1's purchases
    // add up to exactly 1000.00.
    let loosened = spec(
        "over 1000",
        serde_json::json!([{"field": "total_spend", "operator": ">=", "value": 1000}]),
    );
    let loosened = store
        .preview(&loosened, Some(over_1000), Some(ts(AS_OF)))
        .unwrap();
    assert_eq!(loosened.audience_size, 2);
    assert_eq!(loosened.reuse, None);
    assert!(loosened.sql.contains(">= 1000"), "{}", loosened.sql);

    // Depending on a rule built from itself is a cycle through the edited rule.
    let mut cyclic = spec("over 1000", serde_json::Value::Null);
    cyclic.depends_on = vec![tier_2];
    match store.preview(&cyclic, Some(over_1000), Some(ts(AS_OF))) {
        Err(am_sql::Error::Plan(am_core::error::PlanError::Cycle { rules })) => {
            let ids: Vec<RuleId> = rules.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids, vec![over_1000, tier_2]);
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    // Without `editing` the same rule is new, and there is no cycle.
    let new_dependant = store.preview(&cyclic, None, Some(ts(AS_OF))).unwrap();
    assert_eq!(
        new_dependant.audience_size, 1,
        "user 2: over 1000 and tier 2, through two inlined segments"
    );

    // An unknown rule is not found; nothing was written by any preview.
    assert!(matches!(
        store.preview(&same, Some(424_242), Some(ts(AS_OF))),
        Err(am_sql::Error::NotFound { .. })
    ));
    let stored = store.rule(over_1000).unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.spec.rule_name, "over 1000");
    assert_eq!(store.all_rules().unwrap().len(), 2);
}

#[test]
fn a_stored_query_reads_no_segment_and_outlives_refreshes_of_what_it_was_built_from() {
    let db = money_db();
    let store = &db.store;
    let (over_100, over_1000) = looser_and_stricter(store);
    let mut diff = spec("over 100 not 1000", serde_json::Value::Null);
    diff.depends_on = vec![over_100, over_1000];
    diff.operation = Some("DIFFERENCE".into());
    let diff = store.create_rule(&diff).unwrap();
    assert!(refresh(store, RefreshTargets::All).succeeded());
    let before = members(&db.conn, diff);
    assert_eq!(replay(&db.conn, diff), before);

    // The upstream rule changes and only it is refreshed: its segment moves on, the child's
    // stored query still returns the child's members.
    let mut edited = spec(
        "over 1000",
        serde_json::json!([{"field": "total_spend", "operator": ">", "value": 5}]),
    );
    edited.description = Some("edited".into());
    store.update_rule(over_1000, &edited).unwrap();
    let report = refresh(store, RefreshTargets::Rules(vec![over_1000]));
    assert_eq!(refreshed(&report), vec![over_1000]);
    assert_ne!(
        members(&db.conn, over_1000),
        ids(&[2]),
        "the upstream segment changed"
    );
    let child = am_sql::catalog::segment_for_rule(&db.conn, diff)
        .unwrap()
        .unwrap();
    assert!(
        !child.sql_query.contains("segment_output_"),
        "{}",
        child.sql_query
    );
    assert_eq!(replay(&db.conn, diff), before);
}

/// Takes the database's write lock from another connection when the refresh starts building
/// segments, and holds it for `hold`.
struct LockAtSegments {
    path: std::path::PathBuf,
    hold: std::time::Duration,
    holder: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl am_sql::Progress for LockAtSegments {
    fn begin(&self, label: &str, _total: Option<u64>) {
        if label != "segments" {
            return;
        }
        let (path, hold) = (self.path.clone(), self.hold);
        let (locked, wait) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let conn = Connection::open(path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(hold);
            conn.execute_batch("ROLLBACK").unwrap();
        });
        wait.recv().unwrap();
        *self.holder.lock().unwrap() = Some(holder);
    }
    fn advance(&self, _n: u64) {}
    fn finish(&self, _message: &str) {}
}

#[test]
fn every_run_ends_with_its_error_when_the_database_stays_locked() {
    let db = money_db();
    let store = &db.store;
    let (a, b) = looser_and_stricter(store);
    // Longer than a swap's wait for the lock and the wait to record the failure after it.
    let locker = LockAtSegments {
        path: store.path().to_path_buf(),
        hold: std::time::Duration::from_millis(11_500),
        holder: std::sync::Mutex::new(None),
    };
    let mut request = RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli);
    request.as_of = Some(ts(AS_OF));
    let result = store.refresh(&request, &locker);
    locker
        .holder
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .join()
        .unwrap();
    assert!(
        matches!(result, Err(am_sql::Error::Busy)),
        "the refresh reports the lock: {result:?}"
    );
    let runs = store
        .list_runs(&am_sql::runs::RunFilter::default())
        .unwrap();
    let mut seen: Vec<(Option<RuleId>, am_sql::runs::RunStatus, Option<String>)> = runs
        .into_iter()
        .map(|r| (r.rule_id, r.status, r.error))
        .collect();
    seen.sort_by_key(|r| r.0);
    let busy = "the database is busy (another process is writing); try again";
    assert_eq!(
        seen,
        vec![
            (
                Some(a),
                am_sql::runs::RunStatus::Failed,
                Some(busy.to_string())
            ),
            (
                Some(b),
                am_sql::runs::RunStatus::Failed,
                Some(format!("the refresh stopped: {busy}"))
            ),
        ]
    );
}
