//! Normal forms: a canonical form of a checked condition in which equivalent conditions are
//! equal, and a stable fingerprint of it.
//!
//! The rewrites never change which users (or, inside scope filters, which transactions) a
//! condition selects:
//!
//! - `All`/`Any` are flattened, constants folded, children sorted and deduplicated, a single
//!   child unwrapped; `x` next to `not x` makes an `All` false and an `Any` true;
//! - double negation is removed and `not` of a constant folded, but `not` is never pushed
//!   into a comparison (a comparison with null is false on both sides of it);
//! - the tests on one subject (a profile field, an aggregate in one scope, a transaction
//!   field) in an `All` are merged: bounds into the tightest interval, `in` lists intersected,
//!   exclusions collected; an empty result is `False`;
//! - on whole-number domains (integers, cents, one-second timestamps) strict bounds become
//!   inclusive (`> 5` is `>= 6`); the average is not such a domain, so its bounds stay as
//!   written;
//! - scope filters are normalised the same way; a filter that keeps everything is dropped.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Timelike};

use crate::expr::{CmpOp, Expr, Pred, Scope, Test, Value};
use crate::field::{Field, FieldKind, ValueType};
use crate::geo::Circle;

/// The canonical form of a condition; `normalize(normalize(e)) == normalize(e)`.
pub fn normalize(e: &Expr) -> Expr {
    match e {
        Expr::True => Expr::True,
        Expr::False => Expr::False,
        Expr::Pred(p) => all(vec![Expr::Pred(normalize_scope(p))]),
        Expr::Not(x) => match normalize(x) {
            Expr::True => Expr::False,
            Expr::False => Expr::True,
            Expr::Not(y) => *y,
            y => Expr::Not(Box::new(y)),
        },
        Expr::All(xs) => all(xs.iter().map(normalize).collect()),
        Expr::Any(xs) => any(xs.iter().map(normalize).collect()),
    }
}

/// A fingerprint of the condition's normal form: FNV-1a (64 bits) over its JSON
/// serialization, so it is the same on every run and platform, and equal for conditions
/// with equal normal forms.
pub fn fingerprint(e: &Expr) -> u64 {
    let text = serde_json::to_vec(&normalize(e))
        .expect("an Expr always serializes: it has no maps with non-string keys");
    fnv1a(&text)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The predicate with its scope filter normalised (a filter keeping everything dropped).
fn normalize_scope(p: &Pred) -> Pred {
    match p {
        Pred::Aggregate { field, scope, test } => Pred::Aggregate {
            field: *field,
            scope: Scope {
                source: scope.source,
                window: scope.window,
                filter: scope
                    .filter
                    .as_deref()
                    .map(normalize)
                    .and_then(|f| match f {
                        Expr::True => None,
                        f => Some(Box::new(f)),
                    }),
            },
            test: test.clone(),
        },
        other => other.clone(),
    }
}

/// A normalised conjunction of normalised children.
fn all(children: Vec<Expr>) -> Expr {
    let mut flat = Vec::new();
    for c in children {
        match c {
            Expr::True => {}
            Expr::False => return Expr::False,
            Expr::All(ys) => flat.extend(ys),
            other => flat.push(other),
        }
    }
    // Tests on the same subject are merged.
    let mut groups: BTreeMap<Subject, Vec<Test>> = BTreeMap::new();
    let mut out = Vec::new();
    for c in flat {
        match c {
            Expr::Pred(p) => {
                let (subject, test) = Subject::split(p);
                groups.entry(subject).or_default().push(test);
            }
            other => out.push(other),
        }
    }
    for (subject, tests) in groups {
        match merge_tests(&subject, tests) {
            None => return Expr::False,
            Some(tests) => out.extend(tests.into_iter().map(|t| Expr::Pred(subject.with(t)))),
        }
    }
    out.sort();
    out.dedup();
    if has_complement(&out) {
        return Expr::False;
    }
    match out.len() {
        0 => Expr::True,
        1 => out.pop().unwrap_or(Expr::True),
        _ => Expr::All(out),
    }
}

/// A normalised disjunction of normalised children.
fn any(children: Vec<Expr>) -> Expr {
    let mut out = Vec::new();
    for c in children {
        match c {
            Expr::False => {}
            Expr::True => return Expr::True,
            Expr::Any(ys) => out.extend(ys),
            other => out.push(other),
        }
    }
    out.sort();
    out.dedup();
    if has_complement(&out) {
        return Expr::True;
    }
    match out.len() {
        0 => Expr::False,
        1 => out.pop().unwrap_or(Expr::False),
        _ => Expr::Any(out),
    }
}

/// Whether a sorted list holds some `x` and also `not x`.
fn has_complement(sorted: &[Expr]) -> bool {
    sorted.iter().any(|c| match c {
        Expr::Not(y) => sorted.binary_search(y).is_ok(),
        _ => false,
    })
}

/// What a predicate tests: the part shared by tests that can be merged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Profile(Field),
    Aggregate(Field, Scope),
    Tx(Field),
}

impl Subject {
    fn split(p: Pred) -> (Subject, Test) {
        match p {
            Pred::Profile { field, test } => (Subject::Profile(field), test),
            Pred::Aggregate { field, scope, test } => (Subject::Aggregate(field, scope), test),
            Pred::Tx { field, test } => (Subject::Tx(field), test),
        }
    }

    fn with(&self, test: Test) -> Pred {
        match self {
            Subject::Profile(field) => Pred::Profile {
                field: *field,
                test,
            },
            Subject::Aggregate(field, scope) => Pred::Aggregate {
                field: *field,
                scope: scope.clone(),
                test,
            },
            Subject::Tx(field) => Pred::Tx {
                field: *field,
                test,
            },
        }
    }

    fn field(&self) -> Field {
        match self {
            Subject::Profile(f) | Subject::Aggregate(f, _) | Subject::Tx(f) => *f,
        }
    }

    /// Whether the value is never null: counts and sums of aggregates, and the user id.
    fn never_null(&self) -> bool {
        match self {
            Subject::Profile(f) => *f == Field::UserId,
            Subject::Aggregate(f, _) => !f.null_when_empty(),
            Subject::Tx(_) => false,
        }
    }

    /// Whether the values are whole numbers of a unit (integers, cents, seconds), so a
    /// strict bound equals an inclusive one a unit further. The average is a fraction.
    fn discrete(&self) -> bool {
        let f = self.field();
        f != Field::AvgTransactionAmount && f.value_type() != ValueType::Text
    }

    /// Whether a value has the subject's type; tests with other values are left alone.
    fn fits(&self, v: &Value) -> bool {
        let f = self.field();
        // Aggregates are only meaningful as such; anything else is kept as written.
        if matches!(self, Subject::Aggregate(..)) && f.kind() != FieldKind::Aggregate {
            return false;
        }
        matches!(
            (f.value_type(), v),
            (ValueType::Integer, Value::Int(_))
                | (ValueType::Money, Value::Money(_))
                | (ValueType::Text, Value::Text(_))
                | (ValueType::Timestamp, Value::Time(_))
        )
    }
}

/// One side of an interval.
#[derive(Debug, Clone)]
struct Bound {
    value: Value,
    inclusive: bool,
}

/// The tighter of two lower bounds (`lower`) or upper bounds.
fn tighter(a: Option<Bound>, b: Bound, lower: bool) -> Option<Bound> {
    let Some(a) = a else { return Some(b) };
    let keep_a = match a.value.cmp(&b.value) {
        std::cmp::Ordering::Equal => !a.inclusive,
        std::cmp::Ordering::Greater => lower,
        std::cmp::Ordering::Less => !lower,
    };
    Some(if keep_a { a } else { b })
}

/// The next (`up`) or previous value on a whole-number domain; `None` past the end.
fn step(v: &Value, up: bool) -> Option<Value> {
    let d = if up { 1 } else { -1 };
    match v {
        Value::Int(i) => i.checked_add(d).map(Value::Int),
        Value::Money(c) => c.checked_add(d).map(Value::Money),
        Value::Time(t) if t.nanosecond() == 0 => {
            t.checked_add_signed(Duration::seconds(d)).map(Value::Time)
        }
        _ => None,
    }
}

/// Merges the tests of one subject in a conjunction into canonical tests; `None` when they
/// contradict each other, an empty list when they always hold.
fn merge_tests(subject: &Subject, tests: Vec<Test>) -> Option<Vec<Test>> {
    let mut lo: Option<Bound> = None;
    let mut hi: Option<Bound> = None;
    let mut in_set: Option<BTreeSet<Value>> = None;
    let mut excluded: BTreeSet<Value> = BTreeSet::new();
    let mut is_null = false;
    // Every test but is_null is false on null, so any of them means "not null".
    let mut not_null = false;
    let mut others: Vec<Test> = Vec::new();
    let restrict = |set: &mut Option<BTreeSet<Value>>, vs: BTreeSet<Value>| {
        *set = Some(match set.take() {
            None => vs,
            Some(s) => s.intersection(&vs).cloned().collect(),
        });
    };
    for t in tests {
        let fits = match &t {
            Test::Cmp(_, v) => subject.fits(v),
            Test::In(vs) | Test::NotIn(vs) => vs.iter().all(|v| subject.fits(v)),
            Test::Between(a, b) => subject.fits(a) && subject.fits(b),
            _ => true,
        };
        if !fits {
            not_null = true;
            others.push(t);
            continue;
        }
        if t != Test::IsNull {
            not_null = true;
        }
        match t {
            Test::Cmp(CmpOp::Eq, v) => restrict(&mut in_set, BTreeSet::from([v])),
            Test::Cmp(CmpOp::Ne, v) => {
                excluded.insert(v);
            }
            Test::Cmp(op @ (CmpOp::Gt | CmpOp::Ge), v) => {
                let b = Bound {
                    value: v,
                    inclusive: op == CmpOp::Ge,
                };
                lo = tighter(lo, b, true);
            }
            Test::Cmp(op @ (CmpOp::Lt | CmpOp::Le), v) => {
                let b = Bound {
                    value: v,
                    inclusive: op == CmpOp::Le,
                };
                hi = tighter(hi, b, false);
            }
            Test::In(vs) => restrict(&mut in_set, vs.into_iter().collect()),
            Test::NotIn(vs) => excluded.extend(vs),
            Test::Between(a, b) => {
                lo = tighter(
                    lo,
                    Bound {
                        value: a,
                        inclusive: true,
                    },
                    true,
                );
                hi = tighter(
                    hi,
                    Bound {
                        value: b,
                        inclusive: true,
                    },
                    false,
                );
            }
            Test::IsNull => is_null = true,
            Test::IsNotNull => {}
            other @ (Test::NotBetween(..)
            | Test::Contains(_)
            | Test::StartsWith(_)
            | Test::WithinKm(_)) => others.push(other),
        }
    }
    if subject.never_null() {
        if is_null {
            return None;
        }
        not_null = false;
    }
    if is_null {
        return if not_null {
            None
        } else {
            Some(vec![Test::IsNull])
        };
    }
    // Strict bounds on whole-number domains become inclusive ones.
    if subject.discrete() {
        if let Some(b) = lo.take() {
            lo = Some(if b.inclusive {
                b
            } else {
                Bound {
                    value: step(&b.value, true)?,
                    inclusive: true,
                }
            });
        }
        if let Some(b) = hi.take() {
            hi = Some(if b.inclusive {
                b
            } else {
                Bound {
                    value: step(&b.value, false)?,
                    inclusive: true,
                }
            });
        }
    }
    let inside = |v: &Value| {
        lo.as_ref().is_none_or(|b| {
            if b.inclusive {
                *v >= b.value
            } else {
                *v > b.value
            }
        }) && hi.as_ref().is_none_or(|b| {
            if b.inclusive {
                *v <= b.value
            } else {
                *v < b.value
            }
        })
    };
    if let (Some(l), Some(h)) = (&lo, &hi) {
        if l.value > h.value || (l.value == h.value && !(l.inclusive && h.inclusive)) {
            return None;
        }
        if l.value == h.value {
            restrict(&mut in_set, BTreeSet::from([l.value.clone()]));
        }
    }
    let mut out = Vec::new();
    match in_set {
        Some(set) => {
            let mut vs: Vec<Value> = set
                .into_iter()
                .filter(|v| inside(v) && !excluded.contains(v))
                .collect();
            match vs.len() {
                0 => return None,
                1 => out.extend(vs.pop().map(|v| Test::Cmp(CmpOp::Eq, v))),
                _ => out.push(Test::In(vs)),
            }
        }
        None => {
            match (&lo, &hi) {
                (Some(l), Some(h)) if l.inclusive && h.inclusive => {
                    out.push(Test::Between(l.value.clone(), h.value.clone()));
                }
                _ => {
                    if let Some(l) = &lo {
                        let op = if l.inclusive { CmpOp::Ge } else { CmpOp::Gt };
                        out.push(Test::Cmp(op, l.value.clone()));
                    }
                    if let Some(h) = &hi {
                        let op = if h.inclusive { CmpOp::Le } else { CmpOp::Lt };
                        out.push(Test::Cmp(op, h.value.clone()));
                    }
                }
            }
            // Values outside the interval are excluded by it already.
            let mut ex: Vec<Value> = excluded.into_iter().filter(|v| inside(v)).collect();
            match ex.len() {
                0 => {}
                1 => out.extend(ex.pop().map(|v| Test::Cmp(CmpOp::Ne, v))),
                _ => out.push(Test::NotIn(ex)),
            }
        }
    }
    others.sort();
    others.dedup();
    // Of circles around one centre, the smallest decides.
    let circles: Vec<Circle> = others
        .iter()
        .filter_map(|t| match t {
            Test::WithinKm(c) => Some(*c),
            _ => None,
        })
        .collect();
    others.retain(|t| match t {
        Test::WithinKm(c) => !circles
            .iter()
            .any(|o| o != c && o.inside(c) && !c.inside(o) || o < c && o.inside(c) && c.inside(o)),
        _ => true,
    });
    out.extend(others);
    if out.is_empty() && not_null {
        out.push(Test::IsNotNull);
    }
    Some(out)
}
