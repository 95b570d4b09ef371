//! BERT's exact (erf) GELU and its derivative.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

/// A backend's GELU. The provided methods are the reference ([`reference`]).
pub trait GeluOps: Backend {
    /// Whether [`Self::encoder_gelu`] and [`Self::encoder_gelu_backward`] are this crate's kernels (then
    /// `Autodiff<Self>` records GELU as one node with that backward).
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

    /// Burn's `gelu_backward` op. Beware: Burn 0.21's default for it (ndarray, CubeCL) is the
    /// derivative of GELU's tanh approximation, not of the exact GELU; Flex's is exact.
    pub fn gelu_backward<B: Backend>(x: Tensor<B, 3>, grad: Tensor<B, 3>) -> Tensor<B, 3> {
        Tensor::from_primitive(TensorPrimitive::Float(B::gelu_backward(
            x.into_primitive().tensor(),
            grad.into_primitive().tensor(),
        )))
    }
}
