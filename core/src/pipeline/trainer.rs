//! The training loop shared by fine-tuning and head training: seeded batches, the linear
//! schedule, AdamW, resumable checkpoints and milestone snapshots (e.g. the 1-epoch model).

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::Tensor;

use super::progress::Progress;
use super::step_losses::{StepLosses, StepRow};
use crate::error::Result;
use crate::fsutil::write_atomic;
#[cfg(not(target_arch = "wasm32"))]
use crate::train::parallel::PeerGroup;
use crate::train::shard::{DeviceSet, Shard, ShardLoss};
use crate::train::{
    Checkpoint, OptimizerBackend, OptimizerConfig, TrainOptimizer, TrainPosition, epoch_order,
    linear_schedule, step_seed,
};
use bertvision_shaders::ops::dropout::StepKey;

#[derive(Debug, Clone)]
pub struct LoopSpec {
    pub name: String,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub batch_size: usize,
    pub epochs: f64,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    pub checkpoint_every: usize,
    /// Resumable state (model + optimizer + position).
    pub checkpoint: PathBuf,
    /// Model snapshots to keep: after `step` optimizer steps, write the module to `path`.
    pub milestones: Vec<(usize, PathBuf)>,
    /// The metrics log and this phase's name in it (`None`: no log).
    pub log: Option<(PathBuf, String)>,
    /// Steps after which `after_step` evaluates: the step losses are read before it, so that
    /// the metrics log keeps its order (`step_losses`).
    pub evaluated_at: Vec<usize>,
}

impl LoopSpec {
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size.max(1))
    }

    pub fn total_steps(&self, n: usize) -> usize {
        ((self.epochs * self.steps_per_epoch(n) as f64).round() as usize).max(1)
    }
}

/// Training-loss summary, for "did it learn" checks and the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossCurve {
    pub steps: usize,
    /// Mean loss of the first and last tenth of the steps.
    pub first_tenth: f64,
    pub last_tenth: f64,
    /// Per-step losses.
    pub losses: Vec<f32>,
}

impl LossCurve {
    fn from_losses(losses: Vec<f32>) -> Self {
        let n = losses.len();
        let k = (n / 10).max(1).min(n.max(1));
        let mean = |s: &[f32]| {
            if s.is_empty() {
                f64::NAN
            } else {
                s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64
            }
        };
        LossCurve {
            steps: n,
            first_tenth: mean(&losses[..k.min(n)]),
            last_tenth: mean(&losses[n.saturating_sub(k)..]),
            losses,
        }
    }
}

/// Trains `model` on `n` samples; `loss_fn(model, indices)` computes one batch's loss. After
/// every step (and its milestone, if any) `after_step(step, seconds, model, progress)` sees the
/// model, `seconds` being the training time so far over every process, and says whether to go
/// on (false: stop early, as `--early-stop-patience` does). Resumes from
/// `spec.checkpoint` when it exists. Returns the model, the loss curve and the training seconds
/// (over every process).
pub fn train_loop<B, M, F, H>(
    model: M,
    spec: &LoopSpec,
    n: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
    mut loss_fn: F,
    after_step: H,
) -> Result<(M, LossCurve, f64)>
where
    B: OptimizerBackend,
    M: AutodiffModule<B>,
    F: FnMut(&M, &[usize]) -> Tensor<B, 1>,
    H: FnMut(usize, f64, &M, &mut dyn Progress) -> Result<bool>,
{
    let mut stepper = Stepper::Single(&mut loss_fn);
    run_loop(model, spec, n, device, progress, &mut stepper, after_step)
}

/// [`train_loop`] data-parallel over `set`'s peers (`train::parallel`), `devices` being this
/// machine's: `loss_fn(model, shard, device)` computes the loss of one peer's shard of the
/// batch on that peer's device. The same batches, schedule and checkpoints as on one device;
/// one device runs [`train_loop`]'s path.
#[allow(clippy::too_many_arguments)]
pub fn train_loop_on<B, M, H>(
    model: M,
    spec: &LoopSpec,
    n: usize,
    (set, devices): (&DeviceSet, &[B::Device]),
    progress: &mut dyn Progress,
    loss_fn: &ShardLoss<'_, B, M>,
    after_step: H,
) -> Result<(M, LossCurve, f64)>
where
    B: OptimizerBackend,
    M: AutodiffModule<B>,
    H: FnMut(usize, f64, &M, &mut dyn Progress) -> Result<bool>,
{
    let main = &devices[0];
    if !set.is_parallel() {
        let whole = |model: &M, batch: &[usize]| loss_fn(model, &Shard::whole(batch), main);
        return train_loop(model, spec, n, main, progress, whole, after_step);
    }
    #[cfg(target_arch = "wasm32")]
    return Err(crate::error::Error::usage(
        "data-parallel training needs threads: not in the browser",
    ));
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::scope(|scope| {
        let mut group = PeerGroup::start(scope, set, devices, &model, spec.optimizer, loss_fn)?;
        let nodes = set.cluster.as_ref().map_or(String::new(), |c| {
            format!(" ({} here, node {} of {})", set.peers(), c.node, c.nodes)
        });
        let bytes = group.bytes_per_step() as f64;
        let size = match bytes < 1e6 {
            true => format!("{:.1} KB", bytes / 1e3),
            false => format!("{:.1} MB", bytes / 1e6),
        };
        progress.log(&format!(
            "{}: data-parallel over {} peers{nodes}, {size} of gradients all-reduced per step",
            spec.name,
            group.peers(),
        ));
        let mut stepper = Stepper::Group(&mut group);
        let trained = run_loop(model, spec, n, main, progress, &mut stepper, after_step);
        group.finish();
        trained
    })
}

/// How a step's gradient is made: on one device from the whole batch, or by a peer group.
enum Stepper<'s, 'f, B: OptimizerBackend, M: AutodiffModule<B>> {
    Single(&'s mut dyn FnMut(&M, &[usize]) -> Tensor<B, 1>),
    #[cfg(not(target_arch = "wasm32"))]
    Group(&'s mut PeerGroup<'f, B, M>),
    #[cfg(target_arch = "wasm32")]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'f M>),
}

impl<'f, B: OptimizerBackend, M: AutodiffModule<B> + 'f> Stepper<'_, 'f, B, M> {
    /// One optimizer step on `batch`; the model and the batch's loss, left on the device.
    fn step(
        &mut self,
        model: M,
        optimizer: &mut TrainOptimizer<B, M>,
        batch: &[usize],
        (seed, lr): (u64, f64),
        device: &B::Device,
    ) -> Result<(M, Tensor<B::InnerBackend, 1>)> {
        match self {
            Stepper::Single(loss_fn) => {
                B::seed(device, seed);
                // Dropout masks keyed by the step (`DropoutOps`): those of any peer count.
                let _key = StepKey::enter(seed, 0);
                let loss = loss_fn(&model, batch);
                let value = loss.clone().inner().reshape([1]);
                Ok((optimizer.step(lr, model, loss).0, value))
            }
            #[cfg(not(target_arch = "wasm32"))]
            Stepper::Group(group) => group.step(model, optimizer, batch, seed, lr),
            #[cfg(target_arch = "wasm32")]
            Stepper::Never(_) => unreachable!(),
        }
    }

    /// Continue from these checkpoint bytes, exactly as a resumed run would: tensors rebuilt
    /// from a record can differ in memory layout, and so in float rounding (every peer too).
    /// `position`: samples, total steps and the step reached, which every machine's peers
    /// compare.
    fn reload(
        &mut self,
        model: M,
        (model_bytes, optimizer_bytes): (Vec<u8>, Vec<u8>),
        spec: &LoopSpec,
        position: (usize, usize, usize),
        device: &B::Device,
    ) -> Result<(M, TrainOptimizer<B, M>)> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Stepper::Group(group) => {
                let bytes = (model_bytes, optimizer_bytes);
                group.sync(model, bytes, &spec.name, position)
            }
            _ => {
                // One device: nobody to compare the position with.
                let _ = position;
                let bytes = (model_bytes.as_slice(), optimizer_bytes.as_slice());
                TrainOptimizer::restore(model, bytes, spec.optimizer, device, &spec.checkpoint)
            }
        }
    }

    fn is_group(&self) -> bool {
        !matches!(self, Stepper::Single(_))
    }
}

/// The loop itself, whoever makes the gradients.
fn run_loop<B, M, H>(
    mut model: M,
    spec: &LoopSpec,
    n: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
    stepper: &mut Stepper<'_, '_, B, M>,
    mut after_step: H,
) -> Result<(M, LossCurve, f64)>
where
    B: OptimizerBackend,
    M: AutodiffModule<B>,
    H: FnMut(usize, f64, &M, &mut dyn Progress) -> Result<bool>,
{
    let per_epoch = spec.steps_per_epoch(n);
    let total = spec.total_steps(n);
    let warmup = (spec.warmup_ratio * total as f64).round() as usize;
    let mut losses: Vec<f32> = Vec::with_capacity(total);
    let mut step = 0;
    let mut seconds_before = 0.0;
    let mut optimizer;
    match Checkpoint::load(&spec.checkpoint)? {
        None => optimizer = TrainOptimizer::<B, M>::new(&model, spec.optimizer),
        Some(ckpt) => {
            let bytes = (ckpt.model.as_slice(), ckpt.optimizer.as_slice());
            (model, optimizer) =
                TrainOptimizer::restore(model, bytes, spec.optimizer, device, &spec.checkpoint)?;
            step = ckpt.position.step;
            seconds_before = ckpt.position.seconds;
            let losses_path = spec.checkpoint.with_extension("losses.json");
            if let Ok(text) = std::fs::read_to_string(&losses_path) {
                losses = serde_json::from_str(&text).unwrap_or_default();
                losses.truncate(step);
            }
            progress.log(&format!(
                "{}: resuming at step {step} of {total} from {}",
                spec.name,
                spec.checkpoint.display()
            ));
        }
    }
    if stepper.is_group() {
        // Every peer starts from peer 0's values (fresh or resumed), bit for bit.
        let bytes = (Checkpoint::module_bytes(&model)?, optimizer.to_bytes()?);
        (model, optimizer) = stepper.reload(model, bytes, spec, (n, total, step), device)?;
    }
    let log = match &spec.log {
        Some((path, phase)) => Some(super::metrics_log::MetricsLog::open(path, phase, step)?),
        None => None,
    };
    progress.start(&spec.name, total as u64, "steps");
    progress.set_position(step as u64);
    let started = Instant::now();
    let first_step = step;
    let mut waiting = StepLosses::<B::InnerBackend>::default();
    while step < total {
        let epoch = step / per_epoch;
        let in_epoch = step % per_epoch;
        let order = epoch_order(n, spec.seed, epoch);
        let indices = &order[in_epoch * spec.batch_size..((in_epoch + 1) * spec.batch_size).min(n)];
        let lr = linear_schedule(spec.lr, step, warmup, total);
        let key = (step_seed(spec.seed, step), lr);
        let (updated, loss) = stepper.step(model, &mut optimizer, indices, key, device)?;
        model = updated;
        step += 1;
        for (at, path) in &spec.milestones {
            if *at == step && !path.exists() {
                write_atomic(path, &Checkpoint::module_bytes(&model)?)?;
            }
        }
        let seconds = seconds_before + started.elapsed().as_secs_f64();
        let epoch = step as f64 / per_epoch as f64;
        waiting.push(
            StepRow {
                step,
                epoch,
                lr,
                seconds,
            },
            loss,
        );
        let checkpoint_now = step % spec.checkpoint_every.max(1) == 0 && step < total;
        if waiting.due() || checkpoint_now || spec.evaluated_at.contains(&step) {
            waiting.read(&mut losses, log.as_ref())?;
        }
        let rate = (step - first_step) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        progress.set_position(step as u64);
        let loss = waiting.latest().map_or("…".into(), |l| format!("{l:.4}"));
        progress.message(&format!("loss {loss} lr {lr:.2e} {rate:.1} steps/s"));
        if !after_step(step, seconds, &model, progress)? {
            break;
        }
        if checkpoint_now {
            let position = TrainPosition {
                step,
                total_steps: total,
                seconds,
            };
            let bytes = save(&spec.checkpoint, &model, &optimizer, position, &losses)?;
            (model, optimizer) = stepper.reload(model, bytes, spec, (n, total, step), device)?;
        }
    }
    waiting.read(&mut losses, log.as_ref())?;
    progress.finish();
    if let Some(scaler) = optimizer.loss_scaler() {
        progress.log(&format!(
            "{}: f16 loss scale {} at the end; {} of {total} steps skipped (gradient not finite)",
            spec.name, scaler.scale, scaler.skipped
        ));
    }
    let seconds = seconds_before + started.elapsed().as_secs_f64();
    Ok((model, LossCurve::from_losses(losses), seconds))
}

impl LoopSpec {
    /// Deletes the resumable checkpoint; call once the phase's outputs are written, so a kill
    /// in between still finds the checkpoint.
    pub fn discard_checkpoint(&self) {
        let _ = std::fs::remove_file(&self.checkpoint);
        let _ = std::fs::remove_file(self.checkpoint.with_extension("losses.json"));
    }
}

/// Writes the checkpoint; returns the model and optimizer bytes it holds.
fn save<B: OptimizerBackend, M: AutodiffModule<B>>(
    path: &std::path::Path,
    model: &M,
    optimizer: &TrainOptimizer<B, M>,
    position: TrainPosition,
    losses: &[f32],
) -> Result<(Vec<u8>, Vec<u8>)> {
    // Losses first: a checkpoint never points past the losses on disk.
    write_atomic(
        &path.with_extension("losses.json"),
        serde_json::to_string(losses).expect("floats").as_bytes(),
    )?;
    let checkpoint = Checkpoint {
        position,
        model: Checkpoint::module_bytes(model)?,
        optimizer: optimizer.to_bytes()?,
    };
    checkpoint.save(path)?;
    Ok((checkpoint.model, checkpoint.optimizer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::progress::NoProgress;
    use crate::pipeline::step_losses::{READ_EVERY_STEPS, reads_on_this_thread};
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;
    use burn::tensor::backend::Backend;

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        linear: Linear<B>,
    }

    /// Trains a 3 → 1 linear model on 40 rows, one row a step; the losses, the metrics log's
    /// lines without their clock, and how many times the losses were read.
    fn train(dir: &std::path::Path, evaluated_at: Vec<usize>) -> (Vec<f32>, Vec<String>, usize) {
        let device = Default::default();
        B::seed(&device, 5);
        let net = Net::<B> {
            linear: LinearConfig::new(3, 1).init(&device),
        };
        let x: Vec<f32> = (0..40 * 3)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let y: Vec<f32> = (0..40).map(|i| (i % 5) as f32 / 4.0).collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [40, 3]), &device);
        let y = Tensor::<B, 2>::from_data(TensorData::new(y, [40, 1]), &device);
        let log = dir.join("metrics.jsonl");
        let spec = LoopSpec {
            name: "test".into(),
            lr: 0.05,
            warmup_ratio: 0.0,
            batch_size: 1,
            epochs: 1.0,
            seed: 1,
            optimizer: OptimizerConfig::default(),
            checkpoint_every: 1000,
            checkpoint: dir.join("ckpt"),
            milestones: vec![],
            log: Some((log.clone(), "test".into())),
            evaluated_at,
        };
        let loss = |net: &Net<B>, rows: &[usize]| {
            let i = rows[0];
            let out = net.linear.forward(x.clone().narrow(0, i, 1));
            (out - y.clone().narrow(0, i, 1)).powi_scalar(2).mean()
        };
        let before = reads_on_this_thread();
        let (_, curve, _) = train_loop(
            net,
            &spec,
            40,
            &device,
            &mut NoProgress,
            loss,
            |_, _, _, _| Ok(true),
        )
        .unwrap();
        let reads = reads_on_this_thread() - before;
        let lines = std::fs::read_to_string(&log).unwrap();
        let lines = lines
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                v.to_string()
            })
            .collect();
        (curve.losses, lines, reads)
    }

    /// A step leaves its loss on the device: 40 steps read the losses twice (after step 32 and
    /// at the end), not 40 times, and log the same values in the same order as reading each
    /// step's loss at once (every step an evaluation point).
    #[test]
    fn the_step_losses_are_read_together_with_the_same_values() {
        let _rng = crate::lock_flex_rng();
        let dir = std::env::temp_dir().join(format!("bv-step-losses-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (deferred, deferred_log, reads) = train(&a, vec![]);
        let (each, each_log, each_reads) = train(&b, (1..=40).collect());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(READ_EVERY_STEPS, 32);
        assert_eq!(reads, 2, "40 steps, a read every 32 and one at the end");
        assert_eq!(each_reads, 40);
        assert_eq!(deferred.len(), 40);
        assert_eq!(deferred, each);
        assert_eq!(deferred_log.len(), 40);
        assert_eq!(deferred_log, each_log);
        assert!(
            deferred_log[39].contains("\"step\":40"),
            "{}",
            deferred_log[39]
        );
    }
}
