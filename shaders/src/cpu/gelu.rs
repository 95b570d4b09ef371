//! BERT's exact GELU and its derivative, in parallel chunks.

use rayon::prelude::*;

use super::math::{erf, exp};
use super::simd::CHUNK;

multiversion! {
    /// `x ← x·Φ(x) = x/2·(1 + erf(x/√2))`, BERT's exact GELU.
    fn gelu_chunk(values: &mut [f32]) {
        for v in values.iter_mut() {
            let x = *v;
            *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// Exact (erf) GELU in place, in parallel chunks.
pub fn gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(gelu_chunk);
}

multiversion! {
    /// `grad ← grad·gelu'(x)`, `gelu'(x) = Φ(x) + x·φ(x)` with φ the standard normal density.
    fn gelu_grad_chunk(x: &[f32], grad: &mut [f32]) {
        // 1/√(2π)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for (g, &x) in grad.iter_mut().zip(x) {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
            *g *= cdf + x * pdf;
        }
    }
}

/// The exact GELU's backward in place: `grad ← grad·gelu'(x)`, in parallel chunks.
///
/// # Panics
/// If `x` and `grad` differ in length.
pub fn gelu_grad_in_place(x: &[f32], grad: &mut [f32]) {
    assert_eq!(
        x.len(),
        grad.len(),
        "gelu backward: input and gradient lengths"
    );
    grad.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(grad, x)| gelu_grad_chunk(x, grad));
}
