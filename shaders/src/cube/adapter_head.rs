//! The CubeCL kernels (one source for CUDA and WebGPU). Every tensor is contiguous, row-major,
//! shapes as in [`crate::adapter_head`]; `A` = adapter size, `C` = classes.

use cubecl::prelude::*;

/// Exact GELU, as Burn's `gelu`: x·Φ(x).
#[cube]
fn gelu<F: Float>(x: F) -> F {
    x * (F::erf(x * F::new(core::f32::consts::FRAC_1_SQRT_2)) + F::new(1.0)) * F::new(0.5)
}

/// GELU's derivative: Φ(x) + x·φ(x).
#[cube]
fn gelu_derivative<F: Float>(x: F) -> F {
    let cdf = (F::erf(x * F::new(core::f32::consts::FRAC_1_SQRT_2)) + F::new(1.0)) * F::new(0.5);
    // 1/√(2π)
    let pdf = F::exp(x * x * F::new(-0.5)) * F::new(0.398_942_3);
    cdf + x * pdf
}

/// `adapter_bias[s, a] + Σ_d features[token, layer, d] · adapter_weight[s, d, a]`.
#[cube]
fn pre_activation<F: Float>(
    features: &Tensor<F>,
    adapter_weight: &Tensor<F>,
    adapter_bias: &Tensor<F>,
    token: usize,
    layer: usize,
    unit: usize,
) -> F {
    let layers = features.shape(1);
    let hidden = features.shape(2);
    let adapter = adapter_weight.shape(2);
    // One shared adapter, or one per layer.
    let mut s = layer;
    if adapter_weight.shape(0) == 1 {
        s = 0;
    }
    let x_base = (token * layers + layer) * hidden;
    let w_base = s * hidden * adapter + unit;
    let mut pre = adapter_bias[s * adapter + unit];
    for d in 0..hidden {
        pre += features[x_base + d] * adapter_weight[w_base + d * adapter];
    }
    pre
}

/// Forward. A cube is `A × tokens_per_cube` units: unit (a, t) computes adapter output `a` of
/// token t for every layer, its GELU, and its share of each class; the cube then sums the
/// shares over `a` in shared memory. Only `[tokens, C]` is written.
#[cube(launch)]
pub fn adapter_head_forward_kernel<F: Float>(
    features: &Tensor<F>,
    adapter_weight: &Tensor<F>,
    adapter_bias: &Tensor<F>,
    head_weight: &Tensor<F>,
    output: &mut Tensor<F>,
    #[comptime] adapter: usize,
    #[comptime] classes: usize,
    #[comptime] tokens_per_cube: usize,
    #[define(F)] _dtype: StorageType,
) {
    let unit = UNIT_POS_X as usize;
    let local_token = UNIT_POS_Y as usize;
    let token = CUBE_POS * tokens_per_cube + local_token;
    let tokens = features.shape(0);
    let layers = features.shape(1);
    let positions = head_weight.shape(0);

    let mut shares = SharedMemory::<F>::new(tokens_per_cube * adapter * classes);
    let mut acc = Array::<F>::new(classes);
    #[unroll]
    for c in 0..classes {
        acc[c] = F::new(0.0);
    }
    if token < tokens {
        let position = token % positions;
        for layer in 0..layers {
            let z = gelu::<F>(pre_activation::<F>(
                features,
                adapter_weight,
                adapter_bias,
                token,
                layer,
                unit,
            ));
            let h_base = ((position * layers + layer) * adapter + unit) * classes;
            #[unroll]
            for c in 0..classes {
                acc[c] += z * head_weight[h_base + c];
            }
        }
    }
    #[unroll]
    for c in 0..classes {
        shares[(local_token * adapter + unit) * classes + c] = acc[c];
    }
    sync_cube();
    // Units 0..C of each token sum one class each (C ≤ A is checked at launch).
    if unit < classes && token < tokens {
        let mut sum = F::new(0.0);
        for k in 0..adapter {
            sum += shares[(local_token * adapter + k) * classes + unit];
        }
        output[token * classes + unit] = sum;
    }
}

/// Backward's recompute: one unit per (token, layer, a) writes the activation `gelu(pre)` and the
/// gradient at the GELU input, `(Σ_c head_weight · grad_out) · gelu'(pre)`.
#[cube(launch)]
pub fn adapter_head_recompute_kernel<F: Float>(
    features: &Tensor<F>,
    adapter_weight: &Tensor<F>,
    adapter_bias: &Tensor<F>,
    head_weight: &Tensor<F>,
    grad_out: &Tensor<F>,
    activations: &mut Tensor<F>,
    grad_pre: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let index = ABSOLUTE_POS;
    if index >= activations.len() {
        terminate!();
    }
    let layers = features.shape(1);
    let adapter = adapter_weight.shape(2);
    let classes = grad_out.shape(1);
    let positions = head_weight.shape(0);
    let unit = index % adapter;
    let layer = (index / adapter) % layers;
    let token = index / (adapter * layers);

    let pre = pre_activation::<F>(features, adapter_weight, adapter_bias, token, layer, unit);
    let h_base = (((token % positions) * layers + layer) * adapter + unit) * classes;
    let mut grad_activation = F::new(0.0);
    for c in 0..classes {
        grad_activation += head_weight[h_base + c] * grad_out[token * classes + c];
    }
    activations[index] = gelu::<F>(pre);
    grad_pre[index] = grad_activation * gelu_derivative::<F>(pre);
}
