//! What data-parallel training shares with the one-device path (and the browser build, which
//! has no threads): the devices asked for and how a global batch is cut into shards.

use std::ops::Range;

use burn::tensor::Tensor;
use burn::tensor::backend::{BackendTypes, DeviceId, DeviceOps};

/// The devices a command trains on: `--devices cuda:0,1,2,3` or `cpu:2`, on this machine and,
/// with a [`Cluster`], as many on each of the others. Empty: the one device the command was
/// given (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSet {
    /// Device indices of the backend's kind (for the CPU, `0..n`: `n` peers on one device).
    pub indices: Vec<u16>,
    /// The machines (processes) training together, each with these devices; `None`: this one.
    pub cluster: Option<Cluster>,
}

/// Several machines (or processes) training one model: `--node-id K --num-nodes N
/// --coordinator HOST:PORT`, the same command on each. Node 0 listens at the coordinator's
/// port; every other node connects to it (`cluster.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This node, `0..nodes`.
    pub node: u32,
    pub nodes: u32,
    /// Where node 0 listens: `host:port`.
    pub coordinator: String,
}

impl DeviceSet {
    pub fn single() -> Self {
        DeviceSet::default()
    }

    /// Number of peers on this machine (at least 1).
    pub fn peers(&self) -> usize {
        self.indices.len().max(1)
    }

    /// Number of peers over every machine: every node has as many as this one.
    pub fn world(&self) -> usize {
        self.peers() * self.cluster.as_ref().map_or(1, |c| c.nodes as usize)
    }

    /// The global rank of this machine's first peer: node `k`'s peers are ranks
    /// `k·peers .. (k+1)·peers`, so node 0's first peer is rank 0.
    pub fn first_rank(&self) -> usize {
        self.peers() * self.cluster.as_ref().map_or(0, |c| c.node as usize)
    }

    /// Whether a step needs a peer group (more than one peer anywhere).
    pub fn is_parallel(&self) -> bool {
        self.world() > 1
    }

    /// The peers' devices, of `main`'s kind; `main` itself when the set is empty.
    pub fn devices<D: DeviceOps>(&self, main: &D) -> Vec<D> {
        if self.indices.is_empty() {
            return vec![main.clone()];
        }
        let type_id = main.to_id().type_id;
        let device = |&index: &u16| D::from_id(DeviceId::new(type_id, index));
        self.indices.iter().map(device).collect()
    }
}

/// Contiguous shards of a batch of `len`, one per peer, sizes differing by at most one (the
/// first ones larger); a peer gets an empty shard when the batch is smaller than the group.
pub fn shard_ranges(len: usize, peers: usize) -> Vec<Range<usize>> {
    let (base, extra) = (len / peers, len % peers);
    let mut start = 0;
    (0..peers)
        .map(|p| {
            let size = base + usize::from(p < extra);
            let range = start..start + size;
            start += size;
            range
        })
        .collect()
}

/// One peer's part of a global batch.
#[derive(Debug, Clone, Copy)]
pub struct Shard<'a> {
    /// This peer's sample indices (a contiguous part of `batch`).
    pub indices: &'a [usize],
    /// The whole global batch: what padding and anything else batch-wide is decided from.
    pub batch: &'a [usize],
    /// Where `indices` starts in `batch`.
    pub first: usize,
}

impl<'a> Shard<'a> {
    pub fn whole(batch: &'a [usize]) -> Self {
        Shard {
            indices: batch,
            batch,
            first: 0,
        }
    }

    /// The shard's share of the batch: its loss (a mean over its samples) is weighted by it.
    pub fn weight(&self) -> f64 {
        self.indices.len() as f64 / self.batch.len().max(1) as f64
    }
}

/// A step's loss on one peer's shard, on that peer's device.
pub type ShardLoss<'f, B, M> =
    dyn Fn(&M, &Shard<'_>, &<B as BackendTypes>::Device) -> Tensor<B, 1> + Sync + 'f;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_with_sizes_within_one() {
        for (len, peers) in [(16, 2), (17, 2), (1, 2), (5, 3), (0, 2), (7, 1)] {
            let ranges = shard_ranges(len, peers);
            assert_eq!(ranges.len(), peers);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[peers - 1].end, len, "{len} over {peers}");
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(pair[0].len() >= pair[1].len() && pair[0].len() - pair[1].len() <= 1);
            }
        }
    }

    #[test]
    fn a_shard_weighs_its_share_of_the_batch() {
        let batch = [4, 8, 15, 16, 23];
        let shard = Shard {
            indices: &batch[3..],
            batch: &batch,
            first: 3,
        };
        assert_eq!(shard.weight(), 0.4);
        assert_eq!(Shard::whole(&batch).weight(), 1.0);
    }

    #[test]
    fn cpu_peers_share_the_one_cpu_device() {
        let main = burn::backend::flex::FlexDevice;
        assert_eq!(DeviceSet::single().devices(&main), vec![main]);
        let two = DeviceSet {
            indices: vec![0, 1],
            cluster: None,
        };
        assert_eq!((two.peers(), two.devices(&main).len()), (2, 2));
        assert_eq!((two.world(), two.first_rank()), (2, 0));
    }

    #[test]
    fn a_node_s_peers_follow_the_previous_nodes_ranks() {
        let cluster = Cluster {
            node: 2,
            nodes: 3,
            coordinator: "10.0.0.1:29500".into(),
        };
        let set = DeviceSet {
            indices: vec![0, 1, 2, 3],
            cluster: Some(cluster),
        };
        assert_eq!((set.peers(), set.world(), set.first_rank()), (4, 12, 8));
        assert!(set.is_parallel() && !DeviceSet::single().is_parallel());
    }
}
