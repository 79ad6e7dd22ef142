//! The reference evaluator: evaluates checked conditions, set expressions and rules over
//! in-memory users and transactions with exactly the contract's semantics.
//!
//! It is the oracle every SQL engine is tested against, and it lets a service check one user
//! against a rule without a database. The semantics are SQL aggregate semantics:
//!
//! - a transaction is in an aggregate's scope when its table matches the source, its date is
//!   inside the window (inclusive; a null date is only inside a window unbounded on both
//!   sides) and the scope's filter holds for it;
//! - `total_spend`, `transaction_count` and `distinct_categories` are 0 for a user with no
//!   transaction in scope, the other aggregates are null;
//! - every test on a null is false except `is_null`; `Not` is the plain complement;
//! - money is whole cents and the average is compared exactly (`avg op v` as
//!   `sum op v * n`), so no floating point is involved anywhere.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;

use crate::expr::{Cents, CmpOp, Expr, Pred, Scope, Source, Test, Timestamp, Value, Window};
use crate::field::Field;
use crate::geo::GeoPoint;
use crate::plan::SetExpr;
use crate::rule::{CheckedRule, Operation, RuleId};

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub city_tier: Option<i64>,
    pub created_at: Option<Timestamp>,
}

/// A row of `credit_card_transactions` (where `description` is `None`) or
/// `upi_transactions` (where `merchant` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub transaction_id: i64,
    pub user_id: i64,
    pub amount: Option<Cents>,
    pub category: Option<String>,
    pub merchant: Option<String>,
    pub description: Option<String>,
    pub transaction_date: Option<Timestamp>,
}

/// Users and both transaction tables, with a per-user index of transactions built once.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    users: Vec<User>,
    credit_card: Vec<Transaction>,
    upi: Vec<Transaction>,
    /// Position of each user in `users`.
    user_pos: BTreeMap<i64, usize>,
    /// Per user: positions of their credit-card and UPI transactions. Transactions of ids
    /// that are not users are not indexed, so they are ignored, as a join would ignore them.
    tx_index: BTreeMap<i64, (Vec<usize>, Vec<usize>)>,
    /// Rows of `user_locations`, by user.
    locations: BTreeMap<i64, GeoPoint>,
}

impl Dataset {
    /// Builds the dataset and its index. If two users share an id, the first one counts.
    pub fn new(users: Vec<User>, credit_card: Vec<Transaction>, upi: Vec<Transaction>) -> Self {
        let mut user_pos = BTreeMap::new();
        for (i, u) in users.iter().enumerate() {
            user_pos.entry(u.user_id).or_insert(i);
        }
        let mut tx_index: BTreeMap<i64, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, t) in credit_card.iter().enumerate() {
            if user_pos.contains_key(&t.user_id) {
                tx_index.entry(t.user_id).or_default().0.push(i);
            }
        }
        for (i, t) in upi.iter().enumerate() {
            if user_pos.contains_key(&t.user_id) {
                tx_index.entry(t.user_id).or_default().1.push(i);
            }
        }
        Dataset {
            users,
            credit_card,
            upi,
            user_pos,
            tx_index,
            locations: BTreeMap::new(),
        }
    }

    /// The dataset with these rows of `user_locations` (user id, point); a later row of one
    /// user replaces an earlier one, as the table's key allows one per user.
    pub fn with_locations(mut self, locations: impl IntoIterator<Item = (i64, GeoPoint)>) -> Self {
        self.locations.extend(locations);
        self
    }

    /// Every location, by user id.
    pub fn locations(&self) -> &BTreeMap<i64, GeoPoint> {
        &self.locations
    }

    /// A user's location, if the user has one.
    pub fn location(&self, user_id: i64) -> Option<GeoPoint> {
        self.locations.get(&user_id).copied()
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn credit_card(&self) -> &[Transaction] {
        &self.credit_card
    }

    pub fn upi(&self) -> &[Transaction] {
        &self.upi
    }

    /// The user with this id, if any.
    pub fn user(&self, user_id: i64) -> Option<&User> {
        self.user_pos.get(&user_id).map(|&i| &self.users[i])
    }

    /// Every user id, in order.
    pub fn user_ids(&self) -> BTreeSet<i64> {
        self.user_pos.keys().copied().collect()
    }

    /// A user's transactions from the tables the source names.
    fn transactions_of(
        &self,
        user_id: i64,
        source: Source,
    ) -> impl Iterator<Item = &Transaction> + Clone {
        let (cc, upi): (&[usize], &[usize]) = match self.tx_index.get(&user_id) {
            Some((cc, upi)) => (cc, upi),
            None => (&[], &[]),
        };
        let cc = if source == Source::Upi { &[][..] } else { cc };
        let upi = if source == Source::CreditCard {
            &[][..]
        } else {
            upi
        };
        cc.iter()
            .map(|&i| &self.credit_card[i])
            .chain(upi.iter().map(|&i| &self.upi[i]))
    }
}

/// The users for whom the condition holds.
pub fn evaluate_expr(e: &Expr, ds: &Dataset, as_of: Timestamp) -> BTreeSet<i64> {
    ds.user_pos
        .iter()
        .filter(|&(_, &i)| matches(e, &ds.users[i], ds, as_of))
        .map(|(&id, _)| id)
        .collect()
}

/// Whether the condition holds for one user; aggregates read the user's transactions in `ds`.
///
/// A [`Pred::Tx`] outside a scope filter has no meaning for a user and is false (validation
/// never produces one).
pub fn matches(e: &Expr, user: &User, ds: &Dataset, as_of: Timestamp) -> bool {
    match e {
        Expr::True => true,
        Expr::False => false,
        Expr::All(xs) => xs.iter().all(|x| matches(x, user, ds, as_of)),
        Expr::Any(xs) => xs.iter().any(|x| matches(x, user, ds, as_of)),
        Expr::Not(x) => !matches(x, user, ds, as_of),
        Expr::Pred(Pred::Profile {
            field: Field::Location,
            test,
        }) => match test {
            Test::WithinKm(circle) => ds
                .location(user.user_id)
                .is_some_and(|p| circle.contains(p)),
            // Validation allows nothing else on a location.
            _ => false,
        },
        Expr::Pred(Pred::Profile { field, test }) => {
            let v = profile_value(*field, user);
            test_holds(test, v.as_ref().map(Subject::Value))
        }
        Expr::Pred(Pred::Aggregate { field, scope, test }) => {
            let agg = aggregate(*field, scope, user.user_id, ds, as_of);
            match &agg {
                Agg::Value(v) => test_holds(test, v.as_ref().map(Subject::Value)),
                Agg::Avg { sum, n } => {
                    let s = (*n > 0).then_some(Subject::Avg { sum: *sum, n: *n });
                    test_holds(test, s)
                }
            }
        }
        Expr::Pred(Pred::Tx { .. }) => false,
    }
}

/// The users of a set expression; `segments` holds the members of the segments it names (a
/// segment missing from it has no members).
pub fn evaluate_set(
    s: &SetExpr,
    ds: &Dataset,
    as_of: Timestamp,
    segments: &BTreeMap<RuleId, BTreeSet<i64>>,
) -> BTreeSet<i64> {
    match s {
        SetExpr::AllUsers => ds.user_ids(),
        SetExpr::Segment(id) => segments.get(id).cloned().unwrap_or_default(),
        SetExpr::Intersect(xs) => {
            let mut it = xs.iter();
            // The intersection of no sets is every user.
            let Some(first) = it.next() else {
                return ds.user_ids();
            };
            let mut acc = evaluate_set(first, ds, as_of, segments);
            for x in it {
                let other = evaluate_set(x, ds, as_of, segments);
                acc.retain(|id| other.contains(id));
            }
            acc
        }
        SetExpr::Union(xs) => xs
            .iter()
            .flat_map(|x| evaluate_set(x, ds, as_of, segments))
            .collect(),
        SetExpr::Difference(first, others) => {
            let mut acc = evaluate_set(first, ds, as_of, segments);
            for x in others {
                let other = evaluate_set(x, ds, as_of, segments);
                acc.retain(|id| !other.contains(id));
            }
            acc
        }
        SetExpr::Filter(inner, e) => {
            let base = evaluate_set(inner, ds, as_of, segments);
            base.into_iter()
                .filter(|id| ds.user(*id).is_some_and(|u| matches(e, u, ds, as_of)))
                .collect()
        }
    }
}

/// A rule's members: its dependencies' segments combined by its operation (intersection by
/// default), narrowed by its condition; without dependencies, the condition over all users.
pub fn evaluate_rule(
    rule: &CheckedRule,
    ds: &Dataset,
    as_of: Timestamp,
    segments: &BTreeMap<RuleId, BTreeSet<i64>>,
) -> BTreeSet<i64> {
    evaluate_set(&rule_set_expr(rule), ds, as_of, segments)
}

/// A rule as a set expression over its dependencies, evaluated directly (no reuse).
pub fn rule_set_expr(rule: &CheckedRule) -> SetExpr {
    let deps: Vec<SetExpr> = rule
        .depends_on
        .iter()
        .map(|&d| SetExpr::Segment(d))
        .collect();
    let base = match (deps.split_first(), rule.operation) {
        (None, _) => SetExpr::AllUsers,
        (Some((first, rest)), Some(Operation::Difference)) => {
            SetExpr::Difference(Box::new(first.clone()), rest.to_vec())
        }
        (Some(_), Some(Operation::Union)) => SetExpr::Union(deps),
        (Some(_), Some(Operation::Intersection) | None) => SetExpr::Intersect(deps),
    };
    match &rule.condition {
        Some(c) => SetExpr::Filter(Box::new(base), c.clone()),
        None => base,
    }
}

/// The value of an aggregate for one user (null as `None`). The average is rounded half away
/// from zero to the cent for display; tests compare it exactly instead.
pub fn aggregate_value(
    field: Field,
    scope: &Scope,
    user_id: i64,
    ds: &Dataset,
    as_of: Timestamp,
) -> Option<Value> {
    match aggregate(field, scope, user_id, ds, as_of) {
        Agg::Value(v) => v,
        Agg::Avg { n: 0, .. } => None,
        Agg::Avg { sum, n } => {
            let n = i128::from(n);
            let half = n / 2;
            let rounded = if sum >= 0 {
                (sum + half) / n
            } else {
                (sum - half) / n
            };
            i64::try_from(rounded).ok().map(Value::Money)
        }
    }
}

/// The value of a profile field; `None` for a non-profile field.
pub fn profile_value(field: Field, user: &User) -> Option<Value> {
    match field {
        Field::UserId => Some(Value::Int(user.user_id)),
        Field::Name => user.name.clone().map(Value::Text),
        Field::Email => user.email.clone().map(Value::Text),
        Field::CityTier => user.city_tier.map(Value::Int),
        Field::CreatedAt => user.created_at.map(Value::Time),
        _ => None,
    }
}

/// The value of a transaction field on one transaction; `None` for a non-transaction field.
pub fn transaction_value(field: Field, tx: &Transaction) -> Option<Value> {
    match field {
        Field::Category => tx.category.clone().map(Value::Text),
        Field::Merchant => tx.merchant.clone().map(Value::Text),
        Field::Description => tx.description.clone().map(Value::Text),
        Field::Amount => tx.amount.map(Value::Money),
        Field::TransactionDate => tx.transaction_date.map(Value::Time),
        _ => None,
    }
}

/// Whether a transaction's date is inside a window.
pub fn in_window(window: &Window, date: Option<Timestamp>, as_of: Timestamp) -> bool {
    match (window, date) {
        (Window::Range { start, end }, Some(d)) => {
            start.is_none_or(|s| d >= s) && end.is_none_or(|e| d <= e)
        }
        // Only an unbounded window keeps a transaction with no date, as SQL's comparisons
        // with null would.
        (Window::Range { start, end }, None) => start.is_none() && end.is_none(),
        (Window::LastDays(n), Some(d)) => {
            let from = as_of
                .checked_sub_signed(Duration::days(i64::from(*n)))
                .unwrap_or(Timestamp::MIN);
            d >= from && d <= as_of
        }
        (Window::LastDays(_), None) => false,
    }
}

/// Whether a scope filter holds for one transaction. Only [`Pred::Tx`] leaves have meaning
/// there; any other leaf is false.
pub fn filter_holds(e: &Expr, tx: &Transaction) -> bool {
    match e {
        Expr::True => true,
        Expr::False => false,
        Expr::All(xs) => xs.iter().all(|x| filter_holds(x, tx)),
        Expr::Any(xs) => xs.iter().any(|x| filter_holds(x, tx)),
        Expr::Not(x) => !filter_holds(x, tx),
        Expr::Pred(Pred::Tx { field, test }) => {
            let v = transaction_value(*field, tx);
            test_holds(test, v.as_ref().map(Subject::Value))
        }
        Expr::Pred(_) => false,
    }
}

/// An aggregate's result: a plain value, or the average kept as an exact fraction.
enum Agg {
    Value(Option<Value>),
    Avg { sum: i128, n: i64 },
}

fn aggregate(field: Field, scope: &Scope, user_id: i64, ds: &Dataset, as_of: Timestamp) -> Agg {
    let txs = ds.transactions_of(user_id, scope.source).filter(|t| {
        in_window(&scope.window, t.transaction_date, as_of)
            && scope.filter.as_deref().is_none_or(|f| filter_holds(f, t))
    });
    let amounts = || txs.clone().filter_map(|t| t.amount);
    let dates = || txs.clone().filter_map(|t| t.transaction_date);
    match field {
        Field::TotalSpend => {
            let sum: i128 = amounts().map(i128::from).sum();
            // A sum beyond i64 cents cannot come from real data; saturate rather than panic.
            let sum = i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX });
            Agg::Value(Some(Value::Money(sum)))
        }
        Field::TransactionCount => Agg::Value(Some(Value::Int(
            i64::try_from(txs.clone().count()).unwrap_or(i64::MAX),
        ))),
        Field::AvgTransactionAmount => {
            let (sum, n) = amounts().fold((0i128, 0i64), |(s, n), a| (s + i128::from(a), n + 1));
            Agg::Avg { sum, n }
        }
        Field::MaxTransactionAmount => Agg::Value(amounts().max().map(Value::Money)),
        Field::MinTransactionAmount => Agg::Value(amounts().min().map(Value::Money)),
        Field::FirstTransactionDate => Agg::Value(dates().min().map(Value::Time)),
        Field::LastTransactionDate => Agg::Value(dates().max().map(Value::Time)),
        Field::DaysSinceLastTransaction => Agg::Value(
            dates()
                .max()
                .map(|last| Value::Int((as_of.date() - last.date()).num_days())),
        ),
        Field::DistinctCategories => {
            let cats: BTreeSet<&str> = txs.filter_map(|t| t.category.as_deref()).collect();
            Agg::Value(Some(Value::Int(
                i64::try_from(cats.len()).unwrap_or(i64::MAX),
            )))
        }
        // Not an aggregate: no value, so every test but is_null is false.
        _ => Agg::Value(None),
    }
}

/// What a test is applied to: a value, or an exact average `sum / n` with `n > 0`.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Value(&'a Value),
    Avg { sum: i128, n: i64 },
}

impl Subject<'_> {
    /// The ordering against a value of the same type; `None` when the types differ.
    fn compare(&self, v: &Value) -> Option<Ordering> {
        match (self, v) {
            (Subject::Value(Value::Int(a)), Value::Int(b)) => Some(a.cmp(b)),
            (Subject::Value(Value::Money(a)), Value::Money(b)) => Some(a.cmp(b)),
            (Subject::Value(Value::Text(a)), Value::Text(b)) => {
                Some(a.as_bytes().cmp(b.as_bytes()))
            }
            (Subject::Value(Value::Time(a)), Value::Time(b)) => Some(a.cmp(b)),
            // sum / n op v  <=>  sum op v * n, as n > 0.
            (Subject::Avg { sum, n }, Value::Money(b)) => {
                Some(sum.cmp(&(i128::from(*b) * i128::from(*n))))
            }
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Subject::Value(Value::Text(s)) => Some(s),
            _ => None,
        }
    }
}

/// Whether a test holds for a value; `None` is null.
fn test_holds(test: &Test, subject: Option<Subject<'_>>) -> bool {
    let Some(s) = subject else {
        return matches!(test, Test::IsNull);
    };
    match test {
        Test::IsNull => false,
        Test::IsNotNull => true,
        // Only a location is within a circle.
        Test::WithinKm(_) => false,
        Test::Cmp(op, v) => s.compare(v).is_some_and(|o| cmp_holds(*op, o)),
        Test::In(vs) => vs.iter().any(|v| s.compare(v) == Some(Ordering::Equal)),
        Test::NotIn(vs) => vs
            .iter()
            .all(|v| s.compare(v).is_some_and(|o| o != Ordering::Equal)),
        Test::Between(lo, hi) => {
            s.compare(lo).is_some_and(|o| o != Ordering::Less)
                && s.compare(hi).is_some_and(|o| o != Ordering::Greater)
        }
        Test::NotBetween(lo, hi) => {
            s.compare(lo) == Some(Ordering::Less) || s.compare(hi) == Some(Ordering::Greater)
        }
        Test::Contains(needle) => s.text().is_some_and(|t| {
            t.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase())
        }),
        Test::StartsWith(prefix) => s.text().is_some_and(|t| {
            t.len() >= prefix.len()
                && t.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        }),
    }
}

fn cmp_holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ts(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> Timestamp {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, mi, s))
            .expect("valid test timestamp")
    }

    fn user(id: i64, tier: Option<i64>) -> User {
        User {
            user_id: id,
            name: Some(format!("User {id}")),
            email: None,
            city_tier: tier,
            created_at: None,
        }
    }

    fn tx(
        id: i64,
        user_id: i64,
        amount: Option<Cents>,
        cat: &str,
        date: Option<Timestamp>,
    ) -> Transaction {
        Transaction {
            transaction_id: id,
            user_id,
            amount,
            category: Some(cat.to_string()),
            merchant: Some("Acme".to_string()),
            description: None,
            transaction_date: date,
        }
    }

    fn agg(field: Field, window: Window, filter: Option<Expr>, test: Test) -> Expr {
        Expr::Pred(Pred::Aggregate {
            field,
            scope: Scope {
                source: Source::All,
                window,
                filter: filter.map(Box::new),
            },
            test,
        })
    }

    fn tx_pred(field: Field, test: Test) -> Expr {
        Expr::Pred(Pred::Tx { field, test })
    }

    fn ids(xs: &[i64]) -> BTreeSet<i64> {
        xs.iter().copied().collect()
    }

    fn as_of() -> Timestamp {
        ts(2025, 6, 30, 12, 0, 0)
    }

    /// User 1 spends 0.10 + 0.20 + 999.70 = 1000.00; user 2 spends 1000.01; user 3 nothing.
    fn money_data() -> Dataset {
        let d = Some(ts(2025, 3, 1, 10, 0, 0));
        Dataset::new(
            vec![user(1, Some(1)), user(2, Some(2)), user(3, None)],
            vec![
                tx(10, 1, Some(10), "Travel", d),
                tx(11, 1, Some(20), "Travel", d),
                tx(12, 2, Some(100_001), "Food", d),
                // Not a user: ignored.
                tx(13, 99, Some(500_000), "Travel", d),
            ],
            vec![tx(20, 1, Some(99_970), "Travel", d)],
        )
    }

    #[test]
    fn money_is_cent_exact() {
        let ds = money_data();
        let ge = agg(
            Field::TotalSpend,
            Window::UNBOUNDED,
            None,
            Test::Cmp(CmpOp::Ge, Value::Money(100_000)),
        );
        let gt = agg(
            Field::TotalSpend,
            Window::UNBOUNDED,
            None,
            Test::Cmp(CmpOp::Gt, Value::Money(100_000)),
        );
        assert_eq!(evaluate_expr(&ge, &ds, as_of()), ids(&[1, 2]));
        assert_eq!(evaluate_expr(&gt, &ds, as_of()), ids(&[2]));
    }

    #[test]
    fn zero_spend_for_users_without_transactions() {
        let ds = money_data();
        let zero = agg(
            Field::TotalSpend,
            Window::UNBOUNDED,
            None,
            Test::Cmp(CmpOp::Eq, Value::Money(0)),
        );
        assert_eq!(evaluate_expr(&zero, &ds, as_of()), ids(&[3]));
        let count0 = agg(
            Field::TransactionCount,
            Window::UNBOUNDED,
            None,
            Test::Cmp(CmpOp::Le, Value::Int(0)),
        );
        assert_eq!(evaluate_expr(&count0, &ds, as_of()), ids(&[3]));
        let scope = Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: None,
        };
        assert_eq!(
            aggregate_value(Field::TotalSpend, &scope, 3, &ds, as_of()),
            Some(Value::Money(0))
        );
        assert_eq!(
            aggregate_value(Field::DistinctCategories, &scope, 3, &ds, as_of()),
            Some(Value::Int(0))
        );
        assert_eq!(
            aggregate_value(Field::MaxTransactionAmount, &scope, 3, &ds, as_of()),
            None
        );
        assert_eq!(
            aggregate_value(Field::DaysSinceLastTransaction, &scope, 3, &ds, as_of()),
            None
        );
        // Null aggregates fail every comparison, but not is_null.
        let max_null = agg(
            Field::MaxTransactionAmount,
            Window::UNBOUNDED,
            None,
            Test::IsNull,
        );
        assert_eq!(evaluate_expr(&max_null, &ds, as_of()), ids(&[3]));
        let max_lt = agg(
            Field::MaxTransactionAmount,
            Window::UNBOUNDED,
            None,
            Test::Cmp(CmpOp::Lt, Value::Money(1_000_000)),
        );
        assert_eq!(evaluate_expr(&max_lt, &ds, as_of()), ids(&[1, 2]));
    }

    #[test]
    fn average_is_compared_exactly() {
        // 0.10, 0.20, 0.20: the mean is 0.1666.., so not >= 0.17 and > 0.16.
        let d = Some(ts(2025, 3, 1, 0, 0, 0));
        let ds = Dataset::new(
            vec![user(1, None)],
            vec![
                tx(1, 1, Some(10), "A", d),
                tx(2, 1, Some(20), "A", d),
                tx(3, 1, Some(20), "A", d),
                tx(4, 1, None, "A", d),
            ],
            vec![],
        );
        let avg = |op, c| {
            agg(
                Field::AvgTransactionAmount,
                Window::UNBOUNDED,
                None,
                Test::Cmp(op, Value::Money(c)),
            )
        };
        assert!(evaluate_expr(&avg(CmpOp::Ge, 17), &ds, as_of()).is_empty());
        assert_eq!(evaluate_expr(&avg(CmpOp::Gt, 16), &ds, as_of()), ids(&[1]));
        assert!(evaluate_expr(&avg(CmpOp::Eq, 17), &ds, as_of()).is_empty());
        let scope = Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: None,
        };
        assert_eq!(
            aggregate_value(Field::AvgTransactionAmount, &scope, 1, &ds, as_of()),
            Some(Value::Money(17))
        );
        // The null amount is a row for the count but not a value for the average.
        assert_eq!(
            aggregate_value(Field::TransactionCount, &scope, 1, &ds, as_of()),
            Some(Value::Int(4))
        );
    }

    #[test]
    fn windows_are_inclusive_and_null_dates_only_count_unbounded() {
        let start = ts(2025, 1, 1, 0, 0, 0);
        let end = ts(2025, 1, 31, 23, 59, 59);
        let ds = Dataset::new(
            vec![user(1, None), user(2, None), user(3, None), user(4, None)],
            vec![
                tx(1, 1, Some(100), "A", Some(start)),
                tx(2, 2, Some(100), "A", Some(end)),
                tx(3, 3, Some(100), "A", Some(ts(2025, 2, 1, 0, 0, 0))),
                tx(4, 4, Some(100), "A", None),
            ],
            vec![],
        );
        let has = |w| {
            agg(
                Field::TransactionCount,
                w,
                None,
                Test::Cmp(CmpOp::Ge, Value::Int(1)),
            )
        };
        let range = Window::Range {
            start: Some(start),
            end: Some(end),
        };
        assert_eq!(evaluate_expr(&has(range), &ds, as_of()), ids(&[1, 2]));
        let from = Window::Range {
            start: Some(start),
            end: None,
        };
        assert_eq!(evaluate_expr(&has(from), &ds, as_of()), ids(&[1, 2, 3]));
        assert_eq!(
            evaluate_expr(&has(Window::UNBOUNDED), &ds, as_of()),
            ids(&[1, 2, 3, 4])
        );
        // last_days covers [as_of - N days, as_of], both ends included.
        let as_of = ts(2025, 1, 31, 23, 59, 59);
        assert_eq!(
            evaluate_expr(&has(Window::LastDays(30)), &ds, as_of),
            ids(&[2])
        );
        let as_of = ts(2025, 1, 31, 0, 0, 0);
        assert_eq!(
            evaluate_expr(&has(Window::LastDays(30)), &ds, as_of),
            ids(&[1])
        );
    }

    #[test]
    fn days_since_last_counts_calendar_days() {
        let ds = Dataset::new(
            vec![user(1, None)],
            vec![tx(1, 1, Some(1), "A", Some(ts(2025, 6, 29, 23, 59, 59)))],
            vec![],
        );
        let scope = Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: None,
        };
        let v = aggregate_value(
            Field::DaysSinceLastTransaction,
            &scope,
            1,
            &ds,
            ts(2025, 6, 30, 0, 0, 1),
        );
        assert_eq!(v, Some(Value::Int(1)));
    }

    #[test]
    fn filters_sources_and_text_tests() {
        let d = Some(ts(2025, 3, 1, 0, 0, 0));
        let mut upi = tx(5, 2, Some(700), "Travel", d);
        upi.merchant = None;
        upi.description = Some("Rent for March".into());
        let ds = Dataset::new(
            vec![user(1, None), user(2, None)],
            vec![
                tx(1, 1, Some(500), "Travel", d),
                tx(2, 1, Some(300), "travel", d),
            ],
            vec![upi],
        );
        let travel = tx_pred(
            Field::Category,
            Test::Cmp(CmpOp::Eq, Value::Text("Travel".into())),
        );
        let spend = |filter: Option<Expr>, source| {
            Expr::Pred(Pred::Aggregate {
                field: Field::TotalSpend,
                scope: Scope {
                    source,
                    window: Window::UNBOUNDED,
                    filter: filter.map(Box::new),
                },
                test: Test::Cmp(CmpOp::Ge, Value::Money(500)),
            })
        };
        // `=` is exact: user 1's "travel" row does not count, so 5.00 of Travel for user 1.
        assert_eq!(
            evaluate_expr(&spend(Some(travel.clone()), Source::All), &ds, as_of()),
            ids(&[1, 2])
        );
        assert_eq!(
            evaluate_expr(
                &spend(Some(travel.clone()), Source::CreditCard),
                &ds,
                as_of()
            ),
            ids(&[1])
        );
        assert_eq!(
            evaluate_expr(&spend(None, Source::Upi), &ds, as_of()),
            ids(&[2])
        );
        // Not inside a filter is the per-transaction complement: user 1's "travel" row only.
        let not_travel = Expr::Not(Box::new(travel));
        let scope = Scope {
            source: Source::All,
            window: Window::UNBOUNDED,
            filter: Some(Box::new(not_travel)),
        };
        assert_eq!(
            aggregate_value(Field::TotalSpend, &scope, 1, &ds, as_of()),
            Some(Value::Money(300))
        );
        // contains / starts_with are ASCII case-insensitive; merchant is null on UPI rows.
        let rent = tx_pred(Field::Description, Test::StartsWith("RENT".into()));
        assert_eq!(
            evaluate_expr(&spend(Some(rent), Source::All), &ds, as_of()),
            ids(&[2])
        );
        let acme = tx_pred(Field::Merchant, Test::Contains("cM".into()));
        assert_eq!(
            evaluate_expr(&spend(Some(acme), Source::All), &ds, as_of()),
            ids(&[1])
        );
        let no_merchant = tx_pred(Field::Merchant, Test::IsNull);
        assert_eq!(
            evaluate_expr(&spend(Some(no_merchant), Source::All), &ds, as_of()),
            ids(&[2])
        );
    }

    #[test]
    fn null_profile_values_and_not_as_complement() {
        let ds = Dataset::new(
            vec![user(1, Some(1)), user(2, Some(2)), user(3, None)],
            vec![],
            vec![],
        );
        let tier1 = Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::Cmp(CmpOp::Eq, Value::Int(1)),
        });
        let ne1 = Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::Cmp(CmpOp::Ne, Value::Int(1)),
        });
        let not_in = Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::NotIn(vec![Value::Int(1)]),
        });
        let null = Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::IsNull,
        });
        assert_eq!(evaluate_expr(&tier1, &ds, as_of()), ids(&[1]));
        // Comparisons with null are false, so `!= 1` and `not_in [1]` leave user 3 out ...
        assert_eq!(evaluate_expr(&ne1, &ds, as_of()), ids(&[2]));
        assert_eq!(evaluate_expr(&not_in, &ds, as_of()), ids(&[2]));
        // ... while `not (= 1)` is the complement and keeps them.
        assert_eq!(
            evaluate_expr(&Expr::Not(Box::new(tier1)), &ds, as_of()),
            ids(&[2, 3])
        );
        assert_eq!(evaluate_expr(&null, &ds, as_of()), ids(&[3]));
        let user3 = ds.user(3).expect("user 3 exists");
        assert!(matches(&Expr::Not(Box::new(ne1)), user3, &ds, as_of()));
    }

    #[test]
    fn rules_combine_dependencies_then_narrow() {
        let ds = Dataset::new(
            (1..=5).map(|i| user(i, Some(i % 2))).collect(),
            vec![],
            vec![],
        );
        let segments: BTreeMap<RuleId, BTreeSet<i64>> =
            [(10, ids(&[1, 2, 3])), (11, ids(&[2, 3, 4]))]
                .into_iter()
                .collect();
        let odd = Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::Cmp(CmpOp::Eq, Value::Int(1)),
        });
        let rule = |depends_on: Vec<RuleId>, operation, condition| CheckedRule {
            name: "r".into(),
            condition,
            window: Window::UNBOUNDED,
            depends_on,
            operation,
            schedule: None,
        };
        let eval = |r: &CheckedRule| evaluate_rule(r, &ds, as_of(), &segments);
        assert_eq!(eval(&rule(vec![10, 11], None, None)), ids(&[2, 3]));
        assert_eq!(
            eval(&rule(vec![10, 11], Some(Operation::Union), None)),
            ids(&[1, 2, 3, 4])
        );
        assert_eq!(
            eval(&rule(vec![10, 11], Some(Operation::Difference), None)),
            ids(&[1])
        );
        assert_eq!(
            eval(&rule(
                vec![10, 11],
                Some(Operation::Union),
                Some(odd.clone())
            )),
            ids(&[1, 3])
        );
        assert_eq!(eval(&rule(vec![], None, Some(odd))), ids(&[1, 3, 5]));
        assert_eq!(eval(&rule(vec![], None, None)), ids(&[1, 2, 3, 4, 5]));
    }
}
