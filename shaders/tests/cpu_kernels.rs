//! The encoder kernels Flex runs instead of Burn's ops (`bertvision_shaders::cpu`, through the
//! op traits) against the ops' references: GELU and the linear layers here, forward and
//! backward (and through `Autodiff<Flex>`), AdamW's update; attention in `attention.rs`.

use bertvision_shaders::ops::adamw::reference::update as adamw_reference;
use bertvision_shaders::ops::gelu::reference::{burn_gelu_backward, gelu_backward};
use bertvision_shaders::ops::linear::reference::{
    SPLIT_PART_ROWS, linear_backward as burn_linear_backward, weight_gradient,
};
use bertvision_shaders::{AdamWInputs, AdamWOps, AdamWSettings, GeluOps, LinearOps, Moments};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn max_abs_diff(a: Vec<f32>, b: Vec<f32>) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn flex_encoder_gelu_matches_burn() {
    let device = Default::default();
    // Odd length: the vectorised loop's tail; the range covers GELU's curved part and both tails.
    let n = 3 * 7 * 1001;
    let x: Vec<f32> = (0..n).map(|i| -12.0 + 24.0 * i as f32 / n as f32).collect();
    let input = || Tensor::<Flex, 3>::from_data(TensorData::new(x.clone(), [3, 7, 1001]), &device);
    let got = Flex::encoder_gelu(input())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let want = burn::tensor::activation::gelu(input())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    for ((g, w), x) in got.iter().zip(&want).zip(&x) {
        assert!(
            (g - w).abs() <= 1e-6 * x.abs().max(1.0),
            "gelu({x}): {g} vs Burn's {w}"
        );
    }
    const { assert!(<Flex as GeluOps>::KERNEL && <Flex as LinearOps>::KERNEL) };
}

/// Row-major weights, and weights that are a transposed view (as the loader leaves Hugging
/// Face's `[out, in]` tensors), with and without bias.
#[test]
fn flex_encoder_linear_matches_burn() {
    let device = Default::default();
    let (batch, seq, inputs, outputs) = (3, 5, 24, 40);
    let x = Tensor::<Flex, 3>::from_data(
        TensorData::new(values(batch * seq * inputs, 1), [batch, seq, inputs]),
        &device,
    );
    let row_major = Tensor::<Flex, 2>::from_data(
        TensorData::new(values(inputs * outputs, 2), [inputs, outputs]),
        &device,
    );
    let transposed = Tensor::<Flex, 2>::from_data(
        TensorData::new(values(inputs * outputs, 3), [outputs, inputs]),
        &device,
    )
    .transpose();
    let bias =
        Tensor::<Flex, 1>::from_data(TensorData::new(values(outputs, 4), [outputs]), &device);
    for weight in [row_major, transposed] {
        for bias in [Some(bias.clone()), None] {
            let want = burn::tensor::module::linear(x.clone(), weight.clone(), bias.clone());
            let got = Flex::encoder_linear(x.clone(), weight.clone(), bias);
            assert_eq!(got.dims(), [batch, seq, outputs]);
            let diff = max_abs_diff(
                got.into_data().to_vec().unwrap(),
                want.into_data().to_vec().unwrap(),
            );
            assert!(diff < 1e-5, "linear differs from Burn's by {diff}");
        }
    }
}

/// Only f32 goes to the kernels; other float types take Burn's ops and keep their type.
#[test]
fn flex_encoder_kernels_keep_other_float_types() {
    let device = Default::default();
    let x = Tensor::<Flex, 3>::from_data(TensorData::new(values(2 * 3 * 8, 5), [2, 3, 8]), &device)
        .cast(DType::BF16);
    let weight = Tensor::<Flex, 2>::from_data(TensorData::new(values(8 * 4, 6), [8, 4]), &device)
        .cast(DType::BF16);
    assert_eq!(Flex::encoder_gelu(x.clone()).dtype(), DType::BF16);
    assert_eq!(Flex::encoder_linear(x, weight, None).dtype(), DType::BF16);
}

/// GELU's backward kernel against Burn's `gelu_backward` on Flex (libm's `erf` and `exp`) and the
/// op's reference, over
/// the same range as the forward test, with a gradient that changes sign.
#[test]
fn flex_encoder_gelu_backward_matches_burn() {
    let device = Default::default();
    let n = 3 * 7 * 1001;
    let x: Vec<f32> = (0..n).map(|i| -12.0 + 24.0 * i as f32 / n as f32).collect();
    let grad = values(n, 7);
    let tensor = |v: &Vec<f32>| {
        Tensor::<Flex, 3>::from_data(TensorData::new(v.clone(), [3, 7, 1001]), &device)
    };
    let got = Flex::encoder_gelu_backward(tensor(&x), tensor(&grad))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    // Burn's op on Flex (exact there), and the reference in tensor ops that CubeCL and ndarray
    // run.
    for (name, reference) in [
        (
            "Burn's gelu_backward",
            burn_gelu_backward::<Flex> as fn(_, _) -> _,
        ),
        ("the reference", gelu_backward::<Flex>),
    ] {
        let want = reference(tensor(&x), tensor(&grad))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (((g, w), x), dy) in got.iter().zip(&want).zip(&x).zip(&grad) {
            assert!(
                (g - w).abs() <= 1e-6 * dy.abs().max(1e-3),
                "gelu'({x})·{dy}: {g} vs {name}'s {w}"
            );
        }
    }
}

/// The linear layer's gradients (input, weight, bias) against the same products in Burn's ops,
/// for row-major and transposed weights; no input gradient when none is asked for.
#[test]
fn flex_encoder_linear_backward_matches_burn() {
    let device = Default::default();
    let (batch, seq, inputs, outputs) = (3, 5, 24, 40);
    let x = Tensor::<Flex, 3>::from_data(
        TensorData::new(values(batch * seq * inputs, 11), [batch, seq, inputs]),
        &device,
    );
    let grad = Tensor::<Flex, 3>::from_data(
        TensorData::new(values(batch * seq * outputs, 12), [batch, seq, outputs]),
        &device,
    );
    let row_major = Tensor::<Flex, 2>::from_data(
        TensorData::new(values(inputs * outputs, 13), [inputs, outputs]),
        &device,
    );
    let transposed = Tensor::<Flex, 2>::from_data(
        TensorData::new(values(inputs * outputs, 14), [outputs, inputs]),
        &device,
    )
    .transpose();
    for weight in [row_major, transposed] {
        let want = burn_linear_backward(x.clone(), weight.clone(), grad.clone(), true);
        let got = Flex::encoder_linear_backward(x.clone(), weight.clone(), grad.clone(), true);
        let input = got.input.expect("input gradient asked for");
        assert_eq!(input.dims(), [batch, seq, inputs]);
        assert_eq!(got.weight.dims(), [inputs, outputs]);
        assert_eq!(got.bias.dims(), [outputs]);
        for (name, got, want) in [
            ("input", input.into_data(), want.input.unwrap().into_data()),
            ("weight", got.weight.into_data(), want.weight.into_data()),
            ("bias", got.bias.into_data(), want.bias.into_data()),
        ] {
            let diff = max_abs_diff(got.to_vec().unwrap(), want.to_vec().unwrap());
            assert!(diff < 1e-5, "{name} gradient differs from Burn's by {diff}");
        }
        let without = Flex::encoder_linear_backward(x.clone(), weight, grad.clone(), false);
        assert!(without.input.is_none());
    }
}

/// End to end through `Autodiff<Flex>`: `gelu(linear(x))` through the kernels' autodiff ops and
/// through Burn's `module::linear` and `gelu`, the same loss, the gradients at every input.
#[test]
fn autodiff_flex_kernels_give_burns_gradients() {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let (batch, seq, inputs, outputs) = (2, 7, 16, 48);
    let leaf = |v: Vec<f32>, shape: Vec<usize>| {
        Tensor::<A, 3>::from_data(TensorData::new(v, shape), &device).require_grad()
    };
    let x = leaf(values(batch * seq * inputs, 21), vec![batch, seq, inputs]);
    let weight_t = Tensor::<A, 2>::from_data(
        TensorData::new(values(inputs * outputs, 22), [outputs, inputs]),
        &device,
    )
    .require_grad();
    let bias = Tensor::<A, 1>::from_data(TensorData::new(values(outputs, 23), [outputs]), &device)
        .require_grad();
    let probe = Tensor::<A, 3>::from_data(
        TensorData::new(values(batch * seq * outputs, 24), [batch, seq, outputs]),
        &device,
    );
    // The weight enters as a transposed view, as the checkpoint loader leaves it.
    let kernels = A::encoder_gelu(A::encoder_linear(
        x.clone(),
        weight_t.clone().transpose(),
        Some(bias.clone()),
    ));
    let burn_ops = burn::tensor::activation::gelu(burn::tensor::module::linear(
        x.clone(),
        weight_t.clone().transpose(),
        Some(bias.clone()),
    ));
    let forward = max_abs_diff(
        kernels.clone().into_data().to_vec().unwrap(),
        burn_ops.clone().into_data().to_vec().unwrap(),
    );
    assert!(forward < 1e-5, "forward differs by {forward}");
    let grads_kernels = (kernels * probe.clone()).sum().backward();
    let grads_burn = (burn_ops * probe).sum().backward();
    let of = |g: Option<Tensor<Flex, 3>>| g.expect("a gradient").into_data().to_vec().unwrap();
    let diff = max_abs_diff(of(x.grad(&grads_kernels)), of(x.grad(&grads_burn)));
    assert!(diff < 1e-5, "input gradient differs by {diff}");
    let of = |g: Option<Tensor<Flex, 2>>| g.expect("a gradient").into_data().to_vec().unwrap();
    let diff = max_abs_diff(
        of(weight_t.grad(&grads_kernels)),
        of(weight_t.grad(&grads_burn)),
    );
    assert!(diff < 1e-5, "weight gradient differs by {diff}");
    let of = |g: Option<Tensor<Flex, 1>>| g.expect("a gradient").into_data().to_vec().unwrap();
    let diff = max_abs_diff(of(bias.grad(&grads_kernels)), of(bias.grad(&grads_burn)));
    assert!(diff < 1e-5, "bias gradient differs by {diff}");
}

/// The one-pass AdamW kernel equals the reference (Burn's `AdamW` op for op) bit for bit: the
/// first step (no moments) and a later one, with and without decay and a gradient factor; the
/// length is odd, so the vectorised loops' tails run.
#[test]
fn flex_adamw_matches_the_reference_bit_for_bit() {
    const { assert!(<Flex as AdamWOps>::KERNEL) };
    let device = Default::default();
    let n = 3 * (1 << 14) + 5;
    let flat = |seed: u32, scale: f32| {
        let v: Vec<f32> = values(n, seed).iter().map(|x| x * scale).collect();
        Tensor::<Flex, 1>::from_data(TensorData::new(v, [n]), &device)
    };
    let bits = |t: Tensor<Flex, 1>| -> Vec<u32> {
        let v = t.into_data().to_vec::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    for (weight_decay, factor, time) in [
        (0.01, None, 1),
        (0.0, Some(0.37), 1),
        (0.01, Some(2.5e-5), 7),
    ] {
        let settings = AdamWSettings {
            lr: 3e-5,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay,
        };
        let scalars = settings.scalars(time);
        let moments = || {
            (time > 1).then(|| Moments {
                first: flat(3, 1e-3),
                second: flat(4, 1e-6).abs(),
            })
        };
        let factor_tensor = || factor.map(|f| Tensor::<Flex, 1>::from_floats([f], &device));
        let inputs = || AdamWInputs {
            param: flat(1, 1.0),
            grad: flat(2, 0.1),
            moments: moments(),
            grad_factor: factor_tensor(),
        };
        let (param, m) = Flex::adamw_update(inputs(), scalars);
        let (want_param, want_m) = adamw_reference(inputs(), scalars);
        let case = format!("decay {weight_decay}, factor {factor:?}, step {time}");
        assert!(bits(param) == bits(want_param), "{case}: parameters");
        assert!(bits(m.first) == bits(want_m.first), "{case}: first moment");
        assert!(
            bits(m.second) == bits(want_m.second),
            "{case}: second moment"
        );
    }
}

/// The split weight gradient (parts of `SPLIT_PART_ROWS` rows summed, the rest added) is the
/// one product `xᵀ·grad`, with and without rows past the last whole part, and for a product too
/// short to split.
#[test]
fn the_split_weight_gradient_is_the_plain_product() {
    let device = Default::default();
    for rows in [
        9 * SPLIT_PART_ROWS,
        9 * SPLIT_PART_ROWS + 37,
        3 * SPLIT_PART_ROWS,
    ] {
        let (inputs, outputs) = (48, 8);
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new(values(rows * inputs, 5), [rows, inputs]),
            &device,
        );
        let g = Tensor::<Flex, 2>::from_data(
            TensorData::new(values(rows * outputs, 6), [rows, outputs]),
            &device,
        );
        let plain = x.clone().transpose().matmul(g.clone());
        let largest = plain.clone().abs().max().into_scalar();
        let split = weight_gradient(x, g);
        assert_eq!(split.dims(), [inputs, outputs]);
        let diff = max_abs_diff(
            split.into_data().to_vec().unwrap(),
            plain.into_data().to_vec().unwrap(),
        );
        assert!(
            diff <= 1e-5 * largest,
            "{rows} rows: {diff} off, largest {largest}"
        );
    }
}
