//! The task registry: every task's files, columns, labels, loss, metrics and default length in
//! one table, used by everything else (data loading, heads, evaluation, the command line).

pub mod downloads;
pub mod glue;
pub mod registry;

pub use registry::{Column, Loss, MetricKind, TASKS, TaskKind, TaskSpec, TsvFormat, task};
