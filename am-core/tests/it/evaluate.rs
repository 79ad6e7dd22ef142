//! Properties of the reference evaluator on random data and conditions.

use am_core::arbitrary::{arb_dataset, arb_expr, as_of};
use am_core::evaluate::{evaluate_expr, matches};
use am_core::expr::Expr;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// `not` is the complement over all users, and `matches` agrees with `evaluate_expr`.
    #[test]
    fn not_is_complement_and_matches_agrees(ds in arb_dataset(), e in arb_expr()) {
        let yes = evaluate_expr(&e, &ds, as_of());
        let no = evaluate_expr(&Expr::Not(Box::new(e.clone())), &ds, as_of());
        let all = ds.user_ids();
        prop_assert!(yes.is_disjoint(&no));
        prop_assert_eq!(yes.union(&no).copied().collect::<std::collections::BTreeSet<_>>(), all);
        for u in ds.users() {
            prop_assert_eq!(matches(&e, u, &ds, as_of()), yes.contains(&u.user_id));
        }
    }

    /// `All` is the intersection and `Any` the union of their children's users.
    #[test]
    fn all_and_any_are_intersection_and_union(ds in arb_dataset(), a in arb_expr(), b in arb_expr()) {
        let ea = evaluate_expr(&a, &ds, as_of());
        let eb = evaluate_expr(&b, &ds, as_of());
        let both = evaluate_expr(&Expr::All(vec![a.clone(), b.clone()]), &ds, as_of());
        let either = evaluate_expr(&Expr::Any(vec![a, b]), &ds, as_of());
        prop_assert_eq!(both, ea.intersection(&eb).copied().collect());
        prop_assert_eq!(either, ea.union(&eb).copied().collect());
    }
}

/// Random conditions over random data are often true and often false for a user, so the
/// properties above test something.
#[test]
fn random_conditions_split_users() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut some_in, mut some_out) = (0, 0);
    for _ in 0..200 {
        let ds = arb_dataset()
            .new_tree(&mut runner)
            .expect("dataset")
            .current();
        let e = arb_expr().new_tree(&mut runner).expect("expr").current();
        let n = evaluate_expr(&e, &ds, as_of()).len();
        if n > 0 {
            some_in += 1;
        }
        if n < ds.users().len() {
            some_out += 1;
        }
    }
    assert!(
        some_in > 40,
        "only {some_in} of 200 random conditions matched anyone"
    );
    assert!(
        some_out > 40,
        "only {some_out} of 200 random conditions left anyone out"
    );
}
