//! Self-attention for fine-tuning: dropout on the probabilities, and the backward pass.
//!
//! Under autodiff, Burn's explicit attention is a chain of tensor ops, each keeping its inputs:
//! the projections split into heads (copies), the scores, the softmax, the dropout mask and the
//! dropped probabilities, and back again in the backward. Here one forward kernel computes, per
//! (sequence, head) in parallel, the scores, the softmax, the dropout and the product with the
//! values, reading the `[batch, seq, hidden]` projections where they lie; it keeps only the
//! probabilities `P` (`[batch, heads, seq, seq]`, zero beyond the last real key) for the
//! backward, which makes the dropout mask again from its seed ([`DropoutStream`]) instead of
//! keeping it. Backward, with `Pd = P ⊙ mask`, `G` the gradient at the output, `s = 1/√d`:
//!
//! ```text
//! dV = Pdᵀ·G    dPd = G·Vᵀ    dP = dPd ⊙ mask    dS = P ⊙ (dP − rowsum(dP ⊙ P))
//! dQ = s·dS·K   dK = s·dSᵀ·Q
//! ```
//!
//! Tested against the same formulas in Burn's ops (the reference of `ops::attention`, in
//! `shaders/tests/attention.rs`), and through `Autodiff<Flex>` against Burn's autodiff of the
//! explicit ops.

use rayon::prelude::*;

use super::attention::{AttentionShape, check_lengths, head_probabilities, key_ranges};
use super::dropout::DropoutStream;
use super::gemm::{SharedOut, gemm_strided};

/// `rows × keys` block of `P ⊙ mask` for one (sequence, head): `probs` holds the block's rows
/// with stride `seq`; `first` is the mask index of its element (0, 0).
fn dropped(
    probs: &[f32],
    seq: usize,
    keys: usize,
    first: u64,
    dropout: Option<DropoutStream>,
    out: &mut Vec<f32>,
) {
    out.clear();
    for (i, row) in probs.chunks_exact(seq).enumerate() {
        let row = &row[..keys];
        match dropout {
            Some(stream) => {
                let start = first + (i * seq) as u64;
                out.extend(
                    row.iter()
                        .enumerate()
                        .map(|(j, p)| p * stream.at(start + j as u64)),
                );
            }
            None => out.extend_from_slice(row),
        }
    }
}

/// Forward: the output `[batch, seq, hidden]` and the probabilities `[batch, heads, seq, seq]`
/// (zero for padding keys and beyond the last real key) that [`attention_backward`] reads.
/// `dropout`: the mask over `[batch, heads, seq, seq]` indices applied to the probabilities
/// before the product with the values (`None`: no dropout).
///
/// # Panics
/// If a slice's length disagrees with `shape`.
pub fn attention_forward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    key_padding: &[bool],
    shape: AttentionShape,
    dropout: Option<DropoutStream>,
) -> (Vec<f32>, Vec<f32>) {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
    } = shape;
    let hidden = shape.hidden();
    check_lengths(
        "training attention",
        shape,
        &[
            ("query", query.len()),
            ("key", key.len()),
            ("value", value.len()),
        ],
        key_padding,
    );
    let mut out = vec![0.0f32; shape.len()];
    let mut probs = vec![0.0f32; batch * heads * seq * seq];
    if out.is_empty() {
        return (out, probs);
    }
    let ranges = key_ranges(key_padding, seq);
    let out_ptr = SharedOut(out.as_mut_ptr());
    probs.par_chunks_mut(seq * seq).enumerate().for_each_init(
        Vec::<f32>::new,
        |scratch, (unit, block)| {
            let b = unit / heads;
            let (keys, bias) = (ranges[b].0, &ranges[b].1);
            if keys == 0 {
                return; // Every key is padding: no weights, output rows 0.
            }
            let offset = b * seq * hidden + (unit % heads) * head_dim;
            let h = hidden as isize;
            // Rows of stride `seq` in this unit's `seq × seq` slice of `probs`.
            head_probabilities(query, key, offset, shape, bias, block, seq);
            dropped(
                block,
                seq,
                keys,
                (unit * seq * seq) as u64,
                dropout,
                scratch,
            );
            // SAFETY: the value block is `keys × head_dim` at `offset` with row stride
            // `hidden`, inside the slice checked above; `scratch` has `seq × keys` elements; no
            // other unit writes this (sequence, head) block of `out`.
            unsafe {
                // out[i, d] = Σ_j Pd[i, j] · v[j, d]
                gemm_strided(
                    [seq, head_dim, keys],
                    (out_ptr.at(offset), h, 1),
                    false,
                    (scratch.as_ptr(), keys as isize, 1),
                    (value.as_ptr().add(offset), h, 1),
                    1.0,
                    gemm::Parallelism::None,
                );
            }
        },
    );
    (out, probs)
}

/// Backward of [`attention_forward`] for `grad` at its output: the gradients at the query, key
/// and value, each `[batch, seq, hidden]`.
///
/// # Panics
/// If a slice's length disagrees with `shape`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    probs: &[f32],
    key_padding: &[bool],
    grad: &[f32],
    shape: AttentionShape,
    dropout: Option<DropoutStream>,
) -> [Vec<f32>; 3] {
    let AttentionShape {
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    let hidden = shape.hidden();
    check_backward_lengths([query, key, value, probs, grad], key_padding, shape);
    let mut grads = [
        vec![0.0f32; shape.len()],
        vec![0.0f32; shape.len()],
        vec![0.0f32; shape.len()],
    ];
    if shape.is_empty() {
        return grads;
    }
    let ranges = key_ranges(key_padding, seq);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let [dq, dk, dv] = grads.each_mut().map(|g| SharedOut(g.as_mut_ptr()));
    probs.par_chunks(seq * seq).enumerate().for_each_init(
        || (Vec::<f32>::new(), Vec::<f32>::new()),
        |(dropped_probs, dscores), (unit, block)| {
            let b = unit / heads;
            let keys = ranges[b].0;
            if keys == 0 {
                return;
            }
            let offset = b * seq * hidden + (unit % heads) * head_dim;
            let h = hidden as isize;
            let first = (unit * seq * seq) as u64;
            dropped(block, seq, keys, first, dropout, dropped_probs);
            dscores.resize(seq * keys, 0.0);
            // SAFETY: as in `attention_forward`; `dropped_probs` and `dscores` have
            // `seq × keys` elements; the three gradients' (sequence, head) blocks are this
            // unit's alone.
            unsafe {
                // dV[j, d] = Σ_i Pd[i, j] · G[i, d]
                gemm_strided(
                    [keys, head_dim, seq],
                    (dv.at(offset), h, 1),
                    false,
                    (dropped_probs.as_ptr(), 1, keys as isize),
                    (grad.as_ptr().add(offset), h, 1),
                    1.0,
                    gemm::Parallelism::None,
                );
                // dPd[i, j] = Σ_d G[i, d] · V[j, d]
                gemm_strided(
                    [seq, keys, head_dim],
                    (dscores.as_mut_ptr(), keys as isize, 1),
                    false,
                    (grad.as_ptr().add(offset), h, 1),
                    (value.as_ptr().add(offset), 1, h),
                    1.0,
                    gemm::Parallelism::None,
                );
            }
            softmax_backward(dscores, block, seq, keys, first, dropout);
            unsafe {
                // dQ[i, d] = s · Σ_j dS[i, j] · K[j, d]
                gemm_strided(
                    [seq, head_dim, keys],
                    (dq.at(offset), h, 1),
                    false,
                    (dscores.as_ptr(), keys as isize, 1),
                    (key.as_ptr().add(offset), h, 1),
                    scale,
                    gemm::Parallelism::None,
                );
                // dK[j, d] = s · Σ_i dS[i, j] · Q[i, d]
                gemm_strided(
                    [keys, head_dim, seq],
                    (dk.at(offset), h, 1),
                    false,
                    (dscores.as_ptr(), 1, keys as isize),
                    (query.as_ptr().add(offset), h, 1),
                    scale,
                    gemm::Parallelism::None,
                );
            }
        },
    );
    grads
}

/// The lengths [`attention_backward`] needs: query, key, value and gradient `[batch, seq,
/// hidden]`, probabilities `[batch, heads, seq, seq]`.
fn check_backward_lengths(slices: [&[f32]; 5], key_padding: &[bool], shape: AttentionShape) {
    let [query, key, value, probs, grad] = slices;
    check_lengths(
        "training attention",
        shape,
        &[
            ("query", query.len()),
            ("key", key.len()),
            ("value", value.len()),
            ("gradient", grad.len()),
        ],
        key_padding,
    );
    assert_eq!(
        probs.len(),
        shape.batch * shape.heads * shape.seq * shape.seq,
        "training attention: probabilities length"
    );
}

/// Softmax's backward in place, row by row over one (sequence, head) unit's `seq × keys`
/// gradient at the dropped probabilities: dP = dPd ⊙ mask, then dS = P ⊙ (dP − rowsum(dP ⊙ P)).
/// `block` holds the unit's `seq × seq` probabilities, `first` its first dropout index.
fn softmax_backward(
    dscores: &mut [f32],
    block: &[f32],
    seq: usize,
    keys: usize,
    first: u64,
    dropout: Option<DropoutStream>,
) {
    for (i, (ds, p)) in dscores
        .chunks_exact_mut(keys)
        .zip(block.chunks_exact(seq))
        .enumerate()
    {
        let p = &p[..keys];
        if let Some(stream) = dropout {
            let start = first + (i * seq) as u64;
            for (j, d) in ds.iter_mut().enumerate() {
                *d *= stream.at(start + j as u64);
            }
        }
        let dot: f32 = ds.iter().zip(p).map(|(d, p)| d * p).sum();
        for (d, p) in ds.iter_mut().zip(p) {
            *d = p * (*d - dot);
        }
    }
}
