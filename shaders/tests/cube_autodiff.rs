//! The encoder's ops under `Autodiff` on CubeCL (Burn's wgpu backend over lavapipe) against
//! Flex's kernels (issue #20). GELU is one node with the exact derivative
//! (`ops::gelu::reference::gelu_backward`), where Burn's own `gelu_backward` on CubeCL is the
//! derivative of GELU's tanh approximation. A linear layer is one node whose gradients are 2-D
//! matmuls over every token (`ops::linear::reference`), where Burn's `module::linear` takes the
//! weight gradient sequence by sequence and sums it.
#![cfg(feature = "wgpu-tests")]

use bertvision_shaders::ops::gelu::reference::burn_gelu_backward;
use bertvision_shaders::{GeluOps, LinearOps};
use burn::backend::{Autodiff, Flex, Wgpu};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

const SHAPE: [usize; 3] = [2, 5, 401];

/// Inputs over [-6, 6], where GELU's derivative varies (it is 0 or 1 to f32 precision beyond).
fn inputs() -> Vec<f32> {
    let n: usize = SHAPE.iter().product();
    (0..n).map(|i| -6.0 + 12.0 * i as f32 / n as f32).collect()
}

/// d/dx of sum(GELU(x)·w), the weights w changing sign, through `Autodiff<B>`'s encoder GELU.
fn gradient<B: Backend + GeluOps>(device: &B::Device) -> Vec<f32> {
    let n: usize = SHAPE.iter().product();
    let weights: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
    let x = Tensor::<Autodiff<B>, 3>::from_data(TensorData::new(inputs(), SHAPE), device)
        .require_grad();
    let w = Tensor::<Autodiff<B>, 3>::from_data(TensorData::new(weights, SHAPE), device);
    let y = <Autodiff<B> as GeluOps>::encoder_gelu(x.clone());
    let grads = (y * w).sum().backward();
    let grad = x.grad(&grads).expect("x requires a gradient");
    grad.into_data().convert::<f32>().to_vec().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cubecl_gelu_gradient_is_the_exact_one() {
    let exact = gradient::<Flex>(&Default::default());
    let device = Default::default();
    let cube = gradient::<Wgpu>(&device);
    let diff = max_abs_diff(&cube, &exact);
    // f32 erf/exp on the GPU against libm's: rounding, a few ulps of values up to ~1.1
    // (measured 2.4e-7 on lavapipe, 2026-12-07).
    assert!(
        diff <= 2e-6,
        "CubeCL's GELU gradient is {diff:.2e} from Flex's exact one"
    );

    // What the gradient was before: Burn's own op on CubeCL, the tanh approximation's
    // derivative, measurably off (8.7e-4 on lavapipe, 2026-12-07).
    let x = Tensor::<Wgpu, 3>::from_data(TensorData::new(inputs(), SHAPE), &device);
    let n: usize = SHAPE.iter().product();
    let weights: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
    let w = Tensor::<Wgpu, 3>::from_data(TensorData::new(weights, SHAPE), &device);
    let burn = burn_gelu_backward(x, w)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let approx = max_abs_diff(&burn, &exact);
    eprintln!(
        "GELU gradient, max abs. difference from Flex's exact one: ours {diff:.2e}, Burn's {approx:.2e}"
    );
    assert!(
        approx > 10.0 * diff.max(1e-6),
        "Burn's op is {approx:.2e} off: the tanh approximation?"
    );
}

/// `x·w + b` through the encoder's linear op under `Autodiff<B>`: the output, and the
/// gradients of `sum(out·probe)` at x, w and b. `w` enters as a transposed view, as the
/// checkpoint loader leaves it.
fn linear_and_grads<B: Backend + LinearOps>(device: &B::Device) -> [Vec<f32>; 4] {
    let (batch, seq, inputs, outputs) = (3, 11, 24, 40);
    let values = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 101) % 97) as f32 - 48.0) / 48.0)
            .collect()
    };
    let tensor = |v: Vec<f32>, shape: Vec<usize>| {
        Tensor::<Autodiff<B>, 3>::from_data(TensorData::new(v, shape), device)
    };
    let x = tensor(values(batch * seq * inputs, 1), vec![batch, seq, inputs]).require_grad();
    let w = Tensor::<Autodiff<B>, 2>::from_data(
        TensorData::new(values(inputs * outputs, 2), [outputs, inputs]),
        device,
    )
    .require_grad();
    let b =
        Tensor::<Autodiff<B>, 1>::from_data(TensorData::new(values(outputs, 3), [outputs]), device)
            .require_grad();
    let probe = tensor(values(batch * seq * outputs, 4), vec![batch, seq, outputs]);
    let out = <Autodiff<B> as LinearOps>::encoder_linear(
        x.clone(),
        w.clone().transpose(),
        Some(b.clone()),
    );
    let grads = (out.clone() * probe).sum().backward();
    let read = |data: TensorData| data.convert::<f32>().to_vec::<f32>().unwrap();
    [
        read(out.into_data()),
        read(x.grad(&grads).unwrap().into_data()),
        read(w.grad(&grads).unwrap().into_data()),
        read(b.grad(&grads).unwrap().into_data()),
    ]
}

#[test]
fn cubecl_linear_layer_matches_flex_forward_and_gradients() {
    let cube = linear_and_grads::<Wgpu>(&Default::default());
    let cpu = linear_and_grads::<Flex>(&Default::default());
    for (name, (c, f)) in ["output", "input grad", "weight grad", "bias grad"]
        .iter()
        .zip(cube.iter().zip(&cpu))
    {
        let diff = max_abs_diff(c, f);
        // Sums of up to 33 products of values in [-1, 1] in f32: rounding.
        assert!(diff <= 1e-4, "{name}: CubeCL {diff:.2e} from Flex");
    }
}
