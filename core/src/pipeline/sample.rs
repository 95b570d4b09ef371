//! Shares of the training data, sampled as the original BERTVision did: random, seeded, without
//! replacement. The sample depends only on the seed, the fraction and the dataset (a hash of
//! its examples), and a larger fraction contains every smaller one: each is a prefix of one
//! seeded permutation.

use super::data::{Sample, Target};
use crate::train::SplitMix64;

/// FNV-1a over the examples' token ids, segment ids and targets: the dataset's identity, stable
/// across processes and Rust versions (std's hasher is not specified to be).
pub fn dataset_key(samples: &[Sample]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |value: u64| {
        for byte in value.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for s in samples {
        eat(s.encoded.ids.len() as u64);
        s.encoded.ids.iter().for_each(|&id| eat(u64::from(id)));
        s.encoded.type_ids.iter().for_each(|&t| eat(u64::from(t)));
        match s.target {
            Target::Class(c) => eat(c as u64),
            Target::Score(v) => eat(u64::from(v.to_bits())),
            Target::Span { start, end } => eat(((start as u64) << 32) | end as u64),
        }
    }
    hash
}

/// The indices (increasing) of the examples in the share `fraction` of `n` examples, at least
/// one; all of them for a fraction of 1.
pub fn fraction_indices(seed: u64, fraction: f64, n: usize, dataset: u64) -> Vec<usize> {
    if fraction >= 1.0 {
        return (0..n).collect();
    }
    let mut rng = SplitMix64::new(seed ^ dataset.rotate_left(17) ^ 0x5EED_F4AC_7105_0000);
    let mut order: Vec<usize> = (0..n).collect();
    // Fisher–Yates from the front, so the first k places are a uniform sample for every k.
    for i in 0..n.saturating_sub(1) {
        order.swap(i, i + rng.below(n - i));
    }
    let keep = ((fraction * n as f64).round() as usize).clamp(1.min(n), n);
    let mut sample = order[..keep].to_vec();
    sample.sort_unstable();
    sample
}

/// The examples of `samples` in the share `fraction` for `seed`.
pub fn fraction_of(samples: &[Sample], seed: u64, fraction: f64) -> Vec<Sample> {
    let indices = fraction_indices(seed, fraction, samples.len(), dataset_key(samples));
    indices.into_iter().map(|i| samples[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_seeded_nested_samples_without_replacement() {
        let (n, data) = (1000, 42);
        let small = fraction_indices(1, 0.1, n, data);
        let large = fraction_indices(1, 0.3, n, data);
        assert_eq!((small.len(), large.len()), (100, 300));
        assert!(small.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert!(small.iter().all(|i| large.contains(i)), "0.1 inside 0.3");
        assert_eq!(
            small,
            fraction_indices(1, 0.1, n, data),
            "same inputs, same sample"
        );
        assert_ne!(small, fraction_indices(2, 0.1, n, data), "another seed");
        assert_ne!(
            small,
            fraction_indices(1, 0.1, n, data + 1),
            "another dataset"
        );
        assert_ne!(small, (0..100).collect::<Vec<_>>(), "not the first N");
        assert_eq!(fraction_indices(1, 1.0, 5, data), vec![0, 1, 2, 3, 4]);
        assert_eq!(fraction_indices(1, 0.001, 5, data).len(), 1);
        assert!(fraction_indices(1, 0.5, 0, data).is_empty());
    }
}
