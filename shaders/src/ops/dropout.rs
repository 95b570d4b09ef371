//! Dropout keep masks for the encoder's dropout layers.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// A backend's dropout masks. The provided method is the reference ([`reference`]).
pub trait DropoutOps: Backend {
    /// Dropout's keep mask for `len` elements, scaled: `1/keep` with probability `keep`, else 0
    /// (what Burn's `Dropout` multiplies by). Drawn from the backend's generator, so
    /// `Backend::seed` makes it repeatable.
    fn encoder_dropout_mask(len: usize, keep: f64, device: &Self::Device) -> Tensor<Self, 1> {
        reference::dropout_mask(len, keep, device)
    }
}

/// The op in Burn's tensor ops.
pub mod reference {
    use super::*;

    /// A Bernoulli draw scaled by `1/keep`, as Burn's `Dropout` makes it.
    pub fn dropout_mask<B: Backend>(len: usize, keep: f64, device: &B::Device) -> Tensor<B, 1> {
        Tensor::<B, 1>::random([len], Distribution::Bernoulli(keep), device).mul_scalar(1.0 / keep)
    }
}
