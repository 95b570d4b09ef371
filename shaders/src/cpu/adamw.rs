//! AdamW's update in one pass over the parameter, its gradient and both moments, in parallel
//! chunks, in place.

use rayon::prelude::*;

use super::simd::CHUNK;
use crate::ops::adamw::AdamWScalars;

/// The four buffers of one chunk.
struct Chunk<'a> {
    param: &'a mut [f32],
    grad: &'a [f32],
    first: &'a mut [f32],
    second: &'a mut [f32],
}

multiversion! {
    /// The update, each operation in the order of `ops::adamw::reference` (f32, no fused
    /// multiply-add), so the result is the reference's bit for bit. `first_step`: the moments
    /// hold nothing yet (they start from the gradient).
    fn update_chunk(chunk: Chunk<'_>, factor: Option<f32>, s: &AdamWScalars, first_step: bool) {
        let Chunk { param, grad, first, second } = chunk;
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(first).zip(second) {
            let g = match factor {
                Some(f) => g * f,
                None => g,
            };
            let (m_new, v_new) = if first_step {
                (g * s.one_minus_beta_1, (g * g) * s.one_minus_beta_2)
            } else {
                (
                    *m * s.beta_1 + g * s.one_minus_beta_1,
                    *v * s.beta_2 + (g * g) * s.one_minus_beta_2,
                )
            };
            *m = m_new;
            *v = v_new;
            let delta = (m_new / s.correction_1) / ((v_new / s.correction_2).sqrt() + s.epsilon);
            let decayed = match s.decay {
                Some(keep) => *p * keep,
                None => *p,
            };
            *p = decayed - delta * s.lr;
        }
    }
}

/// One AdamW step in place. `first_step`: `first` and `second` are overwritten, not read.
///
/// # Panics
/// If the four buffers differ in length.
pub fn adamw_update_in_place(
    param: &mut [f32],
    grad: &[f32],
    (first, second): (&mut [f32], &mut [f32]),
    factor: Option<f32>,
    scalars: &AdamWScalars,
    first_step: bool,
) {
    let n = param.len();
    assert!(
        grad.len() == n && first.len() == n && second.len() == n,
        "adamw: parameter, gradient and moment lengths differ"
    );
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(first.par_chunks_mut(CHUNK))
        .zip(second.par_chunks_mut(CHUNK))
        .for_each(|(((param, grad), first), second)| {
            let chunk = Chunk {
                param,
                grad,
                first,
                second,
            };
            update_chunk(chunk, factor, scalars, first_step)
        });
}
