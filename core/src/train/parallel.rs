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
use burn::tensor::{Tensor, TensorPrimitive};

use bertvision_shaders::ops::dropout::StepKey;

use super::cluster::Agreement;
use super::shard::{DeviceSet, Shard, ShardLoss, shard_ranges};
use super::{OptimizerBackend, OptimizerConfig, TrainOptimizer};
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
    /// Compare where this peer is with every other peer's (several machines).
    Agree(Arc<Agreement>),
}

/// One peer's step: the weighted loss of its shard, its gradients summed with every peer's
/// (one all-reduce of one buffer, the weighted loss its last float), the optimizer step.
/// Returns the model and the batch's loss (every shard's), still on the device: nothing is read
/// back in a step. A shard whose loss panics still takes part in the all-reduce, with zeros, so
/// that the other peers are not left waiting; its error follows.
#[allow(clippy::too_many_arguments)]
fn peer_step<B: OptimizerBackend, M: AutodiffModule<B>>(
    (rank, set): (usize, &DeviceSet),
    device: &B::Device,
    model: M,
    optimizer: &mut TrainOptimizer<B, M>,
    layout: &GradientLayout,
    loss_fn: &ShardLoss<'_, B, M>,
    shard: &Shard<'_>,
    (seed, lr): (u64, f64),
) -> Result<(M, Tensor<B::InnerBackend, 1>)> {
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
            return (GradientsParams::new(), Tensor::zeros([1], device));
        }
        let loss = loss_fn(&model, shard, device).mul_scalar(shard.weight());
        let value = loss.clone().inner().reshape([1]);
        (optimizer.gradients(loss, &model), value)
    }));
    let failed = computed.is_err();
    let (mut grads, loss) = computed.unwrap_or_else(|_| {
        let nan = Tensor::<B::InnerBackend, 1>::from_floats([f32::NAN], device);
        (GradientsParams::new(), nan)
    });
    let flat = Tensor::cat(vec![layout.pack::<B>(&mut grads, device)?, loss], 0);
    let summed = sum_over_peers(rank, set, flat)?;
    if failed {
        return Err(Error::usage(format!(
            "rank {rank}: the loss of its shard failed (see the panic above)"
        )));
    }
    let n = layout.len();
    let batch_loss = summed.clone().narrow(0, n, 1);
    let grads = layout.unpack::<B>(summed.narrow(0, 0, n));
    let (model, _norm) = optimizer.step_with(lr, model, grads);
    Ok((model, batch_loss))
}

/// Continue from checkpoint bytes (model, optimizer), exactly as a resumed run would.
fn reload<B: OptimizerBackend, M: AutodiffModule<B>>(
    model: M,
    bytes: &(Vec<u8>, Vec<u8>),
    config: OptimizerConfig,
    device: &B::Device,
) -> Result<(M, TrainOptimizer<B, M>)> {
    let source = std::path::Path::new("the checkpoint peer 0 sent");
    TrainOptimizer::restore(model, (&bytes.0, &bytes.1), config, device, source)
}

/// The sum over every peer, here and on the other nodes, of each peer's `tensor`; every peer
/// of the group calls it with its rank. Within a node: burn-collective's all-reduce. Between
/// nodes: the link (`cluster.rs`), by the node's first peer, which then hands the total to its
/// node's other peers (a broadcast). A first peer whose link failed still broadcasts (its
/// node's sum), so that its other peers are not left waiting; its error follows, and ends the
/// run before anything is written.
fn sum_over_peers<B: Backend>(
    rank: usize,
    set: &DeviceSet,
    tensor: Tensor<B, 1>,
) -> Result<Tensor<B, 1>> {
    let failed = |what: &str, e: collective::CollectiveError| {
        Error::usage(format!(
            "rank {rank}: the {what} between the peers failed: {e:?}"
        ))
    };
    let float = |t: Tensor<B, 1>| t.into_primitive().tensor();
    let local = set.peers() > 1;
    let node_sum = if local {
        let summed = collective::all_reduce::<B>(rank.into(), float(tensor), ReduceOperation::Sum)
            .map_err(|e| failed("all-reduce", e))?;
        Tensor::from_primitive(TensorPrimitive::Float(summed))
    } else {
        tensor
    };
    if set.cluster.is_none() {
        return Ok(node_sum);
    }
    let (total, link_error) = if rank == set.first_rank() {
        match super::cluster::sum_over_nodes(node_sum.clone()) {
            Ok(total) => (Some(total), None),
            Err(e) => (Some(node_sum), Some(e)),
        }
    } else {
        (None, None)
    };
    let total = match total {
        Some(total) if !local => total,
        total => {
            let shared = collective::broadcast::<B>(rank.into(), total.map(float))
                .map_err(|e| failed("broadcast", e))?;
            Tensor::from_primitive(TensorPrimitive::Float(shared))
        }
    };
    link_error.map_or(Ok(total), Err)
}

/// Joins this machine's collective (a no-op for a node's only peer, which sums over the
/// nodes' link alone).
fn register<B: AutodiffBackend>(rank: usize, device: &B::Device, set: &DeviceSet) -> Result<()> {
    if set.peers() == 1 {
        return Ok(());
    }
    let config = CollectiveConfig::default().with_num_devices(set.peers());
    collective::register::<B::InnerBackend>(rank.into(), device.clone(), config)
        .map_err(|e| Error::usage(format!("rank {rank} could not join the collective: {e:?}")))
}

/// What a peer thread is given besides its work.
struct PeerSetup<'f, B: OptimizerBackend, M: AutodiffModule<B>> {
    rank: usize,
    device: B::Device,
    set: DeviceSet,
    config: OptimizerConfig,
    loss_fn: &'f ShardLoss<'f, B, M>,
}

/// A peer thread's life: join, then serve steps and reloads until peer 0 hangs up.
fn serve<B: OptimizerBackend, M: AutodiffModule<B>>(
    setup: PeerSetup<'_, B, M>,
    mut model: M,
    work: Receiver<Work>,
    replies: Sender<(usize, Result<()>)>,
) {
    let PeerSetup {
        rank,
        device,
        set,
        config,
        loss_fn,
    } = setup;
    let local = rank - set.first_rank();
    if let Err(e) = register::<B>(rank, &device, &set) {
        let _ = replies.send((local, Err(e)));
        return;
    }
    let mut optimizer = TrainOptimizer::<B, M>::new(&model, config);
    let mut layout = GradientLayout::of::<B, M>(&model);
    while let Ok(job) = work.recv() {
        let done = match job {
            Work::Reload(bytes) => reload(model, &bytes, config, &device).map(|(m, o)| {
                optimizer = o;
                layout = GradientLayout::of::<B, M>(&m);
                m
            }),
            Work::Agree(agreement) => agreement
                .check::<B::InnerBackend>(rank, &set, &device, |t| sum_over_peers(rank, &set, t))
                .map(|()| model),
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
                peer_step(
                    (rank, &set),
                    &device,
                    m,
                    o,
                    &layout,
                    loss_fn,
                    &shard,
                    (seed, lr),
                )
                .map(|(m, _)| m)
            }
        };
        match done {
            Ok(m) => {
                model = m;
                if replies.send((local, Ok(()))).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = replies.send((local, Err(e)));
                break;
            }
        }
    }
    let _ = collective::finish_collective::<B::InnerBackend>(rank.into());
}

fn gone() -> Error {
    Error::usage("a data-parallel peer stopped (its thread ended; see the error above)")
}

/// This machine's peers 1.. of a data-parallel group on their threads (inside a
/// `std::thread::scope`), and what its peer 0, the calling thread, does in a step.
pub struct PeerGroup<'f, B: OptimizerBackend, M: AutodiffModule<B>> {
    device: B::Device,
    set: DeviceSet,
    senders: Vec<Sender<Work>>,
    replies: Receiver<(usize, Result<()>)>,
    layout: GradientLayout,
    loss_fn: &'f ShardLoss<'f, B, M>,
    config: OptimizerConfig,
}

impl<'f, B: OptimizerBackend, M: AutodiffModule<B> + 'f> PeerGroup<'f, B, M> {
    /// Starts peers 1.. on `devices[1..]` (each with a copy of `model`'s structure; its values
    /// arrive with the first [`Self::sync`]); the calling thread is peer 0 on `devices[0]`.
    /// `set` says the ranks of these peers, and the other machines, if any.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        set: &DeviceSet,
        devices: &[B::Device],
        model: &M,
        config: OptimizerConfig,
        loss_fn: &'f ShardLoss<'f, B, M>,
    ) -> Result<Self>
    where
        'f: 'scope,
    {
        if let Some(cluster) = &set.cluster {
            super::cluster::connect(cluster, set.peers())?;
        }
        if set.peers() > 1 {
            collective::reset_collective::<B::InnerBackend>();
        }
        let layout = GradientLayout::of::<B, M>(model);
        let (reply_tx, replies) = channel();
        let mut senders = Vec::new();
        for (local, device) in devices.iter().enumerate().skip(1) {
            let (tx, rx) = channel();
            senders.push(tx);
            let setup = PeerSetup {
                rank: set.first_rank() + local,
                device: device.clone(),
                set: set.clone(),
                config,
                loss_fn,
            };
            let (model, reply_tx) = (model.clone(), reply_tx.clone());
            std::thread::Builder::new()
                .name(format!("peer-{local}"))
                .spawn_scoped(scope, move || serve(setup, model, rx, reply_tx))
                .map_err(|e| Error::usage(format!("could not start peer {local}'s thread: {e}")))?;
        }
        register::<B>(set.first_rank(), &devices[0], set)?;
        Ok(PeerGroup {
            device: devices[0].clone(),
            set: set.clone(),
            senders,
            replies,
            layout,
            loss_fn,
            config,
        })
    }

    /// Peers over every machine.
    pub fn peers(&self) -> usize {
        self.set.world()
    }

    /// Bytes every step all-reduces.
    pub fn bytes_per_step(&self) -> usize {
        self.layout.bytes() + 4
    }

    /// Every peer continues from this checkpoint (model and optimizer bytes): peer 0's copy is
    /// rebuilt from them too, so all hold the same values bit for bit. On several machines the
    /// peers then compare where they are (`position`: samples, total steps, step): an error if
    /// any differs.
    pub fn sync(
        &mut self,
        model: M,
        bytes: (Vec<u8>, Vec<u8>),
        phase: &str,
        position: (usize, usize, usize),
    ) -> Result<(M, TrainOptimizer<B, M>)> {
        let bytes = Arc::new(bytes);
        self.send_all(|| Work::Reload(bytes.clone()))?;
        let mine = reload(model, &bytes, self.config, &self.device);
        self.collect()?;
        let (model, optimizer) = mine?;
        // The loaded module's parameters carry the record's ids.
        self.layout = GradientLayout::of::<B, M>(&model);
        if self.set.cluster.is_some() {
            let agreement = Arc::new(Agreement::of(phase, position, &model));
            self.send_all(|| Work::Agree(agreement.clone()))?;
            let rank = self.set.first_rank();
            let set = &self.set;
            let sum = |t| sum_over_peers(rank, set, t);
            let mine = agreement.check::<B::InnerBackend>(rank, set, &self.device, sum);
            self.collect()?;
            mine?;
        }
        Ok((model, optimizer))
    }

    fn send_all(&self, job: impl Fn() -> Work) -> Result<()> {
        for tx in &self.senders {
            tx.send(job()).map_err(|_| gone())?;
        }
        Ok(())
    }

    /// One optimizer step on the global batch: this machine's peer 0's shard here, its other
    /// peers' on their threads (and the other machines' there). Returns peer 0's model and the
    /// batch's loss (the shards' weighted losses, summed by the all-reduce).
    pub fn step(
        &mut self,
        model: M,
        optimizer: &mut TrainOptimizer<B, M>,
        batch: &[usize],
        seed: u64,
        lr: f64,
    ) -> Result<(M, Tensor<B::InnerBackend, 1>)> {
        let ranges = shard_ranges(batch.len(), self.set.world());
        let first = self.set.first_rank();
        let mine = &ranges[first..first + self.set.peers()];
        let shared = Arc::new(batch.to_vec());
        for (tx, range) in self.senders.iter().zip(mine.iter().skip(1)) {
            let job = Work::Step {
                batch: shared.clone(),
                range: range.clone(),
                seed,
                lr,
            };
            tx.send(job).map_err(|_| gone())?;
        }
        let shard = Shard {
            indices: &batch[mine[0].clone()],
            batch,
            first: mine[0].start,
        };
        let stepped = peer_step(
            (first, &self.set),
            &self.device,
            model,
            optimizer,
            &self.layout,
            self.loss_fn,
            &shard,
            (seed, lr),
        );
        let others = self.collect();
        let stepped = stepped?;
        others?;
        Ok(stepped)
    }

    /// Every other peer's reply to the last job: the first error, if any.
    fn collect(&self) -> Result<()> {
        let mut failure = None;
        for _ in 0..self.senders.len() {
            let (_, reply) = self.replies.recv().map_err(|_| gone())?;
            if let Err(e) = reply {
                failure = failure.or(Some(e));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Hangs up on the peers (their threads end) and leaves the collective. The nodes' link
    /// stays open for the run's next phase.
    pub fn finish(self) {
        drop(self.senders);
        if self.set.peers() > 1 {
            let rank = self.set.first_rank();
            let _ = collective::finish_collective::<B::InnerBackend>(rank.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Checkpoint;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{ElementConversion, TensorData};

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
        let set = DeviceSet {
            indices: vec![0, 1, 2],
            cluster: None,
        };
        let (got, three) = std::thread::scope(|scope| {
            let mut group =
                PeerGroup::start(scope, &set, &devices, &fresh, config, &shard_loss).unwrap();
            let bytes = (
                Checkpoint::module_bytes(&fresh).unwrap(),
                TrainOptimizer::new(&fresh, config).to_bytes().unwrap(),
            );
            let (mut net, mut optimizer) =
                group.sync(fresh.clone(), bytes, "net", (7, 3, 0)).unwrap();
            let mut got = Vec::new();
            for (step, batch) in batches.iter().enumerate() {
                let (n, l) = group
                    .step(net, &mut optimizer, batch, step as u64, 0.05)
                    .unwrap();
                net = n;
                got.push(l.into_scalar().elem::<f32>());
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
