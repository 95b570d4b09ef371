//! Linear layers as one gemm over every token, and their gradients.

use super::gemm::{MatrixView, gemm_strided};

/// `x·weight + bias` for `x` `[rows, weight.rows]` (row-major): one gemm over every token of the
/// batch, so the weight is packed once per call (Burn's `linear` on `[batch, seq, in]` runs one
/// gemm per sequence, each repacking it) and split over threads by gemm itself; the bias is the
/// output's starting value instead of a separate pass.
///
/// # Panics
/// If the shapes disagree or `weight` addresses memory outside its buffer.
pub fn linear(x: &[f32], rows: usize, weight: MatrixView<'_>, bias: Option<&[f32]>) -> Vec<f32> {
    let (inputs, outputs) = (weight.rows, weight.cols);
    assert_eq!(x.len(), rows * inputs, "linear: input length");
    assert!(weight.in_bounds(), "linear: weight view out of bounds");
    let mut out = match bias {
        Some(bias) => {
            assert_eq!(bias.len(), outputs, "linear: bias length");
            let mut out = Vec::with_capacity(rows * outputs);
            for _ in 0..rows {
                out.extend_from_slice(bias);
            }
            out
        }
        None => vec![0.0; rows * outputs],
    };
    if out.is_empty() || inputs == 0 {
        return out;
    }
    // SAFETY: `x` and `out` have the checked lengths; the weight view was checked in bounds.
    unsafe {
        gemm_strided(
            [rows, outputs, inputs],
            (out.as_mut_ptr(), outputs as isize, 1),
            bias.is_some(),
            (x.as_ptr(), inputs as isize, 1),
            (
                weight.data.as_ptr().add(weight.offset),
                weight.row_stride as isize,
                weight.col_stride as isize,
            ),
            1.0,
            gemm::Parallelism::Rayon(0),
        );
    }
    out
}

/// [`linear`]'s gradient at its input, `grad·weightᵀ` `[rows, weight.rows]`: the same one gemm
/// over every token, reading the weight transposed where it lies.
pub fn linear_input_grad(grad: &[f32], rows: usize, weight: MatrixView<'_>) -> Vec<f32> {
    linear(grad, rows, weight.transposed(), None)
}

/// [`linear`]'s gradient at its weight, `xᵀ·grad` `[inputs, outputs]` (row-major): one gemm whose
/// inner dimension is every token of the batch (Burn's default multiplies sequence by sequence
/// into a `[batch, inputs, outputs]` buffer and then sums it over the batch).
///
/// # Panics
/// If the lengths disagree with the shapes.
pub fn linear_weight_grad(
    x: &[f32],
    grad: &[f32],
    rows: usize,
    inputs: usize,
    outputs: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * inputs, "linear backward: input length");
    assert_eq!(
        grad.len(),
        rows * outputs,
        "linear backward: gradient length"
    );
    let mut out = vec![0.0; inputs * outputs];
    if out.is_empty() || rows == 0 {
        return out;
    }
    // SAFETY: every pointer, stride and extent below addresses the slices whose lengths were
    // checked above: lhs (i, r) = x[r·inputs + i], rhs (r, o) = grad[r·outputs + o],
    // dst (i, o) = out[i·outputs + o].
    unsafe {
        gemm_strided(
            [inputs, outputs, rows],
            (out.as_mut_ptr(), outputs as isize, 1),
            false,
            (x.as_ptr(), 1, inputs as isize),
            (grad.as_ptr(), outputs as isize, 1),
            1.0,
            gemm::Parallelism::Rayon(0),
        );
    }
    out
}

/// [`linear`]'s gradient at its bias: the column sums of `grad` `[rows, outputs]`.
pub fn linear_bias_grad(grad: &[f32], outputs: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; outputs];
    if outputs == 0 {
        return sums;
    }
    for row in grad.chunks_exact(outputs) {
        for (sum, g) in sums.iter_mut().zip(row) {
            *sum += g;
        }
    }
    sums
}
