//! The DependencyFinder on its own: which reuse it finds, with which reason, and what it
//! refuses to claim.

use am_core::expr::{CmpOp, Expr, Pred, Test, Value};
use am_core::field::Field;
use am_core::finder::DependencyFinder;
use am_core::plan::ReuseKind;
use am_core::plan_display::SetExprText;
use am_core::rule::RuleId;

use crate::planner::{all_time, credit_30_days, spend, tier_in, travel_count};

fn avg(test: Test) -> Expr {
    Expr::Pred(Pred::Aggregate {
        field: Field::AvgTransactionAmount,
        scope: all_time(),
        test,
    })
}

fn name_starts(prefix: &str) -> Expr {
    Expr::Pred(Pred::Profile {
        field: Field::Name,
        test: Test::StartsWith(prefix.into()),
    })
}

fn finder() -> DependencyFinder {
    let mut f = DependencyFinder::new();
    f.insert(1, "Tier 1", &tier_in(&[1]));
    f.insert(2, "Spenders", &spend(CmpOp::Gt, 1000, all_time()));
    f.insert(
        3,
        "Card spenders",
        &spend(CmpOp::Gt, 1000, credit_30_days()),
    );
    f.insert(4, "Travellers", &travel_count(2));
    f.insert(5, "Tier 1 or 2", &tier_in(&[1, 2]));
    f.insert(6, "Solid spenders", &spend(CmpOp::Ge, 3000, all_time()));
    f.insert(
        7,
        "Tier 1 or travellers",
        &Expr::Any(vec![tier_in(&[1]), travel_count(2)]),
    );
    f.insert(8, "Avg known", &avg(Test::IsNotNull));
    f.insert(9, "Named A", &name_starts("a"));
    f
}

/// One line per decision: kind, parents, computation and reason.
fn decide(f: &DependencyFinder, e: &Expr) -> String {
    match f.find(e, &|_| false) {
        Some((compute, reuse)) => format!(
            "{:?} {:?}\n  = {}\n  because {}",
            reuse.kind,
            reuse.parents,
            SetExprText(&compute),
            reuse.reason
        ),
        None => "no reuse".into(),
    }
}

#[test]
fn reuse_decisions() {
    let f = finder();
    let cases: Vec<(&str, Expr)> = vec![
        ("equal", spend(CmpOp::Gt, 1000, all_time())),
        ("narrower bound", spend(CmpOp::Gt, 5000, all_time())),
        (
            "narrower bound, card scope",
            spend(CmpOp::Gt, 5000, credit_30_days()),
        ),
        ("value set inside value set", tier_in(&[2])),
        (
            "conjunction with residual",
            Expr::All(vec![
                tier_in(&[1]),
                travel_count(2),
                spend(CmpOp::Lt, 10, credit_30_days()),
            ]),
        ),
        (
            "single parent plus residual",
            Expr::All(vec![tier_in(&[1]), spend(CmpOp::Lt, 10, credit_30_days())]),
        ),
        (
            "disjunction",
            Expr::Any(vec![tier_in(&[1]), spend(CmpOp::Gt, 1000, all_time())]),
        ),
        (
            "disjunction with rest",
            Expr::Any(vec![spend(CmpOp::Gt, 1000, all_time()), tier_in(&[3])]),
        ),
        ("negation", Expr::Not(Box::new(travel_count(2)))),
        (
            "bounded average inside not-null",
            avg(Test::Cmp(CmpOp::Gt, Value::Money(500))),
        ),
        ("longer prefix", name_starts("Ab")),
        (
            "different scope",
            spend(CmpOp::Gt, 5000, {
                let mut s = credit_30_days();
                s.window = am_core::expr::Window::LastDays(7);
                s
            }),
        ),
        ("wider bound", spend(CmpOp::Gt, 10, all_time())),
        ("value set not inside", tier_in(&[1, 3])),
        ("null is not inside not-null", avg(Test::IsNull)),
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|(what, e)| format!("{what}: {}", decide(&f, e)))
        .collect();
    insta::assert_snapshot!("reuse_decisions", out.join("\n\n"));
}

#[test]
fn the_most_specific_parent_is_chosen() {
    let f = finder();
    let (_, reuse) = f
        .find(&spend(CmpOp::Gt, 5000, all_time()), &|_| false)
        .expect("narrowing");
    assert_eq!((reuse.kind, reuse.parents), (ReuseKind::Narrowing, vec![6]));
    // Without rule 6, the next most specific.
    let (_, reuse) = f
        .find(&spend(CmpOp::Gt, 5000, all_time()), &|id| id == 6)
        .expect("narrowing");
    assert_eq!(reuse.parents, vec![2]);
}

#[test]
fn excluded_rules_are_never_used() {
    let f = finder();
    let all_but = |keep: RuleId| move |id: RuleId| id != keep;
    assert!(f.find(&tier_in(&[1]), &|_| true).is_none());
    let (_, reuse) = f.find(&tier_in(&[1]), &all_but(5)).expect("narrowing to 5");
    assert_eq!((reuse.kind, reuse.parents), (ReuseKind::Narrowing, vec![5]));
}

#[test]
fn equal_rules_reuse_only_the_lower_id() {
    let mut f = DependencyFinder::new();
    f.insert(3, "first", &tier_in(&[2]));
    f.insert(9, "copy", &tier_in(&[2]));
    f.insert(12, "copy again", &tier_in(&[2]));
    assert!(f.find_for_rule(3, &tier_in(&[2]), &|_| false).is_none());
    for id in [9, 12] {
        let (_, reuse) = f
            .find_for_rule(id, &tier_in(&[2]), &|_| false)
            .expect("equal");
        assert_eq!((reuse.kind, reuse.parents), (ReuseKind::Equal, vec![3]));
    }
    assert_eq!(f.len(), 3);
}

#[test]
fn constant_conditions_are_not_indexed_or_answered() {
    let mut f = DependencyFinder::new();
    f.insert(1, "everyone", &Expr::True);
    f.insert(2, "no one", &Expr::All(vec![Expr::False, tier_in(&[1])]));
    assert!(f.is_empty());
    f.insert(3, "tier 1", &tier_in(&[1]));
    assert!(f.find(&Expr::True, &|_| false).is_none());
}

#[test]
fn ten_thousand_rules_answer_from_the_index() {
    // Many rules on the same field and scope: the answer is still the most specific one.
    let mut f = DependencyFinder::new();
    for i in 1..=10_000 {
        f.insert(
            i,
            &format!("spend over {i}"),
            &spend(CmpOp::Gt, i, all_time()),
        );
    }
    let (compute, reuse) = f
        .find(&spend(CmpOp::Gt, 20_000, all_time()), &|_| false)
        .expect("narrowing");
    assert_eq!(reuse.parents, vec![10_000]);
    assert_eq!(
        SetExprText(&compute).to_string(),
        "segment #10000 where total_spend >= 20000.01 [all sources, all time]"
    );
}
