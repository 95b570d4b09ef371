//! SQuAD 2.0: the official JSON, windowed features with training labels, post-processing from
//! start/end logits to answers, and the official evaluation re-implemented exactly.

pub use bertvision_formats::squad::{data, eval};
pub mod features;
pub mod postprocess;

pub use data::{SquadDataset, SquadExample};
pub use eval::{SquadMetrics, evaluate};
pub use features::{FeatureConfig, SquadFeature, featurize};
pub use postprocess::{PostprocessConfig, SquadPredictions, postprocess};
