//! AdamW's update of one parameter in one launch: one unit per element reads the parameter, its
//! gradient and both moments and writes the three new values, each operation in the order of
//! `ops::adamw::reference`. The step's scalars are runtime arguments (they change every step:
//! as comptime values they would compile a kernel per step); what is present is comptime.

use cubecl::prelude::*;

/// `first`, `second`: unread on the first step; `factor` (one element): unread without one.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_kernel<F: Float>(
    param: &Tensor<F>,
    grad: &Tensor<F>,
    first: &Tensor<F>,
    second: &Tensor<F>,
    factor: &Tensor<F>,
    param_out: &mut Tensor<F>,
    first_out: &mut Tensor<F>,
    second_out: &mut Tensor<F>,
    scalars: AdamWArgs,
    #[comptime] first_step: bool,
    #[comptime] has_factor: bool,
    #[comptime] has_decay: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= param.len() {
        terminate!();
    }
    let mut g = grad[i];
    if has_factor {
        g *= factor[0];
    }
    let mut m = g * scalars.one_minus_beta_1.get::<F>();
    let mut v = (g * g) * scalars.one_minus_beta_2.get::<F>();
    if !first_step {
        m += first[i] * scalars.beta_1.get::<F>();
        v += second[i] * scalars.beta_2.get::<F>();
    }
    let corrected_1 = m / scalars.correction_1.get::<F>();
    let corrected_2 = v / scalars.correction_2.get::<F>();
    let delta = corrected_1 / (F::sqrt(corrected_2) + scalars.epsilon.get::<F>());
    let mut p = param[i];
    if has_decay {
        p *= scalars.keep.get::<F>();
    }
    param_out[i] = p - delta * scalars.lr.get::<F>();
    first_out[i] = m;
    second_out[i] = v;
}

/// The step's scalars (`ops::adamw::AdamWScalars`), in the parameter's float type.
#[derive(CubeLaunch, CubeType)]
pub struct AdamWArgs {
    pub beta_1: InputScalar,
    pub beta_2: InputScalar,
    pub one_minus_beta_1: InputScalar,
    pub one_minus_beta_2: InputScalar,
    pub correction_1: InputScalar,
    pub correction_2: InputScalar,
    pub epsilon: InputScalar,
    /// `1 - lr·weight_decay`; unread without decay.
    pub keep: InputScalar,
    pub lr: InputScalar,
}
