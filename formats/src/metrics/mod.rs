//! Metrics with the official definitions: GLUE's (as scikit-learn/scipy compute them) and the
//! SQuAD 2.0 evaluator (in `squad::eval`).

pub mod glue;
