//! Proptest strategies for random datasets, checked conditions and rule JSON, shared by the
//! tests of every crate (feature `arbitrary`).
//!
//! Value domains are deliberately small (a few categories, amounts and dates around a fixed
//! as-of time) so that random predicates are often true and often false, windows cut through
//! the data, and random conditions often share fields and scopes.

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value as Json, json};

use crate::evaluate::{Dataset, Transaction, User};
use crate::expr::{Cents, CmpOp, Expr, Pred, Scope, Source, Test, Timestamp, Value, Window};
use crate::field::{Field, FieldKind, ValueType};
use crate::geo::{Circle, GeoPoint};

/// The fixed as-of time random data is generated around: 2025-06-30 12:00:00.
pub fn as_of() -> Timestamp {
    day(60) + Duration::hours(12)
}

/// Midnight `n` days after 2025-05-01 (the first day of random data).
fn day(n: i64) -> Timestamp {
    let base = NaiveDate::from_ymd_opt(2025, 5, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("2025-05-01 is a valid date");
    base + Duration::days(n)
}

/// A time within the 61 days before [`as_of`], often at a day's first or last second.
pub fn arb_timestamp() -> impl Strategy<Value = Timestamp> + Clone {
    let secs = prop_oneof![Just(0i64), Just(43_200i64), Just(86_399i64), 0i64..86_400];
    (0i64..=60, secs).prop_map(|(d, s)| day(d) + Duration::seconds(s))
}

/// An amount in cents: mostly from a few round and awkward values, sometimes anything up to
/// 1,500.00.
pub fn arb_cents() -> impl Strategy<Value = Cents> + Clone {
    prop_oneof![
        2 => select(vec![0, 10, 20, 99, 100, 500, 1_000, 5_000, 10_000, 99_970, 100_000]),
        1 => 0i64..=150_000,
    ]
}

fn text_domain(field: Field) -> &'static [&'static str] {
    match field {
        Field::Name => &["Asha Rao", "Ben Li", "asha k"],
        Field::Email => &["asha@example.com", "ben@test.org", "x@example.com"],
        Field::Category => &["Travel", "Food", "Groceries", "travel"],
        Field::Merchant => &["Acme Air", "Globex", "acme"],
        Field::Description => &["Rent", "rent march", "Gift to Ben"],
        _ => &["x"],
    }
}

/// Substrings and prefixes that hit the text domains in various cases.
fn needles(field: Field) -> &'static [&'static str] {
    match field {
        Field::Name => &["asha", "LI", "b"],
        Field::Email => &["example", "@TEST", "asha"],
        Field::Category => &["trav", "FOOD", "g"],
        Field::Merchant => &["acme", "GLO", "air"],
        Field::Description => &["rent", "GIFT", "march"],
        _ => &["x"],
    }
}

fn int_range(field: Field) -> std::ops::RangeInclusive<i64> {
    match field {
        Field::UserId => 0..=42,
        Field::CityTier => 0..=4,
        Field::TransactionCount => 0..=6,
        Field::DaysSinceLastTransaction => 0..=70,
        _ => 0..=4,
    }
}

/// A random value of the field's type, from the field's small domain.
pub fn arb_value(field: Field) -> BoxedStrategy<Value> {
    match field.value_type() {
        ValueType::Integer => int_range(field).prop_map(Value::Int).boxed(),
        ValueType::Money if field == Field::TotalSpend => prop_oneof![arb_cents(), 0i64..=400_000]
            .prop_map(Value::Money)
            .boxed(),
        ValueType::Money => arb_cents().prop_map(Value::Money).boxed(),
        ValueType::Text => select(text_domain(field))
            .prop_map(|s| Value::Text(s.to_string()))
            .boxed(),
        ValueType::Timestamp => arb_timestamp().prop_map(Value::Time).boxed(),
        // A location has no plain value (its test takes a circle, see [`arb_circle`]); an
        // integer compares with nothing there.
        ValueType::Location => Just(Value::Int(0)).boxed(),
    }
}

/// Where random users live and circles are drawn: a city, and places near the poles and on
/// both sides of the antimeridian, where longitudes wrap and meridians converge.
const PLACES: [(f64, f64); 5] = [
    (12.9716, 77.5946),
    (89.9, 10.0),
    (-89.95, -120.0),
    (0.3, 179.9),
    (-0.2, -179.95),
];

/// A point within about 60 km of one of [`PLACES`], the longitude wrapped into range.
pub fn arb_point() -> impl Strategy<Value = GeoPoint> + Clone {
    (select(PLACES.to_vec()), -0.5..0.5f64, -0.8..0.8f64).prop_map(|((lat, lon), dlat, dlon)| {
        let lat = (lat + dlat).clamp(-90.0, 90.0);
        let mut lon = lon + dlon;
        if lon > 180.0 {
            lon -= 360.0;
        } else if lon < -180.0 {
            lon += 360.0;
        }
        GeoPoint { lat, lon }
    })
}

/// A circle around one of [`PLACES`] or a random point near them, of a radius from a few
/// round values or anything up to 120 km, so it cuts through the users near it.
pub fn arb_circle() -> impl Strategy<Value = Circle> + Clone {
    let center = prop_oneof![
        select(PLACES.to_vec()).prop_map(|(lat, lon)| GeoPoint { lat, lon }),
        arb_point(),
    ];
    let km = prop_oneof![select(vec![1.0, 5.0, 10.0, 25.0, 50.0]), 0.5..120.0f64,];
    (center, km).prop_filter_map("in range", |(c, km)| Circle::new(c.lat, c.lon, km))
}

fn arb_cmp_op() -> impl Strategy<Value = CmpOp> + Clone {
    select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Gt,
        CmpOp::Ge,
        CmpOp::Lt,
        CmpOp::Le,
    ])
}

fn sorted_pair(v: BoxedStrategy<Value>) -> impl Strategy<Value = (Value, Value)> {
    (v.clone(), v).prop_map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
}

/// A well-typed test for the field, of a kind validation can produce for its type.
pub fn arb_test(field: Field) -> BoxedStrategy<Test> {
    if field.value_type() == ValueType::Location {
        return arb_circle().prop_map(Test::WithinKm).boxed();
    }
    let v = arb_value(field);
    let list = || proptest::collection::vec(arb_value(field), 1..4);
    let nulls = prop_oneof![Just(Test::IsNull), Just(Test::IsNotNull)];
    match field.value_type() {
        ValueType::Integer | ValueType::Money => prop_oneof![
            4 => (arb_cmp_op(), v.clone()).prop_map(|(op, v)| Test::Cmp(op, v)),
            1 => list().prop_map(Test::In),
            1 => list().prop_map(Test::NotIn),
            1 => sorted_pair(v.clone()).prop_map(|(a, b)| Test::Between(a, b)),
            1 => sorted_pair(v).prop_map(|(a, b)| Test::NotBetween(a, b)),
            1 => nulls,
        ]
        .boxed(),
        ValueType::Text => prop_oneof![
            2 => (select(vec![CmpOp::Eq, CmpOp::Ne]), v).prop_map(|(op, v)| Test::Cmp(op, v)),
            1 => list().prop_map(Test::In),
            1 => list().prop_map(Test::NotIn),
            1 => select(needles(field)).prop_map(|s| Test::Contains(s.to_string())),
            1 => select(needles(field)).prop_map(|s| Test::StartsWith(s.to_string())),
            1 => nulls,
        ]
        .boxed(),
        ValueType::Timestamp => prop_oneof![
            3 => (arb_cmp_op(), v.clone()).prop_map(|(op, v)| Test::Cmp(op, v)),
            1 => sorted_pair(v.clone()).prop_map(|(a, b)| Test::Between(a, b)),
            1 => sorted_pair(v).prop_map(|(a, b)| Test::NotBetween(a, b)),
            1 => nulls,
        ]
        .boxed(),
        ValueType::Location => arb_circle().prop_map(Test::WithinKm).boxed(),
    }
}

fn arb_source() -> impl Strategy<Value = Source> + Clone {
    select(vec![Source::All, Source::CreditCard, Source::Upi])
}

/// A window: unbounded, a range with either side optional, or the last few days.
pub fn arb_window() -> impl Strategy<Value = Window> + Clone {
    let range = (
        proptest::option::of(arb_timestamp()),
        proptest::option::of(arb_timestamp()),
    )
        .prop_map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if b < a => Window::Range {
                start: Some(b),
                end: Some(a),
            },
            (start, end) => Window::Range { start, end },
        });
    prop_oneof![
        Just(Window::UNBOUNDED),
        range,
        select(vec![1u32, 7, 30, 45]).prop_map(Window::LastDays),
    ]
}

/// Transaction fields that exist on the source's tables.
fn tx_fields(source: Source) -> Vec<Field> {
    let mut fields = vec![Field::Category, Field::Amount, Field::TransactionDate];
    if source != Source::Upi {
        fields.push(Field::Merchant);
    }
    if source != Source::CreditCard {
        fields.push(Field::Description);
    }
    fields
}

/// A scope filter over the transaction fields available on the source.
pub fn arb_filter(source: Source) -> BoxedStrategy<Expr> {
    let leaf = select(tx_fields(source)).prop_flat_map(|field| {
        arb_test(field).prop_map(move |test| Expr::Pred(Pred::Tx { field, test }))
    });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(Expr::All),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(Expr::Any),
            inner.prop_map(|x| Expr::Not(Box::new(x))),
        ]
    })
    .boxed()
}

/// A random scope; half the time the default one, so aggregates often share it.
pub fn arb_scope() -> BoxedStrategy<Scope> {
    let random = (arb_source(), arb_window()).prop_flat_map(|(source, window)| {
        proptest::option::of(arb_filter(source)).prop_map(move |f| Scope {
            source,
            window,
            filter: f.map(Box::new),
        })
    });
    prop_oneof![
        Just(Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: None
        }),
        random,
    ]
    .boxed()
}

fn fields_of(kind: FieldKind) -> Vec<Field> {
    Field::ALL
        .iter()
        .copied()
        .filter(|f| f.kind() == kind)
        .collect()
}

/// A predicate on a profile field.
pub fn arb_profile_pred() -> BoxedStrategy<Expr> {
    select(fields_of(FieldKind::Profile))
        .prop_flat_map(|field| {
            arb_test(field).prop_map(move |test| Expr::Pred(Pred::Profile { field, test }))
        })
        .boxed()
}

/// A predicate on an aggregate with a random scope.
pub fn arb_aggregate_pred() -> BoxedStrategy<Expr> {
    (select(fields_of(FieldKind::Aggregate)), arb_scope())
        .prop_flat_map(|(field, scope)| {
            arb_test(field).prop_map(move |test| {
                Expr::Pred(Pred::Aggregate {
                    field,
                    scope: scope.clone(),
                    test,
                })
            })
        })
        .boxed()
}

/// A random checked condition: nested `All`/`Any`/`Not` over profile and aggregate
/// predicates (transaction predicates only inside scope filters), now and then a constant.
pub fn arb_expr() -> BoxedStrategy<Expr> {
    let leaf = prop_oneof![
        4 => arb_profile_pred(),
        4 => arb_aggregate_pred(),
        1 => prop_oneof![Just(Expr::True), Just(Expr::False)],
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Expr::All),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Expr::Any),
            inner.prop_map(|x| Expr::Not(Box::new(x))),
        ]
    })
    .boxed()
}

pub fn arb_user_profile() -> impl Strategy<
    Value = (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<Timestamp>,
    ),
> {
    let text = |f: Field| {
        proptest::option::weighted(0.85, select(text_domain(f)).prop_map(str::to_string))
    };
    (
        text(Field::Name),
        text(Field::Email),
        proptest::option::weighted(0.85, 1i64..=3),
        proptest::option::weighted(0.85, arb_timestamp()),
    )
}

pub fn arb_transaction_row() -> impl Strategy<Value = (bool, i64, Transaction)> {
    let text =
        |f: Field| proptest::option::weighted(0.9, select(text_domain(f)).prop_map(str::to_string));
    (
        any::<bool>(),
        1i64..=40,
        proptest::option::weighted(0.9, arb_cents()),
        text(Field::Category),
        text(Field::Merchant),
        text(Field::Description),
        proptest::option::weighted(0.9, arb_timestamp()),
    )
        .prop_map(
            |(credit, user_id, amount, category, merchant, description, date)| {
                let tx = Transaction {
                    transaction_id: 0,
                    user_id,
                    amount,
                    category,
                    merchant: if credit { merchant } else { None },
                    description: if credit { None } else { description },
                    transaction_date: date,
                };
                (credit, user_id, tx)
            },
        )
}

/// A small random dataset: up to 30 users (ids from 1), up to 120 transactions over both
/// tables, some of users that do not exist, some users without any, some nulls; most users
/// have a location.
pub fn arb_dataset() -> BoxedStrategy<Dataset> {
    (
        proptest::collection::vec(arb_user_profile(), 0..=30),
        proptest::collection::vec(arb_transaction_row(), 0..=120),
        proptest::collection::vec(proptest::option::weighted(0.8, arb_point()), 30),
    )
        .prop_map(|(profiles, rows, points)| {
            let locations: Vec<(i64, GeoPoint)> = (1i64..)
                .zip(points)
                .take(profiles.len())
                .filter_map(|(id, p)| Some((id, p?)))
                .collect();
            let users = profiles
                .into_iter()
                .zip(1i64..)
                .map(|((name, email, city_tier, created_at), user_id)| User {
                    user_id,
                    name,
                    email,
                    city_tier,
                    created_at,
                })
                .collect();
            let (mut credit_card, mut upi) = (Vec::new(), Vec::new());
            for ((credit, _, mut tx), id) in rows.into_iter().zip(1i64..) {
                tx.transaction_id = id;
                if credit {
                    credit_card.push(tx);
                } else {
                    upi.push(tx);
                }
            }
            Dataset::new(users, credit_card, upi).with_locations(locations)
        })
        .boxed()
}

// ---- rule JSON in the user-facing language ----

/// Money as a JSON number written with at most two decimals (`12`, `999.7`, `0.25`).
fn money_json(c: Cents) -> Json {
    let text = if c % 100 == 0 {
        format!("{}", c / 100)
    } else if c % 10 == 0 {
        format!("{}.{}", c / 100, (c % 100) / 10)
    } else {
        format!("{}.{:02}", c / 100, c % 100)
    };
    serde_json::from_str(&text).unwrap_or(Json::Null)
}

/// A timestamp in one of the accepted forms, chosen by `form`. A date alone widens to the
/// whole day, which keeps sorted bounds sorted.
fn time_json(t: Timestamp, form: u8) -> Json {
    match form % 4 {
        0 => json!(t.format("%Y-%m-%d %H:%M:%S").to_string()),
        1 => json!(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
        2 => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        _ => json!(t.format("%Y-%m-%d").to_string()),
    }
}

fn value_json(v: &Value, form: u8) -> Json {
    match v {
        Value::Int(i) => json!(i),
        Value::Money(c) => money_json(*c),
        Value::Text(s) => json!(s),
        Value::Time(t) => time_json(*t, form),
    }
}

/// `(operator, value)` in the user's language for a field; `None` value means no `value` key.
fn arb_op_value(field: Field) -> BoxedStrategy<(&'static str, Option<Json>)> {
    if field.value_type() == ValueType::Location {
        return arb_circle()
            .prop_map(|c| ("within_km", Some(circle_json(&c))))
            .boxed();
    }
    let v = arb_value(field);
    let form = any::<u8>();
    let list = proptest::collection::vec((arb_value(field), any::<u8>()), 1..4)
        .prop_map(|xs| Json::Array(xs.iter().map(|(v, f)| value_json(v, *f)).collect()));
    let between = (sorted_pair(v.clone()), form)
        .prop_map(|((a, b), f)| json!([value_json(&a, f), value_json(&b, f)]));
    let nulls = select(vec!["is_null", "is_not_null"]).prop_map(|op| (op, None));
    let cmp = |ops: Vec<&'static str>| {
        (select(ops), v.clone(), form).prop_map(|(op, v, f)| (op, Some(value_json(&v, f))))
    };
    let ordered = vec!["=", "!=", ">", ">=", "<", "<="];
    match field.value_type() {
        ValueType::Integer | ValueType::Money => prop_oneof![
            4 => cmp(ordered),
            1 => list.clone().prop_map(|l| ("in", Some(l))),
            1 => list.prop_map(|l| ("not_in", Some(l))),
            1 => between.prop_map(|b| ("between", Some(b))),
            1 => nulls,
        ]
        .boxed(),
        ValueType::Text => prop_oneof![
            2 => cmp(vec!["=", "!="]),
            1 => list.clone().prop_map(|l| ("in", Some(l))),
            1 => list.prop_map(|l| ("not_in", Some(l))),
            1 => (select(vec!["contains", "starts_with"]), select(needles(field)))
                .prop_map(|(op, s)| (op, Some(json!(s)))),
            1 => nulls,
        ]
        .boxed(),
        ValueType::Timestamp => prop_oneof![
            3 => cmp(ordered),
            1 => between.prop_map(|b| ("between", Some(b))),
            1 => nulls,
        ]
        .boxed(),
        ValueType::Location => arb_circle()
            .prop_map(|c| ("within_km", Some(circle_json(&c))))
            .boxed(),
    }
}

/// A circle as a `within_km` value.
pub fn circle_json(c: &Circle) -> Json {
    json!({"lat": c.lat, "lon": c.lon, "km": c.km})
}

fn predicate_json(field: Field) -> BoxedStrategy<Json> {
    arb_op_value(field)
        .prop_map(move |(op, value)| {
            let mut p = json!({"field": field.name(), "operator": op});
            if let (Some(v), Some(obj)) = (value, p.as_object_mut()) {
                obj.insert("value".into(), v);
            }
            p
        })
        .boxed()
}

fn tx_predicate_json(fields: Vec<Field>) -> BoxedStrategy<Json> {
    select(fields).prop_flat_map(predicate_json).boxed()
}

/// A `where` condition over the transaction fields available on the source.
fn where_json(source: Source) -> BoxedStrategy<Json> {
    tx_predicate_json(tx_fields(source))
        .prop_recursive(2, 6, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..3).prop_map(Json::Array),
                proptest::collection::vec(inner.clone(), 1..3).prop_map(|xs| json!({"all": xs})),
                proptest::collection::vec(inner.clone(), 1..3).prop_map(|xs| json!({"any": xs})),
                inner.prop_map(|x| json!({"not": x})),
            ]
        })
        .boxed()
}

fn window_json() -> impl Strategy<Value = Json> {
    let range = (
        proptest::option::of(arb_timestamp()),
        proptest::option::of(arb_timestamp()),
        any::<u8>(),
    )
        .prop_map(|(a, b, f)| {
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) if b < a => (Some(b), Some(a)),
                other => other,
            };
            let mut w = serde_json::Map::new();
            if let Some(a) = a {
                w.insert("start".into(), time_json(a, f));
            }
            if let Some(b) = b {
                w.insert("end".into(), time_json(b, f));
            }
            Json::Object(w)
        });
    prop_oneof![
        select(vec![1u32, 7, 30, 45]).prop_map(|n| json!({"last_days": n})),
        range,
    ]
}

fn aggregate_json() -> BoxedStrategy<Json> {
    let source = select(vec![
        None,
        Some(Source::All),
        Some(Source::CreditCard),
        Some(Source::Upi),
    ]);
    (
        select(fields_of(FieldKind::Aggregate)),
        source,
        proptest::option::weighted(0.3, window_json()),
    )
        .prop_flat_map(|(field, source, window)| {
            let where_ = proptest::option::weighted(0.4, where_json(source.unwrap_or_default()));
            (predicate_json(field), where_).prop_map(move |(mut p, where_)| {
                if let Some(obj) = p.as_object_mut() {
                    if let Some(s) = source {
                        let name = match s {
                            Source::All => "all",
                            Source::CreditCard => "credit_card",
                            Source::Upi => "upi",
                        };
                        obj.insert("source".into(), json!(name));
                    }
                    if let Some(w) = &window {
                        obj.insert("window".into(), w.clone());
                    }
                    if let Some(w) = where_ {
                        obj.insert("where".into(), w);
                    }
                }
                p
            })
        })
        .boxed()
}

/// A random condition in the user's language: lists (with transaction predicates, which
/// scope the list's aggregates), `all`/`any`/`not` groups, predicates with `where`, `source`
/// and `window`. Transaction predicates of lists avoid `merchant` and `description`, which
/// would clash with an aggregate's source.
pub fn arb_condition_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        select(fields_of(FieldKind::Profile)).prop_flat_map(predicate_json),
        aggregate_json(),
    ];
    let list_tx = || {
        proptest::collection::vec(
            tx_predicate_json(vec![Field::Category, Field::Amount, Field::TransactionDate]),
            0..3,
        )
    };
    leaf.prop_recursive(3, 12, 4, move |inner| {
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..4), list_tx()).prop_map(|(mut xs, tx)| {
                xs.extend(tx);
                Json::Array(xs)
            }),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(|xs| json!({"all": xs})),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(|xs| json!({"any": xs})),
            inner.prop_map(|x| json!({"not": x})),
        ]
    })
    .boxed()
}

/// A random valid rule (no dependencies) as JSON: a name, maybe a description and a schedule,
/// a window from optional `start_date` / `end_date`, and conditions in the seed's flat-list
/// form or any other form of the language.
pub fn arb_rule_spec_json() -> BoxedStrategy<Json> {
    let flat = (
        proptest::collection::vec(arb_condition_json(), 0..4),
        proptest::collection::vec(
            tx_predicate_json(vec![Field::Category, Field::Amount, Field::TransactionDate]),
            0..3,
        ),
    )
        .prop_map(|(mut xs, tx)| {
            xs.extend(tx);
            Json::Array(xs)
        });
    let conditions = prop_oneof![4 => flat, 3 => arb_condition_json(), 1 => Just(json!([]))];
    let schedule = select(vec![
        Json::Null,
        json!("0 0 * * *"),
        json!("@daily"),
        json!("*/15 * * * *"),
        json!("0 30 9 * * 1-5"),
    ]);
    let dates = (
        proptest::option::of(arb_timestamp()),
        proptest::option::of(arb_timestamp()),
        any::<u8>(),
    );
    (
        0u32..1000,
        proptest::option::of("[a-z ]{0,20}"),
        conditions,
        schedule,
        dates,
    )
        .prop_map(|(n, description, conditions, schedule, (a, b, f))| {
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) if b < a => (Some(b), Some(a)),
                other => other,
            };
            let date = |t: Option<Timestamp>| t.map_or(Json::Null, |t| time_json(t, f));
            json!({
                "rule_name": format!("rule {n}"),
                "description": description,
                "conditions": conditions,
                "schedule": schedule,
                "start_date": date(a),
                "end_date": date(b),
                "depends_on": [],
                "operation": null,
            })
        })
        .boxed()
}

// ---- locations at the edges ----

/// A point on the circle around `(lat, lon)` to the last bit: from points stepping away
/// along `(dlat, dlon)`, the first whose haversine some radius's threshold equals exactly,
/// with that radius.
pub fn exact_boundary(lat: f64, lon: f64, dlat: f64, dlon: f64) -> Option<(GeoPoint, Circle)> {
    let unit = Circle::new(lat, lon, 1.0)?;
    for i in 0..500 {
        let step = 1.0 + f64::from(i) * 1e-6;
        let p = GeoPoint::new(lat + dlat * step, wrap_lon(lon + dlon * step))?;
        let h = unit.haversine(p);
        let mut km = 2.0 * crate::geo::EARTH_RADIUS_KM * h.sqrt().asin();
        for _ in 0..8 {
            km = km.next_down();
        }
        for _ in 0..16 {
            let c = Circle::new(lat, lon, km)?;
            if c.max_haversine() == h {
                return Some((p, c));
            }
            km = km.next_up();
        }
    }
    None
}

fn wrap_lon(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    }
}

/// The largest radius around the same centre whose circle leaves `p` out.
pub fn just_short_of(c: &Circle, p: GeoPoint) -> Option<Circle> {
    let mut km = c.km;
    loop {
        let smaller = Circle::new(c.lat, c.lon, km)?;
        if !smaller.contains(p) {
            return Some(smaller);
        }
        km = km.next_down();
    }
}

/// Users at the edges of the sphere and of circles (ids from 1), and circles that cut
/// between them: points exactly on a circle (at mid latitude and across the antimeridian)
/// with the radius one step shorter, a millimetre either side of a 10 km circle, around both
/// poles, and on both sides of the antimeridian (longitudes 180 and -180 too).
pub fn edge_cases() -> (Vec<(i64, GeoPoint)>, Vec<Circle>) {
    let mut points = Vec::new();
    let mut circles = Vec::new();
    let pt = |lat, lon| GeoPoint::new(lat, lon).expect("in range");
    let circle = |lat, lon, km| Circle::new(lat, lon, km).expect("in range");
    for (lat, lon, dlat, dlon) in [(60.0, 24.9, 0.03, 0.05), (-0.2, 179.95, 0.01, 0.06)] {
        // Every test built on these cases checks the exact boundary: never drop it quietly.
        let (p, c) = exact_boundary(lat, lon, dlat, dlon).expect("a point exactly on a circle");
        points.push(p);
        circles.push(c);
        circles.push(just_short_of(&c, p).expect("a radius just short of the point"));
    }
    // A millimetre either side of 10 km due north.
    let (lat0, lon0) = (12.9716, 77.5946);
    for km in [10.0 - 1e-6, 10.0 + 1e-6] {
        let lat = lat0 + (km / crate::geo::EARTH_RADIUS_KM).to_degrees();
        points.push(pt(lat, lon0));
    }
    circles.push(circle(lat0, lon0, 10.0));
    // The north pole, and a point across it.
    points.extend([pt(90.0, 0.0), pt(89.995, 180.0), pt(89.98, 90.0)]);
    circles.extend([circle(89.99, 0.0, 1.2), circle(90.0, -45.0, 2.0)]);
    // Around the south pole, at any longitude.
    points.extend([pt(-89.96, 123.0), pt(-89.95, -60.0), pt(-90.0, 17.0)]);
    circles.push(circle(-90.0, 0.0, 5.0));
    // Across the antimeridian, and 180 = -180.
    points.extend([
        pt(0.5, -179.99),
        pt(0.5, -179.9),
        pt(0.5, -180.0),
        pt(0.5, 180.0),
    ]);
    circles.extend([circle(0.5, 179.99, 5.0), circle(0.5, 180.0, 0.001)]);
    let users = (1i64..).zip(points).collect();
    (users, circles)
}
