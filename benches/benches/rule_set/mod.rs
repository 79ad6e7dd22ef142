//! A synthetic rule set for the planning benchmarks: a deterministic mix of profile filters,
//! aggregate bounds over a few scopes, combinations of earlier conditions (conjunctions,
//! disjunctions, negations) and rules with explicit dependencies, so that the finder has
//! many reuse opportunities of every kind.

use am_core::expr::{CmpOp, Expr, Pred, Scope, Source, Test, Value, Window};
use am_core::field::Field;
use am_core::planner::RuleInput;
use am_core::rule::{CheckedRule, Operation, RuleId};

/// A small linear congruential generator: the same rule set on every run, no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn scopes() -> Vec<Scope> {
    let travel = Expr::Pred(Pred::Tx {
        field: Field::Category,
        test: Test::Cmp(CmpOp::Eq, Value::Text("Travel".into())),
    });
    vec![
        Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: None,
        },
        Scope {
            source: Source::CreditCard,
            window: Window::LastDays(30),
            filter: None,
        },
        Scope {
            source: Source::Upi,
            window: Window::LastDays(90),
            filter: None,
        },
        Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: Some(Box::new(travel)),
        },
    ]
}

fn bound(rng: &mut Lcg, scopes: &[Scope]) -> Expr {
    let scope = scopes[rng.below(scopes.len())].clone();
    let level = rng.below(50) as i64 + 1;
    let (field, value) = match rng.below(3) {
        0 => (Field::TotalSpend, Value::Money(level * 10_000)),
        1 => (Field::TransactionCount, Value::Int(level)),
        _ => (Field::AvgTransactionAmount, Value::Money(level * 1_000)),
    };
    let op = if rng.below(2) == 0 {
        CmpOp::Gt
    } else {
        CmpOp::Ge
    };
    Expr::Pred(Pred::Aggregate {
        field,
        scope,
        test: Test::Cmp(op, value),
    })
}

fn tiers(rng: &mut Lcg) -> Expr {
    let all = [1i64, 2, 3];
    let n = rng.below(3) + 1;
    let start = rng.below(3);
    let vs = (0..n).map(|k| Value::Int(all[(start + k) % 3])).collect();
    Expr::Pred(Pred::Profile {
        field: Field::CityTier,
        test: Test::In(vs),
    })
}

fn rule(name: String, condition: Option<Expr>) -> CheckedRule {
    CheckedRule {
        name,
        condition,
        window: Window::UNBOUNDED,
        depends_on: vec![],
        operation: None,
        schedule: None,
    }
}

/// `n` rules with ids 1..=n.
pub fn rule_set(n: usize) -> Vec<RuleInput> {
    let mut rng = Lcg(0x5eed);
    let scopes = scopes();
    let mut conditions: Vec<Expr> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = i as RuleId + 1;
        let name = format!("rule {id}");
        let earlier = |rng: &mut Lcg, conditions: &[Expr]| -> Option<Expr> {
            (!conditions.is_empty()).then(|| conditions[rng.below(conditions.len())].clone())
        };
        let condition = match (i % 10, i) {
            (_, 0..=9) | (0..=3, _) => bound(&mut rng, &scopes),
            (4, _) => tiers(&mut rng),
            (5, _) => {
                let a = earlier(&mut rng, &conditions);
                let b = earlier(&mut rng, &conditions);
                let extra = bound(&mut rng, &scopes);
                Expr::All(a.into_iter().chain(b).chain([extra]).collect())
            }
            (6, _) => {
                let a = earlier(&mut rng, &conditions);
                Expr::Any(a.into_iter().chain([tiers(&mut rng)]).collect())
            }
            (7, _) => match earlier(&mut rng, &conditions) {
                Some(a) => Expr::Not(Box::new(a)),
                None => tiers(&mut rng),
            },
            (8, _) => {
                // Explicit dependencies on one or two earlier rules.
                let a = rng.below(i) as RuleId + 1;
                let b = rng.below(i) as RuleId + 1;
                let op = [None, Some(Operation::Union), Some(Operation::Difference)][rng.below(3)];
                let r = CheckedRule {
                    depends_on: if a == b { vec![a] } else { vec![a, b] },
                    operation: op,
                    ..rule(name, Some(tiers(&mut rng)))
                };
                out.push(RuleInput { id, rule: r });
                continue;
            }
            _ => Expr::All(vec![tiers(&mut rng), bound(&mut rng, &scopes)]),
        };
        conditions.push(condition.clone());
        out.push(RuleInput {
            id,
            rule: rule(name, Some(condition)),
        });
    }
    out
}
