//! AdamW as BERT is fine-tuned: weight decay on weights only (not biases or LayerNorm), the
//! gradient's global norm clipped, the learning rate set per step by the caller. Each parameter
//! is updated by the backend's one-pass AdamW (`AdamWOps`: one kernel on the CPU instead of
//! Burn's 15 tensor ops), with Burn's `AdamW` state, so checkpoints keep Burn's format.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bertvision_shaders::{AdamWInputs, AdamWOps, AdamWSettings, Moments};
use burn::module::{AutodiffModule, ModuleVisitor, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate, Optimizer, SimpleOptimizer,
};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    pub weight_decay: f64,
    /// Global L2 norm the gradient is clipped to; `None` for no clipping.
    pub max_grad_norm: Option<f64>,
    pub epsilon: f64,
    /// Dynamic loss scaling ([`LossScaler`]), for f16 fine-tuning: set by the loop's caller
    /// from the run's precision, not a setting of its own (never in config.json).
    #[serde(skip)]
    pub loss_scaling: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            epsilon: 1e-8,
            loss_scaling: false,
        }
    }
}

impl OptimizerConfig {
    /// The same settings for training in `precision`: loss scaling for f16.
    pub fn for_precision(self, precision: crate::bert::EncoderDtype) -> Self {
        OptimizerConfig {
            loss_scaling: precision == crate::bert::EncoderDtype::F16,
            ..self
        }
    }
}

/// Dynamic loss scaling for f16 training, with the defaults of PyTorch's `GradScaler`: the loss
/// is multiplied by `scale` before the backward pass so that small gradients survive f16's
/// range, and the gradients are divided by it before clipping and the update. A step whose
/// gradient is not finite is skipped (no update, no AdamW step count) and halves the scale;
/// every [`Self::GROWTH_INTERVAL`] finite steps in a row double it.
///
/// Whether a step is finite is read on the host, once per step (the gradient norm), as
/// PyTorch's `GradScaler.step` does with a non-fused optimizer: f16 is the one precision whose
/// step waits for the device; f32 and bf16 read nothing (`step_losses`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaler {
    pub scale: f32,
    /// Finite steps since the scale last changed.
    pub good_steps: u32,
    /// Steps skipped so far (their gradient was not finite).
    pub skipped: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: 65536.0,
            good_steps: 0,
            skipped: 0,
        }
    }
}

impl LossScaler {
    pub const GROWTH_INTERVAL: u32 = 2000;
    /// Marks the scaler's state at the end of the optimizer's checkpoint bytes.
    const MAGIC: &'static [u8; 8] = b"BVLSCALE";

    /// The scale after a step whose gradient was (not) finite.
    pub fn update(&mut self, finite: bool) {
        if !finite {
            self.scale *= 0.5;
            self.good_steps = 0;
            self.skipped += 1;
            return;
        }
        self.good_steps += 1;
        if self.good_steps == Self::GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
    }

    fn to_bytes(self) -> Vec<u8> {
        let mut out = Self::MAGIC.to_vec();
        out.extend(self.scale.to_le_bytes());
        out.extend(self.good_steps.to_le_bytes());
        out.extend(self.skipped.to_le_bytes());
        out
    }

    /// The state at the end of `bytes` and the bytes before it, if it is there.
    fn split_from(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (rest, tail) = bytes.split_at_checked(bytes.len().checked_sub(20)?)?;
        let (magic, values) = tail.split_at(8);
        (magic == Self::MAGIC).then(|| {
            let word = |i: usize| [values[i], values[i + 1], values[i + 2], values[i + 3]];
            let scaler = LossScaler {
                scale: f32::from_le_bytes(word(0)),
                good_steps: u32::from_le_bytes(word(4)),
                skipped: u32::from_le_bytes(word(8)),
            };
            (scaler, rest)
        })
    }
}

/// Burn's `AdamW` step (`burn-optim` 0.21, `adamw.rs`: the same arithmetic, the same state)
/// through [`AdamWOps::adamw_update`], the gradient multiplied on the way by the step's factor
/// (clipping and loss scale) in the same pass.
#[derive(Clone)]
struct OnePassAdamW<B: Backend> {
    /// Everything but the learning rate, which comes with each step.
    settings: AdamWSettings,
    /// The one-element factor of the current step's gradients, set by [`TrainOptimizer`] before
    /// it steps (shared by its two groups).
    grad_factor: Arc<Mutex<Option<Tensor<B, 1>>>>,
}

impl<B: AdamWOps> SimpleOptimizer<B> for OnePassAdamW<B> {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let shape = tensor.shape();
        let n = shape.num_elements();
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let moments = state.map(|s| Moments {
            first: s.momentum.moment_1.reshape([n]),
            second: s.momentum.moment_2.reshape([n]),
        });
        let scalars = AdamWSettings {
            lr,
            ..self.settings
        }
        .scalars(time);
        // Poisoned only if a thread panicked holding it: the factor is still whole.
        let grad_factor = match self.grad_factor.lock() {
            Ok(factor) => factor.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let inputs = AdamWInputs {
            param: tensor.reshape([n]),
            grad: grad.reshape([n]),
            moments,
            grad_factor,
        };
        let (param, moments) = B::adamw_update(inputs, scalars);
        let momentum = AdaptiveMomentumState::new(
            time,
            moments.first.reshape(shape.clone()),
            moments.second.reshape(shape.clone()),
        );
        (param.reshape(shape), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// A backend the optimizer can train on: autodiff over a backend with [`AdamWOps`] (every
/// [`crate::TrainBackend`]).
pub trait OptimizerBackend: AutodiffBackend<InnerBackend: AdamWOps> {}

impl<B: AutodiffBackend<InnerBackend: AdamWOps>> OptimizerBackend for B {}

type Group<B, M> = OptimizerAdaptor<OnePassAdamW<<B as AutodiffBackend>::InnerBackend>, M, B>;

/// Two AdamW groups (with and without decay) over one module.
pub struct TrainOptimizer<B: OptimizerBackend, M: AutodiffModule<B>> {
    decay: Group<B, M>,
    no_decay: Group<B, M>,
    grad_factor: Arc<Mutex<Option<Tensor<B::InnerBackend, 1>>>>,
    no_decay_ids: HashSet<ParamId>,
    all_ids: Vec<(ParamId, usize)>,
    config: OptimizerConfig,
    scaler: Option<LossScaler>,
}

/// Biases and LayerNorm parameters (gamma/beta) are not decayed, as in BERT's recipe.
fn exempt_from_decay(path: &[String]) -> bool {
    let last = path.last().map(String::as_str).unwrap_or("");
    last == "bias" || last == "beta" || last == "gamma" || path.iter().any(|p| p == "layer_norm")
}

/// Lists float parameters with their rank, and which are exempt from decay (by module path).
struct ParamLister {
    ids: Vec<(ParamId, usize)>,
    no_decay: HashSet<ParamId>,
    path: Vec<String>,
}

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for ParamLister {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        self.ids.push((param.id, D));
        if exempt_from_decay(&self.path) {
            self.no_decay.insert(param.id);
        }
    }
}

/// Moves one gradient between collections, whatever its rank.
fn move_grad<B: AutodiffBackend>(
    from: &mut GradientsParams,
    to: &mut GradientsParams,
    id: ParamId,
    dims: usize,
) {
    macro_rules! mv {
        ($d:literal) => {
            if let Some(g) = from.remove::<B::InnerBackend, $d>(id) {
                to.register::<B::InnerBackend, $d>(id, g);
            }
        };
    }
    by_rank!(dims, mv)
}

/// The clipping factor of a gradient of global norm `norm` (one element): `max / (norm + 1e-6)`
/// where the norm exceeds `max`, else 1; computed on the device, so that a step never waits
/// for the norm to be read back (issue #20).
fn clip_factor<B: burn::tensor::backend::Backend>(norm: Tensor<B, 1>, max: f64) -> Tensor<B, 1> {
    let ones = norm.ones_like();
    let clipped = ones.clone().mul_scalar(max) / norm.clone().add_scalar(1e-6);
    ones.mask_where(norm.greater_elem(max), clipped)
}

fn grad_sq_norm<B: AutodiffBackend>(
    grads: &GradientsParams,
    id: ParamId,
    dims: usize,
) -> Option<Tensor<B::InnerBackend, 1>> {
    macro_rules! sq {
        ($d:literal) => {
            grads
                .get::<B::InnerBackend, $d>(id)
                .map(|g| g.powi_scalar(2).sum())
        };
    }
    by_rank!(dims, sq)
}

impl<B: OptimizerBackend, M: AutodiffModule<B>> TrainOptimizer<B, M> {
    pub fn new(module: &M, config: OptimizerConfig) -> Self {
        let mut lister = ParamLister {
            ids: Vec::new(),
            no_decay: HashSet::new(),
            path: Vec::new(),
        };
        module.visit(&mut lister);
        let grad_factor = Arc::new(Mutex::new(None));
        // Burn's `AdamWConfig` defaults for the betas.
        let adam = |weight_decay: f64| {
            OptimizerAdaptor::from(OnePassAdamW {
                settings: AdamWSettings {
                    lr: 0.0,
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: config.epsilon as f32,
                    weight_decay: weight_decay as f32,
                },
                grad_factor: grad_factor.clone(),
            })
        };
        TrainOptimizer {
            decay: adam(config.weight_decay),
            no_decay: adam(0.0),
            grad_factor,
            no_decay_ids: lister.no_decay,
            all_ids: lister.ids,
            config,
            scaler: config.loss_scaling.then(LossScaler::default),
        }
    }

    /// The loss scaler's state (`None`: no loss scaling).
    pub fn loss_scaler(&self) -> Option<LossScaler> {
        self.scaler
    }

    /// The gradients of `loss`, scaled by the loss scale if there is one ([`Self::step_with`]
    /// divides it out).
    pub fn gradients(&self, loss: Tensor<B, 1>, module: &M) -> GradientsParams {
        let loss = match self.scaler {
            Some(scaler) => loss.mul_scalar(scaler.scale),
            None => loss,
        };
        GradientsParams::from_grads(loss.backward(), module)
    }

    /// One update: clip the global gradient norm, then step both groups. Returns the gradient
    /// norm before clipping, on the device (`None`: no gradient). Nothing is read back to the
    /// host: the clipping factor is a tensor too.
    pub fn step(
        &mut self,
        lr: f64,
        module: M,
        loss: Tensor<B, 1>,
    ) -> (M, Option<Tensor<B::InnerBackend, 1>>) {
        let grads = self.gradients(loss, &module);
        self.step_with(lr, module, grads)
    }

    /// [`Self::step`] with the gradients already made by [`Self::gradients`] (e.g. summed over
    /// data-parallel peers). With loss scaling, a step whose gradient is not finite changes
    /// nothing but the scale and returns no norm.
    pub fn step_with(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
    ) -> (M, Option<Tensor<B::InnerBackend, 1>>) {
        let norm_sq: Vec<Tensor<B::InnerBackend, 1>> = self
            .all_ids
            .iter()
            .filter_map(|&(id, d)| grad_sq_norm::<B>(&grads, id, d))
            .collect();
        let mut norm = (!norm_sq.is_empty()).then(|| Tensor::cat(norm_sq, 0).sum().sqrt());
        let mut unscale = None;
        if let (Some(scaler), Some(scaled)) = (self.scaler.as_mut(), &norm) {
            // The one read of a step with loss scaling (see `LossScaler`).
            let finite = scaled.clone().into_scalar().elem::<f64>().is_finite();
            let applied = scaler.scale as f64;
            scaler.update(finite);
            if !finite {
                return (module, None);
            }
            let inverse = 1.0 / applied;
            unscale = Some(inverse);
            norm = Some(scaled.clone().mul_scalar(inverse));
        }
        let factor = match (self.config.max_grad_norm, &norm) {
            (Some(max), Some(norm)) => Some(clip_factor(norm.clone(), max)),
            _ => None,
        };
        let factor = match (factor, unscale, &norm) {
            (Some(f), Some(inverse), _) => Some(f.mul_scalar(inverse)),
            (None, Some(inverse), Some(norm)) => Some(norm.ones_like().mul_scalar(inverse)),
            (factor, _, _) => factor,
        };
        let mut decay = GradientsParams::new();
        let mut no_decay = GradientsParams::new();
        for &(id, d) in &self.all_ids {
            let target = if self.no_decay_ids.contains(&id) {
                &mut no_decay
            } else {
                &mut decay
            };
            move_grad::<B>(&mut grads, target, id, d);
        }
        self.set_grad_factor(factor);
        let module = self.decay.step(lr, module, decay);
        let module = self.no_decay.step(lr, module, no_decay);
        self.set_grad_factor(None);
        (module, norm)
    }

    /// The factor both groups multiply this step's gradients by.
    fn set_grad_factor(&self, factor: Option<Tensor<B::InnerBackend, 1>>) {
        match self.grad_factor.lock() {
            Ok(mut slot) => *slot = factor,
            Err(poisoned) => *poisoned.into_inner() = factor,
        }
    }

    /// Both optimizers' state as bytes (for checkpoints).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let a = recorder
            .record(self.decay.to_record(), ())
            .map_err(|e| Error::usage(format!("optimizer state could not be serialised: {e}")))?;
        let b = recorder
            .record(self.no_decay.to_record(), ())
            .map_err(|e| Error::usage(format!("optimizer state could not be serialised: {e}")))?;
        let mut out = (a.len() as u64).to_le_bytes().to_vec();
        out.extend(a);
        out.extend(b);
        if let Some(scaler) = self.scaler {
            out.extend(scaler.to_bytes());
        }
        Ok(out)
    }

    /// A module and its optimizer rebuilt from checkpoint bytes (`source` names them in
    /// errors). Loading a record restores the parameters' ids, which the optimizer state is
    /// keyed by, so the optimizer is made after the module is loaded.
    pub fn restore(
        module: M,
        (module_bytes, optimizer_bytes): (&[u8], &[u8]),
        config: OptimizerConfig,
        device: &B::Device,
        source: &std::path::Path,
    ) -> Result<(M, Self)> {
        let module = super::Checkpoint::load_module(module, module_bytes, device, source)?;
        let optimizer = Self::new(&module, config).load_bytes(optimizer_bytes, device)?;
        Ok((module, optimizer))
    }

    /// Restores state saved by [`Self::to_bytes`].
    pub fn load_bytes(mut self, bytes: &[u8], device: &B::Device) -> Result<Self> {
        let bad = |what: &str| {
            Error::usage(format!(
                "optimizer state in the checkpoint is unreadable: {what}"
            ))
        };
        let bytes = match self.scaler {
            Some(_) => {
                let (scaler, rest) = LossScaler::split_from(bytes)
                    .ok_or_else(|| bad("no loss-scaling state (saved by a run without f16?)"))?;
                self.scaler = Some(scaler);
                rest
            }
            None => bytes,
        };
        if bytes.len() < 8 {
            return Err(bad("too short"));
        }
        // Cannot fail: 8 bytes, the length checked above.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        // Not `8 + n`: a corrupt length near usize::MAX would wrap.
        if n > bytes.len() - 8 {
            return Err(bad("length prefix past the end"));
        }
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let a = recorder
            .load(bytes[8..8 + n].to_vec(), device)
            .map_err(|e| bad(&e.to_string()))?;
        let b = recorder
            .load(bytes[8 + n..].to_vec(), device)
            .map_err(|e| bad(&e.to_string()))?;
        self.decay = self.decay.load_record(a);
        self.no_decay = self.no_decay.load_record(b);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Distribution, ElementConversion};

    type B = Autodiff<NdArray<f32>>;

    #[derive(Module, Debug)]
    struct Net<B: burn::tensor::backend::Backend> {
        layer: Linear<B>,
    }

    #[test]
    fn adamw_fits_a_linear_map() {
        let device = Default::default();
        let mut net = Net::<B> {
            layer: LinearConfig::new(4, 1).init(&device),
        };
        let mut opt = TrainOptimizer::new(&net, OptimizerConfig::default());
        assert_eq!(opt.all_ids.len(), 2);
        assert_eq!(opt.no_decay_ids.len(), 1, "the bias is not decayed");
        let x = Tensor::<B, 2>::random([64, 4], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<B, 2>::from_data([[1.0f32], [-2.0], [0.5], [3.0]], &device);
        let y = x.clone().matmul(w);
        let loss_of = |net: &Net<B>| {
            (net.layer.forward(x.clone()) - y.clone())
                .powi_scalar(2)
                .mean()
        };
        let first: f32 = loss_of(&net).into_scalar().elem();
        for _ in 0..300 {
            let loss = loss_of(&net);
            net = opt.step(0.05, net, loss).0;
        }
        let last: f32 = loss_of(&net).into_scalar().elem();
        assert!(last < first * 0.01, "loss {first} -> {last}");
    }

    /// What this optimizer replaced: Burn's `AdamW` (two groups), each gradient multiplied by
    /// the clip factor first.
    struct BurnAdamW<B: AutodiffBackend> {
        decay: OptimizerAdaptor<burn::optim::AdamW, Net<B>, B>,
        no_decay: OptimizerAdaptor<burn::optim::AdamW, Net<B>, B>,
    }

    impl<B: AutodiffBackend> BurnAdamW<B> {
        fn new() -> Self {
            let adam = |wd: f32| {
                burn::optim::AdamWConfig::new()
                    .with_weight_decay(wd)
                    .with_epsilon(1e-8)
                    .init()
            };
            BurnAdamW {
                decay: adam(0.01),
                no_decay: adam(0.0),
            }
        }

        fn step(&mut self, lr: f64, net: Net<B>, loss: Tensor<B, 1>) -> Net<B> {
            let mut grads = GradientsParams::from_grads(loss.backward(), &net);
            let (w, b) = (net.layer.weight.id, net.layer.bias.as_ref().unwrap().id);
            let gw = grads.remove::<B::InnerBackend, 2>(w).unwrap();
            let gb = grads.remove::<B::InnerBackend, 1>(b).unwrap();
            let norm = Tensor::cat(
                vec![
                    gw.clone().powi_scalar(2).sum(),
                    gb.clone().powi_scalar(2).sum(),
                ],
                0,
            )
            .sum()
            .sqrt();
            let factor = clip_factor(norm, 1.0);
            let (mut decay, mut no_decay) = (GradientsParams::new(), GradientsParams::new());
            decay.register::<B::InnerBackend, 2>(w, gw * factor.clone().reshape([1, 1]));
            no_decay.register::<B::InnerBackend, 1>(b, gb * factor);
            let net = self.decay.step(lr, net, decay);
            self.no_decay.step(lr, net, no_decay)
        }

        fn to_bytes(&self) -> Vec<u8> {
            let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
            let a = recorder.record(self.decay.to_record(), ()).unwrap();
            let b = recorder.record(self.no_decay.to_record(), ()).unwrap();
            let mut out = (a.len() as u64).to_le_bytes().to_vec();
            out.extend(a);
            out.extend(b);
            out
        }
    }

    /// The one-pass update gives Burn's `AdamW` parameters bit for bit over steps that clip and
    /// steps that do not, through Flex's kernel and ndarray's reference; and a state Burn's
    /// `AdamW` saved (a checkpoint from before the change) resumes as Burn's would.
    fn matches_burns_adamw<B: OptimizerBackend>(device: &B::Device) {
        let net = Net::<B> {
            layer: LinearConfig::new(37, 3).init(device),
        };
        let x = Tensor::<B, 2>::random([16, 37], Distribution::Normal(0.0, 1.0), device);
        // The first steps' gradients exceed the clipping norm, the later ones' do not.
        let loss_of = |net: &Net<B>, step: usize| {
            let scale = if step < 3 { 10.0 } else { 0.01 };
            net.layer
                .forward(x.clone())
                .powi_scalar(2)
                .mean()
                .mul_scalar(scale)
        };
        let bits = |net: &Net<B>| {
            let mut v = net.layer.weight.val().into_data().to_vec::<f32>().unwrap();
            v.extend(
                net.layer
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            );
            v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        let mut ours = TrainOptimizer::new(&net, OptimizerConfig::default());
        let mut burns = BurnAdamW::<B>::new();
        // Reading the parameters initialises them (they are lazy): the two copies start equal.
        let start = bits(&net);
        let (mut a, mut b) = (net.clone(), net);
        assert!(bits(&a) == start && bits(&b) == start);
        for step in 0..6 {
            let (loss_a, loss_b) = (loss_of(&a, step), loss_of(&b, step));
            let (stepped, norm) = ours.step(1e-2, a, loss_a);
            let norm: f32 = norm.unwrap().into_scalar().elem();
            assert_eq!(norm > 1.0, step < 3, "step {step}: norm {norm}");
            a = stepped;
            b = burns.step(1e-2, b, loss_b);
            assert!(bits(&a) == bits(&b), "step {step}: the parameters differ");
        }
        let mut resumed = TrainOptimizer::new(&b, OptimizerConfig::default())
            .load_bytes(&burns.to_bytes(), device)
            .unwrap();
        for step in 6..8 {
            let (loss_a, loss_b) = (loss_of(&a, step), loss_of(&b, step));
            a = resumed.step(1e-2, a, loss_a).0;
            b = burns.step(1e-2, b, loss_b);
            assert!(
                bits(&a) == bits(&b),
                "resumed step {step}: the parameters differ"
            );
        }
    }

    #[test]
    fn one_pass_adamw_is_burns_adamw_on_flex_and_ndarray() {
        matches_burns_adamw::<Autodiff<burn::backend::Flex>>(&Default::default());
        matches_burns_adamw::<B>(&Default::default());
    }

    /// The factor is 1 up to the maximum norm and `max / (norm + 1e-6)` above it, as the host
    /// computation it replaced (to f32 rounding).
    #[test]
    fn the_clip_factor_is_made_on_the_device() {
        let device = Default::default();
        for (norm, want) in [
            (0.5, 1.0),
            (1.0, 1.0),
            (4.0, 1.0 / (4.0 + 1e-6)),
            (0.0, 1.0),
        ] {
            let t = Tensor::<NdArray<f32>, 1>::from_floats([norm as f32], &device);
            let got: f32 = clip_factor(t, 1.0).into_scalar().elem();
            assert!(
                (got as f64 - want).abs() <= 1e-7 * want,
                "{norm}: {got} vs {want}"
            );
        }
    }

    /// The scale halves on a step that is not finite and doubles after
    /// `GROWTH_INTERVAL` finite ones in a row.
    #[test]
    fn the_loss_scale_backs_off_and_grows() {
        let mut scaler = LossScaler::default();
        scaler.update(false);
        assert_eq!((scaler.scale, scaler.skipped), (32768.0, 1));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            scaler.update(true);
        }
        assert_eq!(scaler.scale, 32768.0);
        scaler.update(true);
        assert_eq!((scaler.scale, scaler.good_steps), (65536.0, 0));
    }

    /// With loss scaling a step whose gradient overflows changes nothing but the scale; a
    /// finite step gives the unscaled optimizer's parameters bit for bit (the scale is a power
    /// of two); the scale survives a checkpoint, and a state saved without it is refused.
    #[test]
    fn loss_scaling_skips_overflows_and_is_exact_otherwise() {
        let device = Default::default();
        let net = Net::<B> {
            layer: LinearConfig::new(4, 1).init(&device),
        };
        let x = Tensor::<B, 2>::random([8, 4], Distribution::Normal(0.0, 1.0), &device);
        let loss_of =
            |net: &Net<B>, times: f32| net.layer.forward(x.clone()).sum().mul_scalar(times);
        let weights = |net: &Net<B>| net.layer.weight.val().into_data().to_vec::<f32>().unwrap();
        let scaled_config = OptimizerConfig {
            loss_scaling: true,
            ..OptimizerConfig::default()
        };
        let mut scaled = TrainOptimizer::new(&net, scaled_config);
        let mut plain = TrainOptimizer::new(&net, OptimizerConfig::default());
        let before = weights(&net);
        let (net_after, norm) = scaled.step(0.1, net.clone(), loss_of(&net, 1e36));
        assert!(norm.is_none(), "an overflowing step returns no norm");
        assert_eq!(
            weights(&net_after),
            before,
            "an overflowing step changed the weights"
        );
        assert_eq!(scaled.loss_scaler().unwrap().scale, 32768.0);
        let (via_scaled, _) = scaled.step(0.1, net.clone(), loss_of(&net, 1.0));
        let (via_plain, _) = plain.step(0.1, net.clone(), loss_of(&net, 1.0));
        assert_ne!(weights(&via_plain), before);
        assert_eq!(weights(&via_scaled), weights(&via_plain));
        let bytes = scaled.to_bytes().unwrap();
        let restored = TrainOptimizer::new(&net, scaled_config)
            .load_bytes(&bytes, &device)
            .unwrap();
        assert_eq!(restored.loss_scaler(), scaled.loss_scaler());
        let without = plain.to_bytes().unwrap();
        let refused = TrainOptimizer::new(&net, scaled_config).load_bytes(&without, &device);
        assert!(refused.is_err(), "a state without the scaler was taken");
    }

    /// A corrupt optimizer state (a length near `u64::MAX`, which `8 + n` would wrap) is an
    /// error, never a panic.
    #[test]
    fn a_corrupt_state_is_an_error_not_a_panic() {
        let device = Default::default();
        let net = Net::<B> {
            layer: LinearConfig::new(2, 1).init(&device),
        };
        for length in [u64::MAX, u64::MAX - 7, 1 << 40] {
            let mut bytes = length.to_le_bytes().to_vec();
            bytes.extend([0u8; 16]);
            let opt = TrainOptimizer::new(&net, OptimizerConfig::default());
            assert!(opt.load_bytes(&bytes, &device).is_err(), "length {length}");
        }
    }
}
