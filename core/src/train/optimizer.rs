//! AdamW as BERT is fine-tuned: weight decay on weights only (not biases or LayerNorm), the
//! gradient's global norm clipped, the learning rate set per step by the caller.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
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

/// Two AdamW instances (with and without decay) over one module.
pub struct TrainOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    decay: OptimizerAdaptor<AdamW, M, B>,
    no_decay: OptimizerAdaptor<AdamW, M, B>,
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

/// Moves one gradient between collections, whatever its rank, scaled by the one-element
/// `factor` (on the device) if there is one.
fn move_grad<B: AutodiffBackend>(
    from: &mut GradientsParams,
    to: &mut GradientsParams,
    id: ParamId,
    dims: usize,
    factor: Option<&Tensor<B::InnerBackend, 1>>,
) {
    macro_rules! mv {
        ($d:literal) => {
            if let Some(g) = from.remove::<B::InnerBackend, $d>(id) {
                let g = match factor {
                    Some(f) => g * f.clone().reshape([1; $d]),
                    None => g,
                };
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

impl<B: AutodiffBackend, M: AutodiffModule<B>> TrainOptimizer<B, M> {
    pub fn new(module: &M, config: OptimizerConfig) -> Self {
        let mut lister = ParamLister {
            ids: Vec::new(),
            no_decay: HashSet::new(),
            path: Vec::new(),
        };
        module.visit(&mut lister);
        let adam = |wd: f64| {
            AdamWConfig::new()
                .with_weight_decay(wd as f32)
                .with_epsilon(config.epsilon as f32)
                .init()
        };
        TrainOptimizer {
            decay: adam(config.weight_decay),
            no_decay: adam(0.0),
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
            move_grad::<B>(&mut grads, target, id, d, factor.as_ref());
        }
        let module = self.decay.step(lr, module, decay);
        let module = self.no_decay.step(lr, module, no_decay);
        (module, norm)
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
