//! Routing: which routes an event belongs to (conditions), what each would send (the plan,
//! rendered once per route), and the pure decisions over the state read from the store and a
//! clock: dedup holds, aggregation batches, `serialize-actions` chains, retries, and each
//! action's adaptive concurrency limit.

pub mod concurrency;
pub mod condition;
pub mod decide;
pub mod dedup;
pub mod plan;
pub mod retry;
pub mod simple;

pub use condition::{Condition, WRAPPER_LINES, condition_error, resolve_filter, wrap_input};
pub use plan::{Aggregate, EventPlan, Route, RoutePlan, Verdict};
