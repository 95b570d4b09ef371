//! BERT's exact (erf) GELU and its derivative.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

/// A backend's GELU. The provided methods are the reference ([`reference`]).
pub trait GeluOps: Backend {
    /// Whether [`Self::encoder_gelu`] and [`Self::encoder_gelu_backward`] are this crate's
    /// kernels. Either way `Autodiff<Self>` records GELU as one node whose backward is
    /// [`Self::encoder_gelu_backward`]: the exact derivative on every backend.
    const KERNEL: bool = false;

    /// `x·Φ(x)`.
    fn encoder_gelu(x: Tensor<Self, 3>) -> Tensor<Self, 3> {
        reference::gelu(x)
    }

    /// The gradient at `x` for `grad` at the output.
    fn encoder_gelu_backward(x: Tensor<Self, 3>, grad: Tensor<Self, 3>) -> Tensor<Self, 3> {
        reference::gelu_backward(x, grad)
    }
}

/// The op in Burn's tensor ops.
pub mod reference {
    use super::*;

    /// Burn's `activation::gelu` (the exact form).
    pub fn gelu<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
        burn::tensor::activation::gelu(x)
    }

    /// The exact GELU's derivative, `grad·(Φ(x) + x·φ(x))`, in Burn's tensor ops (elementwise:
    /// one fused kernel on CubeCL with fusion). Not Burn's `gelu_backward` op: Burn 0.21's
    /// default for it (ndarray, CubeCL) is the derivative of GELU's tanh approximation, 8.7e-4
    /// off Flex's exact one over [-6, 6] on lavapipe (`shaders/tests/cube_autodiff.rs`); only
    /// Flex's is exact.
    pub fn gelu_backward<B: Backend>(x: Tensor<B, 3>, grad: Tensor<B, 3>) -> Tensor<B, 3> {
        let cdf = x
            .clone()
            .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
            .erf()
            .add_scalar(1.0)
            .mul_scalar(0.5);
        // φ(x) = exp(-x²/2)/√(2π); the constant is 1/√(2π).
        let density =
            x.clone().powi_scalar(2).mul_scalar(-0.5).exp().mul_scalar(
                0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2,
            );
        grad * (cdf + x * density)
    }

    /// Burn's own `gelu_backward` op (the tanh approximation's derivative on ndarray and
    /// CubeCL): what GELU's gradient was before [`gelu_backward`], kept for the test that
    /// shows the difference.
    pub fn burn_gelu_backward<B: Backend>(x: Tensor<B, 3>, grad: Tensor<B, 3>) -> Tensor<B, 3> {
        Tensor::from_primitive(TensorPrimitive::Float(B::gelu_backward(
            x.into_primitive().tensor(),
            grad.into_primitive().tensor(),
        )))
    }
}
