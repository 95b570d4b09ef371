//! SQuAD 2.0: the official JSON and the official evaluation, re-implemented exactly.

pub mod data;
pub mod eval;
