//! Audience Manager core: the rule model and condition language, validation, normal forms,
//! schedules, the DependencyFinder, the planner and the reference evaluator.
//!
//! This crate does no SQL and no I/O: it is pure data and functions over it.

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
pub mod error;
pub mod evaluate;
pub mod expr;
pub mod field;
pub mod finder;
pub mod geo;
pub mod normalize;
pub mod plan;
pub mod plan_display;
pub mod planner;
pub mod rule;
pub mod schedule;
pub mod validate;
