//! Validation: the seed's JSON accepted as is, the flat-list semantics, every kind of problem
//! reported with its path, and snapshots of checked conditions.

use am_core::arbitrary::{arb_rule_spec_json, as_of};
use am_core::evaluate::{Dataset, Transaction, User, evaluate_rule};
use am_core::expr::{CmpOp, Expr, Pred, Scope, Source, Test, Value, Window};
use am_core::field::Field;
use am_core::rule::{CheckedRule, Operation};
use am_core::validate::{check_conditions, check_rule, check_rule_json, parse_rule};
use chrono::NaiveDateTime;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn contract_example() -> Json {
    json!({
      "rule_name": "High value travellers",
      "description": "Tier-1 users who spent over 1000 on Travel in 2025",
      "conditions": [ {"field": "category", "operator": "=", "value": "Travel"},
                      {"field": "total_spend", "operator": ">", "value": 1000},
                      {"field": "city_tier", "operator": "=", "value": 1} ],
      "schedule": "0 0 * * *",
      "start_date": "2025-01-01T00:00:00Z",
      "end_date": "2025-12-31T23:59:59Z",
      "depends_on": [],
      "operation": null
    })
}

fn ok(rule: Json) -> CheckedRule {
    match check_rule_json(&rule) {
        Ok(r) => r,
        Err(e) => panic!("rule should be valid, got: {e}"),
    }
}

/// The `(path, message)` of every problem; the rule must be invalid.
fn problems(rule: Json) -> Vec<(String, String)> {
    match check_rule_json(&rule) {
        Ok(r) => panic!("rule should be invalid, got {r:?}"),
        Err(e) => e.0.into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

fn paths(rule: Json) -> Vec<String> {
    problems(rule).into_iter().map(|(p, _)| p).collect()
}

/// A rule with only conditions.
fn with(conditions: Json) -> Json {
    json!({"rule_name": "r", "conditions": conditions})
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("test timestamp")
}

#[test]
fn contract_example_means_tier1_travel_spend_in_window() {
    let rule = ok(contract_example());
    let travel = Expr::Pred(Pred::Tx {
        field: Field::Category,
        test: Test::Cmp(CmpOp::Eq, Value::Text("Travel".into())),
    });
    let window = Window::Range {
        start: Some(ts("2025-01-01 00:00:00")),
        end: Some(ts("2025-12-31 23:59:59")),
    };
    let expected = Expr::All(vec![
        Expr::Pred(Pred::Aggregate {
            field: Field::TotalSpend,
            scope: Scope {
                source: Source::All,
                window,
                filter: Some(Box::new(travel)),
            },
            test: Test::Cmp(CmpOp::Gt, Value::Money(100_000)),
        }),
        Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::Cmp(CmpOp::Eq, Value::Int(1)),
        }),
    ]);
    assert_eq!(rule.condition, Some(expected));
    assert_eq!(rule.window, window);
    assert_eq!(
        rule.schedule.as_ref().map(|s| s.as_str()),
        Some("0 0 * * *")
    );
    assert_eq!(rule.operation, None);

    // On data: user 1 spent 1000.01 on Travel in 2025, user 2 1000.00 (0.10 + 0.20 + 999.70),
    // user 3 more but partly in 2024, user 4 is tier 2.
    let user = |id, tier| User {
        user_id: id,
        name: None,
        email: None,
        city_tier: Some(tier),
        created_at: None,
    };
    let tx = |id, user_id, cents, cat: &str, date: &str| Transaction {
        transaction_id: id,
        user_id,
        amount: Some(cents),
        category: Some(cat.into()),
        merchant: None,
        description: None,
        transaction_date: Some(ts(date)),
    };
    let ds = Dataset::new(
        vec![user(1, 1), user(2, 1), user(3, 1), user(4, 2)],
        vec![
            tx(1, 1, 100_001, "Travel", "2025-03-01 10:00:00"),
            tx(2, 1, 500_000, "Food", "2025-03-01 10:00:00"),
            tx(3, 2, 10, "Travel", "2025-01-01 00:00:00"),
            tx(4, 2, 20, "Travel", "2025-06-01 00:00:00"),
            tx(5, 2, 99_970, "Travel", "2025-12-31 23:59:59"),
            tx(6, 3, 90_000, "Travel", "2024-12-31 23:59:59"),
            tx(7, 3, 90_000, "Travel", "2025-01-02 00:00:00"),
            tx(8, 4, 900_000, "Travel", "2025-02-02 00:00:00"),
        ],
        vec![],
    );
    let members = evaluate_rule(&rule, &ds, as_of(), &Default::default());
    assert_eq!(members.into_iter().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn seed_examples_are_accepted_as_written() {
    // POST /rules from the seed's documentation.
    let r = ok(
        json!({ "rule_name": "New Rule", "description": "Rule description",
        "conditions": [{"field": "total_spend", "operator": ">", "value": 100}],
        "schedule": "@daily", "start_date": "2025-01-01T00:00:00Z", "end_date": "2025-12-31T23:59:59Z" }),
    );
    assert!(r.condition.is_some());
    // A rule as GET /rules lists it, with its id, sent back as is.
    let r = ok(json!({ "id": 1, "rule_name": "High Value Customers",
        "description": "Users with total spend over $5000", "schedule": "0 0 * * *",
        "conditions": [{"field": "total_spend", "operator": ">", "value": 5000}],
        "depends_on": [], "operation": null, "created_at": "2025-01-01 00:00:00" }));
    assert!(r.condition.is_some());
    assert_eq!(r.window, Window::UNBOUNDED);
    // The seed's form builder's two conditions.
    let r = ok(with(json!([
        {"field": "total_spend", "operator": ">", "value": 1000},
        {"field": "city_tier", "operator": "=", "value": 1}
    ])));
    assert!(matches!(r.condition, Some(Expr::All(ref xs)) if xs.len() == 2));
}

#[test]
fn dependencies_default_to_intersection() {
    let r = ok(json!({"rule_name": "r", "depends_on": [3, 4]}));
    assert_eq!(r.operation, Some(Operation::Intersection));
    assert_eq!(r.depends_on, vec![3, 4]);
    let r = ok(json!({"rule_name": "r", "depends_on": [3, 4], "operation": "DIFFERENCE"}));
    assert_eq!(r.operation, Some(Operation::Difference));
}

#[test]
fn transaction_predicates_alone_mean_at_least_one_such_transaction() {
    let r = ok(json!({"rule_name": "r", "start_date": "2025-01-01",
        "conditions": [{"field": "merchant", "operator": "contains", "value": "air"}]}));
    let expected = Expr::All(vec![Expr::Pred(Pred::Aggregate {
        field: Field::TransactionCount,
        scope: Scope {
            source: Source::All,
            window: Window::Range {
                start: Some(ts("2025-01-01 00:00:00")),
                end: None,
            },
            filter: Some(Box::new(Expr::Pred(Pred::Tx {
                field: Field::Merchant,
                test: Test::Contains("air".into()),
            }))),
        },
        test: Test::Cmp(CmpOp::Ge, Value::Int(1)),
    })]);
    assert_eq!(r.condition, Some(expected));
}

#[test]
fn unknown_field_lists_the_catalog() {
    let ps = problems(with(
        json!([{"field": "spend", "operator": ">", "value": 1}]),
    ));
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].0, "conditions[0].field");
    assert!(
        ps[0]
            .1
            .starts_with("unknown field \"spend\"; allowed: profile fields user_id")
    );
    assert!(ps[0].1.contains("total_spend"));
}

#[test]
fn unknown_or_misapplied_operator_lists_the_operators_of_the_type() {
    let ps = problems(with(
        json!({"field": "total_spend", "operator": "~", "value": 1}),
    ));
    assert_eq!(
        ps,
        vec![(
            "conditions.operator".to_string(),
            "unknown operator \"~\"; allowed for total_spend (money): =, !=, >, >=, <, <=, in, not_in, between, is_null, is_not_null".to_string()
        )]
    );
    let ps = problems(with(
        json!({"field": "name", "operator": ">", "value": "A"}),
    ));
    assert_eq!(ps[0].0, "conditions.operator");
    assert_eq!(
        ps[0].1,
        "operator \">\" does not apply to name (text); allowed: =, !=, in, not_in, contains, starts_with, is_null, is_not_null"
    );
}

#[test]
fn wrong_value_types_name_the_expected_type() {
    let ps = problems(with(json!([
        {"field": "city_tier", "operator": "=", "value": "1"},
        {"field": "total_spend", "operator": ">", "value": 0.001},
        {"field": "name", "operator": "=", "value": 5},
        {"field": "created_at", "operator": ">", "value": "yesterday"},
        {"field": "city_tier", "operator": "=", "value": 1.5},
        {"field": "transaction_count", "operator": "=" }
    ])));
    let got: Vec<&str> = ps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        got,
        vec![
            "conditions[0].value",
            "conditions[1].value",
            "conditions[2].value",
            "conditions[3].value",
            "conditions[4].value",
            "conditions[5].value"
        ]
    );
    assert_eq!(ps[0].1, "city_tier needs an integer, got a string \"1\"");
    assert!(ps[1].1.contains("at most 2 decimal places"));
    assert_eq!(ps[2].1, "name needs a string, got a number 5");
    assert!(ps[3].1.contains("invalid date-time \"yesterday\""));
    assert_eq!(ps[5].1, "= needs a value: an integer");
}

#[test]
fn in_between_and_null_tests_check_their_value_shape() {
    let ps = problems(with(json!([
        {"field": "city_tier", "operator": "in", "value": []},
        {"field": "city_tier", "operator": "between", "value": [3, 1]},
        {"field": "city_tier", "operator": "between", "value": [1]},
        {"field": "city_tier", "operator": "is_null", "value": 1},
        {"field": "city_tier", "operator": "not_in", "value": [1, "2"]},
        {"field": "created_at", "operator": "between", "value": ["2025-01-02", "2025-01-01"]}
    ])));
    let got: Vec<(&str, &str)> = ps.iter().map(|(p, m)| (p.as_str(), m.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (
                "conditions[0].value",
                "in needs a non-empty list of integers; got a list []"
            ),
            (
                "conditions[1].value",
                "between needs lo <= hi, got a list [3,1]"
            ),
            (
                "conditions[2].value",
                "between needs a list [lo, hi] of two integers; got a list [1]"
            ),
            (
                "conditions[3].value",
                "is_null takes no value; got a number 1"
            ),
            (
                "conditions[4].value[1]",
                "city_tier needs an integer, got a string \"2\""
            ),
            (
                "conditions[5].value",
                "between needs lo <= hi, got a list [\"2025-01-02\",\"2025-01-01\"]"
            ),
        ]
    );
}

#[test]
fn transaction_fields_only_where_they_apply() {
    let ps = problems(with(
        json!({"all": [{"field": "category", "operator": "=", "value": "Travel"}]}),
    ));
    assert_eq!(ps[0].0, "conditions.all[0].field");
    assert!(
        ps[0]
            .1
            .starts_with("category is a transaction field; use it directly in a condition list")
    );
    let ps = problems(with(
        json!({"field": "total_spend", "operator": ">", "value": 1,
        "where": [{"field": "city_tier", "operator": "=", "value": 1}]}),
    ));
    assert_eq!(ps[0].0, "conditions.where[0].field");
    assert!(ps[0].1.starts_with("city_tier is not a transaction field"));
    let ps = problems(with(
        json!({"field": "total_spend", "operator": ">", "value": 1, "source": "upi",
        "where": {"any": [{"field": "merchant", "operator": "=", "value": "Acme"}]}}),
    ));
    assert_eq!(
        ps,
        vec![(
            "conditions.where.any[0].field".to_string(),
            "merchant exists only on credit_card transactions, so it cannot filter an aggregate over upi".to_string()
        )]
    );
    // A list's merchant filter cannot scope a UPI aggregate either.
    let ps = paths(with(json!([
        {"field": "description", "operator": "=", "value": "Rent"},
        {"field": "total_spend", "operator": ">", "value": 1, "source": "credit_card"}
    ])));
    assert_eq!(ps, vec!["conditions[1].source"]);
    let ps = problems(with(
        json!({"field": "city_tier", "operator": "=", "value": 1, "window": {"last_days": 3}}),
    ));
    assert_eq!(ps[0].0, "conditions.window");
    assert!(
        ps[0]
            .1
            .starts_with("where/source/window only apply to aggregate fields: total_spend")
    );
}

#[test]
fn bad_windows_sources_and_groups() {
    let got = paths(with(json!([
        {"field": "total_spend", "operator": ">", "value": 1, "window": {"last_days": 0}},
        {"field": "total_spend", "operator": ">", "value": 1, "window": {"start": "2025-02-01", "end": "2025-01-01"}},
        {"field": "total_spend", "operator": ">", "value": 1, "source": "cash"},
        {"all": [], "any": []},
        {"none": []},
        {"field": "city_tier", "operator": "=", "value": 1, "extra": true},
        7
    ])));
    assert_eq!(
        got,
        vec![
            "conditions[0].window.last_days",
            "conditions[1].window.end",
            "conditions[2].source",
            "conditions[3].any",
            "conditions[4].none",
            "conditions[5].extra",
            "conditions[6]"
        ]
    );
}

#[test]
fn rule_level_problems_are_all_reported() {
    let ps = problems(json!({
        "rule_name": "   ",
        "description": "d".repeat(2001),
        "schedule": "every day",
        "start_date": "2025-02-01",
        "end_date": "2025-01-31",
        "depends_on": [3, 3],
        "operation": "XOR",
        "conditions": [{"field": "total_spend", "operator": "<>", "value": 1}]
    }));
    let got: Vec<&str> = ps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        got,
        vec![
            "rule_name",
            "description",
            "schedule",
            "end_date",
            "depends_on[1]",
            "operation",
            "conditions[0].operator"
        ]
    );
    assert_eq!(ps[1].1, "is 2001 characters long; at most 2000 are allowed");
    assert!(ps[2].1.starts_with("invalid schedule: "));
    assert_eq!(
        ps[3].1,
        "ends (2025-01-31 23:59:59) before start_date (2025-02-01 00:00:00)"
    );
    assert_eq!(ps[4].1, "rule 3 is listed more than once");
    assert_eq!(
        ps[5].1,
        "unknown operation \"XOR\"; allowed: INTERSECTION, UNION, DIFFERENCE"
    );

    let ps = problems(json!({"rule_name": "x".repeat(201), "operation": "UNION"}));
    assert_eq!(
        ps,
        vec![
            (
                "rule_name".to_string(),
                "is 201 characters long; at most 200 are allowed".to_string()
            ),
            (
                "operation".to_string(),
                "an operation needs dependencies, but depends_on is empty".to_string()
            ),
        ]
    );
    let ps = problems(json!({"rule_name": "r", "depends_on": [1], "operation": "DIFFERENCE"}));
    assert_eq!(ps[0].0, "depends_on");
}

#[test]
fn json_types_are_checked_with_paths() {
    let e = parse_rule(&json!({"rule_name": 5, "depends_on": [1, "two", 3.5], "schedule": true}))
        .expect_err("wrong JSON types");
    let got: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        got,
        vec!["schedule", "rule_name", "depends_on[1]", "depends_on[2]"]
    );
    let e = parse_rule(&json!({"depends_on": "1"})).expect_err("no name, depends_on not a list");
    let got: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(got, vec!["rule_name", "depends_on"]);
    let e = parse_rule(&json!([1])).expect_err("not an object");
    assert_eq!(e.0[0].path, "rule");
}

#[test]
fn check_conditions_alone_uses_the_given_window() {
    assert_eq!(check_conditions(&Json::Null, Window::UNBOUNDED), Ok(None));
    let c = check_conditions(
        &json!({"field": "transaction_count", "operator": ">=", "value": 2}),
        Window::LastDays(30),
    )
    .expect("valid");
    let Some(Expr::Pred(Pred::Aggregate { scope, .. })) = c else {
        panic!("expected an aggregate predicate, got {c:?}");
    };
    assert_eq!(scope.window, Window::LastDays(30));
}

/// Snapshots of checked conditions for representative rules.
#[test]
fn checked_condition_snapshots() {
    let cases = [
        ("contract_example", contract_example()),
        (
            "dates_and_money",
            json!({"rule_name": "r", "conditions": [
                {"field": "created_at", "operator": "=", "value": "2025-03-01"},
                {"field": "created_at", "operator": "!=", "value": "2025-03-02"},
                {"field": "created_at", "operator": ">", "value": "2025-03-03"},
                {"field": "created_at", "operator": "<=", "value": "2025-03-04T10:00:00+05:30"},
                {"field": "last_transaction_date", "operator": "between", "value": ["2025-01-01", "2025-01-31"]},
                {"field": "avg_transaction_amount", "operator": "in", "value": [999.7, 12, 0.05]}
            ]}),
        ),
        (
            "nested_list_filters",
            json!({"rule_name": "r", "start_date": "2025-01-01", "conditions": [
                {"field": "amount", "operator": ">=", "value": 10.5},
                {"any": [
                    {"field": "max_transaction_amount", "operator": ">", "value": 500, "source": "credit_card",
                     "where": {"not": {"field": "merchant", "operator": "starts_with", "value": "acme"}}},
                    [ {"field": "category", "operator": "in", "value": ["Travel", "Food"]},
                      {"not": {"field": "distinct_categories", "operator": "<", "value": 2, "window": {"last_days": 30}}} ],
                    [ {"field": "description", "operator": "contains", "value": "rent"} ]
                ]},
                {"field": "email", "operator": "is_not_null"}
            ]}),
        ),
    ];
    for (name, rule) in cases {
        let checked = ok(rule);
        insta::assert_debug_snapshot!(name, checked.condition);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every rule the generator writes is valid, and reading it back is stable.
    #[test]
    fn generated_rules_are_valid(rule in arb_rule_spec_json()) {
        let spec = parse_rule(&rule);
        prop_assert!(spec.is_ok(), "{:?}", spec);
        let spec = spec.expect("checked above");
        let checked = check_rule(&spec);
        prop_assert!(checked.is_ok(), "{} -> {:?}", rule, checked);
    }
}

/// The error sample in docs/rule-language.md is what users get.
#[test]
fn documented_error_sample() {
    let ps = problems(json!({"rule_name": "Spenders",
        "conditions": [{"field": "total_spend", "operator": "contains", "value": "1000"},
                       {"field": "tier", "operator": "=", "value": 1}],
        "operation": "UNION"}));
    let got: Vec<String> = ps.iter().map(|(p, m)| format!("{p}: {m}")).collect();
    assert_eq!(
        got[0],
        "operation: an operation needs dependencies, but depends_on is empty"
    );
    assert_eq!(
        got[1],
        "conditions[0].operator: operator \"contains\" does not apply to total_spend (money); allowed: =, !=, >, >=, <, <=, in, not_in, between, is_null, is_not_null"
    );
    assert!(got[2].starts_with("conditions[1].field: unknown field \"tier\"; allowed: profile fields user_id, name, email, city_tier, created_at, location; aggregates total_spend, "));
    assert_eq!(got.len(), 3);
}

/// The field table in docs/rule-language.md lists every field of the catalog with its kind
/// and type, in catalog order.
#[test]
fn documented_fields_match_the_catalog() {
    use am_core::field::{FieldKind, ValueType};
    let doc = include_str!("../../../docs/rule-language.md");
    let section = doc
        .split("## Fields")
        .nth(1)
        .and_then(|s| s.split("## Operators").next())
        .expect("the doc has a Fields section");
    let rows: Vec<(String, String, String)> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.trim_matches('`').to_string();
            Field::parse(&name)?;
            Some((name, cells.get(2)?.to_string(), cells.get(3)?.to_string()))
        })
        .collect();
    let expected: Vec<(String, String, String)> = Field::ALL
        .iter()
        .map(|f| {
            let kind = match f.kind() {
                FieldKind::Profile => "profile",
                FieldKind::Aggregate => "aggregate",
                FieldKind::Transaction => "transaction",
            };
            let ty = match f.value_type() {
                ValueType::Integer => "integer",
                ValueType::Money => "money",
                ValueType::Text => "text",
                ValueType::Timestamp => "timestamp",
                ValueType::Location => "location",
            };
            (f.name().to_string(), kind.to_string(), ty.to_string())
        })
        .collect();
    assert_eq!(rows, expected);
}

/// `n` predicates `city_tier = i`.
fn tiers(n: usize) -> Vec<Json> {
    (0..n)
        .map(|i| json!({"field": "city_tier", "operator": "=", "value": i}))
        .collect()
}

/// `{"not": {"not": ... inner}}` with `levels` nots.
fn nots(levels: usize, inner: Json) -> Json {
    (0..levels).fold(inner, |acc, _| json!({ "not": acc }))
}

/// A rule at every limit at once: 200 predicates (one inside a `where`), 12 levels of
/// nesting, a list of 1000 values and 24 aggregate scopes.
fn maximal_rule() -> Json {
    let tier = json!({"field": "city_tier", "operator": "=", "value": 1});
    // any (1) + 10 nots (2..=11) + all (12) around one predicate.
    let deep = nots(10, json!({ "all": [tier] }));
    let ids: Vec<i64> = (1..=1000).collect();
    let mut items = vec![
        deep,
        json!({"field": "user_id", "operator": "in", "value": ids}),
    ];
    for i in 0..24 {
        let mut p = json!({"field": "total_spend", "operator": ">", "value": i,
                           "window": {"last_days": i + 1}});
        if i == 0 {
            p["where"] = json!({"field": "category", "operator": "=", "value": "Travel"});
        }
        items.push(p);
    }
    // 1 + 1 + 24 + 1 (the where) = 27 so far.
    items.extend(tiers(173));
    with(json!({ "any": items }))
}

#[test]
fn the_maximal_rule_is_accepted_and_plans_and_evaluates() {
    let rule = ok(maximal_rule());
    let condition = rule.condition.clone().expect("a condition");
    let normal = am_core::normalize::normalize(&condition);
    assert_eq!(am_core::normalize::normalize(&normal), normal);

    let planner = am_core::planner::Planner::new(
        vec![
            am_core::planner::RuleInput {
                id: 1,
                rule: rule.clone(),
            },
            am_core::planner::RuleInput {
                id: 2,
                rule: ok(json!({"rule_name": "two", "depends_on": [1]})),
            },
        ],
        am_core::planner::PlanOptions::default(),
    )
    .expect("plans");
    let plan = planner.plan_all();
    assert!(!format!("{plan:?}").is_empty());

    let user = |id, tier| User {
        user_id: id,
        name: None,
        email: None,
        city_tier: Some(tier),
        created_at: None,
    };
    let ds = Dataset::new(
        vec![user(1, 1), user(5000, 500)],
        vec![Transaction {
            transaction_id: 1,
            user_id: 5000,
            amount: Some(100),
            category: Some("Travel".into()),
            merchant: None,
            description: None,
            transaction_date: Some(as_of()),
        }],
        vec![],
    );
    let members = evaluate_rule(&rule, &ds, as_of(), &Default::default());
    // User 1 by user_id and city_tier; user 5000 by the Travel spend in the last day.
    assert_eq!(members.into_iter().collect::<Vec<_>>(), vec![1, 5000]);
}

#[test]
fn more_than_200_predicates_are_rejected_at_the_first_one_over() {
    ok(with(json!({ "any": tiers(200) })));
    let over = "the rule has more than 200 predicates by here; at most 200 are allowed, counting those inside \"where\" and each value of an in/not_in list on avg_transaction_amount";
    assert_eq!(
        problems(with(json!({ "any": tiers(201) }))),
        vec![("conditions.any[200]".to_string(), over.to_string())]
    );
    // A predicate inside `where` counts.
    let mut items = tiers(199);
    items.push(
        json!({"field": "transaction_count", "operator": ">", "value": 0,
                      "where": {"field": "category", "operator": "=", "value": "Food"}}),
    );
    assert_eq!(
        problems(with(json!({ "any": items }))),
        vec![("conditions.any[199].where".to_string(), over.to_string())]
    );
    // Each value of an in list on the average counts.
    let avg = |n: usize| {
        let values: Vec<usize> = (1..=n).collect();
        json!({"field": "avg_transaction_amount", "operator": "in", "value": values})
    };
    ok(with(json!([avg(199), tiers(1)[0]])));
    assert_eq!(
        problems(with(json!([avg(200), tiers(1)[0]]))),
        vec![("conditions[1]".to_string(), over.to_string())]
    );
}

#[test]
fn nesting_deeper_than_12_levels_is_rejected_without_recursing() {
    let tier = json!({"field": "city_tier", "operator": "=", "value": 1});
    ok(with(nots(12, tier.clone())));
    let deep = "nested too deeply: at most 12 levels of lists, all/any/not groups and where filters are allowed";
    let path13 = format!("conditions{}", ".not".repeat(12));
    assert_eq!(
        problems(with(nots(13, tier.clone()))),
        vec![(path13.clone(), deep.to_string())]
    );
    // As deep as serde_json parses: still one problem, at the 13th level.
    let hostile = format!("{}{}{}", "{\"not\":".repeat(120), tier, "}".repeat(120));
    let hostile: Json = serde_json::from_str(&hostile).expect("within serde_json's limit");
    assert_eq!(problems(with(hostile)), vec![(path13, deep.to_string())]);
    // Lists and `where` count as levels.
    let in_where = |levels: usize| {
        let filter = (0..levels).fold(
            json!({"field": "category", "operator": "=", "value": "Food"}),
            |acc, _| json!([acc]),
        );
        with(nots(
            10,
            json!({"field": "total_spend", "operator": ">", "value": 1, "where": filter}),
        ))
    };
    ok(in_where(1));
    assert_eq!(
        problems(in_where(2)),
        vec![(
            format!("conditions{}.where[0]", ".not".repeat(10)),
            deep.to_string()
        )]
    );
}

#[test]
fn lists_over_1000_values_are_rejected() {
    let list = |op: &str, n: i64| {
        let values: Vec<i64> = (0..n).collect();
        with(json!([{"field": "user_id", "operator": op, "value": values}]))
    };
    ok(list("in", 1000));
    ok(list("not_in", 1000));
    assert_eq!(
        problems(list("in", 40_000)),
        vec![(
            "conditions[0].value".to_string(),
            "in has 40000 values; at most 1000 are allowed".to_string()
        )]
    );
    assert_eq!(
        problems(list("not_in", 1001)),
        vec![(
            "conditions[0].value".to_string(),
            "not_in has 1001 values; at most 1000 are allowed".to_string()
        )]
    );
}

#[test]
fn more_than_24_aggregate_scopes_are_rejected() {
    let windows = |n: u32| {
        let items: Vec<Json> = (1..=n)
            .map(|d| {
                json!({"field": "transaction_count", "operator": ">", "value": 0,
                       "window": {"last_days": d}})
            })
            .collect();
        with(json!({ "any": items }))
    };
    ok(windows(24));
    // The same scope twice is one scope.
    let mut same = windows(24);
    same["conditions"]["any"]
        .as_array_mut()
        .expect("a list")
        .push(json!({"field": "total_spend", "operator": ">", "value": 0,
                     "window": {"last_days": 1}}));
    ok(same);
    assert_eq!(
        problems(windows(70)),
        vec![(
            "conditions.any[24]".to_string(),
            "this is aggregate scope 25; at most 24 different scopes (source, window and transaction filter) are allowed in a rule".to_string()
        )]
    );
}

#[test]
fn list_filters_count_their_values_once_per_scope() {
    let rule = |scopes: u32| {
        let values: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
        let mut items = vec![json!({"field": "category", "operator": "in", "value": values})];
        for d in 1..=scopes {
            items.push(
                json!({"field": "transaction_count", "operator": ">", "value": 0,
                              "window": {"last_days": d}}),
            );
        }
        with(Json::Array(items))
    };
    // 9 scopes: 9 * (1000 + 2 window bounds) + 9 = 9027 values.
    ok(rule(9));
    assert_eq!(
        problems(rule(10)),
        vec![(
            "conditions".to_string(),
            "the conditions hold 10030 values once each list's transaction predicates are applied to every aggregate they filter; at most 10000 are allowed".to_string()
        )]
    );
}

#[test]
fn more_than_100_dependencies_are_rejected() {
    let deps = |n: i64| json!({"rule_name": "d", "depends_on": (1..=n).collect::<Vec<_>>()});
    ok(deps(100));
    assert_eq!(
        problems(deps(40_000)),
        vec![(
            "depends_on".to_string(),
            "lists 40000 rules; at most 100 are allowed".to_string()
        )]
    );
}

#[test]
fn type_errors_come_with_the_other_keys_problems() {
    let all = |rule: Json| -> Vec<(String, String)> {
        match parse_rule(&rule) {
            Ok(spec) => panic!("rule should be invalid, got {spec:?}"),
            Err(e) => e.0.into_iter().map(|p| (p.path, p.message)).collect(),
        }
    };
    assert_eq!(
        all(json!({"rule_name": "t7",
                   "conditions": [{"field": "city_tier", "operator": "=", "value": "1"}],
                   "depends_on": "x"})),
        vec![
            (
                "depends_on".to_string(),
                "expected a list of rule ids (integers), got a string \"x\"".to_string()
            ),
            (
                "conditions[0].value".to_string(),
                "city_tier needs an integer, got a string \"1\"".to_string()
            ),
        ]
    );
    let ps = all(json!({"rule_name": 5, "schedule": "every day",
                        "conditions": [{"field": "tier", "operator": "=", "value": 1}]}));
    let got: Vec<&str> = ps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(got, vec!["rule_name", "schedule", "conditions[0].field"]);
    assert_eq!(ps[0].1, "expected a string, got a number 5");
    // A badly typed depends_on is not reported again as missing dependencies.
    assert_eq!(
        all(json!({"rule_name": "u", "depends_on": {"a": 1}, "operation": "UNION"})),
        vec![(
            "depends_on".to_string(),
            "expected a list of rule ids (integers), got an object".to_string()
        )]
    );
}

#[test]
fn the_rule_name_is_trimmed() {
    let spec = parse_rule(&json!({"rule_name": " GE1000 "})).expect("valid");
    assert_eq!(spec.rule_name, "GE1000");
    assert_eq!(
        ok(json!({"rule_name": "\tapi one ", "conditions": []})).name,
        "api one"
    );
}

/// The `(path, message)` of every problem `parse_rule` then `check_rule` report.
fn all_problems(rule: Json) -> Vec<(String, String)> {
    problems(rule)
}

fn pair(path: &str, message: &str) -> (String, String) {
    (path.to_string(), message.to_string())
}

#[test]
fn a_misspelt_rule_key_is_rejected_with_the_key_it_resembles() {
    let tier1 = json!([{"field": "city_tier", "operator": "=", "value": 1}]);
    for (typo, meant) in [
        ("condition", "conditions"),
        ("conditons", "conditions"),
        ("Conditions", "conditions"),
    ] {
        assert_eq!(
            all_problems(json!({"rule_name": "x", typo: tier1})),
            vec![pair(typo, &format!("unknown key; did you mean {meant}?"))],
            "{typo}"
        );
    }
    assert_eq!(
        all_problems(json!({"rule_name": "x", "conditions": tier1, "shedule": "@daily"})),
        vec![pair("shedule", "unknown key; did you mean schedule?")]
    );
    // A misspelt depends_on does not also ask for conditions or dependencies.
    assert_eq!(
        all_problems(json!({"rule_name": "x", "depend_on": [1, 2], "operation": "UNION"})),
        vec![pair("depend_on", "unknown key; did you mean depends_on?")]
    );
    assert_eq!(
        all_problems(json!({"rule_name": "x", "conditions": tier1, "colour": "red"})),
        vec![pair(
            "colour",
            "unknown key; allowed: rule_name, description, conditions, schedule, start_date, end_date, depends_on, operation"
        )]
    );
    // The keys the platform adds when it shows a rule are accepted and ignored.
    let r = ok(json!({"id": 7, "rule_name": "x", "conditions": tier1,
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
        "version": 2, "schedule_description": null, "next_run_at": null, "last_run": null,
        "segment_id": 3, "segment": null, "reuses": []}));
    assert_eq!(r.name, "x");
}

#[test]
fn every_user_is_written_as_an_empty_list_never_by_leaving_conditions_out() {
    let r = ok(json!({"rule_name": "everyone", "conditions": []}));
    assert_eq!(r.condition, Some(Expr::All(vec![])));
    let r = ok(json!({"rule_name": "everyone", "conditions": {"all": []}}));
    assert_eq!(r.condition, Some(Expr::All(vec![])));
    let required = vec![pair(
        "conditions",
        "is required when depends_on is empty; write \"conditions\": [] to select every user",
    )];
    assert_eq!(all_problems(json!({"rule_name": "x"})), required);
    assert_eq!(
        all_problems(json!({"rule_name": "x", "conditions": null, "depends_on": []})),
        required
    );
    // With dependencies, no conditions means the combination as it is.
    let r = ok(json!({"rule_name": "x", "conditions": null, "depends_on": [1, 2]}));
    assert_eq!(r.condition, None);
    assert_eq!(r.operation, Some(Operation::Intersection));
    // A rule stored before conditions were required keeps meaning every user.
    let legacy = am_core::rule::RuleSpec {
        rule_name: "legacy".into(),
        ..Default::default()
    };
    assert_eq!(check_rule(&legacy).expect_err("required").0.len(), 1);
    let r = am_core::validate::check_stored_rule(&legacy).expect("stored rules still read");
    assert_eq!(r.condition, None);
    assert!(r.depends_on.is_empty());
}

#[test]
fn misspelt_keys_inside_conditions_name_the_key_they_resemble() {
    let got = all_problems(with(json!([
        {"field": "total_spend", "operator": ">", "valeu": 1},
        {"feild": "city_tier", "operator": "=", "value": 1},
        {"field": "total_spend", "operater": ">", "value": 1},
        {"field": "total_spend", "operator": ">", "value": 1, "window": {"last_day": 30}},
        {"al": [{"field": "city_tier", "operator": "=", "value": 1}]},
        {"field": "total_spend", "operator": ">", "value": 1,
         "where": {"fild": "category", "operator": "=", "value": "Travel"}},
        {"field": "total_spend", "operator": ">", "value": 1, "sorce": "upi"},
        {"not": {"field": "city_tier", "operator": "=", "value": 1}, "extra": 1},
        {"none": []}
    ])));
    assert_eq!(
        got,
        vec![
            pair("conditions[0].valeu", "unknown key; did you mean value?"),
            pair("conditions[1].feild", "unknown key; did you mean field?"),
            pair(
                "conditions[2].operater",
                "unknown key; did you mean operator?"
            ),
            pair(
                "conditions[3].window.last_day",
                "unknown key; did you mean last_days?"
            ),
            pair("conditions[4].al", "unknown key; did you mean all?"),
            pair(
                "conditions[5].where.fild",
                "unknown key; did you mean field?"
            ),
            pair("conditions[6].sorce", "unknown key; did you mean source?"),
            pair(
                "conditions[7].extra",
                "unknown key; a group has exactly one of \"all\", \"any\", \"not\", and a predicate has field, operator, value, where, source, window"
            ),
            pair(
                "conditions[8].none",
                "unknown key; a group has exactly one of \"all\", \"any\", \"not\", and a predicate has field, operator, value, where, source, window"
            ),
        ]
    );
}

#[test]
fn missing_and_unknown_parts_of_a_predicate_are_worded_plainly() {
    let money_ops = "=, !=, >, >=, <, <=, in, not_in, between, is_null, is_not_null";
    let fields = "profile fields user_id, name, email, city_tier, created_at, location; aggregates total_spend, transaction_count, avg_transaction_amount, max_transaction_amount, min_transaction_amount, first_transaction_date, last_transaction_date, days_since_last_transaction, distinct_categories; transaction fields (in a condition list or a \"where\") category, merchant, description, amount, transaction_date";
    let got = all_problems(with(json!([
        {"field": "total_spend", "value": 1},
        {"field": "total_spend", "operator": 5, "value": 1},
        {"operator": ">", "value": 1},
        {"field": 5, "operator": ">", "value": 1},
        {"field": "total_spend", "operator": ">", "value": 0.001},
        {"field": "total_spend", "operator": ">", "value": 1e30},
        {"field": "total_spend", "operator": ">", "value": 1, "source": "paypal"},
        {"field": "total_spend", "operator": ">", "value": 1, "source": 5}
    ])));
    assert_eq!(
        got,
        vec![
            pair(
                "conditions[0].operator",
                &format!("is required; allowed for total_spend (money): {money_ops}")
            ),
            pair(
                "conditions[1].operator",
                &format!(
                    "expected an operator (a string), got a number 5; allowed for total_spend (money): {money_ops}"
                )
            ),
            pair(
                "conditions[2].field",
                &format!("is required; allowed: {fields}")
            ),
            pair(
                "conditions[3].field",
                &format!("expected a field name (a string), got a number 5; allowed: {fields}")
            ),
            pair(
                "conditions[4].value",
                "total_spend needs an amount with at most 2 decimal places, got 0.001"
            ),
            pair(
                "conditions[5].value",
                "amount 1e+30 is out of range for total_spend"
            ),
            pair(
                "conditions[6].source",
                "unknown source \"paypal\"; allowed: all, credit_card, upi"
            ),
            pair(
                "conditions[7].source",
                "expected a source (a string), got a number 5; allowed: all, credit_card, upi"
            ),
        ]
    );
}

#[test]
fn dependencies_may_be_named_where_the_caller_looks_names_up() {
    let rule = json!({"rule_name": "x", "depends_on": ["Big spenders", 4, "Nobody"],
                      "operation": "XOR"});
    let mut lookup = |name: &str| match name {
        "Big spenders" => Ok(3),
        other => Err(format!("no rule named {other:?}")),
    };
    let e = am_core::validate::parse_rule_with(&rule, Some(&mut lookup)).expect_err("invalid");
    let got: Vec<(String, String)> = e.0.into_iter().map(|p| (p.path, p.message)).collect();
    assert_eq!(
        got,
        vec![
            pair("depends_on[2]", "no rule named \"Nobody\""),
            pair(
                "operation",
                "unknown operation \"XOR\"; allowed: INTERSECTION, UNION, DIFFERENCE"
            ),
        ]
    );
    let spec = am_core::validate::parse_rule_with(
        &json!({"rule_name": "x", "depends_on": ["Big spenders", 4]}),
        Some(&mut lookup),
    )
    .expect("valid");
    assert_eq!(spec.depends_on, vec![3, 4]);
    // Without a lookup (the API), depends_on holds rule ids only.
    assert_eq!(
        all_problems(json!({"rule_name": "x", "depends_on": ["Big spenders"]})),
        vec![pair(
            "depends_on[0]",
            "expected a rule id (an integer), got a string \"Big spenders\""
        )]
    );
}

#[test]
fn whole_numbers_are_integers_however_they_are_written() {
    // JSON's `-0` and `2.0` are whole numbers; `-0` reads as the float -0.0.
    let rule = ok(with(json!([
        {"field": "transaction_count", "operator": ">", "value": -0},
        {"field": "city_tier", "operator": "=", "value": 2.0}
    ])));
    let text = format!("{:?}", rule.condition);
    assert!(text.contains("Int(0)") && text.contains("Int(2)"), "{text}");
    let ps = problems(with(json!([
        {"field": "city_tier", "operator": "=", "value": 1.5},
        {"field": "city_tier", "operator": "=", "value": 1e300}
    ])));
    assert_eq!(ps[0].1, "city_tier needs an integer, got a number 1.5");
    assert_eq!(ps[1].1, "city_tier needs an integer, got a number 1e+300");
}
