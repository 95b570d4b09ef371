//! One AdamW update of one parameter tensor, as one op: the gradient's scale factor (clipping,
//! loss scaling), both moments, the bias corrections, the decoupled weight decay and the update
//! in one pass over the four buffers. Burn's `AdamW` runs the same arithmetic as 15 separate
//! tensor ops per parameter, each a pass over memory (and a launch on a GPU without fusion).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The settings of an update, as Burn's `AdamWConfig` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl AdamWSettings {
    /// The scalars every element of step `time` (1 on the first step) uses, each computed as
    /// Burn's `AdamW` computes it (in f32 where it does, from f64 where it does), so that a
    /// kernel that applies them in the reference's order matches it bit for bit.
    pub fn scalars(&self, time: usize) -> AdamWScalars {
        let decay_rate = self.lr * self.weight_decay as f64;
        let time = time as i32;
        AdamWScalars {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            one_minus_beta_1: 1.0 - self.beta_1,
            one_minus_beta_2: 1.0 - self.beta_2,
            correction_1: 1.0 - self.beta_1.powi(time),
            correction_2: 1.0 - self.beta_2.powi(time),
            epsilon: self.epsilon,
            decay: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: self.lr as f32,
        }
    }
}

/// [`AdamWSettings::scalars`]: what a kernel needs, in f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWScalars {
    pub beta_1: f32,
    pub beta_2: f32,
    pub one_minus_beta_1: f32,
    pub one_minus_beta_2: f32,
    /// `1 - β₁^t`, `1 - β₂^t`: the moments are divided by them.
    pub correction_1: f32,
    pub correction_2: f32,
    pub epsilon: f32,
    /// `1 - lr·weight_decay` the parameter is multiplied by; `None` without decay.
    pub decay: Option<f32>,
    pub lr: f32,
}

/// The moments of one parameter (flattened), as the optimizer keeps them between steps.
#[derive(Debug, Clone)]
pub struct Moments<B: Backend> {
    pub first: Tensor<B, 1>,
    pub second: Tensor<B, 1>,
}

/// What one update reads: flat tensors of the parameter's length.
#[derive(Debug, Clone)]
pub struct AdamWInputs<B: Backend> {
    pub param: Tensor<B, 1>,
    pub grad: Tensor<B, 1>,
    /// `None` on the first step: Burn's `AdamW` starts them from the first gradient, as from
    /// zero moments.
    pub moments: Option<Moments<B>>,
    /// One element the gradient is multiplied by first (clipping, loss scale).
    pub grad_factor: Option<Tensor<B, 1>>,
}

/// A backend's AdamW update. The provided method is the reference ([`reference::update`]).
pub trait AdamWOps: Backend {
    /// Whether [`Self::adamw_update`] is this crate's kernel.
    const KERNEL: bool = false;

    /// The parameter and moments after the step whose scalars are `scalars`
    /// ([`AdamWSettings::scalars`]).
    fn adamw_update(
        inputs: AdamWInputs<Self>,
        scalars: AdamWScalars,
    ) -> (Tensor<Self, 1>, Moments<Self>) {
        reference::update(inputs, scalars)
    }
}

/// The op in Burn's tensor ops: Burn 0.21's `AdamW::step` (`burn-optim`, `adamw.rs`) op for op.
pub mod reference {
    use super::*;

    pub fn update<B: Backend>(
        inputs: AdamWInputs<B>,
        s: AdamWScalars,
    ) -> (Tensor<B, 1>, Moments<B>) {
        let AdamWInputs {
            param,
            grad,
            moments,
            grad_factor,
        } = inputs;
        let grad = match grad_factor {
            Some(factor) => grad * factor,
            None => grad,
        };
        let moments = match moments {
            Some(m) => Moments {
                first: m
                    .first
                    .mul_scalar(s.beta_1)
                    .add(grad.clone().mul_scalar(s.one_minus_beta_1)),
                second: m
                    .second
                    .mul_scalar(s.beta_2)
                    .add(grad.square().mul_scalar(s.one_minus_beta_2)),
            },
            None => Moments {
                first: grad.clone().mul_scalar(s.one_minus_beta_1),
                second: grad.square().mul_scalar(s.one_minus_beta_2),
            },
        };
        let first = moments.first.clone().div_scalar(s.correction_1);
        let second = moments.second.clone().div_scalar(s.correction_2);
        let delta = first.div(second.sqrt().add_scalar(s.epsilon));
        let decayed = match s.decay {
            Some(keep) => param.mul_scalar(keep),
            None => param,
        };
        (decayed - delta.mul_scalar(s.lr), moments)
    }
}
