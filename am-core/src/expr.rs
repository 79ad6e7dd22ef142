//! The checked condition AST: what a rule's conditions mean once validated.
//!
//! Users write conditions as JSON (see [`crate::rule::RuleSpec`]); validation turns them into
//! an [`Expr`] in which every field is from the catalog, every value has its field's type, and
//! every aggregate carries its full scope (source, window, transaction filter). Two rules'
//! expressions can therefore be compared directly, and the SQL renderer and the reference
//! evaluator read the same tree.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::field::Field;
use crate::geo::Circle;

/// Money in whole cents, so sums are exact.
pub type Cents = i64;

/// A UTC instant with one-second resolution, as the data tables store it.
pub type Timestamp = NaiveDateTime;

/// The format of timestamps in the data tables (SQLite's `datetime()` form).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A typed value: the field it is compared with decides which variant is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Money(Cents),
    Text(String),
    Time(Timestamp),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CmpOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

/// What a predicate asks of its field's value. Every test on a null value is false, except
/// [`Test::IsNull`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    Cmp(CmpOp, Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    /// Inclusive on both ends.
    Between(Value, Value),
    /// Outside the inclusive range (false on null, unlike `not between`).
    NotBetween(Value, Value),
    /// ASCII case-insensitive substring.
    Contains(String),
    /// ASCII case-insensitive prefix.
    StartsWith(String),
    IsNull,
    IsNotNull,
    /// A location within the circle (false for a user without a location).
    WithinKm(Circle),
}

/// Which transaction tables an aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    All,
    CreditCard,
    Upi,
}

/// The time range of transactions an aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Inclusive bounds; `None` is unbounded on that side.
    Range {
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    },
    /// `[as_of - N days, as_of]`, both ends included.
    LastDays(u32),
}

impl Window {
    pub const UNBOUNDED: Window = Window::Range {
        start: None,
        end: None,
    };

    /// Whether the window depends on the as-of time of the run.
    pub fn is_relative(&self) -> bool {
        matches!(self, Window::LastDays(_))
    }
}

/// The transactions an aggregate is computed over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Scope {
    pub source: Source,
    pub window: Window,
    /// A condition over transaction fields only ([`Pred::Tx`] leaves); `None` keeps every
    /// transaction of the source in the window.
    pub filter: Option<Box<Expr>>,
}

/// A leaf of the condition tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pred {
    /// A test on a profile field of the user.
    Profile { field: Field, test: Test },
    /// A test on an aggregate of the user's transactions in a scope.
    Aggregate {
        field: Field,
        scope: Scope,
        test: Test,
    },
    /// A test on one transaction's field; appears only inside [`Scope::filter`].
    Tx { field: Field, test: Test },
}

/// A boolean condition. At user level every expression is plainly true or false for every
/// user; `Not` is the exact complement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    True,
    False,
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Pred(Pred),
}

impl Expr {
    /// Whether any aggregate in the expression uses a window relative to the as-of time, or
    /// `days_since_last_transaction`, so its result depends on when it is evaluated.
    pub fn depends_on_as_of(&self) -> bool {
        match self {
            Expr::True | Expr::False => false,
            Expr::All(xs) | Expr::Any(xs) => xs.iter().any(Expr::depends_on_as_of),
            Expr::Not(x) => x.depends_on_as_of(),
            Expr::Pred(Pred::Aggregate { field, scope, .. }) => {
                *field == Field::DaysSinceLastTransaction || scope.window.is_relative()
            }
            Expr::Pred(_) => false,
        }
    }
}
