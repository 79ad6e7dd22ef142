//! Incremental refresh against the reference evaluator: random data and rules, then random
//! ETL writes (plain SQL inserts, updates and deletes of transactions, users and their
//! locations) and as-of
//! advances; after every update each segment equals the evaluator's members, and entered and
//! left are exactly the difference. A full rebuild at the end changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use am_core::arbitrary::{
    arb_dataset, arb_expr, arb_point, arb_transaction_row, arb_user_profile, as_of,
};
use am_core::evaluate::{Dataset, Transaction, User, evaluate_set};
use am_core::expr::{
    CmpOp, Expr, Pred, Scope, Source, TIMESTAMP_FORMAT, Test, Timestamp, Value, Window,
};
use am_core::field::Field;
use am_core::geo::GeoPoint;
use am_core::rule::RuleId;
use am_sql::conn::Conn;
use am_sql::refresh::{NodeStatus, RefreshMode, RefreshReport};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sea_query::{Alias, Expr as SqlExpr, ExprTrait, Query};

use crate::differential::{Shape, arb_shape, case_of};
use crate::engine::{Case, load_dataset};
use crate::engines::{Engine, TestDb, Write, fail_writes, stop_failing};

type Profile = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<Timestamp>,
);

/// One write an ETL job makes with plain SQL. `pick`s choose among the rows there are.
#[derive(Debug, Clone)]
enum Etl {
    AddTx {
        card: bool,
        user: usize,
        row: Transaction,
    },
    ChangeTx {
        pick: usize,
        user: usize,
        row: Transaction,
    },
    DropTx {
        pick: usize,
    },
    AddUser(Profile),
    ChangeUser {
        pick: usize,
        profile: Profile,
    },
    /// Deletes the user's transactions and location, then the user.
    DropUser {
        pick: usize,
    },
    /// Updates the user's location, or inserts one for a user without.
    MoveUser {
        pick: usize,
        to: GeoPoint,
    },
    ForgetLocation {
        pick: usize,
    },
}

fn arb_etl() -> impl Strategy<Value = Etl> {
    let row = || arb_transaction_row().prop_map(|(card, _, row)| (card, row));
    prop_oneof![
        3 => (row(), any::<usize>()).prop_map(|((card, row), user)| Etl::AddTx { card, user, row }),
        2 => (any::<usize>(), any::<usize>(), row())
            .prop_map(|(pick, user, (_, row))| Etl::ChangeTx { pick, user, row }),
        2 => any::<usize>().prop_map(|pick| Etl::DropTx { pick }),
        1 => arb_user_profile().prop_map(Etl::AddUser),
        2 => (any::<usize>(), arb_user_profile())
            .prop_map(|(pick, profile)| Etl::ChangeUser { pick, profile }),
        1 => any::<usize>().prop_map(|pick| Etl::DropUser { pick }),
        2 => (any::<usize>(), arb_point()).prop_map(|(pick, to)| Etl::MoveUser { pick, to }),
        1 => any::<usize>().prop_map(|pick| Etl::ForgetLocation { pick }),
    ]
}

/// The data as the evaluator sees it, kept in step with the database.
struct Data {
    users: Vec<User>,
    card: Vec<Transaction>,
    upi: Vec<Transaction>,
    locations: BTreeMap<i64, GeoPoint>,
}

impl Data {
    fn of(ds: &Dataset) -> Data {
        Data {
            users: ds.users().to_vec(),
            card: ds.credit_card().to_vec(),
            upi: ds.upi().to_vec(),
            locations: ds.locations().clone(),
        }
    }

    fn dataset(&self) -> Dataset {
        Dataset::new(self.users.clone(), self.card.clone(), self.upi.clone())
            .with_locations(self.locations.clone())
    }

    fn next_tx(&self) -> i64 {
        self.card
            .iter()
            .chain(&self.upi)
            .map(|t| t.transaction_id)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Makes the write in the database and here. Every user id written is a user's, as
    /// foreign keys require (the database checks them, and triggers must fire).
    fn apply(&mut self, conn: &mut dyn Conn, etl: &Etl) {
        let user_of =
            |users: &[User], n: usize| users.get(n % users.len().max(1)).map(|u| u.user_id);
        match etl {
            Etl::AddTx { card, user, row } => {
                let Some(user_id) = user_of(&self.users, *user) else {
                    return;
                };
                let mut tx = row.clone();
                tx.transaction_id = self.next_tx();
                tx.user_id = user_id;
                fix_text(&mut tx, *card);
                let (table, text) = table_of(*card);
                let mut q = Query::insert();
                q.into_table(Alias::new(table))
                    .columns([
                        "transaction_id",
                        "user_id",
                        "amount",
                        text,
                        "category",
                        "transaction_date",
                    ])
                    .values_panic([
                        tx.transaction_id.into(),
                        tx.user_id.into(),
                        amount(&tx).into(),
                        tx_text(&tx, *card).into(),
                        tx.category.clone().into(),
                        time(tx.transaction_date).into(),
                    ]);
                conn.exec(&q).unwrap();
                if *card { &mut self.card } else { &mut self.upi }.push(tx);
            }
            Etl::ChangeTx { pick, user, row } => {
                let all = self.card.len() + self.upi.len();
                let Some(user_id) = user_of(&self.users, *user) else {
                    return;
                };
                if all == 0 {
                    return;
                }
                let n = pick % all;
                let card = n < self.card.len();
                let tx = if card {
                    &mut self.card[n]
                } else {
                    &mut self.upi[n - self.card.len()]
                };
                let mut changed = row.clone();
                changed.transaction_id = tx.transaction_id;
                changed.user_id = user_id;
                fix_text(&mut changed, card);
                let (table, text) = table_of(card);
                let q = Query::update()
                    .table(Alias::new(table))
                    .value(Alias::new("user_id"), changed.user_id)
                    .value(Alias::new("amount"), amount(&changed))
                    .value(Alias::new(text), tx_text(&changed, card))
                    .value(Alias::new("category"), changed.category.clone())
                    .value(
                        Alias::new("transaction_date"),
                        time(changed.transaction_date),
                    )
                    .and_where(SqlExpr::col("transaction_id").eq(changed.transaction_id))
                    .to_owned();
                conn.exec(&q).unwrap();
                *tx = changed;
            }
            Etl::DropTx { pick } => {
                let all = self.card.len() + self.upi.len();
                if all == 0 {
                    return;
                }
                let n = pick % all;
                let card = n < self.card.len();
                let tx = if card {
                    self.card.remove(n)
                } else {
                    self.upi.remove(n - self.card.len())
                };
                let q = Query::delete()
                    .from_table(Alias::new(table_of(card).0))
                    .and_where(SqlExpr::col("transaction_id").eq(tx.transaction_id))
                    .to_owned();
                conn.exec(&q).unwrap();
            }
            Etl::AddUser((name, email, city_tier, created_at)) => {
                let user_id = self.users.iter().map(|u| u.user_id).max().unwrap_or(0) + 1;
                let q = Query::insert()
                    .into_table("users")
                    .columns(["user_id", "name", "email", "city_tier", "created_at"])
                    .values_panic([
                        user_id.into(),
                        name.clone().into(),
                        email.clone().into(),
                        (*city_tier).into(),
                        time(*created_at).into(),
                    ])
                    .to_owned();
                conn.exec(&q).unwrap();
                self.users.push(User {
                    user_id,
                    name: name.clone(),
                    email: email.clone(),
                    city_tier: *city_tier,
                    created_at: *created_at,
                });
            }
            Etl::ChangeUser { pick, profile } => {
                let Some(user_id) = user_of(&self.users, *pick) else {
                    return;
                };
                let (name, email, city_tier, created_at) = profile.clone();
                let q = Query::update()
                    .table("users")
                    .value(Alias::new("name"), name.clone())
                    .value(Alias::new("email"), email.clone())
                    .value(Alias::new("city_tier"), city_tier)
                    .value(Alias::new("created_at"), time(created_at))
                    .and_where(SqlExpr::col("user_id").eq(user_id))
                    .to_owned();
                conn.exec(&q).unwrap();
                if let Some(u) = self.users.iter_mut().find(|u| u.user_id == user_id) {
                    *u = User {
                        user_id,
                        name,
                        email,
                        city_tier,
                        created_at,
                    };
                }
            }
            Etl::DropUser { pick } => {
                let Some(user_id) = user_of(&self.users, *pick) else {
                    return;
                };
                for table in [
                    "credit_card_transactions",
                    "upi_transactions",
                    "user_locations",
                    "users",
                ] {
                    let q = Query::delete()
                        .from_table(Alias::new(table))
                        .and_where(SqlExpr::col("user_id").eq(user_id))
                        .to_owned();
                    conn.exec(&q).unwrap();
                }
                self.users.retain(|u| u.user_id != user_id);
                self.card.retain(|t| t.user_id != user_id);
                self.upi.retain(|t| t.user_id != user_id);
                self.locations.remove(&user_id);
            }
            Etl::MoveUser { pick, to } => {
                let Some(user_id) = user_of(&self.users, *pick) else {
                    return;
                };
                if self.locations.contains_key(&user_id) {
                    let q = Query::update()
                        .table("user_locations")
                        .value(Alias::new("latitude"), to.lat)
                        .value(Alias::new("longitude"), to.lon)
                        .and_where(SqlExpr::col("user_id").eq(user_id))
                        .to_owned();
                    conn.exec(&q).unwrap();
                } else {
                    crate::engines::insert_locations(conn, &[(user_id, to.lat, to.lon)]);
                }
                self.locations.insert(user_id, *to);
            }
            Etl::ForgetLocation { pick } => {
                let Some(user_id) = user_of(&self.users, *pick) else {
                    return;
                };
                let q = Query::delete()
                    .from_table("user_locations")
                    .and_where(SqlExpr::col("user_id").eq(user_id))
                    .to_owned();
                conn.exec(&q).unwrap();
                self.locations.remove(&user_id);
            }
        }
    }
}

fn table_of(card: bool) -> (&'static str, &'static str) {
    if card {
        ("credit_card_transactions", "merchant")
    } else {
        ("upi_transactions", "description")
    }
}

/// A card row has a merchant and no description, a UPI row the other way round.
fn fix_text(tx: &mut Transaction, card: bool) {
    if card {
        tx.merchant = tx.merchant.take().or_else(|| tx.description.take());
        tx.description = None;
    } else {
        tx.description = tx.description.take().or_else(|| tx.merchant.take());
        tx.merchant = None;
    }
}

fn tx_text(tx: &Transaction, card: bool) -> Option<String> {
    if card {
        tx.merchant.clone()
    } else {
        tx.description.clone()
    }
}

fn amount(tx: &Transaction) -> Option<f64> {
    tx.amount.map(|c| c as f64 / 100.0)
}

fn time(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.format(TIMESTAMP_FORMAT).to_string())
}

/// Every rule's members per the evaluator, in plan order.
fn expected(case: &Case, ds: &Dataset, as_of: Timestamp) -> BTreeMap<RuleId, BTreeSet<i64>> {
    let mut segments = BTreeMap::new();
    for node in &case.plan.nodes {
        let members = evaluate_set(&node.compute, ds, as_of, &segments);
        segments.insert(node.rule_id, members);
    }
    segments
}

fn check_step(
    db: &mut TestDb,
    report: &RefreshReport,
    now: &BTreeMap<RuleId, BTreeSet<i64>>,
    before: Option<&BTreeMap<RuleId, BTreeSet<i64>>>,
    step: usize,
    incremental: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(report.succeeded(), "step {}: {:?}", step, report);
    for node in &report.nodes {
        let id = node.rule_id;
        prop_assert_eq!(node.status, NodeStatus::Succeeded);
        prop_assert_eq!(&db.members(id), &now[&id], "step {}: rule {}", step, id);
        let Some(before) = before else { continue };
        prop_assert_eq!(node.incremental, incremental, "step {}: rule {}", step, id);
        let entered: BTreeSet<i64> = now[&id].difference(&before[&id]).copied().collect();
        let left: BTreeSet<i64> = before[&id].difference(&now[&id]).copied().collect();
        prop_assert_eq!(
            (node.entered, node.left, node.row_count),
            (
                Some(entered.len() as i64),
                Some(left.len() as i64),
                Some(now[&id].len() as i64)
            ),
            "step {}: rule {}",
            step,
            id
        );
        let segment = am_sql::catalog::all_segments(db.conn())
            .unwrap()
            .into_iter()
            .find(|s| s.rule_id == id)
            .unwrap();
        prop_assert_eq!(segment.row_count, now[&id].len() as i64);
        let diff = am_sql::catalog::membership_diff(db.conn(), segment.id, 1_000).unwrap();
        prop_assert_eq!(
            (
                diff.entered.iter().copied().collect::<BTreeSet<_>>(),
                diff.left.iter().copied().collect::<BTreeSet<_>>()
            ),
            (entered, left),
            "diff at step {}: rule {}",
            step,
            id
        );
    }
    Ok(())
}

fn updates_equal_the_evaluator(
    engine: Engine,
    ds: &Dataset,
    rules: &[(Expr, Shape)],
    steps: &[(Vec<Etl>, i64)],
) -> Result<(), TestCaseError> {
    let mut db = TestDb::new(engine);
    load_dataset(db.conn(), ds);
    let case = case_of(db.conn(), rules);
    let mut data = Data::of(ds);
    let mut at = as_of();
    let first = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
    let mut before = expected(&case, &data.dataset(), at);
    check_step(&mut db, &first, &before, None, 0, false)?;
    for (step, (writes, hours)) in steps.iter().enumerate() {
        for etl in writes {
            data.apply(db.conn(), etl);
        }
        at += chrono::Duration::hours(*hours);
        let report = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
        let now = expected(&case, &data.dataset(), at);
        check_step(&mut db, &report, &now, Some(&before), step + 1, true)?;
        before = now;
    }
    // A full rebuild agrees with the updates: nobody enters or leaves.
    let full = case.refresh_in(db.conn(), at, RefreshMode::Full);
    check_step(
        &mut db,
        &full,
        &before,
        Some(&before),
        steps.len() + 1,
        false,
    )?;
    // And after more writes it finds the same difference an update would, `diff` included.
    if let Some((writes, _)) = steps.first() {
        for etl in writes {
            data.apply(db.conn(), etl);
        }
        let full = case.refresh_in(db.conn(), at, RefreshMode::Full);
        let now = expected(&case, &data.dataset(), at);
        check_step(&mut db, &full, &now, Some(&before), steps.len() + 2, false)?;
    }
    Ok(())
}

/// ETL batches, each followed by an as-of advance of 0 to 40 days (in hours, so day
/// boundaries fall anywhere) and a refresh.
fn arb_steps() -> impl Strategy<Value = Vec<(Vec<Etl>, i64)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(arb_etl(), 0..6),
            prop_oneof![Just(0i64), Just(24), 0i64..=960],
        ),
        1..4,
    )
}

/// Rules whose first one reads the as-of time (a `last_days` window or
/// `days_since_last_transaction`), so advancing it matters in most cases.
fn arb_rules() -> impl Strategy<Value = Vec<(Expr, Shape)>> {
    (
        arb_expr().prop_filter("reads the as-of time", Expr::depends_on_as_of),
        proptest::collection::vec((arb_expr(), arb_shape()), 0..4),
    )
        .prop_map(|(first, mut rest)| {
            rest.insert(0, (first, Shape::Direct));
            rest
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_updates_equal_the_evaluator(
        ds in arb_dataset(),
        rules in arb_rules(),
        steps in arb_steps(),
    ) {
        updates_equal_the_evaluator(Engine::Sqlite, &ds, &rules, &steps)?;
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_updates_equal_the_evaluator(
        ds in arb_dataset(),
        rules in arb_rules(),
        steps in arb_steps(),
    ) {
        updates_equal_the_evaluator(Engine::Postgres, &ds, &rules, &steps)?;
    }
}

/// `total_spend > 100.00` over the last 30 days.
fn spent_over_100() -> Expr {
    Expr::Pred(Pred::Aggregate {
        field: Field::TotalSpend,
        scope: Scope {
            source: Source::All,
            window: Window::LastDays(30),
            filter: None,
        },
        test: Test::Cmp(CmpOp::Gt, Value::Money(10_000)),
    })
}

fn tier(n: i64) -> Expr {
    Expr::Pred(Pred::Profile {
        field: Field::CityTier,
        test: Test::Cmp(CmpOp::Eq, Value::Int(n)),
    })
}

conformance! {
    /// An update that fails half way leaves its segment and catalog row as they were (and the
    /// rules built from it), and the next refresh catches up with every change since.
    fn a_failed_update_changes_nothing_and_the_next_refresh_catches_up(db: &mut TestDb) {
        let users: Vec<User> = (1..=4)
            .map(|user_id| User {
                user_id,
                name: None,
                email: None,
                city_tier: Some(1 + user_id % 2),
                created_at: None,
            })
            .collect();
        let at = as_of();
        let tx = |id: i64, user_id: i64, cents: i64| Transaction {
            transaction_id: id,
            user_id,
            amount: Some(cents),
            category: None,
            merchant: Some("m".into()),
            description: None,
            transaction_date: Some(at - chrono::Duration::days(2)),
        };
        let ds = Dataset::new(users, vec![tx(1, 1, 15_000), tx(2, 2, 5_000)], vec![]);
        load_dataset(db.conn(), &ds);
        let rules = [
            (spent_over_100(), Shape::Direct),
            (tier(2), Shape::Over(0)),
        ];
        let case = case_of(db.conn(), &rules);
        let mut data = Data::of(&ds);
        let first = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
        let before = expected(&case, &data.dataset(), at);
        check_step(db, &first, &before, None, 0, false).unwrap();

        // User 3 (tier 2, as user 1) spends 200: enters both segments.
        let add = Etl::AddTx {
            card: true,
            user: 2,
            row: tx(0, 0, 20_000),
        };
        data.apply(db.conn(), &add);
        let catalog_before = am_sql::catalog::all_segments(db.conn()).unwrap();
        fail_writes(
            db.conn(),
            "break_update",
            Write::Insert,
            "segment_output_1",
            None,
            "disk full",
        );
        let broken = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
        assert_eq!(broken.nodes[0].status, NodeStatus::Failed, "{broken:?}");
        assert_eq!(broken.nodes[1].status, NodeStatus::Skipped, "{broken:?}");
        for id in [1, 2] {
            assert_eq!(db.members(id), before[&id], "rule {id} changed");
        }
        assert_eq!(am_sql::catalog::all_segments(db.conn()).unwrap(), catalog_before);
        stop_failing(db.conn(), "break_update", "segment_output_1");

        let again = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
        let now = expected(&case, &data.dataset(), at);
        assert_eq!(now[&1], BTreeSet::from([1, 3]));
        assert_eq!(now[&2], BTreeSet::from([1, 3]));
        check_step(db, &again, &now, Some(&before), 2, true).unwrap();
    }
}

fn log_rows(db: &mut TestDb) -> i64 {
    db.one("SELECT count(*) FROM data_changes")
}

conformance! {
    /// The log keeps only what some segment has not seen, and at most its limit: a segment
    /// older than what was dropped is rebuilt, and still right.
    fn the_change_log_is_pruned_and_a_segment_it_no_longer_covers_is_rebuilt(db: &mut TestDb) {
        let users: Vec<User> = (1..=3)
            .map(|user_id| User {
                user_id,
                name: None,
                email: None,
                city_tier: Some(1),
                created_at: None,
            })
            .collect();
        let ds = Dataset::new(users, vec![], vec![]);
        load_dataset(db.conn(), &ds);
        let case = case_of(db.conn(), &[(spent_over_100(), Shape::Direct)]);
        let mut data = Data::of(&ds);
        let at = as_of();
        let first = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
        assert!(first.succeeded(), "{first:?}");
        assert_eq!(log_rows(db), 0, "the segment has seen every change");

        let row = Transaction {
            transaction_id: 0,
            user_id: 0,
            amount: Some(20_000),
            category: None,
            merchant: Some("m".into()),
            description: None,
            transaction_date: Some(at - chrono::Duration::days(1)),
        };
        for user in 0..3 {
            let add = Etl::AddTx { card: true, user, row: row.clone() };
            data.apply(db.conn(), &add);
        }
        assert_eq!(log_rows(db), 3);
        // A log of at most one row: the two older changes go, and the log starts later.
        let seen = am_sql::catalog::all_segments(db.conn()).unwrap()[0].data_version;
        am_sql::tracking::prune_change_log(db.conn(), seen, 1).unwrap();
        assert_eq!(log_rows(db), 1);
        assert!(am_sql::tracking::changes_from(db.conn()).unwrap() > seen);

        let again = case.refresh_in(db.conn(), at, RefreshMode::Incremental);
        assert!(!again.nodes[0].incremental, "the log no longer covers the segment");
        assert_eq!(db.members(1), BTreeSet::from([1, 2, 3]));
        assert_eq!(log_rows(db), 0);
    }
}
