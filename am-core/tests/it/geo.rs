//! `location within_km`: validation with paths, the evaluator's meaning (users without a
//! location, `not`, the exact boundary) and reuse of a larger circle around the same centre.

use std::collections::BTreeSet;

use am_core::arbitrary::as_of;
use am_core::evaluate::{Dataset, User, evaluate_expr};
use am_core::expr::{Expr, Pred, Test};
use am_core::field::Field;
use am_core::finder::DependencyFinder;
use am_core::geo::{Circle, GeoPoint};
use am_core::plan::ReuseKind;
use am_core::validate::check_rule_json;
use serde_json::{Value as Json, json};

fn within(lat: f64, lon: f64, km: f64) -> Expr {
    Expr::Pred(Pred::Profile {
        field: Field::Location,
        test: Test::WithinKm(Circle::new(lat, lon, km).expect("in range")),
    })
}

fn problems(value: Json) -> Vec<(String, String)> {
    let rule = json!({"rule_name": "r", "conditions": [
        {"field": "location", "operator": "within_km", "value": value}
    ]});
    match check_rule_json(&rule) {
        Ok(r) => panic!("should be invalid: {r:?}"),
        Err(e) => e.0.into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

#[test]
fn a_circle_is_checked_into_a_test() {
    let rule = check_rule_json(&json!({"rule_name": "r", "conditions": [
        {"field": "location", "operator": "within_km",
         "value": {"lat": 12.9716, "lon": 77.5946, "km": 10}}
    ]}))
    .expect("valid");
    assert_eq!(
        rule.condition,
        Some(Expr::All(vec![within(12.9716, 77.5946, 10.0)]))
    );
}

#[test]
fn bad_circles_name_the_path_and_the_range() {
    let p = |path: &str, message: &str| (path.to_string(), message.to_string());
    assert_eq!(
        problems(json!({"lat": 91, "lon": -180.5, "km": 0})),
        vec![
            p(
                "conditions[0].value.lat",
                "expected a latitude in degrees from -90 to 90, got a number 91"
            ),
            p(
                "conditions[0].value.lon",
                "expected a longitude in degrees from -180 to 180, got a number -180.5"
            ),
            p(
                "conditions[0].value.km",
                "expected a radius in km, more than 0 and at most 20000, got a number 0"
            ),
        ]
    );
    assert_eq!(
        problems(json!({"lat": "12", "lon": 1, "radius": 3})),
        vec![
            p(
                "conditions[0].value.radius",
                "unknown key; within_km takes lat, lon, km"
            ),
            p(
                "conditions[0].value.lat",
                "expected a latitude in degrees from -90 to 90, got a string \"12\""
            ),
            p(
                "conditions[0].value.km",
                "is required: a radius in km, more than 0 and at most 20000"
            ),
        ]
    );
    let not_object = problems(json!([12.9, 77.5, 10]));
    assert_eq!(not_object[0].0, "conditions[0].value");
    assert!(not_object[0].1.starts_with("within_km needs {\"lat\""));
    // Only a location takes within_km, and a location takes nothing else.
    let other = check_rule_json(&json!({"rule_name": "r", "conditions": [
        {"field": "city_tier", "operator": "within_km", "value": {"lat": 0, "lon": 0, "km": 1}},
        {"field": "location", "operator": "=", "value": 1}
    ]}))
    .expect_err("invalid");
    let got: Vec<String> = other
        .0
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        got,
        [
            "conditions[0].operator: operator \"within_km\" does not apply to city_tier (integer); allowed: =, !=, >, >=, <, <=, in, not_in, between, is_null, is_not_null",
            "conditions[1].operator: operator \"=\" does not apply to location (location); allowed: within_km",
        ]
    );
}

fn users(n: i64) -> Vec<User> {
    (1..=n)
        .map(|user_id| User {
            user_id,
            name: None,
            email: None,
            city_tier: None,
            created_at: None,
        })
        .collect()
}

#[test]
fn users_without_a_location_are_never_within_and_not_is_the_complement() {
    let blr = GeoPoint::new(12.9716, 77.5946).expect("in range");
    let near = GeoPoint::new(13.0, 77.6).expect("in range"); // about 3 km away
    let far = GeoPoint::new(19.076, 72.8777).expect("in range");
    let ds = Dataset::new(users(4), vec![], vec![]).with_locations([(1, blr), (2, near), (3, far)]);
    let e = within(blr.lat, blr.lon, 10.0);
    assert_eq!(evaluate_expr(&e, &ds, as_of()), BTreeSet::from([1, 2]));
    let not = Expr::Not(Box::new(e));
    assert_eq!(evaluate_expr(&not, &ds, as_of()), BTreeSet::from([3, 4]));
}

#[test]
fn the_boundary_is_included_and_one_step_beyond_is_not() {
    // A point, and the radius whose threshold equals its haversine to the last bit.
    let center = (60.0, 24.9);
    let mut exact = None;
    'search: for i in 0..200 {
        let p = GeoPoint::new(60.0 + 0.05 + f64::from(i) * 1e-7, 24.93).expect("in range");
        let h = Circle::new(center.0, center.1, 1.0)
            .expect("in range")
            .haversine(p);
        let guess = 2.0 * am_core::geo::EARTH_RADIUS_KM * h.sqrt().asin();
        let mut km = guess;
        for _ in 0..8 {
            km = km.next_down();
        }
        for _ in 0..16 {
            let c = Circle::new(center.0, center.1, km).expect("in range");
            if c.max_haversine() == h {
                exact = Some((p, c));
                break 'search;
            }
            km = km.next_up();
        }
    }
    let (p, c) = exact.expect("some point lies exactly on a circle");
    assert!(c.contains(p));
    let mut smaller = c.km;
    while Circle::new(c.lat, c.lon, smaller)
        .expect("in range")
        .max_haversine()
        >= c.haversine(p)
    {
        smaller = smaller.next_down();
    }
    assert!(
        !Circle::new(c.lat, c.lon, smaller)
            .expect("in range")
            .contains(p)
    );
    // The distance people read agrees to a micrometre.
    assert!((c.distance_km(p) - c.km).abs() < 1e-9);
}

#[test]
fn a_smaller_circle_around_the_same_centre_reuses_the_larger() {
    let mut f = DependencyFinder::new();
    f.insert(1, "Near Bengaluru", &within(12.9716, 77.5946, 10.0));
    f.insert(2, "Near Mumbai", &within(19.076, 72.8777, 50.0));
    let (compute, reuse) = f
        .find(&within(12.9716, 77.5946, 5.0), &|_| false)
        .expect("narrows");
    assert_eq!(reuse.kind, ReuseKind::Narrowing);
    assert_eq!(reuse.parents, vec![1]);
    assert!(format!("{compute:?}").contains("Segment(1)"), "{compute:?}");
    // Another centre, or a larger radius, is no subset.
    assert!(f.find(&within(12.98, 77.5946, 5.0), &|_| false).is_none());
    assert!(
        f.find(&within(12.9716, 77.5946, 11.0), &|_| false)
            .is_none()
    );
}

#[test]
fn of_circles_around_one_centre_a_conjunction_keeps_the_smallest() {
    let e = Expr::All(vec![
        within(1.0, 2.0, 10.0),
        within(1.0, 2.0, 5.0),
        within(3.0, 2.0, 10.0),
    ]);
    let n = am_core::normalize::normalize(&e);
    assert_eq!(
        n,
        am_core::normalize::normalize(&Expr::All(vec![
            within(1.0, 2.0, 5.0),
            within(3.0, 2.0, 10.0)
        ]))
    );
    let text = am_core::plan_display::ExprText::new(&n).to_string();
    assert!(!text.contains("within 10 km of (1, 2)"), "{text}");
    assert!(text.contains("within 5 km of (1, 2)"), "{text}");
}

/// The random data and circles the differential tests draw cut through each other: located
/// users fall on both sides of random circles, so those tests compare real decisions.
#[test]
fn random_circles_cut_through_random_users() {
    use am_core::arbitrary::{arb_circle, arb_dataset};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut inside, mut outside) = (0, 0);
    for _ in 0..200 {
        let ds = arb_dataset().new_tree(&mut runner).expect("data").current();
        let c = arb_circle()
            .new_tree(&mut runner)
            .expect("circle")
            .current();
        let e = Expr::Pred(Pred::Profile {
            field: Field::Location,
            test: Test::WithinKm(c),
        });
        let members = evaluate_expr(&e, &ds, as_of()).len();
        inside += members;
        outside += ds.locations().len() - members;
    }
    assert!(
        inside >= 200 && outside >= 200,
        "{inside} in, {outside} out"
    );
}
