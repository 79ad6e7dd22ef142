//! am-core's integration tests: one binary, a module per area.

mod evaluate;
mod finder;
mod geo;
mod normalize;
mod planner;
mod validate;
