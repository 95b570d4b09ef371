//! What every training loop here shares: AdamW with decoupled weight decay except on biases and
//! LayerNorm parameters, global gradient-norm clipping, a linear warm-up/decay schedule, a
//! seeded shuffle that a resumed run can replay, and atomic checkpoints of model + optimizer +
//! position.

/// `$mac!(D)` for a parameter of rank `$rank`, D a literal from 1 to 4: Burn's tensor ranks
/// are types, a parameter list holds them as numbers.
macro_rules! by_rank {
    ($rank:expr, $mac:ident) => {
        match $rank {
            1 => $mac!(1),
            2 => $mac!(2),
            3 => $mac!(3),
            4 => $mac!(4),
            // The models' parameters (BERT's, the heads') are of ranks 1 to 4: a new rank is a
            // programming error, never a property of the data.
            d => panic!("parameters of rank {d} are not used here"),
        }
    };
}

pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod cluster;
pub mod optimizer;
#[cfg(not(target_arch = "wasm32"))]
pub mod parallel;
pub mod shard;

pub use checkpoint::{Checkpoint, TrainPosition};
pub use optimizer::{LossScaler, OptimizerBackend, OptimizerConfig, TrainOptimizer};
pub use shard::{Cluster, DeviceSet, Shard};

/// Draws every lazily initialised parameter of `module` now. Burn initialises a fresh
/// parameter on its first read, from whatever state the backend's generator is in then; made
/// at once, a fresh head's values depend only on the seed set before it was built, not on
/// what first reads it (the first forward, or a data-parallel group copying it to its peers).
pub fn initialize_now<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(module: &M) {
    struct Touch;
    impl<B: burn::tensor::backend::Backend> burn::module::ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
        ) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps to `peak`,
/// then linear decay to 0 at `total` (Hugging Face's `get_linear_schedule_with_warmup`).
pub fn linear_schedule(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    peak * (remaining / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

/// SplitMix64: a tiny, portable generator, so a seed means the same order on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A deterministic permutation of `0..n` for (seed, epoch): the same on every run, so a resumed
/// run replays exactly the batches it had not seen.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// Seed for the backend's random numbers (dropout) at one step, so a resumed run draws the same
/// dropout masks as an uninterrupted one.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    SplitMix64::new(seed.wrapping_mul(31).wrapping_add(step as u64)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(linear_schedule(1.0, 0, 10, 100), 0.0);
        assert_eq!(linear_schedule(1.0, 5, 10, 100), 0.5);
        assert_eq!(linear_schedule(1.0, 10, 10, 100), 1.0);
        assert!((linear_schedule(1.0, 55, 10, 100) - 0.5).abs() < 1e-12);
        assert_eq!(linear_schedule(1.0, 100, 10, 100), 0.0);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 1, 0);
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
