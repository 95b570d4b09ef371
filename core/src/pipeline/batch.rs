//! Samples to tensors.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::data::{Sample, Target};
use crate::bert::BertInput;
use crate::task_model::Targets;
use crate::tokenize::{Encoded, TokenBatch};

/// How batches are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    pub pad_id: u32,
    /// Fixed length (heads with position-specific weights), else the longest in the batch...
    pub fixed: Option<usize>,
    /// ...rounded up to a multiple of this.
    pub multiple: usize,
}

impl Padding {
    /// The padding of a shard of `batch` (data-parallel peers): the whole batch's length, so
    /// that a shard's rows are exactly the rows the batch has on one device.
    pub fn of_batch(self, batch: &[&Sample]) -> Padding {
        let longest = batch.iter().map(|s| s.encoded.len()).max().unwrap_or(0);
        let seq = TokenBatch::padded_length(longest, self.fixed, self.multiple);
        Padding {
            fixed: Some(seq),
            ..self
        }
    }
}

/// Pads the samples and builds inputs and targets.
pub fn make_batch<B: Backend>(
    samples: &[&Sample],
    padding: Padding,
    device: &B::Device,
) -> (BertInput<B>, Targets<B>) {
    let encodings: Vec<&Encoded> = samples.iter().map(|s| &s.encoded).collect();
    let batch =
        TokenBatch::pad_to_multiple(&encodings, padding.pad_id, padding.fixed, padding.multiple);
    let n = samples.len();
    let ints = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device);
    let targets = match samples[0].target {
        Target::Class(_) => Targets::Class(ints(
            samples
                .iter()
                .map(|s| match s.target {
                    Target::Class(c) => c as i64,
                    _ => unreachable!("mixed targets"),
                })
                .collect(),
        )),
        Target::Score(_) => Targets::Score(Tensor::<B, 1>::from_data(
            TensorData::new(
                samples
                    .iter()
                    .map(|s| match s.target {
                        Target::Score(v) => v,
                        _ => unreachable!("mixed targets"),
                    })
                    .collect::<Vec<f32>>(),
                [n],
            ),
            device,
        )),
        Target::Span { .. } => {
            let (starts, ends): (Vec<i64>, Vec<i64>) = samples
                .iter()
                .map(|s| match s.target {
                    Target::Span { start, end } => (start as i64, end as i64),
                    _ => unreachable!("mixed targets"),
                })
                .unzip();
            Targets::Span {
                start: ints(starts),
                end: ints(ends),
            }
        }
    };
    (batch.to_input(device), targets)
}
