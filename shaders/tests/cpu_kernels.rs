//! The frozen-encoder kernels Flex runs instead of Burn's ops (`bertvision_shaders::cpu`, through
//! `FrozenEncoderBackend`) against those ops: GELU and the linear layers here, attention in
//! `attention.rs`.

use bertvision_shaders::attention::FrozenEncoderBackend;
use burn::backend::Flex;
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
    const { assert!(Flex::HAS_CPU_KERNELS) };
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
