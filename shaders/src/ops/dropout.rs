//! Dropout keep masks for the encoder's dropout layers, and the step key that makes them
//! independent of how a batch is split between data-parallel peers.

use std::cell::Cell;

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// A backend's dropout masks. The provided method is the reference ([`reference`]).
pub trait DropoutOps: Backend {
    /// Dropout's keep mask for `rows` rows of `row_len` elements (row = one example of the
    /// batch), scaled: `1/keep` with probability `keep`, else 0 (what Burn's `Dropout`
    /// multiplies by). Drawn from the backend's generator, so `Backend::seed` makes it
    /// repeatable. Backends with a counter-based mask (Flex) make it from the thread's
    /// [`StepKey`] instead when one is set: then row `r` of the mask depends only on the key,
    /// the dropout site and the row's place in the whole batch (`StepKey::first_row + r`).
    fn encoder_dropout_mask(
        rows: usize,
        row_len: usize,
        keep: f64,
        device: &Self::Device,
    ) -> Tensor<Self, 1> {
        reference::dropout_mask(rows * row_len, keep, device)
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

/// The current training step's dropout key on this thread: the step's seed and where this
/// thread's rows start in the whole batch. Set by the training loop around each forward pass
/// (`StepKey::enter`); every dropout site of the pass then takes the next site seed, so a
/// site's mask is the same function of the batch's rows whether one device computes the batch
/// or several peers compute shards of it. Without a key, masks come from the backend's
/// generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepKey {
    pub seed: u64,
    pub first_row: u64,
    /// Sites drawn so far in this pass.
    site: u64,
}

thread_local! {
    static STEP_KEY: Cell<Option<StepKey>> = const { Cell::new(None) };
}

/// Restores the thread's previous key when dropped.
pub struct StepKeyGuard(Option<StepKey>);

impl Drop for StepKeyGuard {
    fn drop(&mut self) {
        STEP_KEY.with(|k| k.set(self.0));
    }
}

impl StepKey {
    /// Sets the key for this thread until the guard is dropped.
    pub fn enter(seed: u64, first_row: u64) -> StepKeyGuard {
        let key = StepKey {
            seed,
            first_row,
            site: 0,
        };
        StepKeyGuard(STEP_KEY.with(|k| k.replace(Some(key))))
    }

    /// The key with the next dropout site's number (1, 2, … in this pass), if a key is set:
    /// a counter-based generator makes the site's seed from `(seed, site)`.
    pub fn next_site() -> Option<(StepKey, u64)> {
        STEP_KEY.with(|k| {
            let mut key = k.get()?;
            key.site += 1;
            k.set(Some(key));
            Some((key, key.site))
        })
    }
}
