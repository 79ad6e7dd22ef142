//! A rule as users write it (contract section 2), and as it is once checked.

use serde::{Deserialize, Serialize};

use crate::expr::{Expr, Window};
use crate::schedule::Schedule;

/// A rule's id in `rule_table`.
pub type RuleId = i64;

/// A rule as JSON: API bodies, CLI files, the seed's own shape. Fields are kept as written
/// so validation can report every problem with its path, and so the platform stores exactly
/// what the user wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RuleSpec {
    pub rule_name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The condition as written: a list, `{"all"|"any"|"not": ..}` or a predicate; null or
    /// absent means no condition.
    #[serde(default)]
    pub conditions: serde_json::Value,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<RuleId>,
    #[serde(default)]
    pub operation: Option<String>,
}

/// How a rule combines the segments it depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// Members of every dependency (the default).
    Intersection,
    /// Members of any dependency.
    Union,
    /// Members of the first dependency that are in none of the others.
    Difference,
}

impl Operation {
    pub const NAMES: &'static [&'static str] = &["INTERSECTION", "UNION", "DIFFERENCE"];

    pub fn parse(s: &str) -> Option<Operation> {
        match s {
            "INTERSECTION" => Some(Operation::Intersection),
            "UNION" => Some(Operation::Union),
            "DIFFERENCE" => Some(Operation::Difference),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Intersection => "INTERSECTION",
            Operation::Union => "UNION",
            Operation::Difference => "DIFFERENCE",
        }
    }
}

/// A rule whose spec passed validation: what the planner, the SQL engine and the evaluator use.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRule {
    pub name: String,
    /// The rule's conditions with every aggregate's scope resolved (the rule's window
    /// applied where a predicate does not override it); `None` when the rule has none.
    pub condition: Option<Expr>,
    /// The rule's own window, as resolved from `start_date` / `end_date`.
    pub window: Window,
    pub depends_on: Vec<RuleId>,
    /// The operation over `depends_on`; `Intersection` when unset and there are dependencies.
    pub operation: Option<Operation>,
    pub schedule: Option<Schedule>,
}
