//! `bench --devices`: every row data-parallel, the way `run --devices` works. The global batch
//! (`--batch`) is cut into one contiguous shard per peer (`shard_ranges`, as `run` cuts it);
//! the training rows step a `PeerGroup` (each peer's shard loss, one all-reduce of one gradient
//! buffer, every peer's AdamW), the extraction rows run each peer's shard on its own thread.
//! A row's time is the whole step's, from peer 0's clock: the slowest peer and the all-reduce
//! included.

use anyhow::{Result, anyhow};
use bertvision_core::bert::{Bert, BertConfig, BertInput, EncoderKernels};
use bertvision_core::head::{AdapterPooler, AdapterPoolerConfig, HeadPath};
use bertvision_core::task_model::{BertTaskModel, head_loss};
use bertvision_core::train::parallel::PeerGroup;
use bertvision_core::train::shard::{ShardLoss, shard_ranges};
use bertvision_core::train::{Checkpoint, DeviceSet, OptimizerConfig, Shard, TrainOptimizer};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::{BenchArgs, Rows, Timing, input, targets, time_median};

/// The peers of `--devices` and the batch they share.
pub(super) struct Peers<'a, B: bertvision_core::TrainBackend> {
    pub set: &'a DeviceSet,
    pub devices: Vec<B::Device>,
    pub batch: usize,
    pub vocab: usize,
}

/// One peer's shard of the global batch: where it starts, its input on the peer's device.
struct ShardInput<B: Backend> {
    first: usize,
    device: B::Device,
    input: BertInput<B>,
}

impl<B: bertvision_core::TrainBackend> Peers<'_, B> {
    /// Every row `args` asks for at length `seq`.
    pub fn rows(
        &self,
        args: &BenchArgs,
        (bert, frozen, config): (&Bert<B>, &Bert<B::InnerBackend>, &BertConfig),
        head_config: &AdapterPoolerConfig,
        seq: usize,
        rows: &mut Rows,
    ) -> Result<()> {
        self.extraction_rows(args, frozen, seq, rows)?;
        if args.wants("finetune_step") {
            let bert = bert.clone().with_precision(args.precision);
            let model = BertTaskModel::new(bert, config, 2, false, &self.devices[0]);
            let inputs = self.shard_inputs::<B>(seq);
            let loss = |m: &BertTaskModel<B>, shard: &Shard<'_>, device: &B::Device| {
                let (_, out) = m.forward(shard_input(&inputs, shard).clone());
                head_loss(out, &targets(shard.indices.len(), device))
            };
            let optimizer = super::optimizer_for(args.precision);
            let timing = self.time_steps(args, model, &loss, (1e-5, optimizer))?;
            rows.record("finetune_step", seq, timing);
        }
        self.head_rows(args, frozen, head_config, seq, rows)
    }

    /// Each peer's shard of `--batch` at length `seq`, on its device (empty shards left out).
    fn shard_inputs<T: Backend<Device = B::Device>>(&self, seq: usize) -> Vec<ShardInput<T>> {
        let ranges = shard_ranges(self.batch, self.set.peers());
        let shards = ranges.into_iter().zip(&self.devices);
        shards
            .filter(|(range, _)| !range.is_empty())
            .map(|(range, device)| ShardInput {
                first: range.start,
                device: device.clone(),
                input: input::<T>(range.len(), seq, self.vocab, device),
            })
            .collect()
    }

    /// (a) extraction: each peer's shard through its copy of the frozen encoder, on its thread.
    fn extraction_rows(
        &self,
        args: &BenchArgs,
        frozen: &Bert<B::InnerBackend>,
        seq: usize,
        rows: &mut Rows,
    ) -> Result<()> {
        let inputs = self.shard_inputs::<B::InnerBackend>(seq);
        for (measure, kernels) in [
            ("extract", EncoderKernels::Burn),
            ("extract_fused_attention", EncoderKernels::Native),
        ] {
            if !args.wants(measure) {
                continue;
            }
            let copies: Vec<Bert<B::InnerBackend>> = inputs
                .iter()
                .map(|s| {
                    frozen
                        .clone()
                        .with_encoder_kernels(kernels)
                        .to_device(&s.device)
                })
                .collect();
            let warmup = args.warmup as usize;
            let timing =
                time_median::<B::InnerBackend>(&self.devices[0], warmup, args.repeats, || {
                    extract_on_threads(&copies, &inputs)
                })?;
            rows.record(measure, seq, timing);
        }
        Ok(())
    }

    /// (c) AdapterPooler steps: streamed from each peer's frozen encoder, and on hidden states
    /// each peer computed before.
    fn head_rows(
        &self,
        args: &BenchArgs,
        frozen: &Bert<B::InnerBackend>,
        head_config: &AdapterPoolerConfig,
        seq: usize,
        rows: &mut Rows,
    ) -> Result<()> {
        let inputs = self.shard_inputs::<B::InnerBackend>(seq);
        let encoders: Vec<Bert<B::InnerBackend>> = inputs
            .iter()
            .map(|s| frozen.clone().to_device(&s.device))
            .collect();
        let states = |at: usize| -> (Vec<Tensor<B, 3>>, Tensor<B, 2, Int>) {
            let x = inputs[at].input.clone();
            let mask = Tensor::from_inner(x.attention_mask.clone());
            let out = encoders[at].forward(x).hidden_states_f32();
            (out.into_iter().map(Tensor::from_inner).collect(), mask)
        };
        let place = |shard: &Shard<'_>| {
            let at = inputs.iter().position(|s| s.first == shard.first);
            at.expect("every non-empty shard has an input")
        };
        let head = head_config
            .init::<B>(&self.devices[0])
            .with_precision(args.precision);
        bertvision_core::train::initialize_now(&head);
        // The states each peer computed before, for the rows on ready states.
        let wants_ready = args.wants("head_step") || args.wants("head_step_fused");
        let ready: Vec<_> = match wants_ready {
            true => (0..inputs.len()).map(states).collect(),
            false => Vec::new(),
        };
        let step = |path, streamed: bool| {
            let ready = &ready;
            move |h: &AdapterPooler<B>, shard: &Shard<'_>, device: &B::Device| {
                let at = place(shard);
                let (states, mask) = match streamed {
                    true => states(at),
                    false => ready[at].clone(),
                };
                let out = h.forward_by(&states, mask, path);
                head_loss(out, &targets(shard.indices.len(), device))
            }
        };
        for (measure, path, streamed) in [
            ("head_step_streamed", HeadPath::Plain, true),
            ("head_step_streamed_fused", HeadPath::Fused, true),
            ("head_step", HeadPath::Plain, false),
            ("head_step_fused", HeadPath::Fused, false),
        ] {
            if args.wants(measure) {
                let optimizer = super::optimizer_for(args.precision);
                let timing =
                    self.time_steps(args, head.clone(), &step(path, streamed), (1e-3, optimizer))?;
                rows.record(measure, seq, timing);
            }
        }
        Ok(())
    }

    /// The time of one data-parallel optimizer step on the global batch: a group of peers
    /// started from `model`, stepped as `run` steps it.
    fn time_steps<M: AutodiffModule<B>>(
        &self,
        args: &BenchArgs,
        model: M,
        loss: &ShardLoss<'_, B, M>,
        (lr, config): (f64, OptimizerConfig),
    ) -> Result<Timing> {
        let batch: Vec<usize> = (0..self.batch).collect();
        let steps = args.warmup as usize + args.repeats;
        std::thread::scope(|scope| {
            let mut group = PeerGroup::start(scope, self.set, &self.devices, &model, config, loss)?;
            let bytes = (
                Checkpoint::module_bytes(&model)?,
                TrainOptimizer::new(&model, config).to_bytes()?,
            );
            let timed = group
                .sync(model, bytes, "bench", (self.batch, steps, 0))
                .map_err(anyhow::Error::from)
                .and_then(|(model, mut optimizer)| {
                    let mut model = Some(model);
                    let mut step = 0;
                    let warmup = args.warmup as usize;
                    time_median::<B>(&self.devices[0], warmup, args.repeats, || {
                        let m = model.take().expect("the model is put back after each step");
                        let (m, _) = group.step(m, &mut optimizer, &batch, step, lr)?;
                        (model, step) = (Some(m), step + 1);
                        Ok(())
                    })
                });
            group.finish();
            timed
        })
    }
}

/// The shard's input (`inputs` holds one per non-empty shard).
fn shard_input<'i, B: Backend>(inputs: &'i [ShardInput<B>], shard: &Shard<'_>) -> &'i BertInput<B> {
    let found = inputs.iter().find(|s| s.first == shard.first);
    &found.expect("every non-empty shard has an input").input
}

/// Every peer's encoder over its shard, each on its thread, each device synchronised.
fn extract_on_threads<B: bertvision_core::KernelBackend>(
    copies: &[Bert<B>],
    inputs: &[ShardInput<B>],
) -> Result<()> {
    let run = |bert: &Bert<B>, shard: &ShardInput<B>| {
        drop(bert.forward(shard.input.clone()).hidden_states);
        B::sync(&shard.device).map_err(|e| anyhow!("device sync failed: {e:?}"))
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = copies
            .iter()
            .zip(inputs)
            .skip(1)
            .map(|(bert, shard)| scope.spawn(move || run(bert, shard)))
            .collect();
        let mine = run(&copies[0], &inputs[0]);
        for thread in others {
            thread
                .join()
                .map_err(|_| anyhow!("an extraction peer failed (see the panic above)"))??;
        }
        mine
    })
}
