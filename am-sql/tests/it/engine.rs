//! The SQL engine against the contract's semantics: money to the cent, users without
//! transactions, inclusive windows, nulls, case-insensitive text tests, explicit dependencies,
//! atomic swaps and failures that leave the old segment untouched.

use std::collections::{BTreeMap, BTreeSet};

use am_core::evaluate::{Dataset, Transaction};
use am_core::expr::{
    CmpOp, Expr, Pred, Scope, Source, TIMESTAMP_FORMAT, Test, Timestamp, Value, Window,
};
use am_core::field::Field;
use am_core::plan::{Plan, PlanNode, SetExpr};
use am_core::rule::{CheckedRule, Operation, RuleId};
use am_sql::conn::Conn;
use am_sql::progress::NoProgress;
use am_sql::refresh::{
    EngineRule, NodeStatus, RefreshMode, RefreshReport, RefreshRequest, RefreshTargets,
    refresh_plan,
};
use am_sql::render::segments_read;
use am_sql::runs::RunTrigger;
use am_sql::store::Store;
use sea_query::{Alias, Asterisk, Expr as SqlExpr, ExprTrait, Query, Table};

use crate::engines::{
    Engine, TestDb, TxRow, UserRow, Write, fail_writes, ids_in, insert_card, insert_locations,
    insert_upi, insert_users, stop_failing, table_names, without_foreign_keys,
};

pub(crate) fn ts(s: &str) -> Timestamp {
    Timestamp::parse_from_str(s, TIMESTAMP_FORMAT).unwrap()
}

fn text(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.format(TIMESTAMP_FORMAT).to_string())
}

/// Writes a dataset the way an ETL job would: amounts as decimal numbers, times as text.
/// Foreign keys are off while it writes, since random data has transactions of users that
/// do not exist.
pub(crate) fn load_dataset(conn: &mut dyn Conn, ds: &Dataset) {
    let users: Vec<UserRow> = ds
        .users()
        .iter()
        .map(|u| UserRow {
            user_id: u.user_id,
            name: u.name.clone(),
            email: u.email.clone(),
            city_tier: u.city_tier,
            created_at: text(u.created_at),
        })
        .collect();
    let row = |t: &Transaction, text_column: &Option<String>| TxRow {
        transaction_id: t.transaction_id,
        user_id: t.user_id,
        amount: t.amount.map(|c| c as f64 / 100.0),
        text: text_column.clone(),
        category: t.category.clone(),
        transaction_date: text(t.transaction_date),
    };
    let card: Vec<TxRow> = ds
        .credit_card()
        .iter()
        .map(|t| row(t, &t.merchant))
        .collect();
    let upi: Vec<TxRow> = ds.upi().iter().map(|t| row(t, &t.description)).collect();
    let locations: Vec<(i64, f64, f64)> = ds
        .locations()
        .iter()
        .map(|(id, p)| (*id, p.lat, p.lon))
        .collect();
    without_foreign_keys(conn, |conn| {
        insert_users(conn, &users);
        insert_locations(conn, &locations);
        insert_card(conn, &card);
        insert_upi(conn, &upi);
    });
}

/// A row in `rule_table` for the runs and catalog rows to refer to.
pub(crate) fn insert_rule_row(conn: &mut dyn Conn, id: RuleId, name: &str) {
    let q = Query::insert()
        .into_table("rule_table")
        .columns([
            "id",
            "rule_name",
            "conditions",
            "depends_on",
            "created_at",
            "updated_at",
            "version",
        ])
        .values_panic([
            id.into(),
            name.into(),
            "null".into(),
            "[]".into(),
            "2025-01-01 00:00:00".into(),
            "2025-01-01 00:00:00".into(),
            1.into(),
        ])
        .to_owned();
    conn.exec(&q).unwrap();
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
        conn: &mut dyn Conn,
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
    pub(crate) fn add_direct(&mut self, conn: &mut dyn Conn, id: RuleId, rule: CheckedRule) {
        let compute = am_core::evaluate::rule_set_expr(&rule);
        self.add(conn, id, rule, compute);
    }

    pub(crate) fn refresh(&self, conn: &mut dyn Conn, as_of: Timestamp) -> RefreshReport {
        self.refresh_in(conn, as_of, RefreshMode::Auto)
    }

    /// Refreshes every rule, choosing between rebuilds and updates as `mode` says.
    pub(crate) fn refresh_in(
        &self,
        conn: &mut dyn Conn,
        as_of: Timestamp,
        mode: RefreshMode,
    ) -> RefreshReport {
        let all: BTreeSet<RuleId> = self.rules.keys().copied().collect();
        let mut request = RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli);
        request.mode = mode;
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
fn add_money_data(db: &mut TestDb) {
    let conn = db.conn();
    insert_users(
        conn,
        &[
            UserRow::new(1)
                .name("Asha Rao")
                .email("asha@example.com")
                .tier(1)
                .created("2025-01-01 00:00:00"),
            UserRow::new(2)
                .name("Ben Li")
                .email("ben@test.org")
                .tier(2)
                .created("2025-01-02 00:00:00"),
            UserRow::new(3).name("asha k"),
            UserRow::new(4)
                .email("x@example.com")
                .tier(3)
                .created("2025-01-03 00:00:00"),
            UserRow::new(5).name("Cy").tier(1),
        ],
    );
    insert_card(
        conn,
        &[
            TxRow::new(1, 1, 0.10, "2025-06-01 00:00:00")
                .text("Acme Air")
                .category("Travel"),
            TxRow::new(2, 1, 0.20, "2025-06-15 10:00:00")
                .text("Acme Air")
                .category("Travel"),
            TxRow::new(3, 1, 999.70, "2025-06-30 12:00:00")
                .text("Globex")
                .category("Travel"),
            TxRow::new(4, 3, 999.99, "2025-05-31 23:59:59")
                .text("acme")
                .category("Food"),
        ],
    );
    insert_upi(
        conn,
        &[TxRow::new(1, 2, 1000.01, "2025-06-30 00:00:00")
            .text("Rent")
            .category("Groceries")],
    );
}

fn money_db(engine: Engine) -> TestDb {
    let mut db = TestDb::new(engine);
    add_money_data(&mut db);
    db
}

/// Refreshes one condition as rule 1 and returns its members (checking the stored SQL too).
fn members_of(db: &mut TestDb, condition: Expr) -> BTreeSet<i64> {
    let conn = db.conn();
    for table in ["segment_catalog", "refresh_runs", "rule_table"] {
        conn.exec(&Query::delete().from_table(Alias::new(table)).to_owned())
            .unwrap();
    }
    let drop = Table::drop()
        .table(Alias::new("segment_output_1"))
        .if_exists()
        .to_owned();
    let drop = conn.dialect().table(&drop);
    conn.batch(&drop).unwrap();
    let mut case = Case::new();
    case.add_direct(conn, 1, checked(Some(condition), vec![], None));
    let report = case.refresh(conn, ts(AS_OF));
    assert!(report.succeeded(), "{report:?}");
    let got = db.members(1);
    assert_eq!(
        db.replay(1),
        got,
        "stored sql_query disagrees with the segment"
    );
    got
}

conformance! {
    fn money_is_exact_to_the_cent(db: &mut TestDb) {
        add_money_data(db);
        let spend = |op, cents| {
            agg(
                Field::TotalSpend,
                all_scope(),
                Test::Cmp(op, Value::Money(cents)),
            )
        };
        assert_eq!(members_of(db, spend(CmpOp::Ge, 100_000)), ids(&[1, 2]));
        assert_eq!(members_of(db, spend(CmpOp::Gt, 100_000)), ids(&[2]));
        assert_eq!(members_of(db, spend(CmpOp::Eq, 100_000)), ids(&[1]));
        // avg of user 1 is 1000.00 / 3 = 333.333..: not equal to 333.33, above it.
        let avg = |op, cents| {
            agg(
                Field::AvgTransactionAmount,
                all_scope(),
                Test::Cmp(op, Value::Money(cents)),
            )
        };
        assert_eq!(members_of(db, avg(CmpOp::Eq, 33_333)), ids(&[]));
        assert_eq!(members_of(db, avg(CmpOp::Gt, 33_333)), ids(&[1, 2, 3]));
    }
}

conformance! {
    fn users_without_transactions_have_zero_spend_and_null_dates(db: &mut TestDb) {
        add_money_data(db);
        let under_100 = agg(
            Field::TotalSpend,
            all_scope(),
            Test::Cmp(CmpOp::Lt, Value::Money(10_000)),
        );
        assert_eq!(members_of(db, under_100), ids(&[4, 5]));
        let none = agg(
            Field::TransactionCount,
            all_scope(),
            Test::Cmp(CmpOp::Eq, Value::Int(0)),
        );
        assert_eq!(members_of(db, none), ids(&[4, 5]));
        let no_last = agg(Field::LastTransactionDate, all_scope(), Test::IsNull);
        assert_eq!(members_of(db, no_last), ids(&[4, 5]));
        // Null is not below anything: `max < 1000` misses users with no transactions...
        let max_small = agg(
            Field::MaxTransactionAmount,
            all_scope(),
            Test::Cmp(CmpOp::Lt, Value::Money(100_000)),
        );
        assert_eq!(members_of(db, max_small.clone()), ids(&[1, 3]));
        // ...and `not` is the exact complement.
        assert_eq!(
            members_of(db, Expr::Not(Box::new(max_small))),
            ids(&[2, 4, 5])
        );
    }
}

conformance! {
    fn windows_include_both_ends_and_last_days_follows_as_of(db: &mut TestDb) {
        add_money_data(db);
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
        assert_eq!(members_of(db, in_window(june)), ids(&[1, 2]));
        let may_end = Window::Range {
            start: Some(ts("2025-05-31 23:59:59")),
            end: Some(ts("2025-05-31 23:59:59")),
        };
        assert_eq!(members_of(db, in_window(may_end)), ids(&[3]));
        // [2025-05-31 12:00:00, 2025-06-30 12:00:00]
        assert_eq!(
            members_of(db, in_window(Window::LastDays(30))),
            ids(&[1, 2, 3])
        );
        assert_eq!(members_of(db, in_window(Window::LastDays(0))), ids(&[1]));
        let days = agg(
            Field::DaysSinceLastTransaction,
            all_scope(),
            Test::Cmp(CmpOp::Eq, Value::Int(30)),
        );
        assert_eq!(members_of(db, days), ids(&[3]));
    }
}

conformance! {
    fn null_profile_values_fail_every_test_but_is_null(db: &mut TestDb) {
        add_money_data(db);
        let tier_ne_1 = profile(Field::CityTier, Test::Cmp(CmpOp::Ne, Value::Int(1)));
        assert_eq!(members_of(db, tier_ne_1.clone()), ids(&[2, 4]));
        assert_eq!(
            members_of(db, Expr::Not(Box::new(tier_ne_1))),
            ids(&[1, 3, 5])
        );
        let not_in = profile(Field::CityTier, Test::NotIn(vec![Value::Int(2)]));
        assert_eq!(members_of(db, not_in), ids(&[1, 4, 5]));
        assert_eq!(
            members_of(db, profile(Field::Email, Test::IsNull)),
            ids(&[3, 5])
        );
    }
}

conformance! {
    fn contains_and_starts_with_ignore_ascii_case_and_equals_is_exact(db: &mut TestDb) {
        add_money_data(db);
        assert_eq!(
            members_of(db, profile(Field::Name, Test::Contains("ASHA".into()))),
            ids(&[1, 3])
        );
        assert_eq!(
            members_of(db, profile(Field::Name, Test::StartsWith("b".into()))),
            ids(&[2])
        );
        assert_eq!(
            members_of(db, profile(Field::Name, Test::StartsWith("%".into()))),
            ids(&[])
        );
        assert_eq!(
            members_of(
                db,
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
        assert_eq!(members_of(db, has_acme), ids(&[1, 3]));
    }
}

/// Users 1..=5 named with letters that fold differently in ASCII and in Unicode.
pub(crate) const FOLDING_NAMES: [&str; 5] =
    ["Ärztin Müller", "ärztin", "STRASSE", "Straße", "ÉCOLE"];

/// Tests on `name` over [`FOLDING_NAMES`] and the users each selects when only ASCII letters
/// fold (`ä` is not `Ä`, `Ü` not `ü`, `ß` not `SS`).
pub(crate) fn folding_cases() -> Vec<(Test, Vec<i64>)> {
    vec![
        (Test::Contains("ärztin".into()), vec![2]),
        (Test::Contains("ÄRZTIN".into()), vec![1]),
        (Test::Contains("rztin".into()), vec![1, 2]),
        (Test::Contains("MÜLLER".into()), vec![]),
        (Test::Contains("strasse".into()), vec![3]),
        (Test::Contains("STRAßE".into()), vec![4]),
        (Test::Contains("école".into()), vec![]),
        (Test::StartsWith("éCOLE".into()), vec![]),
        (Test::StartsWith("Écol".into()), vec![5]),
    ]
}

/// [`FOLDING_NAMES`] as rows of `users`.
pub(crate) fn folding_users() -> Vec<UserRow> {
    FOLDING_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| UserRow {
            name: Some((*n).to_owned()),
            ..UserRow::new(i as i64 + 1)
        })
        .collect()
}

conformance! {
    // Only ASCII letters fold: PostgreSQL's `lower` and `ILIKE` would fold `Ä` to `ä` under a
    // UTF-8 locale (the test server runs one), SQLite's would not.
    fn contains_and_starts_with_fold_ascii_letters_only(db: &mut TestDb) {
        insert_users(db.conn(), &folding_users());
        for (test, expected) in folding_cases() {
            assert_eq!(
                members_of(db, profile(Field::Name, test.clone())),
                ids(&expected),
                "{test:?}"
            );
        }
    }
}

conformance! {
    fn explicit_dependencies_combine_and_conditions_narrow(db: &mut TestDb) {
        add_money_data(db);
        let conn = db.conn();
        let tier1 = profile(Field::CityTier, Test::Cmp(CmpOp::Eq, Value::Int(1)));
        let spender = agg(
            Field::TotalSpend,
            all_scope(),
            Test::Cmp(CmpOp::Gt, Value::Money(0)),
        );
        let mut case = Case::new();
        case.add_direct(conn, 1, checked(Some(tier1), vec![], None));
        case.add_direct(conn, 2, checked(Some(spender), vec![], None));
        case.add_direct(
            conn,
            3,
            checked(None, vec![1, 2], Some(Operation::Difference)),
        );
        case.add_direct(conn, 4, checked(None, vec![1, 2], Some(Operation::Union)));
        case.add_direct(conn, 5, checked(None, vec![1, 2], None));
        let narrow = profile(Field::UserId, Test::Cmp(CmpOp::Gt, Value::Int(1)));
        case.add_direct(
            conn,
            6,
            checked(Some(narrow), vec![2, 1], Some(Operation::Union)),
        );
        let report = case.refresh(conn, ts(AS_OF));
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(db.members(1), ids(&[1, 5]));
        assert_eq!(db.members(2), ids(&[1, 2, 3]));
        assert_eq!(db.members(3), ids(&[5]));
        assert_eq!(db.members(4), ids(&[1, 2, 3, 5]));
        assert_eq!(db.members(5), ids(&[1]));
        assert_eq!(db.members(6), ids(&[2, 3, 5]));
        for id in 1..=6 {
            assert_eq!(db.replay(id), db.members(id), "sql_query of rule {id}");
        }
        let n6 = report.node(6).unwrap();
        assert_eq!(
            (n6.row_count, n6.entered, n6.left),
            (Some(3), Some(3), Some(0))
        );
        assert_eq!(n6.status, NodeStatus::Succeeded);
    }
}

/// The catalog row of a rule, every column as the engine returns it, for exact comparison.
fn catalog_row(conn: &mut dyn Conn, rule_id: RuleId) -> am_sql::conn::Row {
    let q = Query::select()
        .column(Asterisk)
        .from("segment_catalog")
        .and_where(SqlExpr::col("rule_id").eq(rule_id))
        .to_owned();
    conn.row(&q).unwrap()
}

/// The money data with rule 1, `total_spend > 0`, refreshed once.
fn spenders_built(db: &mut TestDb) -> Case {
    add_money_data(db);
    let spender = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Gt, Value::Money(0)),
    );
    let mut case = Case::new();
    case.add_direct(db.conn(), 1, checked(Some(spender), vec![], None));
    assert!(case.refresh(db.conn(), ts(AS_OF)).succeeded());
    case
}

conformance! {
    fn a_refresh_failing_midway_leaves_the_old_segment_and_catalog_row(db: &mut TestDb) {
        let case = spenders_built(db);
        let before_members = db.members(1);
        let before_row = catalog_row(db.conn(), 1);
        assert_eq!(before_members, ids(&[1, 2, 3]));

        // New data changes the members; then the rebuild fails after the old table is renamed
        // aside and the new one built, when the catalog row is written.
        insert_card(
            db.conn(),
            &[TxRow::new(5, 4, 5.00, "2025-06-02 00:00:00").category("Food")],
        );
        fail_writes(
            db.conn(),
            "fail_catalog",
            Write::Update,
            "segment_catalog",
            None,
            "forced failure for the test",
        );
        let report = case.refresh(db.conn(), ts(AS_OF));
        let node = report.node(1).unwrap();
        assert_eq!(node.status, NodeStatus::Failed);
        let error = node.error.clone().unwrap();
        assert!(error.contains("forced failure for the test"), "{error}");

        assert_eq!(db.members(1), before_members);
        assert_eq!(catalog_row(db.conn(), 1), before_row);
        assert!(db.table_exists("segment_output_1"));
        assert!(
            !db.table_exists("segment_output_1__previous"),
            "the rename aside is rolled back too"
        );
        let run = am_sql::runs::get_run(db.conn(), node.run_id.unwrap()).unwrap();
        assert_eq!(run.status, am_sql::runs::RunStatus::Failed);
        assert_eq!(run.error.as_deref(), Some(error.as_str()));

        // Once the cause is gone the next refresh publishes the new members.
        stop_failing(db.conn(), "fail_catalog", "segment_catalog");
        assert!(case.refresh(db.conn(), ts(AS_OF)).succeeded());
        assert_eq!(db.members(1), ids(&[1, 2, 3, 4]));
    }
}

conformance! {
    fn a_users_view_on_a_segment_keeps_reading_the_segment_across_refreshes(db: &mut TestDb) {
        let case = spenders_built(db);
        db.conn()
            .batch("CREATE VIEW vip AS SELECT user_id FROM segment_output_1")
            .unwrap();
        // Twice: the second rebuild drops the `__previous` table the first one made.
        for (id, user, amount, expected) in [
            (2, 4, 5.0, ids(&[1, 2, 3, 4])),
            (3, 5, 7.0, ids(&[1, 2, 3, 4, 5])),
        ] {
            insert_upi(
                db.conn(),
                &[TxRow::new(id, user, amount, "2025-06-02 00:00:00").category("Food")],
            );
            let report = case.refresh(db.conn(), ts(AS_OF));
            assert!(report.succeeded(), "{report:?}");
            assert_eq!(ids_in(db.conn(), "vip"), expected);
        }
        if db.engine == Engine::Sqlite {
            // SQLite rewrites a view's SQL when a table it reads is renamed.
            let q = Query::select()
                .column("sql")
                .from("sqlite_master")
                .and_where(SqlExpr::col("name").eq("vip"))
                .to_owned();
            let sql = db.conn().row(&q).unwrap().text(0).unwrap();
            assert_eq!(
                sql,
                "CREATE VIEW vip AS SELECT user_id FROM segment_output_1"
            );
        }
    }
}

conformance! {
    fn a_failed_rule_skips_the_rules_built_from_it(db: &mut TestDb) {
        add_money_data(db);
        let conn = db.conn();
        let tier1 = profile(Field::CityTier, Test::Cmp(CmpOp::Eq, Value::Int(1)));
        let mut case = Case::new();
        case.add_direct(conn, 1, checked(Some(tier1), vec![], None));
        case.add_direct(conn, 2, checked(None, vec![1], None));
        fail_writes(
            conn,
            "fail_catalog",
            Write::Insert,
            "segment_catalog",
            Some("NEW.rule_id = 1"),
            "rule 1 cannot be written",
        );
        let report = case.refresh(conn, ts(AS_OF));
        assert_eq!(report.node(1).unwrap().status, NodeStatus::Failed);
        let skipped = report.node(2).unwrap();
        assert_eq!(skipped.status, NodeStatus::Skipped);
        assert_eq!(skipped.error.as_deref(), Some("upstream rule #1 failed"));
        let run = am_sql::runs::get_run(conn, skipped.run_id.unwrap()).unwrap();
        assert_eq!(run.error.as_deref(), Some("upstream rule #1 failed"));
        let segments: Vec<String> = table_names(conn)
            .into_iter()
            .filter(|t| t.starts_with("segment_output"))
            .collect();
        assert_eq!(segments, Vec::<String>::new());
    }
}

/// Rule 1 reads users without transactions (`total_spend < 1000`), rule 2 a profile field next
/// to an aggregate: both are read from the refresh's per-user table of shared aggregates.
fn users_table_case(conn: &mut dyn Conn) -> Case {
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
    case.add_direct(conn, 1, checked(Some(under), vec![], None));
    case.add_direct(conn, 2, checked(Some(tier1_buyer), vec![], None));
    case
}

conformance! {
    fn rules_needing_users_read_one_shared_per_user_table(db: &mut TestDb) {
        add_money_data(db);
        let conn = db.conn();
        let dialect = conn.dialect();
        let case = users_table_case(conn);
        // What the refresh reads: the per-user table, not `users` and the aggregates joined.
        let needs = {
            let mut needs = am_sql::render::AggregateNeeds::new();
            for node in &case.plan.nodes {
                am_sql::render::collect_set_needs(&node.compute, &mut needs);
            }
            needs
        };
        let mut layout = am_sql::render::AggregateLayout::new(dialect, &needs);
        layout.plan_users_table(case.plan.nodes.iter().map(|n| &n.compute), ts(AS_OF));
        let ctx = am_sql::render::RenderContext {
            dialect,
            as_of: ts(AS_OF),
            aggregates: am_sql::render::Aggregates::Shared(&layout),
            base_first: false,
        };
        for node in &case.plan.nodes {
            let sql = dialect.inline(&am_sql::render::render_set(&node.compute, &ctx));
            assert!(sql.contains("FROM \"agg_users\""), "{sql}");
            assert!(!sql.contains("\"users\""), "{sql}");
        }

        let report = case.refresh(conn, ts(AS_OF));
        assert!(report.succeeded(), "{report:?}");
        // User 1 spent exactly 1000.00, user 2 1000.01; 4 and 5 nothing.
        assert_eq!(db.members(1), ids(&[3, 4, 5]));
        // User 1's largest payment is 999.70 and they are tier 1; user 2 is tier 2.
        assert_eq!(db.members(2), ids(&[1]));
    }
}

conformance! {
    fn a_profile_column_gone_fails_only_the_rules_that_read_it(db: &mut TestDb) {
        add_money_data(db);
        let conn = db.conn();
        let case = users_table_case(conn);
        // Someone else's migration renames a column rule 2 reads; the per-user table, which
        // would copy it, cannot be built, and rule 1 must not fail with it.
        conn.batch("ALTER TABLE users RENAME COLUMN city_tier TO tier")
            .unwrap();
        let report = case.refresh(conn, ts(AS_OF));
        let one = report.node(1).unwrap();
        assert_eq!(one.status, NodeStatus::Succeeded, "{one:?}");
        assert_eq!(db.members(1), ids(&[3, 4, 5]));
        let two = report.node(2).unwrap();
        assert_eq!(two.status, NodeStatus::Failed);
        assert!(
            two.error.as_deref().unwrap_or("").contains("city_tier"),
            "{two:?}"
        );
    }
}

conformance! {
    fn readers_never_see_an_empty_or_partial_segment(db: &mut TestDb) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        let case = spenders_built(db);

        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let store = db.store.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut conn = store.connection().unwrap();
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    seen.push(crate::engines::count(conn.as_mut(), "segment_output_1"));
                }
                seen
            })
        };
        for _ in 0..30 {
            assert!(case.refresh(db.conn(), ts(AS_OF)).succeeded());
        }
        done.store(true, Ordering::Relaxed);
        let seen = reader.join().unwrap();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|&c| c == 3), "a reader saw {seen:?}");
    }
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

/// Users 1001..=1000 + n, without transactions.
fn add_users_without_transactions(conn: &mut dyn Conn, n: i64) {
    let users: Vec<UserRow> = (1..=n)
        .map(|i| UserRow::new(1000 + i).name("no purchases"))
        .collect();
    insert_users(conn, &users);
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

conformance! {
    fn store_refresh_plans_reuses_and_skips_fresh_segments(db: &mut TestDb) {
        add_money_data(db);
        // Users without transactions, so the looser segment (3 members) is small enough to be
        // read member by member.
        add_users_without_transactions(db.conn(), 40);
        let store = &db.store.clone();
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
        assert_eq!(db.members(over_1000), ids(&[2]));
        assert_eq!(db.replay(over_1000), ids(&[2]));
        let catalog = am_sql::catalog::segment_for_rule(db.conn(), over_1000)
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
        assert_eq!(db.members(diff), ids(&[1, 3]));
        assert!(refresh(store, RefreshTargets::Stale).nodes.is_empty());
        let first = am_sql::catalog::segment_for_rule(db.conn(), diff)
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
        insert_upi(
            db.conn(),
            &[TxRow::new(2, 3, 0.02, "2025-06-01 00:00:00").category("Food")],
        );
        let report = refresh(store, RefreshTargets::Stale);
        assert_eq!(refreshed(&report), vec![over_100, over_1000, diff]);
        assert_eq!(db.members(over_1000), ids(&[2, 3]));
        assert_eq!(db.members(diff), ids(&[1]));
        // Who entered and who left at that refresh, against the members kept from before it.
        let mut segment_of = |rule| {
            am_sql::catalog::segment_for_rule(db.conn(), rule)
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
        let run =
            am_sql::runs::get_run(db.conn(), report.node(diff).unwrap().run_id.unwrap()).unwrap();
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
}

conformance! {
    fn a_rule_reused_from_a_large_segment_is_evaluated_from_its_own_condition(db: &mut TestDb) {
        add_money_data(db);
        let store = &db.store.clone();
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

        // But the looser segment holds 3 of the 5 users: looking each one up costs more than
        // the scan of the aggregates the stricter bound needs anyway. An engine that chooses
        // join orders itself is given the plan as the finder made it.
        let refresh_chooses = db.conn().dialect().drives_from_small_sets();
        let report = refresh(store, RefreshTargets::All);
        assert!(report.succeeded(), "{report:?}");
        let node = report.node(stricter).unwrap();
        let expected = if refresh_chooses {
            vec![]
        } else {
            vec![looser]
        };
        assert_eq!(node.reused_from, expected);
        assert_eq!(db.members(looser), ids(&[1, 2, 3]));
        assert_eq!(db.members(stricter), ids(&[2]));
        assert_eq!(db.replay(stricter), ids(&[2]));
        let catalog = am_sql::catalog::segment_for_rule(db.conn(), stricter)
            .unwrap()
            .unwrap();
        assert_eq!(catalog.reused_from, expected);
        assert!(
            !catalog.sql_query.contains("segment_output_"),
            "the stored SQL reads only the data tables: {}",
            catalog.sql_query
        );

        // With many more users the same segment is small, and is read member by member.
        add_users_without_transactions(db.conn(), 40);
        let report = refresh(store, RefreshTargets::All);
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(report.node(stricter).unwrap().reused_from, vec![looser]);
        assert_eq!(db.members(stricter), ids(&[2]));
        assert_eq!(db.replay(stricter), ids(&[2]));

        // Updated from the change log, it scans the few affected users' aggregates with its
        // own condition rather than looking them up in the segment.
        insert_card(
            db.conn(),
            &[TxRow::new(900, 3, 5_000.0, "2025-06-29 10:00:00")],
        );
        let mut request = RefreshRequest::new(RefreshTargets::All, RunTrigger::Cli);
        request.as_of = Some(ts(AS_OF));
        request.mode = RefreshMode::Incremental;
        let report = store.refresh(&request, &NoProgress).unwrap();
        assert!(report.succeeded(), "{report:?}");
        let node = report.node(stricter).unwrap();
        assert!(node.incremental, "{node:?}");
        assert_eq!(node.entered, Some(1));
        assert!(node.reused_from.is_empty(), "{node:?}");
        assert_eq!(db.members(stricter), ids(&[2, 3]));
        assert_eq!(db.replay(stricter), ids(&[2, 3]));
    }
}

conformance! {
    fn a_small_segment_is_read_member_by_member_for_rules_that_need_users(db: &mut TestDb) {
        add_money_data(db);
        add_users_without_transactions(db.conn(), 40);
        let store = &db.store.clone();
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
        assert_eq!(db.members(quiet_tier_1), ids(&[5]));
        assert_eq!(db.replay(quiet_tier_1), ids(&[5]));
    }
}

/// SQLite only: the join order SQLite's planner keeps as written (`CROSS JOIN`), in SQLite's
/// rendering.
#[test]
fn a_small_base_drives_the_filter_over_it() {
    let dialect = am_sql::Dialect::Sqlite;
    let over_100 = agg(
        Field::TotalSpend,
        all_scope(),
        Test::Cmp(CmpOp::Gt, Value::Money(10_000)),
    );
    let mut needs = am_sql::render::AggregateNeeds::new();
    am_sql::render::collect_expr_needs(&over_100, &mut needs);
    let layout = am_sql::render::AggregateLayout::new(dialect, &needs);
    let filter = SetExpr::Filter(Box::new(SetExpr::Segment(7)), over_100);
    let sql = |base_first| {
        let ctx = am_sql::render::RenderContext {
            dialect,
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

conformance! {
    fn preview_of_an_edited_rule_replaces_its_saved_version(db: &mut TestDb) {
        add_money_data(db);
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

        // The candidate's conditions, not the saved ones, decide the count: user 1's
        // purchases add up to exactly 1000.00.
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
}

conformance! {
    fn a_stored_query_reads_no_segment_and_outlives_refreshes_of_what_it_was_built_from(
        db: &mut TestDb,
    ) {
        add_money_data(db);
        let store = &db.store.clone();
        let (over_100, over_1000) = looser_and_stricter(store);
        let mut diff = spec("over 100 not 1000", serde_json::Value::Null);
        diff.depends_on = vec![over_100, over_1000];
        diff.operation = Some("DIFFERENCE".into());
        let diff = store.create_rule(&diff).unwrap();
        assert!(refresh(store, RefreshTargets::All).succeeded());
        let before = db.members(diff);
        assert_eq!(db.replay(diff), before);

        // The upstream rule changes and only it is refreshed: its segment moves on, the
        // child's stored query still returns the child's members.
        let mut edited = spec(
            "over 1000",
            serde_json::json!([{"field": "total_spend", "operator": ">", "value": 5}]),
        );
        edited.description = Some("edited".into());
        store.update_rule(over_1000, &edited).unwrap();
        let report = refresh(store, RefreshTargets::Rules(vec![over_1000]));
        assert_eq!(refreshed(&report), vec![over_1000]);
        assert_ne!(
            db.members(over_1000),
            ids(&[2]),
            "the upstream segment changed"
        );
        let child = am_sql::catalog::segment_for_rule(db.conn(), diff)
            .unwrap()
            .unwrap();
        assert!(
            !child.sql_query.contains("segment_output_"),
            "{}",
            child.sql_query
        );
        assert_eq!(db.replay(diff), before);
    }
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
            let conn = rusqlite::Connection::open(path).unwrap();
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

/// SQLite only: SQLite's single writer lock, held by another connection past the busy wait.
#[test]
fn every_run_ends_with_its_error_when_the_database_stays_locked() {
    let db = money_db(Engine::Sqlite);
    let store = &db.store;
    let (a, b) = looser_and_stricter(store);
    // Longer than a swap's wait for the lock and the wait to record the failure after it.
    let locker = LockAtSegments {
        path: store.path().unwrap().to_path_buf(),
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
        matches!(result, Err(am_sql::Error::Busy { .. })),
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
