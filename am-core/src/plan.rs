//! A plan as pure data: how each rule's segment is computed and in which order.
//!
//! The planner builds it; the SQL engine renders each node with sea-query; the reference
//! evaluator can evaluate it too, which is how reuse is checked against direct evaluation.

use serde::Serialize;

use crate::expr::Expr;
use crate::rule::RuleId;

/// How a set of users is computed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetExpr {
    /// Every row of `users`.
    AllUsers,
    /// The current members of a rule's segment (built earlier in the same plan, or fresh).
    Segment(RuleId),
    Intersect(Vec<SetExpr>),
    Union(Vec<SetExpr>),
    /// Members of the first set that are in none of the others.
    Difference(Box<SetExpr>, Vec<SetExpr>),
    /// Members of the set for which the condition holds.
    Filter(Box<SetExpr>, Expr),
}

/// The kind of reuse the DependencyFinder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReuseKind {
    /// The rule's condition equals an existing rule's.
    Equal,
    /// The rule is the conjunction of existing segments, plus a residual condition.
    Conjunction,
    /// The rule is the disjunction of existing segments.
    Disjunction,
    /// The rule is the complement of an existing segment.
    Negation,
    /// The rule implies an existing rule (a stricter bound, a smaller set), so it can be
    /// evaluated over that smaller parent only.
    Narrowing,
}

/// One reuse decision, with the reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reuse {
    pub kind: ReuseKind,
    pub parents: Vec<RuleId>,
    pub reason: String,
}

/// One rule in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanNode {
    pub rule_id: RuleId,
    pub rule_name: String,
    /// How the members are computed, from base tables and upstream segments.
    pub compute: SetExpr,
    /// The rules this node reads (explicit dependencies and reused segments).
    pub upstream: Vec<RuleId>,
    /// Set when the finder answered the rule from other segments.
    pub reuse: Option<Reuse>,
}

/// Rules in dependency order, grouped into stages whose members do not depend on each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Plan {
    /// Every node comes after all of its upstream nodes.
    pub nodes: Vec<PlanNode>,
    /// Rule ids per stage; every rule in a stage depends only on earlier stages.
    pub stages: Vec<Vec<RuleId>>,
}
