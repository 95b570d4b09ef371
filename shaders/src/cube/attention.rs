//! The frozen encoder's self-attention as one CubeCL kernel (CUDA, WebGPU): softmax(q·kᵀ/√d +
//! key bias)·v per (sequence, head), reading the `[batch, seq, heads·head_dim]` projections
//! where they lie and a `[batch, seq]` key bias (0 for real keys, very negative for padding).
//!
//! A cube is `rows` query rows of one (sequence, head); a unit keeps its scaled query row and
//! its output row in registers and walks the keys tile by tile (`tile` keys of k and v in shared
//! memory, loaded by the whole cube), with the running maximum and sum of an online softmax. So
//! no `[batch, heads, seq, seq]` scores, probabilities or mask exist. Sums and the softmax are in
//! f32 whatever the projections' type, as PyTorch's flash kernels and our explicit ops do.

use cubecl::prelude::*;

/// The floor of a masked score: a padding key's bias (f32::MIN, or −∞ once cast to f16) added to
/// a score stays finite, so a row whose keys are all padding averages them, as the explicit
/// softmax does.
const SCORE_FLOOR: f32 = f32::MIN;

#[cube(launch)]
pub fn attention_forward_kernel<F: Float>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    key_bias: &Tensor<F>,
    output: &mut Tensor<F>,
    #[comptime] heads: usize,
    #[comptime] head_dim: usize,
    #[comptime] rows: usize,
    #[comptime] tile: usize,
    #[define(F)] _dtype: StorageType,
) {
    let scale = f32::new(comptime!(1.0 / (head_dim as f32).sqrt()));
    let seq = query.shape(1);
    let hidden = heads * head_dim;
    let unit = UNIT_POS_X as usize;
    let row = CUBE_POS_X as usize * rows + unit;
    let head = CUBE_POS_Y as usize;
    let sequence = CUBE_POS_Z as usize;
    let is_row = row < seq;
    let column = head * head_dim;
    let row_base = (sequence * seq + row) * hidden + column;

    let mut q = Array::<f32>::new(head_dim);
    let mut acc = Array::<f32>::new(head_dim);
    #[unroll]
    for d in 0..head_dim {
        let mut x = 0.0f32;
        if is_row {
            x = f32::cast_from(query[row_base + d]) * scale;
        }
        q[d] = x;
        acc[d] = 0.0f32;
    }
    let mut k_tile = SharedMemory::<f32>::new(tile * head_dim);
    let mut v_tile = SharedMemory::<f32>::new(tile * head_dim);
    let mut bias_tile = SharedMemory::<f32>::new(tile);
    let floor = f32::new(SCORE_FLOOR);
    let mut running_max = floor;
    let mut running_sum = 0.0f32;

    let tiles = seq.div_ceil(tile);
    for t in 0..tiles {
        let first = t * tile;
        // The cube loads the tile together: consecutive units read consecutive elements of a
        // key row.
        let mut e = unit;
        while e < tile * head_dim {
            let j = first + e / head_dim;
            if j < seq {
                let at = (sequence * seq + j) * hidden + column + e % head_dim;
                k_tile[e] = f32::cast_from(key[at]);
                v_tile[e] = f32::cast_from(value[at]);
            }
            e += rows;
        }
        let mut b = unit;
        while b < tile {
            if first + b < seq {
                bias_tile[b] = f32::cast_from(key_bias[sequence * seq + first + b]);
            }
            b += rows;
        }
        sync_cube();
        if is_row {
            let mut keys = seq - first;
            if keys > tile {
                keys = tile;
            }
            for j in 0..keys {
                let mut score = 0.0f32;
                #[unroll]
                for d in 0..head_dim {
                    score += q[d] * k_tile[j * head_dim + d];
                }
                score = max(score + bias_tile[j], floor);
                let new_max = max(running_max, score);
                let correction = f32::exp(running_max - new_max);
                let weight = f32::exp(score - new_max);
                running_sum = running_sum * correction + weight;
                #[unroll]
                for d in 0..head_dim {
                    acc[d] = acc[d] * correction + weight * v_tile[j * head_dim + d];
                }
                running_max = new_max;
            }
        }
        sync_cube();
    }
    if is_row {
        #[unroll]
        for d in 0..head_dim {
            output[row_base + d] = F::cast_from(acc[d] / running_sum);
        }
    }
}
