//! am-core's integration tests: one binary, a module per area.

mod evaluate;
mod normalize;
mod validate;
