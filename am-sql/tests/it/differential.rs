//! Differential tests: random data and random rules through each engine, compared member for
//! member with the reference evaluator, and every stored `sql_query` replayed.

use std::collections::{BTreeMap, BTreeSet};

use am_core::arbitrary::{arb_dataset, arb_expr, as_of};
use am_core::evaluate::{Dataset, evaluate_set};
use am_core::expr::Expr;
use am_core::plan::SetExpr;
use am_core::rule::{Operation, RuleId};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::engine::{Case, checked, load_dataset};
use crate::engines::{Engine, TestDb};

/// How rule `i` is computed from its condition and the rules before it.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// Its own condition over all users.
    Direct,
    /// Explicit dependencies with an operation, optionally narrowed by the condition.
    Depends {
        picks: Vec<usize>,
        op: Operation,
        narrow: bool,
    },
    /// The condition evaluated over an earlier segment only (narrowing reuse).
    Over(usize),
    /// Nested set operations over earlier segments and the condition.
    Nested { a: usize, b: usize, kind: u8 },
}

pub(crate) fn arb_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        3 => Just(Shape::Direct),
        2 => (
            proptest::collection::vec(any::<usize>(), 1..4),
            prop_oneof![Just(Operation::Intersection), Just(Operation::Union), Just(Operation::Difference)],
            any::<bool>()
        )
            .prop_map(|(picks, op, narrow)| Shape::Depends { picks, op, narrow }),
        1 => any::<usize>().prop_map(Shape::Over),
        1 => (any::<usize>(), any::<usize>(), 0u8..3).prop_map(|(a, b, kind)| Shape::Nested { a, b, kind }),
    ]
}

/// Builds rule `id` (ids 1..) from its shape; earlier rules are `1..id`.
pub(crate) fn compute_of(
    id: RuleId,
    shape: &Shape,
    condition: &Expr,
) -> (am_core::rule::CheckedRule, SetExpr) {
    let earlier = id - 1;
    let pick = |n: usize| -> Option<RuleId> {
        (earlier > 0).then(|| (n % earlier as usize) as RuleId + 1)
    };
    let direct = || {
        let rule = checked(Some(condition.clone()), vec![], None);
        let compute = am_core::evaluate::rule_set_expr(&rule);
        (rule, compute)
    };
    match shape {
        Shape::Direct => direct(),
        Shape::Depends { picks, op, narrow } => {
            let deps: Vec<RuleId> = picks.iter().filter_map(|&n| pick(n)).collect();
            if deps.is_empty() {
                return direct();
            }
            let rule = checked(narrow.then(|| condition.clone()), deps, Some(*op));
            let compute = am_core::evaluate::rule_set_expr(&rule);
            (rule, compute)
        }
        Shape::Over(n) => match pick(*n) {
            None => direct(),
            Some(p) => {
                let compute = SetExpr::Filter(Box::new(SetExpr::Segment(p)), condition.clone());
                (checked(Some(condition.clone()), vec![], None), compute)
            }
        },
        Shape::Nested { a, b, kind } => match (pick(*a), pick(*b)) {
            (Some(a), Some(b)) => {
                let own = SetExpr::Filter(Box::new(SetExpr::AllUsers), condition.clone());
                let pair = SetExpr::Union(vec![SetExpr::Segment(a), own.clone()]);
                let compute = match kind {
                    0 => SetExpr::Intersect(vec![pair, SetExpr::Segment(b)]),
                    1 => SetExpr::Difference(
                        Box::new(pair),
                        vec![SetExpr::Segment(b), SetExpr::Intersect(vec![])],
                    ),
                    _ => SetExpr::Union(vec![
                        SetExpr::Difference(Box::new(SetExpr::Segment(b)), vec![own]),
                        SetExpr::Intersect(vec![SetExpr::Segment(a), SetExpr::AllUsers]),
                        SetExpr::Union(vec![]),
                    ]),
                };
                (checked(Some(condition.clone()), vec![], None), compute)
            }
            _ => direct(),
        },
    }
}

/// Rules `1..` with their conditions and shapes, each added to the database's rule table.
pub(crate) fn case_of(conn: &mut dyn am_sql::conn::Conn, rules: &[(Expr, Shape)]) -> Case {
    let mut case = Case::new();
    for (i, (condition, shape)) in rules.iter().enumerate() {
        let id = i as RuleId + 1;
        let (rule, compute) = compute_of(id, shape, condition);
        case.add(conn, id, rule, compute);
    }
    case
}

/// Every rule's segment and stored `sql_query` equal the evaluator's members; refreshed again
/// over the same data, every segment is updated from the (empty) change log: the same
/// members, nobody entered or left, and `diff` says so.
fn segments_equal_the_evaluator(
    engine: Engine,
    ds: &Dataset,
    rules: &[(Expr, Shape)],
) -> Result<(), TestCaseError> {
    let mut db = TestDb::new(engine);
    load_dataset(db.conn(), ds);
    let case = case_of(db.conn(), rules);
    let report = case.refresh(db.conn(), as_of());
    prop_assert!(report.succeeded(), "{:?}", report);
    let mut segments: BTreeMap<RuleId, BTreeSet<i64>> = BTreeMap::new();
    for node in &case.plan.nodes {
        let expected = evaluate_set(&node.compute, ds, as_of(), &segments);
        let got = db.members(node.rule_id);
        prop_assert_eq!(
            &got,
            &expected,
            "rule {} computed as {:?}",
            node.rule_id,
            node.compute
        );
        prop_assert_eq!(
            db.replay(node.rule_id),
            expected.clone(),
            "sql_query of rule {}",
            node.rule_id
        );
        segments.insert(node.rule_id, expected);
    }
    let again = case.refresh(db.conn(), as_of());
    prop_assert!(again.succeeded(), "{:?}", again);
    for node in &again.nodes {
        prop_assert_eq!(
            (node.entered, node.left),
            (Some(0), Some(0)),
            "rule {}",
            node.rule_id
        );
        let expected = &segments[&node.rule_id];
        prop_assert_eq!(&db.members(node.rule_id), expected);
        prop_assert!(
            node.incremental,
            "rule {} was rebuilt, not updated",
            node.rule_id
        );
        let segment = am_sql::catalog::all_segments(db.conn())
            .unwrap()
            .into_iter()
            .find(|s| s.rule_id == node.rule_id)
            .unwrap();
        let diff = am_sql::catalog::membership_diff(db.conn(), segment.id, 5).unwrap();
        prop_assert_eq!(
            (diff.entered_total, diff.left_total),
            (0, 0),
            "diff of rule {}",
            node.rule_id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_segments_equal_the_evaluator(
        ds in arb_dataset(),
        rules in proptest::collection::vec((arb_expr(), arb_shape()), 1..6),
    ) {
        segments_equal_the_evaluator(Engine::Sqlite, &ds, &rules)?;
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_segments_equal_the_evaluator(
        ds in arb_dataset(),
        rules in proptest::collection::vec((arb_expr(), arb_shape()), 1..6),
    ) {
        segments_equal_the_evaluator(Engine::Postgres, &ds, &rules)?;
    }
}

/// How rule `i`'s condition relates to earlier ones, to give the finder something to reuse.
#[derive(Debug, Clone)]
enum Derive {
    Fresh,
    Same(usize),
    And(usize, usize),
    Or(usize, usize),
    Not(usize),
}

fn arb_derive() -> impl Strategy<Value = Derive> {
    prop_oneof![
        2 => Just(Derive::Fresh),
        1 => any::<usize>().prop_map(Derive::Same),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Derive::And(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Derive::Or(a, b)),
        1 => any::<usize>().prop_map(Derive::Not),
    ]
}

/// The planner's plan (reuse on) through the engine gives every rule exactly its own
/// condition's members.
fn planned_reuse_never_changes_a_segment(
    engine: Engine,
    ds: &Dataset,
    rules: &[(Expr, Derive)],
) -> Result<(), TestCaseError> {
    use am_core::planner::{PlanOptions, Planner, RuleInput};

    let mut db = TestDb::new(engine);
    load_dataset(db.conn(), ds);
    let mut conditions: Vec<Expr> = Vec::new();
    for (fresh, derive) in rules {
        let pick = |n: usize| conditions.get(n % conditions.len().max(1)).cloned();
        let c = match derive {
            Derive::Fresh => None,
            Derive::Same(a) => pick(*a),
            Derive::And(a, b) => pick(*a)
                .zip(pick(*b))
                .map(|(a, b)| Expr::All(vec![a, b, fresh.clone()])),
            Derive::Or(a, b) => pick(*a).zip(pick(*b)).map(|(a, b)| Expr::Any(vec![a, b])),
            Derive::Not(a) => pick(*a).map(|a| Expr::Not(Box::new(a))),
        };
        conditions.push(c.unwrap_or_else(|| fresh.clone()));
    }
    let inputs: Vec<RuleInput> = conditions
        .iter()
        .enumerate()
        .map(|(i, c)| RuleInput {
            id: i as RuleId + 1,
            rule: checked(Some(c.clone()), vec![], None),
        })
        .collect();
    let plan = Planner::new(inputs, PlanOptions { reuse: true })
        .unwrap()
        .plan_all();
    let mut case = Case::new();
    for node in &plan.nodes {
        let rule = checked(
            Some(conditions[node.rule_id as usize - 1].clone()),
            vec![],
            None,
        );
        case.add(db.conn(), node.rule_id, rule, node.compute.clone());
    }
    let report = case.refresh(db.conn(), as_of());
    prop_assert!(report.succeeded(), "{:?}", report);
    for (i, c) in conditions.iter().enumerate() {
        let id = i as RuleId + 1;
        let expected = am_core::evaluate::evaluate_expr(c, ds, as_of());
        prop_assert_eq!(
            db.members(id),
            expected.clone(),
            "rule {} of plan {:?}",
            id,
            plan
        );
        prop_assert_eq!(db.replay(id), expected, "sql_query of rule {}", id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_planned_reuse_never_changes_a_segment(
        ds in arb_dataset(),
        rules in proptest::collection::vec((arb_expr(), arb_derive()), 1..7),
    ) {
        planned_reuse_never_changes_a_segment(Engine::Sqlite, &ds, &rules)?;
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_planned_reuse_never_changes_a_segment(
        ds in arb_dataset(),
        rules in proptest::collection::vec((arb_expr(), arb_derive()), 1..7),
    ) {
        planned_reuse_never_changes_a_segment(Engine::Postgres, &ds, &rules)?;
    }
}
