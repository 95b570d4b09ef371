//! BERT with a task head, as Hugging Face's `BertForSequenceClassification` (pooled [CLS] →
//! dropout → Linear(hidden → C); C = 1 is regression) and `BertForQuestionAnswering`
//! (per-token Linear(hidden → 2) → start/end logits).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::bert::layer::train_dropout;
use crate::bert::model::BertPooler;
use crate::bert::{Bert, BertConfig, BertInput, BertOutput};
use crate::head::HeadOutput;
use bertvision_shaders::KernelBackend;

#[derive(Module, Debug)]
pub struct BertTaskModel<B: Backend> {
    pub bert: Bert<B>,
    pub dropout: Dropout,
    /// `classifier` (C outputs from the pooled output) or `qa_outputs` (2 outputs per token).
    pub classifier: Linear<B>,
    #[module(skip)]
    pub span: bool,
}

impl<B: Backend> BertTaskModel<B> {
    /// Adds a task head to a pre-trained encoder; a checkpoint without pooler gets a fresh one
    /// (as transformers does for such checkpoints).
    pub fn new(
        mut bert: Bert<B>,
        config: &BertConfig,
        num_outputs: usize,
        span: bool,
        device: &B::Device,
    ) -> Self {
        let h = config.hidden_size;
        if !span && bert.pooler.is_none() {
            bert.pooler = Some(BertPooler {
                dense: LinearConfig::new(h, h).init(device),
            });
        }
        let model = BertTaskModel {
            bert,
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            classifier: LinearConfig::new(h, if span { 2 } else { num_outputs }).init(device),
            span,
        };
        crate::train::initialize_now(&model);
        model
    }
}

impl<B: KernelBackend> BertTaskModel<B> {
    /// The encoder's hidden states and the task head's output.
    pub fn forward(&self, input: BertInput<B>) -> (BertOutput<B>, HeadOutput<B>) {
        let mask = input.attention_mask.clone();
        let out = self.bert.forward(input);
        let head = if self.span {
            let [batch, seq, _] = out.last_hidden_state().dims();
            let logits = self
                .classifier
                .forward(train_dropout(&self.dropout, out.last_hidden_state()));
            HeadOutput::span_masked(
                logits.clone().narrow(2, 0, 1).reshape([batch, seq]),
                logits.narrow(2, 1, 1).reshape([batch, seq]),
                mask,
            )
        } else {
            let pooled = out
                .pooled
                .clone()
                .expect("task models always have a pooler");
            HeadOutput::Logits(
                self.classifier
                    .forward(train_dropout(&self.dropout, pooled)),
            )
        };
        (out, head)
    }
}

/// Mean cross-entropy of `logits` `[batch, classes]` against class indices `[batch]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let log_probs = burn::tensor::activation::log_softmax(logits, 1);
    log_probs
        .gather(1, targets.reshape([batch, 1]))
        .mean()
        .neg()
}

/// Loss of a head output against its targets (the registry's loss for the task).
pub fn head_loss<B: Backend>(output: HeadOutput<B>, targets: &Targets<B>) -> Tensor<B, 1> {
    match (output, targets) {
        (HeadOutput::Span { start, end }, Targets::Span { start: s, end: e }) => {
            (cross_entropy(start, s.clone()) + cross_entropy(end, e.clone())).div_scalar(2.0)
        }
        (HeadOutput::Logits(logits), Targets::Class(t)) => cross_entropy(logits, t.clone()),
        (HeadOutput::Logits(logits), Targets::Score(t)) => {
            let [batch, _] = logits.dims();
            (logits.reshape([batch]) - t.clone()).powi_scalar(2).mean()
        }
        // The task decides both (its head's outputs and its targets' kind): a mismatch is a
        // programming error, never a property of the data.
        _ => panic!("head output and targets are of different kinds"),
    }
}

/// Targets of a batch, as tensors.
#[derive(Debug, Clone)]
pub enum Targets<B: Backend> {
    Class(Tensor<B, 1, Int>),
    Score(Tensor<B, 1>),
    Span {
        start: Tensor<B, 1, Int>,
        end: Tensor<B, 1, Int>,
    },
}

impl<B: burn::tensor::backend::AutodiffBackend> Targets<B> {
    /// The same targets on the autodiff backend (they never need gradients).
    pub fn from_inner(targets: Targets<B::InnerBackend>) -> Self {
        match targets {
            Targets::Class(t) => Targets::Class(Tensor::from_inner(t)),
            Targets::Score(t) => Targets::Score(Tensor::from_inner(t)),
            Targets::Span { start, end } => Targets::Span {
                start: Tensor::from_inner(start),
                end: Tensor::from_inner(end),
            },
        }
    }
}
