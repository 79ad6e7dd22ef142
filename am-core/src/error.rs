//! Errors of the core library.

use serde::Serialize;

use crate::rule::RuleId;

/// One problem found in a rule, with the JSON path it concerns (`conditions[1].operator`)
/// and what would be allowed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem validation found in a rule; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", display_problems(.0))]
pub struct ValidationErrors(pub Vec<Problem>);

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a set of rules cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("rule {rule} depends on unknown rule {missing}")]
    UnknownRule { rule: RuleId, missing: RuleId },
    #[error("dependency cycle: {}", .rules.iter().map(|(id, name)| format!("{name} (#{id})")).collect::<Vec<_>>().join(" -> "))]
    Cycle { rules: Vec<(RuleId, String)> },
    #[error("rule {0} is not in the plan's rule set")]
    NotFound(RuleId),
}

/// The core library's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid rule: {0}")]
    Invalid(#[from] ValidationErrors),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("invalid schedule {schedule:?}: {reason}")]
    Schedule { schedule: String, reason: String },
}
