//! Normal forms: snapshots of representative rewrites, and properties on random conditions
//! and data (meaning kept, idempotence, fingerprints of equivalent forms).

use am_core::arbitrary::{arb_dataset, arb_expr, as_of};
use am_core::evaluate::evaluate_expr;
use am_core::expr::{CmpOp, Expr, Pred, Scope, Source, Test, Value, Window};
use am_core::field::Field;
use am_core::normalize::{fingerprint, normalize};
use proptest::prelude::*;

fn scope() -> Scope {
    Scope {
        source: Source::All,
        window: Window::UNBOUNDED,
        filter: None,
    }
}

fn agg(field: Field, test: Test) -> Expr {
    Expr::Pred(Pred::Aggregate {
        field,
        scope: scope(),
        test,
    })
}

fn spend(op: CmpOp, cents: i64) -> Expr {
    agg(Field::TotalSpend, Test::Cmp(op, Value::Money(cents)))
}

fn tier(test: Test) -> Expr {
    Expr::Pred(Pred::Profile {
        field: Field::CityTier,
        test,
    })
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

#[test]
fn bounds_on_one_aggregate_merge() {
    let e = Expr::All(vec![spend(CmpOp::Gt, 10_000), spend(CmpOp::Gt, 50_000)]);
    // > 500.00 on cents is >= 500.01.
    assert_eq!(normalize(&e), spend(CmpOp::Ge, 50_001));
    let e = Expr::All(vec![spend(CmpOp::Ge, 100), spend(CmpOp::Le, 100)]);
    assert_eq!(normalize(&e), spend(CmpOp::Eq, 100));
    let e = Expr::All(vec![spend(CmpOp::Gt, 100), spend(CmpOp::Lt, 100)]);
    assert_eq!(normalize(&e), Expr::False);
    let e = Expr::All(vec![spend(CmpOp::Eq, 1), spend(CmpOp::Eq, 2)]);
    assert_eq!(normalize(&e), Expr::False);
    let e = Expr::All(vec![
        tier(Test::In(vec![Value::Int(3), Value::Int(1)])),
        tier(Test::In(vec![Value::Int(2)])),
    ]);
    assert_eq!(normalize(&e), Expr::False);
    // Never-null aggregates: is_null is false.
    assert_eq!(
        normalize(&agg(Field::TotalSpend, Test::IsNull)),
        Expr::False
    );
}

#[test]
fn strict_bounds_on_the_average_stay_strict() {
    let avg = |op, c| agg(Field::AvgTransactionAmount, Test::Cmp(op, Value::Money(c)));
    assert_eq!(normalize(&avg(CmpOp::Gt, 500)), avg(CmpOp::Gt, 500));
    let e = Expr::All(vec![avg(CmpOp::Gt, 500), avg(CmpOp::Lt, 501)]);
    assert_eq!(
        normalize(&e),
        Expr::All(vec![avg(CmpOp::Gt, 500), avg(CmpOp::Lt, 501)])
    );
}

#[test]
fn equivalent_forms_share_a_fingerprint() {
    let a = Expr::All(vec![
        tier(Test::Cmp(CmpOp::Gt, Value::Int(1))),
        spend(CmpOp::Gt, 100),
    ]);
    let b = Expr::All(vec![
        Expr::True,
        not(not(spend(CmpOp::Ge, 101))),
        Expr::All(vec![
            tier(Test::Cmp(CmpOp::Ge, Value::Int(2))),
            spend(CmpOp::Gt, 100),
        ]),
    ]);
    assert_eq!(normalize(&a), normalize(&b));
    assert_eq!(fingerprint(&a), fingerprint(&b));
    assert_ne!(fingerprint(&a), fingerprint(&spend(CmpOp::Gt, 100)));
}

#[test]
fn fingerprint_is_stable() {
    // A fixed value: the fingerprint must not change between runs, platforms or releases
    // without a deliberate change of the normal form.
    let e = Expr::All(vec![
        spend(CmpOp::Gt, 100_000),
        tier(Test::Cmp(CmpOp::Eq, Value::Int(1))),
    ]);
    insta::assert_snapshot!(
        "fingerprint_contract_like",
        format!("{:016x}", fingerprint(&e))
    );
}

#[test]
fn normal_form_snapshots() {
    let x = tier(Test::Cmp(CmpOp::Eq, Value::Int(1)));
    let travel = Expr::Pred(Pred::Tx {
        field: Field::Category,
        test: Test::Cmp(CmpOp::Eq, Value::Text("Travel".into())),
    });
    let cases = [
        (
            "flatten_sort_dedup",
            Expr::All(vec![
                Expr::All(vec![spend(CmpOp::Le, 900), x.clone()]),
                Expr::Any(vec![Expr::False, Expr::Any(vec![x.clone(), x.clone()])]),
                spend(CmpOp::Gt, 100),
                tier(Test::NotIn(vec![
                    Value::Int(5),
                    Value::Int(2),
                    Value::Int(5),
                ])),
            ]),
        ),
        ("x_and_not_x", Expr::All(vec![x.clone(), not(x.clone())])),
        ("x_or_not_x", Expr::Any(vec![not(x.clone()), x.clone()])),
        (
            "filter_normalised",
            Expr::Pred(Pred::Aggregate {
                field: Field::TransactionCount,
                scope: Scope {
                    source: Source::Upi,
                    window: Window::LastDays(30),
                    filter: Some(Box::new(Expr::All(vec![
                        travel.clone(),
                        Expr::Any(vec![Expr::True, travel.clone()]),
                        Expr::Pred(Pred::Tx {
                            field: Field::Amount,
                            test: Test::Cmp(CmpOp::Lt, Value::Money(1000)),
                        }),
                    ]))),
                },
                test: Test::Cmp(CmpOp::Gt, Value::Int(2)),
            }),
        ),
        (
            "in_meets_bounds_and_exclusions",
            Expr::All(vec![
                tier(Test::In(vec![
                    Value::Int(4),
                    Value::Int(1),
                    Value::Int(2),
                    Value::Int(3),
                ])),
                tier(Test::Cmp(CmpOp::Gt, Value::Int(1))),
                tier(Test::Cmp(CmpOp::Ne, Value::Int(3))),
                tier(Test::IsNotNull),
            ]),
        ),
    ];
    for (name, e) in cases {
        insta::assert_debug_snapshot!(name, normalize(&e));
    }
}

/// An equivalent form: children reversed and the first one repeated, double negations
/// around leaves, `All`/`Any` wrapped in a one-child group with a neutral constant.
fn scramble(e: &Expr) -> Expr {
    match e {
        Expr::All(xs) | Expr::Any(xs) => {
            let mut ys: Vec<Expr> = xs.iter().rev().map(scramble).collect();
            if let Some(first) = ys.first().cloned() {
                ys.push(first);
            }
            match e {
                Expr::All(_) => Expr::All(vec![Expr::All(ys), Expr::True]),
                _ => Expr::Any(vec![Expr::False, Expr::Any(ys)]),
            }
        }
        Expr::Not(x) => not(scramble(x)),
        leaf => not(not(leaf.clone())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn normalize_keeps_meaning(ds in arb_dataset(), e in arb_expr()) {
        let n = normalize(&e);
        prop_assert_eq!(evaluate_expr(&e, &ds, as_of()), evaluate_expr(&n, &ds, as_of()), "normal form {:?}", n);
    }

    #[test]
    fn normalize_is_idempotent(e in arb_expr()) {
        let n = normalize(&e);
        prop_assert_eq!(normalize(&n), n);
    }

    #[test]
    fn equivalent_forms_normalise_equal(e in arb_expr()) {
        let s = scramble(&e);
        prop_assert_eq!(normalize(&s), normalize(&e));
        prop_assert_eq!(fingerprint(&normalize(&s)), fingerprint(&normalize(&e)));
    }

    /// Conjunctions of several tests on one subject, the case merging is about.
    #[test]
    fn merged_bounds_keep_meaning(ds in arb_dataset(), es in proptest::collection::vec(arb_expr(), 1..6)) {
        let e = Expr::All(es);
        prop_assert_eq!(evaluate_expr(&e, &ds, as_of()), evaluate_expr(&normalize(&e), &ds, as_of()));
    }
}
