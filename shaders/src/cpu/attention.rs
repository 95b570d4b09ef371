//! Multi-head self-attention without dropout (the frozen encoder).

use rayon::prelude::*;

use super::gemm::{SharedOut, gemm_strided};
use super::math::softmax_row;

/// Per sequence of `key_padding` (`[batch·seq]`, true for padding): the number of keys up to
/// the last real one (keys after it are never read), and their softmax bias (0 for real keys,
/// −∞ for padding).
pub(super) fn key_ranges(key_padding: &[bool], seq: usize) -> Vec<(usize, Vec<f32>)> {
    key_padding
        .chunks(seq)
        .map(|padding| {
            let keys = padding.iter().rposition(|&p| !p).map_or(0, |last| last + 1);
            let bias = padding[..keys]
                .iter()
                .map(|&p| if p { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            (keys, bias)
        })
        .collect()
}

/// One (sequence, head)'s attention probabilities `softmax(q·kᵀ/√head_dim + bias)`, `seq` rows
/// of `bias.len()` keys, into `probs` with rows `row_stride` apart; the head's query and key
/// blocks start at `offset` of the `[batch, seq, hidden]` buffers.
///
/// # Panics
/// If a block lies outside its buffer or `probs` is too short.
pub(super) fn head_probabilities(
    query: &[f32],
    key: &[f32],
    offset: usize,
    shape: AttentionShape,
    bias: &[f32],
    probs: &mut [f32],
    row_stride: usize,
) {
    let AttentionShape { seq, head_dim, .. } = shape;
    let (hidden, keys) = (shape.hidden(), bias.len());
    if seq == 0 || keys == 0 {
        return;
    }
    let block_end = offset + (seq - 1) * hidden + head_dim;
    assert!(
        block_end <= query.len() && block_end <= key.len(),
        "attention: head block"
    );
    assert!(
        keys <= row_stride && probs.len() >= (seq - 1) * row_stride + keys,
        "attention: probabilities"
    );
    let h = hidden as isize;
    // SAFETY: the asserts above keep every element the strides address inside the slices.
    unsafe {
        // probs[i, j] = scale · Σ_d q[i, d] · k[j, d]
        gemm_strided(
            [seq, keys, head_dim],
            (probs.as_mut_ptr(), row_stride as isize, 1),
            false,
            (query.as_ptr().add(offset), h, 1),
            (key.as_ptr().add(offset), 1, h),
            1.0 / (head_dim as f32).sqrt(),
            gemm::Parallelism::None,
        );
    }
    for row in probs.chunks_mut(row_stride).take(seq) {
        softmax_row(&mut row[..keys], bias);
    }
}

/// Panics, naming `kernel` and the buffer, unless every buffer holds `shape.len()` elements and
/// `key_padding` one flag per token.
pub(super) fn check_lengths(
    kernel: &str,
    shape: AttentionShape,
    buffers: &[(&str, usize)],
    key_padding: &[bool],
) {
    for (name, len) in buffers {
        assert_eq!(*len, shape.len(), "{kernel}: {name} length for {shape:?}");
    }
    assert_eq!(
        key_padding.len(),
        shape.batch * shape.seq,
        "{kernel}: key padding length"
    );
}

/// Shapes of a self-attention call: `[batch, seq, heads·head_dim]` projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn len(&self) -> usize {
        self.batch * self.seq * self.hidden()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `softmax(q·kᵀ/√head_dim + padding)·v` for every sequence and head, with `query`, `key`,
/// `value` and the result laid out `[batch, seq, heads·head_dim]` (row-major), and
/// `key_padding[b·seq + j]` true where key `j` of sequence `b` is padding. No dropout.
///
/// # Panics
/// If a slice's length disagrees with `shape`.
pub fn self_attention(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    key_padding: &[bool],
    shape: AttentionShape,
) -> Vec<f32> {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
    } = shape;
    let hidden = shape.hidden();
    check_lengths(
        "self_attention",
        shape,
        &[
            ("query", query.len()),
            ("key", key.len()),
            ("value", value.len()),
        ],
        key_padding,
    );
    let mut out = vec![0.0f32; shape.len()];
    if out.is_empty() {
        return out;
    }
    let key_ranges = key_ranges(key_padding, seq);
    let out_ptr = SharedOut(out.as_mut_ptr());
    (0..batch * heads)
        .into_par_iter()
        .for_each_init(Vec::<f32>::new, |scores, unit| {
            let (b, h) = (unit / heads, unit % heads);
            let (keys, bias) = (key_ranges[b].0, &key_ranges[b].1);
            // Where this (sequence, head) block starts in every [batch, seq, hidden] buffer.
            let offset = b * seq * hidden + h * head_dim;
            // SAFETY (both gemm calls): the pointers and strides address `seq × head_dim`
            // blocks (`keys × head_dim` for key and value) inside the checked slices, `scores` has
            // `seq × keys` elements, and no other task writes this block of `out`.
            if keys == 0 {
                return; // Every key is padding: rows stay 0.
            }
            let out_block = out_ptr.at(offset);
            // One head's scores at once: splitting the query rows into blocks of 64 (to keep
            // their scores in cache between the three steps) was not measurably faster here.
            scores.resize(seq * keys, 0.0);
            head_probabilities(query, key, offset, shape, bias, scores, keys);
            let h = hidden as isize;
            unsafe {
                // out[i, d] = Σ_j p[i, j] · v[j, d]
                gemm_strided(
                    [seq, head_dim, keys],
                    (out_block, h, 1),
                    false,
                    (scores.as_ptr(), keys as isize, 1),
                    (value.as_ptr().add(offset), h, 1),
                    1.0,
                    gemm::Parallelism::None,
                );
            }
        });
    out
}
