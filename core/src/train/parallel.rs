//! Data-parallel training over several devices with burn-collective (issue #21).
//!
//! One peer per device, each on its own thread (peer 0 is the calling thread, which also writes
//! every checkpoint and log). Every peer holds the same parameters and the same optimizer state.
//! At each step the global batch (the same indices as on one device) is cut into contiguous
//! shards, one per peer; each peer computes its shard's loss weighted by the shard's share of the
//! batch, so that the weighted gradients sum to the gradient of the batch's mean loss; the
//! gradients of every parameter are packed into one flat buffer and summed by one all-reduce;
//! then every peer clips and steps its own copy of AdamW on the same sum. The data order, the
//! schedule and the checkpoints do not depend on the number of peers, so a run resumes on any
//! number of them.
//!
//! Where to look: `shard.rs` (what `--devices` asks for, how a batch is cut),
//! [`GradientLayout`] (the one buffer), [`PeerGroup`] (the threads and the protocol of a step).

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use burn::collective::{self, CollectiveConfig, ReduceOperation};
use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};

use bertvision_shaders::ops::dropout::StepKey;

use super::shard::{Shard, ShardLoss, shard_ranges};
use super::{OptimizerConfig, TrainOptimizer};
use crate::error::{Error, Result};

/// Every float parameter's id and shape in the module's order: where its gradient sits in the
/// flat buffer one all-reduce sums.
#[derive(Debug, Clone)]
pub struct GradientLayout {
    entries: Vec<(ParamId, Vec<usize>)>,
}

struct ShapeLister(Vec<(ParamId, Vec<usize>)>);

impl<B: Backend> ModuleVisitor<B> for ShapeLister {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, param.val().dims().to_vec()));
    }
}

impl GradientLayout {
    pub fn of<B: Backend, M: burn::module::Module<B>>(module: &M) -> Self {
        let mut lister = ShapeLister(Vec::new());
        module.visit(&mut lister);
        GradientLayout { entries: lister.0 }
    }

    /// Floats in the buffer.
    pub fn len(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes one step all-reduces (f32).
    pub fn bytes(&self) -> usize {
        4 * self.len()
    }

    /// The gradients as one flat buffer; a parameter without a gradient (or a peer without
    /// samples) contributes zeros. A gradient left over is an error: the layout is of other
    /// parameters (a layout must be made again whenever the module is loaded from a record,
    /// which gives its parameters the record's ids).
    pub fn pack<B: AutodiffBackend>(
        &self,
        grads: &mut GradientsParams,
        device: &B::Device,
    ) -> Result<Tensor<B::InnerBackend, 1>> {
        let parts: Vec<Tensor<B::InnerBackend, 1>> = self
            .entries
            .iter()
            .map(|(id, shape)| {
                let numel = shape.iter().product::<usize>();
                macro_rules! flat {
                    ($d:literal) => {
                        grads
                            .remove::<B::InnerBackend, $d>(*id)
                            .map(|g| g.reshape([numel]))
                    };
                }
                by_rank!(shape.len(), flat).unwrap_or_else(|| Tensor::zeros([numel], device))
            })
            .collect();
        if !grads.is_empty() {
            return Err(Error::usage(format!(
                "{} gradients have no place in the all-reduce buffer (its layout is of other parameters)",
                grads.len()
            )));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// The flat buffer back into gradients, one per parameter.
    pub fn unpack<B: AutodiffBackend>(&self, flat: Tensor<B::InnerBackend, 1>) -> GradientsParams {
        let mut grads = GradientsParams::new();
        let mut offset = 0;
        for (id, shape) in &self.entries {
            let numel = shape.iter().product::<usize>();
            let part = flat.clone().narrow(0, offset, numel);
            offset += numel;
            macro_rules! put {
                ($d:literal) => {{
                    let dims: [usize; $d] = shape.as_slice().try_into().expect("rank checked");
                    grads.register::<B::InnerBackend, $d>(*id, part.reshape(dims));
                }};
            }
            by_rank!(shape.len(), put);
        }
        grads
    }
}

/// Work for a peer thread.
enum Work {
    /// One optimizer step on `batch` (the global batch), this peer taking `range` of it.
    Step {
        batch: Arc<Vec<usize>>,
        range: Range<usize>,
        seed: u64,
        lr: f64,
    },
    /// Continue from these checkpoint bytes (model, optimizer), as peer 0 does after writing one.
    Reload(Arc<(Vec<u8>, Vec<u8>)>),
}

/// One peer's step: the weighted loss of its shard, its gradients summed with every peer's
/// (one all-reduce of one buffer), the optimizer step. Returns the model and the shard's
/// weighted loss (0 for an empty shard). A shard whose loss panics still takes part in the
/// all-reduce, with zeros, so that the other peers are not left waiting; its error follows.
#[allow(clippy::too_many_arguments)]
fn peer_step<B: AutodiffBackend, M: AutodiffModule<B>>(
    id: usize,
    device: &B::Device,
    model: M,
    optimizer: &mut TrainOptimizer<B, M>,
    layout: &GradientLayout,
    loss_fn: &ShardLoss<'_, B, M>,
    shard: &Shard<'_>,
    (seed, lr): (u64, f64),
) -> Result<(M, f32)> {
    // Backends without a keyed mask (CubeCL) draw dropout from their generator: each shard
    // from its own stream, not the same masks on every peer (the first shard's is one device's).
    B::seed(
        device,
        seed ^ (shard.first as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let computed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The shard's rows of the batch's dropout masks (`DropoutOps`).
        let _key = StepKey::enter(seed, shard.first as u64);
        if shard.indices.is_empty() {
            return (GradientsParams::new(), 0.0);
        }
        let loss = loss_fn(&model, shard, device).mul_scalar(shard.weight());
        let value: f32 = loss.clone().into_scalar().elem();
        (GradientsParams::from_grads(loss.backward(), &model), value)
    }));
    let failed = computed.is_err();
    let (mut grads, loss) = computed.unwrap_or_else(|_| (GradientsParams::new(), f32::NAN));
    let flat = layout.pack::<B>(&mut grads, device)?;
    let summed = collective::all_reduce::<B::InnerBackend>(
        id.into(),
        flat.into_primitive().tensor(),
        ReduceOperation::Sum,
    )
    .map_err(|e| {
        Error::usage(format!(
            "peer {id}: the all-reduce of the gradients failed: {e:?}"
        ))
    })?;
    if failed {
        return Err(Error::usage(format!(
            "peer {id}: the loss of its shard failed (see the panic above)"
        )));
    }
    let grads = layout.unpack::<B>(Tensor::from_primitive(TensorPrimitive::Float(summed)));
    let (model, _norm) = optimizer.step_with(lr, model, grads);
    Ok((model, loss))
}

/// Continue from checkpoint bytes (model, optimizer), exactly as a resumed run would.
fn reload<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: M,
    bytes: &(Vec<u8>, Vec<u8>),
    config: OptimizerConfig,
    device: &B::Device,
) -> Result<(M, TrainOptimizer<B, M>)> {
    let source = std::path::Path::new("the checkpoint peer 0 sent");
    TrainOptimizer::restore(model, (&bytes.0, &bytes.1), config, device, source)
}

fn register<B: AutodiffBackend>(id: usize, device: &B::Device, peers: usize) -> Result<()> {
    let config = CollectiveConfig::default().with_num_devices(peers);
    collective::register::<B::InnerBackend>(id.into(), device.clone(), config)
        .map_err(|e| Error::usage(format!("peer {id} could not join the collective: {e:?}")))
}

/// A peer thread's life: join, then serve steps and reloads until peer 0 hangs up.
#[allow(clippy::too_many_arguments)]
fn serve<B: AutodiffBackend, M: AutodiffModule<B>>(
    id: usize,
    device: B::Device,
    mut model: M,
    config: OptimizerConfig,
    loss_fn: &ShardLoss<'_, B, M>,
    peers: usize,
    work: Receiver<Work>,
    replies: Sender<(usize, Result<f32>)>,
) {
    if let Err(e) = register::<B>(id, &device, peers) {
        let _ = replies.send((id, Err(e)));
        return;
    }
    let mut optimizer = TrainOptimizer::<B, M>::new(&model, config);
    let mut layout = GradientLayout::of::<B, M>(&model);
    while let Ok(job) = work.recv() {
        let done = match job {
            Work::Reload(bytes) => {
                reload(model, &bytes, config, &device).map(|(m, o)| (m, Some(o), 0.0))
            }
            Work::Step {
                batch,
                range,
                seed,
                lr,
            } => {
                let shard = Shard {
                    indices: &batch[range.clone()],
                    batch: &batch,
                    first: range.start,
                };
                let (m, o) = (model, &mut optimizer);
                peer_step(id, &device, m, o, &layout, loss_fn, &shard, (seed, lr))
                    .map(|(m, loss)| (m, None, loss))
            }
        };
        match done {
            Ok((m, reloaded, loss)) => {
                if let Some(o) = reloaded {
                    optimizer = o;
                    layout = GradientLayout::of::<B, M>(&m);
                }
                model = m;
                if replies.send((id, Ok(loss))).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = replies.send((id, Err(e)));
                break;
            }
        }
    }
    let _ = collective::finish_collective::<B::InnerBackend>(id.into());
}

fn gone() -> Error {
    Error::usage("a data-parallel peer stopped (its thread ended; see the error above)")
}

/// Peers 1.. of a data-parallel group on their threads (inside a `std::thread::scope`), and
/// what peer 0, the calling thread, does in a step.
pub struct PeerGroup<'f, B: AutodiffBackend, M: AutodiffModule<B>> {
    device: B::Device,
    senders: Vec<Sender<Work>>,
    replies: Receiver<(usize, Result<f32>)>,
    layout: GradientLayout,
    loss_fn: &'f ShardLoss<'f, B, M>,
    config: OptimizerConfig,
}

impl<'f, B: AutodiffBackend, M: AutodiffModule<B> + 'f> PeerGroup<'f, B, M> {
    /// Starts peers 1.. on `devices[1..]` (each with a copy of `model`'s structure; its values
    /// arrive with the first [`Self::sync`]); the calling thread is peer 0 on `devices[0]`.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        devices: &[B::Device],
        model: &M,
        config: OptimizerConfig,
        loss_fn: &'f ShardLoss<'f, B, M>,
    ) -> Result<Self>
    where
        'f: 'scope,
    {
        let peers = devices.len();
        collective::reset_collective::<B::InnerBackend>();
        let layout = GradientLayout::of::<B, M>(model);
        let (reply_tx, replies) = channel();
        let mut senders = Vec::new();
        for (id, device) in devices.iter().enumerate().skip(1) {
            let (tx, rx) = channel();
            senders.push(tx);
            let (device, model, reply_tx) = (device.clone(), model.clone(), reply_tx.clone());
            std::thread::Builder::new()
                .name(format!("peer-{id}"))
                .spawn_scoped(scope, move || {
                    serve(id, device, model, config, loss_fn, peers, rx, reply_tx)
                })
                .map_err(|e| Error::usage(format!("could not start peer {id}'s thread: {e}")))?;
        }
        register::<B>(0, &devices[0], peers)?;
        Ok(PeerGroup {
            device: devices[0].clone(),
            senders,
            replies,
            layout,
            loss_fn,
            config,
        })
    }

    pub fn peers(&self) -> usize {
        self.senders.len() + 1
    }

    /// Bytes every step all-reduces.
    pub fn bytes_per_step(&self) -> usize {
        self.layout.bytes()
    }

    /// Every peer continues from this checkpoint (model and optimizer bytes): peer 0's copy is
    /// rebuilt from them too, so all hold the same values bit for bit.
    pub fn sync(
        &mut self,
        model: M,
        bytes: (Vec<u8>, Vec<u8>),
    ) -> Result<(M, TrainOptimizer<B, M>)> {
        let bytes = Arc::new(bytes);
        for tx in &self.senders {
            tx.send(Work::Reload(bytes.clone())).map_err(|_| gone())?;
        }
        let mine = reload(model, &bytes, self.config, &self.device);
        self.collect()?;
        let (model, optimizer) = mine?;
        // The loaded module's parameters carry the record's ids.
        self.layout = GradientLayout::of::<B, M>(&model);
        Ok((model, optimizer))
    }

    /// One optimizer step on the global batch: peer 0's shard here, the others' on their
    /// threads. Returns peer 0's model and the batch's loss (the shards' weighted losses,
    /// summed in peer order).
    pub fn step(
        &mut self,
        model: M,
        optimizer: &mut TrainOptimizer<B, M>,
        batch: &[usize],
        seed: u64,
        lr: f64,
    ) -> Result<(M, f32)> {
        let ranges = shard_ranges(batch.len(), self.peers());
        let shared = Arc::new(batch.to_vec());
        for (tx, range) in self.senders.iter().zip(ranges.iter().skip(1)) {
            let job = Work::Step {
                batch: shared.clone(),
                range: range.clone(),
                seed,
                lr,
            };
            tx.send(job).map_err(|_| gone())?;
        }
        let shard = Shard {
            indices: &batch[ranges[0].clone()],
            batch,
            first: 0,
        };
        let mine = peer_step(
            0,
            &self.device,
            model,
            optimizer,
            &self.layout,
            self.loss_fn,
            &shard,
            (seed, lr),
        );
        let others = self.collect();
        let (model, first) = mine?;
        Ok((
            model,
            others?.into_iter().fold(first, |sum, loss| sum + loss),
        ))
    }

    /// Every other peer's reply to the last job, in peer order.
    fn collect(&self) -> Result<Vec<f32>> {
        let mut losses = vec![0.0; self.senders.len()];
        let mut failure = None;
        for _ in 0..self.senders.len() {
            let (id, reply) = self.replies.recv().map_err(|_| gone())?;
            match reply {
                Ok(loss) => losses[id - 1] = loss,
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        failure.map_or(Ok(losses), Err)
    }

    /// Hangs up on the peers (their threads end) and leaves the collective.
    pub fn finish(self) {
        drop(self.senders);
        let _ = collective::finish_collective::<B::InnerBackend>(0.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Checkpoint;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        first: Linear<B>,
        second: Linear<B>,
    }

    fn data(
        device: &<B as burn::tensor::backend::BackendTypes>::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let x: Vec<f32> = (0..7 * 3)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let y: Vec<f32> = (0..7).map(|i| (i as f32 - 3.0) / 2.0).collect();
        (
            Tensor::from_data(TensorData::new(x, [7, 3]), device),
            Tensor::from_data(TensorData::new(y, [7, 1]), device),
        )
    }

    /// The mean squared error of the rows `indices`.
    fn loss(
        net: &Net<B>,
        indices: &[usize],
        device: &<B as burn::tensor::backend::BackendTypes>::Device,
    ) -> Tensor<B, 1> {
        let (x, y) = data(device);
        let rows = Tensor::<B, 1, burn::tensor::Int>::from_data(
            TensorData::new(
                indices.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [indices.len()],
            ),
            device,
        );
        let out = net
            .second
            .forward(net.first.forward(x.select(0, rows.clone())).tanh());
        (out - y.select(0, rows)).powi_scalar(2).mean()
    }

    #[test]
    fn the_gradient_buffer_round_trips() {
        let device = Default::default();
        let net = Net::<B> {
            first: LinearConfig::new(3, 4).init(&device),
            second: LinearConfig::new(4, 1).init(&device),
        };
        let layout = GradientLayout::of::<B, _>(&net);
        assert_eq!(layout.len(), 3 * 4 + 4 + 4 + 1);
        let mut grads =
            GradientsParams::from_grads(loss(&net, &[0, 1, 2], &device).backward(), &net);
        let want = grads
            .get::<Flex, 2>(net.first.weight.id)
            .unwrap()
            .into_data();
        let flat = layout.pack::<B>(&mut grads, &device).unwrap();
        assert_eq!(flat.dims(), [layout.len()]);
        let back = layout.unpack::<B>(flat);
        assert_eq!(
            back.get::<Flex, 2>(net.first.weight.id)
                .unwrap()
                .into_data(),
            want
        );
        // A layout of other parameters (e.g. made before the module was loaded from a record)
        // is refused, not packed as zeros.
        let other = Net::<B> {
            first: LinearConfig::new(3, 4).init(&device),
            second: LinearConfig::new(4, 1).init(&device),
        };
        let mut grads =
            GradientsParams::from_grads(loss(&net, &[0, 1, 2], &device).backward(), &net);
        let stale = GradientLayout::of::<B, _>(&other);
        assert!(stale.pack::<B>(&mut grads, &device).is_err());
    }

    /// Three peers (one with an empty shard at the last batch) take the same steps as one
    /// device: the same losses and parameters up to float rounding.
    #[test]
    fn three_peers_step_as_one_device() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        B::seed(&device, 3);
        let fresh = Net::<B> {
            first: LinearConfig::new(3, 4).init(&device),
            second: LinearConfig::new(4, 1).init(&device),
        };
        crate::train::initialize_now(&fresh);
        let config = OptimizerConfig::default();
        let batches: [&[usize]; 3] = [&[0, 1, 2, 3, 4], &[5, 6, 0, 2], &[3]];
        let mut one = fresh.clone();
        let mut optimizer = TrainOptimizer::new(&one, config);
        let mut want = Vec::new();
        for batch in batches {
            let l = loss(&one, batch, &device);
            want.push(l.clone().into_scalar().elem::<f32>());
            one = optimizer.step(0.05, one, l).0;
        }
        let shard_loss =
            |net: &Net<B>, shard: &Shard<'_>, device: &_| loss(net, shard.indices, device);
        let devices = vec![device; 3];
        let (got, three) = std::thread::scope(|scope| {
            let mut group = PeerGroup::start(scope, &devices, &fresh, config, &shard_loss).unwrap();
            let bytes = (
                Checkpoint::module_bytes(&fresh).unwrap(),
                TrainOptimizer::new(&fresh, config).to_bytes().unwrap(),
            );
            let (mut net, mut optimizer) = group.sync(fresh.clone(), bytes).unwrap();
            let mut got = Vec::new();
            for (step, batch) in batches.iter().enumerate() {
                let (n, l) = group
                    .step(net, &mut optimizer, batch, step as u64, 0.05)
                    .unwrap();
                net = n;
                got.push(l);
            }
            group.finish();
            (got, net)
        });
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "losses {got:?} vs {want:?}"
            );
        }
        let weights = |n: &Net<B>| n.second.weight.val().into_data().to_vec::<f32>().unwrap();
        for (g, w) in weights(&three).iter().zip(weights(&one)) {
            assert!(
                (g - w).abs() <= 1e-6,
                "weights {:?} vs {:?}",
                weights(&three),
                weights(&one)
            );
        }
    }
}
