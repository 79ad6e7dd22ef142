//! The planner: explicit dependencies, reuse edges, cycles, stages, selections, text and DOT,
//! and the properties that matter: reuse never changes a result, and plans are ordered.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use am_core::arbitrary::{arb_circle, arb_dataset, arb_expr, arb_scope, as_of};
use am_core::error::PlanError;
use am_core::evaluate::{Dataset, evaluate_rule, evaluate_set};
use am_core::expr::{CmpOp, Expr, Pred, Scope, Source, Test, Value, Window};
use am_core::field::Field;
use am_core::plan::{Plan, ReuseKind};
use am_core::planner::{PlanOptions, Planner, RuleInput};
use am_core::rule::{CheckedRule, Operation, RuleId};
use proptest::prelude::*;
use proptest::sample::select;

pub fn all_time() -> Scope {
    Scope {
        source: Source::All,
        window: Window::UNBOUNDED,
        filter: None,
    }
}

pub fn credit_30_days() -> Scope {
    Scope {
        source: Source::CreditCard,
        window: Window::LastDays(30),
        filter: None,
    }
}

pub fn tier_in(tiers: &[i64]) -> Expr {
    let test = match tiers {
        [t] => Test::Cmp(CmpOp::Eq, Value::Int(*t)),
        _ => Test::In(tiers.iter().map(|t| Value::Int(*t)).collect()),
    };
    Expr::Pred(Pred::Profile {
        field: Field::CityTier,
        test,
    })
}

pub fn spend(op: CmpOp, whole: i64, scope: Scope) -> Expr {
    Expr::Pred(Pred::Aggregate {
        field: Field::TotalSpend,
        scope,
        test: Test::Cmp(op, Value::Money(whole * 100)),
    })
}

pub fn travel_count(min: i64) -> Expr {
    Expr::Pred(Pred::Aggregate {
        field: Field::TransactionCount,
        scope: Scope {
            filter: Some(Box::new(Expr::Pred(Pred::Tx {
                field: Field::Category,
                test: Test::Cmp(CmpOp::Eq, Value::Text("Travel".into())),
            }))),
            ..all_time()
        },
        test: Test::Cmp(CmpOp::Ge, Value::Int(min)),
    })
}

pub fn rule(name: &str, condition: Option<Expr>) -> CheckedRule {
    CheckedRule {
        name: name.into(),
        condition,
        window: Window::UNBOUNDED,
        depends_on: vec![],
        operation: None,
        schedule: None,
    }
}

pub fn derived(
    name: &str,
    depends_on: Vec<RuleId>,
    operation: Option<Operation>,
    condition: Option<Expr>,
) -> CheckedRule {
    CheckedRule {
        depends_on,
        operation,
        ..rule(name, condition)
    }
}

pub fn inputs(rules: Vec<(RuleId, CheckedRule)>) -> Vec<RuleInput> {
    rules
        .into_iter()
        .map(|(id, rule)| RuleInput { id, rule })
        .collect()
}

/// A small catalogue of rules in which every kind of reuse occurs.
fn catalogue() -> Vec<RuleInput> {
    inputs(vec![
        (1, rule("Tier 1", Some(tier_in(&[1])))),
        (
            2,
            rule("Spenders", Some(spend(CmpOp::Gt, 1000, all_time()))),
        ),
        (
            3,
            rule("Big spenders", Some(spend(CmpOp::Gt, 5000, all_time()))),
        ),
        (4, derived("Tier 1 spenders", vec![1, 2], None, None)),
        (
            5,
            rule("Not tier 1", Some(Expr::Not(Box::new(tier_in(&[1]))))),
        ),
        (
            6,
            rule(
                "Tier 1 or travellers",
                Some(Expr::Any(vec![tier_in(&[1]), travel_count(3)])),
            ),
        ),
        (
            7,
            rule(
                "Tier 1 spenders who travel",
                Some(Expr::All(vec![
                    tier_in(&[1]),
                    spend(CmpOp::Gt, 1000, all_time()),
                    travel_count(1),
                ])),
            ),
        ),
        (
            8,
            rule("Spenders again", Some(spend(CmpOp::Gt, 1000, all_time()))),
        ),
        (
            9,
            derived(
                "Spenders outside tier 1",
                vec![2, 1],
                Some(Operation::Difference),
                Some(tier_in(&[2, 3])),
            ),
        ),
        (10, rule("Tier 1 or 2", Some(tier_in(&[1, 2])))),
        (
            11,
            rule(
                "Recent card spenders",
                Some(spend(CmpOp::Ge, 200, credit_30_days())),
            ),
        ),
        (
            12,
            rule(
                "Recent big card spenders",
                Some(spend(CmpOp::Gt, 5000, credit_30_days())),
            ),
        ),
        (13, rule("Everyone", None)),
    ])
}

fn planner() -> Planner {
    Planner::new(catalogue(), PlanOptions::default()).expect("the catalogue plans")
}

#[test]
fn plan_text_shows_stages_computation_and_reasons() {
    insta::assert_snapshot!("plan_all_text", planner().plan_all().to_string());
}

#[test]
fn plan_dot_shows_explicit_and_reuse_edges() {
    insta::assert_snapshot!("plan_all_dot", planner().plan_all().to_dot());
}

#[test]
fn without_reuse_every_rule_is_direct() {
    let p = Planner::new(catalogue(), PlanOptions { reuse: false }).expect("plans");
    let plan = p.plan_all();
    assert!(plan.nodes.iter().all(|n| n.reuse.is_none()));
    assert_eq!(
        plan.stages,
        vec![vec![1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13], vec![4, 9]]
    );
    insta::assert_snapshot!("plan_all_no_reuse", plan.to_string());
}

#[test]
fn each_kind_of_reuse_is_chosen() {
    let p = planner();
    let kind = |id| p.reuse_of(id).map(|r| (r.kind, r.parents.clone()));
    assert_eq!(kind(1), Some((ReuseKind::Narrowing, vec![10])));
    assert_eq!(kind(10), None);
    assert_eq!(
        kind(2),
        None,
        "the lower id of two equal rules is the parent"
    );
    assert_eq!(kind(8), Some((ReuseKind::Equal, vec![2])));
    assert_eq!(kind(3), Some((ReuseKind::Narrowing, vec![2])));
    assert_eq!(kind(5), Some((ReuseKind::Negation, vec![1])));
    assert_eq!(kind(6), Some((ReuseKind::Disjunction, vec![1])));
    assert_eq!(kind(7), Some((ReuseKind::Conjunction, vec![1, 2])));
    assert_eq!(kind(12), Some((ReuseKind::Narrowing, vec![11])));
    // Explicit dependencies are never rewritten.
    assert_eq!(kind(4), None);
    assert_eq!(kind(9), None);
    assert_eq!(p.node(9).map(|n| n.upstream.clone()), Some(vec![2, 1]));
}

#[test]
fn selection_upstream_and_downstream() {
    let p = planner();
    let ids = |plan: Plan| plan.nodes.iter().map(|n| n.rule_id).collect::<Vec<_>>();
    assert_eq!(ids(p.plan_for(&[4]).expect("known")), vec![2, 10, 1, 4]);
    assert_eq!(ids(p.plan_for(&[3]).expect("known")), vec![2, 3]);
    assert_eq!(ids(p.plan_for(&[13]).expect("known")), vec![13]);
    // Changing rule 2 touches what reads it, plus what those read (rules 1 and 10).
    let down = p.downstream_of(&[2]).expect("known");
    assert_eq!(ids(down.clone()), vec![2, 10, 1, 3, 8, 4, 7, 9]);
    assert_eq!(down.stages, vec![vec![2, 10], vec![1, 3, 8], vec![4, 7, 9]]);
    assert_eq!(p.plan_for(&[99]), Err(PlanError::NotFound(99)));
    assert_eq!(p.downstream_of(&[1, 99]), Err(PlanError::NotFound(99)));
    insta::assert_snapshot!("plan_for_7", p.plan_for(&[7]).expect("known").to_string());
}

#[test]
fn dependants_are_explicit_only() {
    let p = planner();
    assert_eq!(p.dependants_of(1), vec![4, 9]);
    assert_eq!(p.dependants_of(2), vec![4, 9]);
    assert_eq!(p.dependants_of(3), Vec::<RuleId>::new());
    assert_eq!(p.reused_by(2), vec![3, 7, 8]);
    assert_eq!(p.dependants_of(404), Vec::<RuleId>::new());
    assert_eq!(p.stage_of(4), Some(2));
    assert_eq!(p.reused_by(10), vec![1]);
}

#[test]
fn cycles_name_every_rule_in_order() {
    let rules = inputs(vec![
        (1, rule("base", Some(tier_in(&[1])))),
        (2, derived("a", vec![1, 4], None, None)),
        (3, derived("b", vec![2], None, None)),
        (4, derived("c", vec![3], Some(Operation::Union), None)),
        (5, derived("d", vec![4], None, None)),
    ]);
    let err = Planner::new(rules, PlanOptions::default()).expect_err("cycle");
    assert_eq!(
        err,
        PlanError::Cycle {
            rules: vec![(2, "a".into()), (4, "c".into()), (3, "b".into())]
        }
    );
    assert_eq!(
        err.to_string(),
        "dependency cycle: a (#2) -> c (#4) -> b (#3)"
    );
}

#[test]
fn a_rule_depending_on_itself_is_a_cycle() {
    let rules = inputs(vec![(7, derived("self", vec![7], None, None))]);
    assert_eq!(
        Planner::new(rules, PlanOptions::default()).map(|_| ()),
        Err(PlanError::Cycle {
            rules: vec![(7, "self".into())]
        })
    );
}

#[test]
fn unknown_dependencies_are_named() {
    let rules = inputs(vec![
        (1, rule("base", Some(tier_in(&[1])))),
        (2, derived("orphan", vec![1, 42], None, None)),
    ]);
    assert_eq!(
        Planner::new(rules, PlanOptions::default()).map(|_| ()),
        Err(PlanError::UnknownRule {
            rule: 2,
            missing: 42
        })
    );
}

#[test]
fn reuse_never_makes_a_cycle() {
    // Rule 2 reads rule 1 explicitly; rule 1 is narrower than rule 2's condition would
    // allow as a parent, but rule 1 may not reuse rule 3 if rule 3 read rule 1 either.
    let rules = inputs(vec![
        (1, rule("big", Some(spend(CmpOp::Gt, 5000, all_time())))),
        (2, derived("from big", vec![1], None, None)),
        (
            3,
            rule("same as big", Some(spend(CmpOp::Gt, 5000, all_time()))),
        ),
        (4, rule("bigger", Some(spend(CmpOp::Gt, 9000, all_time())))),
    ]);
    let p = Planner::new(rules, PlanOptions::default()).expect("plans");
    assert_eq!(p.reuse_of(1), None);
    assert_eq!(p.reuse_of(3).map(|r| r.parents.clone()), Some(vec![1]));
    assert_eq!(p.reuse_of(4).map(|r| r.parents.clone()), Some(vec![1]));
    check_plan_order(&p.plan_all());
}

/// Every node comes after everything it reads, in a strictly later stage, and the stages
/// hold exactly the plan's nodes.
pub fn check_plan_order(plan: &Plan) {
    let mut position = HashMap::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        assert!(
            position.insert(n.rule_id, i).is_none(),
            "rule {} twice",
            n.rule_id
        );
    }
    let mut stage = HashMap::new();
    for (s, ids) in plan.stages.iter().enumerate() {
        assert!(!ids.is_empty(), "empty stage {s}");
        for id in ids {
            assert!(stage.insert(*id, s).is_none(), "rule {id} in two stages");
        }
    }
    assert_eq!(stage.len(), plan.nodes.len());
    for n in &plan.nodes {
        for u in &n.upstream {
            let (Some(pu), Some(pn)) = (position.get(u), position.get(&n.rule_id)) else {
                panic!("rule {} reads {u}, which is not in the plan", n.rule_id);
            };
            assert!(pu < pn, "rule {} comes before its upstream {u}", n.rule_id);
            assert!(stage[u] < stage[&n.rule_id]);
        }
        if let Some(r) = &n.reuse {
            for p in &r.parents {
                assert!(n.upstream.contains(p), "reuse parent {p} is upstream");
            }
        }
    }
}

/// Random rule sets in which reuse has something to find: base conditions, and rules built
/// from them as equal copies, conjunctions, disjunctions, negations and narrower bounds,
/// plus rules with explicit dependencies on earlier ones.
fn arb_rules() -> impl Strategy<Value = Vec<RuleInput>> {
    let bounds = (
        arb_scope(),
        select(vec![Field::TotalSpend, Field::AvgTransactionAmount]),
        0i64..=3000,
        0i64..=3000,
        any::<bool>(),
    )
        .prop_map(|(scope, field, a, b, strict)| {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let op = if strict { CmpOp::Gt } else { CmpOp::Ge };
            let pred = |cents| {
                Expr::Pred(Pred::Aggregate {
                    field,
                    scope: scope.clone(),
                    test: Test::Cmp(op, Value::Money(cents)),
                })
            };
            (pred(lo * 50), pred(hi * 50))
        });
    // Two circles around one centre; the smaller lies inside the larger.
    let circles = (arb_circle(), 0.05..1.0f64).prop_map(|(wide, shrink)| {
        let within = |c| {
            Expr::Pred(Pred::Profile {
                field: Field::Location,
                test: Test::WithinKm(c),
            })
        };
        let tight = am_core::geo::Circle::new(wide.lat, wide.lon, wide.km * shrink)
            .expect("a smaller radius is in range");
        (within(wide), within(tight))
    });
    let bases = proptest::collection::vec(arb_expr(), 2..5);
    let narrow = proptest::collection::vec(prop_oneof![3 => bounds, 1 => circles], 1..3);
    let shapes = proptest::collection::vec(
        (
            0u8..8,
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            arb_expr(),
        ),
        2..8,
    );
    (bases, narrow, shapes).prop_map(|(bases, narrow, shapes)| {
        let mut conds: Vec<Expr> = bases;
        for (wide, tight) in narrow {
            conds.push(wide);
            conds.push(tight);
        }
        conds.push(Expr::Not(Box::new(tier_in(&[1, 2]))));
        conds.push(tier_in(&[1, 2]));
        let mut rules: Vec<(RuleId, CheckedRule)> = Vec::new();
        for (i, c) in conds.iter().enumerate() {
            rules.push((
                i as RuleId + 1,
                rule(&format!("base {}", i + 1), Some(c.clone())),
            ));
        }
        for (shape, a, b, extra) in shapes {
            let id = rules.len() as RuleId + 1;
            let x = a.get(&conds).clone();
            let y = b.get(&conds).clone();
            let name = format!("derived {id}");
            let r = match shape {
                0 => rule(&name, Some(x)),
                1 => rule(&name, Some(Expr::All(vec![x, y, extra]))),
                2 => rule(&name, Some(Expr::All(vec![x, y]))),
                3 => rule(&name, Some(Expr::Any(vec![x, extra]))),
                4 => rule(&name, Some(Expr::Not(Box::new(x)))),
                5 => rule(&name, Some(Expr::All(vec![x, extra]))),
                6 => {
                    let dep = a.index(rules.len()) as RuleId + 1;
                    let other = b.index(rules.len()) as RuleId + 1;
                    let op =
                        [None, Some(Operation::Union), Some(Operation::Difference)][a.index(3)];
                    derived(&name, vec![dep, other], op, Some(extra))
                }
                _ => {
                    let dep = a.index(rules.len()) as RuleId + 1;
                    derived(&name, vec![dep], Some(Operation::Intersection), None)
                }
            };
            rules.push((id, r));
        }
        inputs(rules)
    })
}

/// Members of every rule, computed through the plan (with reuse) and directly.
fn through_plan_and_direct(
    p: &Planner,
    rules: &[RuleInput],
    ds: &Dataset,
) -> (
    BTreeMap<RuleId, BTreeSet<i64>>,
    BTreeMap<RuleId, BTreeSet<i64>>,
) {
    let plan = p.plan_all();
    let by_id: HashMap<RuleId, &CheckedRule> = rules.iter().map(|r| (r.id, &r.rule)).collect();
    let mut planned = BTreeMap::new();
    let mut direct = BTreeMap::new();
    for n in &plan.nodes {
        let via = evaluate_set(&n.compute, ds, as_of(), &planned);
        planned.insert(n.rule_id, via);
        let rule = by_id[&n.rule_id];
        let own = evaluate_rule(rule, ds, as_of(), &direct);
        direct.insert(n.rule_id, own);
    }
    (planned, direct)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Evaluating through the finder's reuse gives exactly what direct evaluation gives.
    #[test]
    fn reuse_never_changes_a_result(rules in arb_rules(), ds in arb_dataset()) {
        let p = Planner::new(rules.clone(), PlanOptions::default()).expect("deps point back");
        let (planned, direct) = through_plan_and_direct(&p, &rules, &ds);
        prop_assert_eq!(planned, direct);
    }

    /// Plans are acyclic and ordered, and selections carry everything upstream.
    #[test]
    fn plans_are_ordered(rules in arb_rules(), pick in any::<prop::sample::Index>()) {
        let p = Planner::new(rules.clone(), PlanOptions::default()).expect("deps point back");
        let all = p.plan_all();
        check_plan_order(&all);
        prop_assert_eq!(all.nodes.len(), rules.len());
        let target = rules[pick.index(rules.len())].id;
        let up = p.plan_for(&[target]).expect("known");
        check_plan_order(&up);
        prop_assert!(up.nodes.iter().any(|n| n.rule_id == target));
        let down = p.downstream_of(&[target]).expect("known");
        check_plan_order(&down);
        for n in &all.nodes {
            if n.upstream.contains(&target) {
                prop_assert!(down.nodes.iter().any(|d| d.rule_id == n.rule_id));
            }
        }
    }

    /// With dependencies in any direction, planning either succeeds with an ordered plan or
    /// reports a real cycle: each rule named depends on the next, the last on the first.
    #[test]
    fn cycles_are_real(deps in proptest::collection::vec(proptest::collection::vec(1i64..=8, 0..3), 1..=8)) {
        let rules: Vec<RuleInput> = deps.iter().enumerate().map(|(i, d)| {
            let id = i as RuleId + 1;
            let d: Vec<RuleId> = d.iter().copied().filter(|x| *x <= deps.len() as RuleId).collect();
            let r = if d.is_empty() {
                rule(&format!("r{id}"), Some(tier_in(&[id])))
            } else {
                derived(&format!("r{id}"), d, None, None)
            };
            RuleInput { id, rule: r }
        }).collect();
        let depends = |a: RuleId, b: RuleId| rules[(a - 1) as usize].rule.depends_on.contains(&b);
        match Planner::new(rules.clone(), PlanOptions::default()) {
            Ok(p) => check_plan_order(&p.plan_all()),
            Err(PlanError::Cycle { rules: cycle }) => {
                prop_assert!(!cycle.is_empty());
                for (i, (id, _)) in cycle.iter().enumerate() {
                    let next = cycle[(i + 1) % cycle.len()].0;
                    prop_assert!(depends(*id, next), "{id} does not depend on {next}");
                }
            }
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}

/// The random rule sets above do exercise reuse, of several kinds.
#[test]
fn random_rule_sets_trigger_reuse() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_rules();
    let mut with_reuse = 0;
    let mut kinds = BTreeSet::new();
    let mut circle_narrowings = 0;
    for _ in 0..100 {
        let rules = strategy
            .new_tree(&mut runner)
            .expect("strategy generates")
            .current();
        let p = Planner::new(rules.clone(), PlanOptions::default()).expect("plans");
        let mut any = false;
        for r in &rules {
            if let Some(reuse) = p.reuse_of(r.id) {
                any = true;
                kinds.insert(format!("{:?}", reuse.kind));
                if reuse.kind == ReuseKind::Narrowing && reuse.reason.contains("location within") {
                    circle_narrowings += 1;
                }
            }
        }
        with_reuse += usize::from(any);
    }
    assert!(
        with_reuse >= 80,
        "only {with_reuse} of 100 rule sets reused anything"
    );
    assert!(
        circle_narrowings >= 5,
        "only {circle_narrowings} narrowings from a larger circle"
    );
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "Conjunction",
            "Disjunction",
            "Equal",
            "Narrowing",
            "Negation"
        ]
    );
}
