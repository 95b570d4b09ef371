//! Every recipe value of a run, serialised beside its results (`config.json`), and the checks
//! a configuration must pass before any work starts.

use serde::{Deserialize, Serialize};

use super::recipe::Recipe;
use crate::bert::{BertConfig, EncoderDtype, EncoderKernels};
use crate::checks;
use crate::error::{Error, Result};
use crate::head::{HeadKind, HeadPath, LayerMix};
use crate::squad::{FeatureConfig, PostprocessConfig};
use crate::train::OptimizerConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub lr: f64,
    pub batch_size: usize,
    /// Total fine-tuning length in epochs (may be fractional).
    pub epochs: f64,
    pub warmup_ratio: f64,
    pub optimizer: OptimizerConfig,
    /// Score BERT on this split (only `validation`) at every point of its curve and keep the
    /// best checkpoint as `bert_final` (`--select-best`); the end-of-training model stays in
    /// `bert-end.bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_best: Option<String>,
    /// With `select_best`: stop fine-tuning after this many evaluated points without a better
    /// score, once every extraction point is kept (`--early-stop-patience`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop_patience: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub lr: f64,
    pub batch_size: usize,
    pub epochs: f64,
    pub warmup_ratio: f64,
    pub adapter_size: usize,
    pub kind: HeadKind,
    pub shared_adapter: bool,
    pub skip_last_layer: bool,
    pub layer_mix: LayerMix,
    pub optimizer: OptimizerConfig,
    /// The float type of the frozen encoder that feeds the head (training and prediction);
    /// BERT's own predictions stay f32. Left out of config.json when f32, so older run folders
    /// still resume (and read under its old name, `encoder_precision`).
    #[serde(
        default,
        alias = "encoder_precision",
        skip_serializing_if = "EncoderDtype::is_f32"
    )]
    pub encoder_dtype: EncoderDtype,
    /// Plain ops or the fused kernel for the head (training and prediction); left out of
    /// config.json when plain, like `encoder_dtype`.
    #[serde(default, skip_serializing_if = "HeadPath::is_plain")]
    pub path: HeadPath,
    /// Shares of the training data (below 1) that further heads are trained on at every
    /// extraction point, BERT having seen all of it (`--head-train-fraction`): the less-data
    /// experiment. The head on all the data is always trained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train_fractions: Vec<f64>,
}

/// How BERT's and BERTVision's probabilities are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnsembleRule {
    /// Element-wise maximum of the two softmaxes (the paper's rule).
    Max,
    /// Mean of the two probability vectors.
    Mean,
}

impl EnsembleRule {
    pub fn name(self) -> &'static str {
        match self {
            EnsembleRule::Max => "max",
            EnsembleRule::Mean => "mean",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub task: String,
    pub model: String,
    pub seeds: Vec<u64>,
    /// Maximum tokens per sequence (task default when the run was configured).
    pub max_len: usize,
    pub finetune: FinetuneConfig,
    /// The checkpoints (in epochs of fine-tuning, increasing) whose hidden states train heads;
    /// the last one is the run's `bert_extract`/`bertvision`. One point is written as a number
    /// (as before several were possible), several as a list.
    #[serde(with = "points")]
    pub extract_at: Vec<f64>,
    /// Also score BERT on the evaluation splits every this many epochs of fine-tuning, keeping
    /// no checkpoint (`--eval-every-epochs`): the dense BERT curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every_epochs: Option<f64>,
    /// Fine-tune and train heads on this share of the training examples, a seeded random sample
    /// without replacement (`--train-fraction`; `None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// Hold this share of the training data out of fine-tuning and head training as the
    /// `validation` split (`--validation-fraction`; stratified, the same for every seed and
    /// trial): what `search` and `--select-best` read, so that dev stays the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    pub head: HeadConfig,
    pub ensemble: Vec<EnsembleRule>,
    pub eval_batch_size: usize,
    /// Optimizer steps between resumable checkpoints.
    pub checkpoint_every: usize,
    /// Use only the first N training / evaluation examples (a slice for quick runs and CI).
    pub limit_train: Option<usize>,
    pub limit_eval: Option<usize>,
    /// SQuAD: articles held out for evaluation when one file is split.
    pub eval_articles: usize,
    pub squad_features: FeatureConfig,
    pub squad_postprocess: PostprocessConfig,
    /// Whose ops the encoder runs where no gradient flows (evaluation, the frozen encoder that
    /// feeds the head); fine-tuning always runs the backend's training ops. Left out of
    /// config.json when Burn's, so older run folders still resume (and read under its old name,
    /// `attention`, with the old values `explicit` and `fused`).
    #[serde(
        default,
        alias = "attention",
        skip_serializing_if = "EncoderKernels::is_burn"
    )]
    pub encoder_kernels: EncoderKernels,
    /// The float type fine-tuning and head training multiply in (`--precision`): f32, or
    /// bf16/f16 mixed precision (f32 weights and AdamW state, the matmuls cast down, f16 with
    /// loss scaling; `Bert::with_precision`, `AdapterPooler::with_precision`). Left out of
    /// config.json when f32, so older run folders still resume.
    #[serde(default, skip_serializing_if = "EncoderDtype::is_f32")]
    pub precision: EncoderDtype,
}

/// `extract_at` in `config.json`: a number for one point (the format before several were
/// possible, so older run folders still resume), a list for several.
mod points {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(points: &[f64], s: S) -> Result<S::Ok, S::Error> {
        match points {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(f64),
            Many(Vec<f64>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(ps) => ps,
        })
    }
}

impl RunConfig {
    /// The last extraction point: the run's `bert_extract` and `bertvision`.
    pub fn last_point(&self) -> f64 {
        self.extract_at.last().copied().unwrap_or(1.0)
    }

    /// `bert_final`'s short name: `BERT-2e`, or `BERT-best≤2e` when `--select-best` chose it.
    pub fn bert_final_label(&self) -> String {
        let epochs = super::report::epochs_label(self.finetune.epochs);
        match self.finetune.select_best {
            Some(_) => format!("BERT-best≤{epochs}"),
            None => format!("BERT-{epochs}"),
        }
    }

    /// Every share of the training data heads are trained on at each point: all of it, then
    /// `head.train_fractions`.
    pub fn head_fractions(&self) -> Vec<f64> {
        let mut fractions = vec![1.0];
        fractions.extend(self.head.train_fractions.iter().filter(|&&f| f != 1.0));
        fractions
    }

    /// The recipe's defaults for `task` on a model of `bert`'s size (`Recipe::for_model`), one
    /// seed, no slices: what `bertvision run` starts from before applying its flags.
    pub fn new(task: &crate::tasks::TaskSpec, model: &str, bert: &BertConfig) -> Self {
        let recipe = Recipe::for_model(bert, task);
        let optimizer = OptimizerConfig::default();
        RunConfig {
            task: task.name.to_string(),
            model: model.to_string(),
            seeds: vec![1],
            max_len: task.max_len,
            finetune: FinetuneConfig {
                lr: recipe.lr,
                batch_size: recipe.batch_size,
                epochs: recipe.epochs,
                warmup_ratio: 0.1,
                optimizer,
                select_best: None,
                early_stop_patience: None,
            },
            extract_at: vec![1.0],
            eval_every_epochs: None,
            train_fraction: None,
            validation_fraction: None,
            head: HeadConfig {
                lr: recipe.head_lr,
                batch_size: recipe.head_batch_size,
                epochs: recipe.head_epochs,
                warmup_ratio: 0.1,
                adapter_size: recipe.adapter_size,
                kind: HeadKind::MaskedMean,
                shared_adapter: true,
                skip_last_layer: false,
                layer_mix: LayerMix::None,
                optimizer,
                encoder_dtype: EncoderDtype::F32,
                path: HeadPath::Plain,
                train_fractions: Vec::new(),
            },
            ensemble: vec![EnsembleRule::Max, EnsembleRule::Mean],
            eval_batch_size: 64,
            checkpoint_every: 100,
            limit_train: None,
            limit_eval: None,
            eval_articles: 6,
            squad_features: FeatureConfig {
                max_len: task.max_len,
                doc_stride: 128,
                max_query: 64,
            },
            squad_postprocess: PostprocessConfig::default(),
            encoder_kernels: EncoderKernels::Burn,
            precision: EncoderDtype::F32,
        }
    }

    /// Refuses settings that cannot run, naming the flag of `bertvision run` that sets each
    /// (the checks of `crate::checks`, from what each value means).
    pub fn validate(&self, bert: &BertConfig) -> Result<()> {
        let task = crate::tasks::task(&self.task)?;
        self.validate_lengths(task, bert)?;
        self.validate_seeds()?;
        let (f, h) = (&self.finetune, &self.head);
        checks::positive("--lr", f.lr)?;
        checks::positive("--epochs", f.epochs)?;
        checks::positive("--head-lr", h.lr)?;
        checks::positive("--head-epochs", h.epochs)?;
        for &p in &self.extract_at {
            checks::positive("--extract-at", p)?;
        }
        if let Some(e) = self.eval_every_epochs {
            checks::positive("--eval-every-epochs", e)?;
        }
        self.validate_points()?;
        self.validate_selection()?;
        if let Some(fraction) = self.train_fraction {
            checks::share("--train-fraction", fraction, true)?;
        }
        for &fraction in &h.train_fractions {
            checks::share("--head-train-fraction", fraction, true)?;
        }
        if let Some(fraction) = self.validation_fraction {
            checks::share("--validation-fraction", fraction, false)?;
        }
        for (flag, v) in [
            ("--batch-size", f.batch_size),
            ("--head-batch-size", h.batch_size),
            ("--adapter-size", h.adapter_size),
            ("--eval-batch-size", self.eval_batch_size),
            ("--checkpoint-every", self.checkpoint_every),
            ("--eval-articles", self.eval_articles),
            ("--limit-train", self.limit_train.unwrap_or(1)),
            ("--limit-eval", self.limit_eval.unwrap_or(1)),
        ] {
            checks::at_least(flag, v, 1)?;
        }
        for ratio in [f.warmup_ratio, h.warmup_ratio] {
            if !(0.0..1.0).contains(&ratio) {
                return Err(Error::usage(format!(
                    "--warmup-ratio must be in [0, 1), got {ratio}"
                )));
            }
        }
        for optimizer in [&f.optimizer, &h.optimizer] {
            checks::non_negative("--weight-decay", optimizer.weight_decay)?;
            if let Some(norm) = optimizer.max_grad_norm {
                checks::positive("--max-grad-norm", norm)?;
            }
        }
        let post = &self.squad_postprocess;
        checks::finite("--null-threshold", post.null_threshold)?;
        checks::at_least("--n-best", post.n_best, 1)?;
        checks::at_least("--max-answer-length", post.max_answer_len, 1)?;
        self.check_memory(bert, checks::machine_memory())
    }

    /// `--max-length` holds a sequence of the task (SQuAD: a window of question and passage)
    /// within the model's positions.
    fn validate_lengths(&self, task: &crate::tasks::TaskSpec, bert: &BertConfig) -> Result<()> {
        let pair = task.format.is_some_and(|f| f.text_b.is_some());
        let needed = if pair { 5 } else { 3 };
        let positions = bert.max_position_embeddings;
        checks::sequence_length("--max-length", self.max_len, needed, positions)?;
        if task.kind == crate::tasks::TaskKind::Span {
            let w = &self.squad_features;
            checks::squad_windows("--max-length", w.max_len, w.doc_stride, w.max_query)?;
        }
        Ok(())
    }

    fn validate_seeds(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(Error::usage("--seeds: give at least one seed"));
        }
        let twice = (self.seeds.iter().enumerate())
            .find_map(|(i, s)| self.seeds[..i].contains(s).then_some(s));
        match twice {
            Some(seed) => Err(Error::usage(format!("--seeds: seed {seed} is given twice"))),
            None => Ok(()),
        }
    }

    /// Lower bounds on what a step allocates (one layer's attention scores and every layer's
    /// hidden states, f32, for a batch of `--max-length` sequences; the head's weights with
    /// their gradients and two Adam moments), each against `available` bytes: a size that
    /// cannot fit is refused by its flag instead of aborting an allocation part-way through.
    pub fn check_memory(&self, bert: &BertConfig, available: Option<u64>) -> Result<()> {
        let hidden = bert.hidden_size as f64;
        let states = bert.num_hidden_layers + 1;
        let per_sequence = checks::activation_bytes_per_sequence(
            self.max_len,
            bert.num_attention_heads,
            states,
            bert.hidden_size,
        );
        let len_flag = format!("--max-length {}", self.max_len);
        for (flag, batch) in [
            ("--batch-size", self.finetune.batch_size),
            ("--head-batch-size", self.head.batch_size),
            ("--eval-batch-size", self.eval_batch_size),
        ] {
            let what = format!("{flag} {batch} with {len_flag}");
            checks::fits(&what, batch as f64 * per_sequence, available)?;
        }
        let adapters = if self.head.shared_adapter {
            1.0
        } else {
            states as f64
        };
        let head_bytes = 4.0 * 4.0 * adapters * hidden * self.head.adapter_size as f64;
        let what = format!("--adapter-size {}", self.head.adapter_size);
        checks::fits(&what, head_bytes, available)
    }

    /// `--select-best` scores a validation split at evaluation points; patience needs it.
    fn validate_selection(&self) -> Result<()> {
        let f = &self.finetune;
        match f.select_best.as_deref() {
            None if f.early_stop_patience.is_some() => Err(Error::usage(
                "--early-stop-patience needs --select-best validation",
            )),
            None => Ok(()),
            Some("validation") if self.validation_fraction.is_none() => Err(Error::usage(
                "--select-best validation needs --validation-fraction (a split held out of training)",
            )),
            Some("validation") if self.eval_every_epochs.is_none() => Err(Error::usage(
                "--select-best validation needs --eval-every-epochs (the points it chooses among)",
            )),
            Some("validation") if f.early_stop_patience == Some(0) => {
                Err(Error::usage("--early-stop-patience must be at least 1"))
            }
            Some("validation") => Ok(()),
            Some(other) => Err(Error::usage(format!(
                "--select-best {other}: only validation (choosing on {other} would select on the numbers it reports)"
            ))),
        }
    }

    /// At least one extraction point, increasing, none past the end of fine-tuning.
    fn validate_points(&self) -> Result<()> {
        let points = &self.extract_at;
        if points.is_empty() {
            return Err(Error::usage("--extract-at: give at least one point"));
        }
        if let Some(w) = points.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::usage(if w[0] == w[1] {
                format!("--extract-at: point {} is given twice", w[0])
            } else {
                format!(
                    "--extract-at: points must increase, got {} then {}",
                    w[0], w[1]
                )
            }));
        }
        let last = self.last_point();
        if last > self.finetune.epochs {
            return Err(Error::usage(format!(
                "--extract-at {last} is past the end of fine-tuning (--epochs {})",
                self.finetune.epochs
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> (RunConfig, BertConfig) {
        let bert = BertConfig::from_json(std::path::Path::new("config.json"), "{}").unwrap();
        let task = crate::tasks::task("RTE").unwrap();
        (RunConfig::new(task, "m", &bert), bert)
    }

    /// `config.json` files written before the rename (`attention: fused`, `encoder_precision`)
    /// read as the same configuration, so their run folders still resume; the defaults (Burn's
    /// ops, f32) are left out, as before.
    #[test]
    fn config_json_reads_the_old_names() {
        let (mut config, bert) = config();
        config.validate(&bert).unwrap();
        let json = serde_json::to_string_pretty(&config).unwrap();
        assert!(!json.contains("encoder_kernels") && !json.contains("encoder_dtype"));
        config.encoder_kernels = EncoderKernels::Native;
        config.head.encoder_dtype = EncoderDtype::Bf16;
        let json = serde_json::to_string_pretty(&config).unwrap();
        let old = json
            .replace(r#""encoder_kernels": "native""#, r#""attention": "fused""#)
            .replace(
                r#""encoder_dtype": "bf16""#,
                r#""encoder_precision": "bf16""#,
            );
        assert_ne!(old, json);
        assert_eq!(serde_json::from_str::<RunConfig>(&old).unwrap(), config);
        let burn = json.replace(
            r#""encoder_kernels": "native""#,
            r#""attention": "explicit""#,
        );
        let read: RunConfig = serde_json::from_str(&burn).unwrap();
        assert_eq!(read.encoder_kernels, EncoderKernels::Burn);
    }

    #[test]
    fn validation_names_the_flag() {
        let (config, bert) = config();
        let refused = |edit: fn(&mut RunConfig), flag: &str| {
            let mut c = config.clone();
            edit(&mut c);
            let message = c.validate(&bert).unwrap_err().to_string();
            assert!(message.contains(flag), "{flag}: {message}");
        };
        refused(|c| c.seeds = vec![1, 2, 1], "--seeds");
        refused(|c| c.finetune.lr = f64::NAN, "--lr");
        refused(|c| c.extract_at = vec![3.0], "--extract-at");
        refused(|c| c.extract_at = vec![0.5, 0.25], "--extract-at");
        refused(
            |c| c.head.train_fractions = vec![1.5],
            "--head-train-fraction",
        );
        refused(|c| c.train_fraction = Some(0.0), "--train-fraction");
        refused(
            |c| c.validation_fraction = Some(1.0),
            "--validation-fraction",
        );
        refused(|c| c.eval_every_epochs = Some(-1.0), "--eval-every-epochs");
        refused(|c| c.head.adapter_size = 0, "--adapter-size");
        refused(
            |c| c.finetune.select_best = Some("dev".into()),
            "--select-best dev",
        );
        refused(
            |c| c.finetune.select_best = Some("validation".into()),
            "--validation-fraction",
        );
        refused(
            |c| c.finetune.early_stop_patience = Some(2),
            "--early-stop-patience",
        );
        refused(|c| c.max_len = 100_000, "--max-length");
        refused(|c| c.finetune.warmup_ratio = 1.0, "--warmup-ratio");
        refused(|c| c.max_len = 4, "--max-length 4");
        refused(|c| c.limit_eval = Some(0), "--limit-eval");
        refused(
            |c| c.squad_postprocess.null_threshold = f64::NAN,
            "--null-threshold",
        );
        refused(
            |c| c.finetune.optimizer.weight_decay = -1.0,
            "--weight-decay",
        );
        refused(
            |c| c.head.optimizer.max_grad_norm = Some(f64::NAN),
            "--max-grad-norm",
        );
    }

    /// A batch or adapter that cannot fit is refused by its flag; the defaults fit in 1 GiB.
    #[test]
    fn sizes_beyond_the_memory_are_refused_by_their_flag() {
        let (mut config, bert) = config();
        config.check_memory(&bert, Some(1 << 30)).unwrap();
        config.eval_batch_size = 1 << 24;
        let message = config.check_memory(&bert, Some(1 << 30)).unwrap_err();
        assert!(
            message
                .to_string()
                .contains("--eval-batch-size 16777216 with --max-length")
        );
        config.eval_batch_size = 64;
        config.head.adapter_size = 1 << 40;
        let message = config.check_memory(&bert, Some(1 << 30)).unwrap_err();
        assert!(message.to_string().contains("--adapter-size"));
    }
}
