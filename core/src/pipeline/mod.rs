//! The BERTVision pipeline for one task: fine-tune BERT (keeping the checkpoint the head is
//! trained on, e.g. 1 epoch, and the final one), train the AdapterPooler on hidden states
//! streamed from the frozen checkpoint (nothing written to disk), evaluate BERT, BERTVision and
//! their ensembles, export the weights.
//!
//! | file | what |
//! |---|---|
//! | `config.rs`, `recipe.rs` | [`config::RunConfig`] (`config.json`), its defaults by model size and its validation |
//! | `run.rs` | [`run::run_task`]: the run folder, the data, the seed loop, `results.json` and `report.md` |
//! | `heads.rs` | `train-head`: a finished run read back, the heads' configuration |
//! | `seed.rs`, `context.rs`, `files.rs` | [`seed::run_seed`]: one seed's phases, resumable; what they share (`RunContext`, `SeedResult`), the seed's files and times |
//! | `finetune.rs`, `head_training.rs`, `evaluation.rs`, `export.rs` | the phases |
//! | `validation.rs` | the validation split carved from the training data (`--validation-fraction`): what search and checkpoint selection read |
//! | `selection.rs` | `--select-best validation`: the best point of fine-tuning kept as `bert_final`, early stopping |
//! | `sample.rs` | seeded, nested samples of the training data (`--train-fraction`, `--head-train-fraction`) |
//! | `charts.rs` | the curves (plotters SVG) of `report.md` and the comparison page |
//! | `hidden_cache.rs` | a frozen checkpoint's hidden states (and BERT's outputs) kept in memory for further head epochs and trials (`--cache-gib`) |
//! | `trainer.rs` | the training loop both trainings share (schedule, AdamW, checkpoints) |
//! | `data.rs`, `batch.rs`, `evaluate.rs` | samples, batches, predictions, ensembles, metrics |
//! | `eval_peers.rs` | evaluation sharded over `--devices` and the nodes: whole batches per peer, outputs joined in order |
//! | `results.rs`, `report.rs`, `methods.rs` | [`results::RunResults`], the summary over seeds, the report, the method keys (`bert@p`, `bertvision@p/f`) |
//! | `metrics_log.rs` | `metrics.jsonl`: every loss and evaluation as it happens |
//! | `progress.rs` | [`Progress`]: what the library reports while it works |
//!
//! Imports go one way: `run` → `seed` → the phases → `context`, `files`, `trainer`,
//! `evaluate`; nothing imports from this file, which only declares and re-exports.

pub mod batch;
pub mod charts;
pub mod config;
pub mod context;
pub mod data;
pub mod eval_peers;
pub mod evaluate;
mod evaluation;
pub mod export;
mod files;
mod finetune;
mod head_training;
pub mod heads;
pub mod hidden_cache;
pub mod methods;
pub mod metrics_log;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod results;
pub mod run;
pub mod sample;
pub mod seed;
pub mod selection;
pub mod step_losses;
pub mod trainer;
pub mod validation;

pub use self::context::{PointCost, RunContext, SeedResult, SquadRow};
pub use self::methods::{BERT_EXTRACT, BERT_FINAL, BERTVISION, MetricTable, ensemble_name};
pub use self::progress::{NoProgress, Progress};
pub use self::results::{Summary, summarise};
pub use self::run::{RunOutcome, RunRequest, run_task};
pub use self::seed::run_seed;
