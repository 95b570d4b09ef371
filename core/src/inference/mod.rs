//! Using what `bertvision run` exported: one loader for an export folder ([`export`]), and one
//! path per kind of task from inputs to decisions — [`qa`] (a question about a passage: BERT,
//! BERTVision and their ensemble) and [`classify`] (a sentence or pair: the three methods'
//! probabilities or scores). `bertvision answer`, `classify`, `predict` and the browser app all
//! go through these; [`about`] is what the browser says about a demo export.

pub mod about;
pub mod classify;
pub mod export;
pub mod qa;

pub use export::{ExportFiles, ExportedModels, NamedBytes};

use crate::pipeline::config::EnsembleRule;
use crate::pipeline::evaluate::{EvalOutputs, ensemble};

/// The four methods an export offers, named as `results.json` names them (`bert` is the
/// exported BERT: the run's `bert_extract`, BERT at the last extraction point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    Bert,
    Bertvision,
    EnsembleMax,
    EnsembleMean,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Bert,
        Method::Bertvision,
        Method::EnsembleMax,
        Method::EnsembleMean,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Bert => "bert",
            Method::Bertvision => "bertvision",
            Method::EnsembleMax => "ensemble_max",
            Method::EnsembleMean => "ensemble_mean",
        }
    }

    /// The key of this method's scores in the `results.json` of the run that exported it.
    pub fn results_key(self) -> &'static str {
        match self {
            Method::Bert => crate::pipeline::methods::BERT_EXTRACT,
            other => other.name(),
        }
    }

    /// This method's outputs from BERT's and the AdapterPooler's; `None` where the method has
    /// no meaning (the maximum of two regression scores).
    pub fn outputs(self, bert: &EvalOutputs, head: &EvalOutputs) -> Option<EvalOutputs> {
        match self {
            Method::Bert => Some(bert.clone()),
            Method::Bertvision => Some(head.clone()),
            Method::EnsembleMax => ensemble(bert, head, EnsembleRule::Max),
            Method::EnsembleMean => ensemble(bert, head, EnsembleRule::Mean),
        }
    }
}
