//! `location within_km` on every engine, at the edges: points exactly on a circle and one
//! radius step beyond, a millimetre either side, the poles and the antimeridian; users
//! without a location and `not`. Members and the stored `sql_query` equal the evaluator's.

use std::collections::BTreeSet;

use am_core::arbitrary::{as_of, edge_cases};
use am_core::evaluate::{Dataset, User, evaluate_expr};
use am_core::expr::{Expr, Pred, Test};
use am_core::field::Field;
use am_core::rule::RuleId;

use crate::engine::{Case, checked, load_dataset};

fn within(c: am_core::geo::Circle) -> Expr {
    Expr::Pred(Pred::Profile {
        field: Field::Location,
        test: Test::WithinKm(c),
    })
}

/// The edge cases' users, plus one without a location.
pub(crate) fn edge_dataset() -> (Dataset, Vec<Expr>) {
    let (located, circles) = edge_cases();
    let users: Vec<User> = (1..=located.len() as i64 + 1)
        .map(|user_id| User {
            user_id,
            name: None,
            email: None,
            city_tier: None,
            created_at: None,
        })
        .collect();
    let ds = Dataset::new(users, vec![], vec![]).with_locations(located);
    let mut rules: Vec<Expr> = circles.iter().map(|c| within(*c)).collect();
    rules.extend(circles.iter().map(|c| Expr::Not(Box::new(within(*c)))));
    (ds, rules)
}

#[test]
fn the_edge_cases_cut_where_they_should() {
    let (ds, rules) = edge_dataset();
    let members: Vec<BTreeSet<i64>> = rules
        .iter()
        .map(|e| evaluate_expr(e, &ds, as_of()))
        .collect();
    assert_eq!(rules.len(), 20, "both exact boundaries were found");
    // Exactly on the circle is in; one radius step shorter, out.
    assert_eq!(members[0], BTreeSet::from([1]));
    assert_eq!(members[1], BTreeSet::new());
    assert_eq!(members[2], BTreeSet::from([2]));
    assert_eq!(members[3], BTreeSet::new());
    // A millimetre inside 10 km is in, a millimetre outside is out.
    assert_eq!(members[4], BTreeSet::from([3]));
    // Around the north pole, across it, and at it.
    assert_eq!(members[5], BTreeSet::from([5]));
    assert_eq!(members[6], BTreeSet::from([5, 6]));
    assert_eq!(members[7], BTreeSet::from([8, 10]));
    // Across the antimeridian; 180 and -180 are one meridian.
    assert_eq!(members[8], BTreeSet::from([11, 13, 14]));
    assert_eq!(members[9], BTreeSet::from([13, 14]));
    // `not` is the complement, the user without a location included.
    let everyone: BTreeSet<i64> = ds.user_ids();
    let half = members.len() / 2;
    for (inside, outside) in members[..half].iter().zip(&members[half..]) {
        assert_eq!(inside | outside, everyone);
        assert!(outside.contains(&15));
    }
}

conformance! {
    fn edge_cases_agree_with_the_evaluator(db: &mut TestDb) {
        let (ds, rules) = edge_dataset();
        load_dataset(db.conn(), &ds);
        let mut case = Case::new();
        for (i, e) in rules.iter().enumerate() {
            case.add_direct(db.conn(), i as RuleId + 1, checked(Some(e.clone()), vec![], None));
        }
        let report = case.refresh(db.conn(), as_of());
        assert!(report.succeeded(), "{report:?}");
        for (i, e) in rules.iter().enumerate() {
            let id = i as RuleId + 1;
            let expected = evaluate_expr(e, &ds, as_of());
            assert_eq!(db.members(id), expected, "rule {id}: {e:?}");
            assert_eq!(db.replay(id), expected, "sql_query of rule {id}: {e:?}");
        }
    }
}

conformance! {
    /// A user who moves, or whose location is deleted, is picked up by an update from the
    /// change log, not a rebuild.
    fn a_move_is_an_incremental_update(db: &mut TestDb) {
        use crate::engines::{UserRow, insert_locations, insert_users};
        use sea_query::{Alias, Expr as SqlExpr, ExprTrait, Query};
        insert_users(db.conn(), &[UserRow::new(1), UserRow::new(2), UserRow::new(3)]);
        // Users 1 and 2 in Bengaluru's centre and in Mumbai.
        insert_locations(db.conn(), &[(1, 12.97, 77.59), (2, 19.07, 72.87)]);
        let circle = am_core::geo::Circle::new(12.9716, 77.5946, 10.0).unwrap();
        let mut case = Case::new();
        case.add_direct(db.conn(), 1, checked(Some(within(circle)), vec![], None));
        let first = case.refresh(db.conn(), as_of());
        assert!(first.succeeded(), "{first:?}");
        assert_eq!(db.members(1), BTreeSet::from([1]));

        let moved = Query::update()
            .table("user_locations")
            .value(Alias::new("latitude"), 12.95)
            .value(Alias::new("longitude"), 77.6)
            .and_where(SqlExpr::col("user_id").eq(2))
            .to_owned();
        db.exec(&moved);
        let gone = Query::delete()
            .from_table("user_locations")
            .and_where(SqlExpr::col("user_id").eq(1))
            .to_owned();
        db.exec(&gone);
        // Two of three users changed: more than Auto updates, so ask for the update.
        let report =
            case.refresh_in(db.conn(), as_of(), am_sql::refresh::RefreshMode::Incremental);
        let node = &report.nodes[0];
        assert!(node.incremental, "{node:?}");
        assert_eq!((node.entered, node.left), (Some(1), Some(1)));
        assert_eq!(db.members(1), BTreeSet::from([2]));
    }
}
