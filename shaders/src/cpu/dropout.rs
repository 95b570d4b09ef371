//! Dropout masks from a counter-based generator, filled in parallel.

use rayon::prelude::*;

use super::simd::CHUNK;

/// SplitMix64's output function: a well-spread 64-bit value for each input, so that hashing a
/// counter gives independent-looking bits per element.
#[inline(always)]
fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A dropout mask as a function of the element's index: element `i` is `scale = 1/keep` with
/// probability `keep`, else 0. Element `i` depends on `(seed, i)` alone (SplitMix64 run `i + 1`
/// steps from `seed`), so any part of the mask can be made, or made again, on any thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutStream {
    seed: u64,
    /// Index of the element `at(0)` gives: a shard of a batch reads its rows' part.
    first: u64,
    /// Keep when the top 32 bits fall below `keep·2³²`.
    threshold: u64,
    scale: f32,
}

impl DropoutStream {
    /// # Panics
    /// If `keep` is not in `(0, 1]`.
    pub fn new(seed: u64, keep: f64) -> Self {
        assert!(
            keep > 0.0 && keep <= 1.0,
            "dropout: keep probability {keep}"
        );
        DropoutStream {
            seed,
            first: 0,
            threshold: (keep * 4_294_967_296.0).round() as u64,
            scale: (1.0 / keep) as f32,
        }
    }

    /// The same mask read from its element `first` on: `at(i)` is the whole mask's `first + i`.
    pub fn starting_at(self, first: u64) -> Self {
        DropoutStream { first, ..self }
    }

    /// The mask's element `index` (from `first`): `1/keep` or 0.
    #[inline(always)]
    pub fn at(&self, index: u64) -> f32 {
        let index = self.first.wrapping_add(index);
        let state = self
            .seed
            .wrapping_add((index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if mix64(state) >> 32 < self.threshold {
            self.scale
        } else {
            0.0
        }
    }
}

/// The seed of dropout site `site` of a pass keyed by `seed` (data-parallel training's step
/// key): well spread for neighbouring sites.
pub fn site_seed(seed: u64, site: u64) -> u64 {
    mix64(seed ^ site.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

multiversion! {
    /// Elements `first..first + out.len()` of `stream`'s mask.
    fn dropout_mask_chunk(out: &mut [f32], first: u64, stream: DropoutStream) {
        for (i, v) in out.iter_mut().enumerate() {
            *v = stream.at(first + i as u64);
        }
    }
}

/// Dropout's keep mask, already scaled: element `i` is `1/keep` with probability `keep` and 0
/// otherwise, the values Burn's `Dropout` multiplies by (a Bernoulli draw, then `1/keep`);
/// [`DropoutStream`]'s elements `0..len`, filled in parallel chunks (the same whatever the
/// number of threads). Burn's Flex draws every element in turn from one ChaCha generator behind
/// a lock: under fine-tuning, the attention-probability masks (`[batch, heads, seq, seq]` per
/// layer) made that the largest single-threaded cost of a step (`docs/performance.md`).
///
/// # Panics
/// If `keep` is not in `(0, 1]`.
pub fn dropout_mask(len: usize, keep: f64, seed: u64, first: u64) -> Vec<f32> {
    let stream = DropoutStream::new(seed, keep).starting_at(first);
    let mut out = vec![0.0f32; len];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| dropout_mask_chunk(chunk, (c * CHUNK) as u64, stream));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask's values, its keep rate, independence of neighbouring elements, repeatability
    /// for a seed and a different mask for another seed.
    #[test]
    fn dropout_mask_keeps_the_asked_fraction() {
        let (len, keep) = (1_000_003, 0.9);
        let mask = dropout_mask(len, keep, 42, 0);
        let scale = (1.0 / keep) as f32;
        assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
        let kept: Vec<bool> = mask.iter().map(|&m| m != 0.0).collect();
        let rate = kept.iter().filter(|&&k| k).count() as f64 / len as f64;
        // The standard deviation of the rate is √(0.09/10⁶) = 3e-4.
        assert!((rate - keep).abs() < 2e-3, "kept {rate}, asked {keep}");
        let pairs = kept.windows(2).filter(|w| w[0] && w[1]).count() as f64 / (len - 1) as f64;
        assert!(
            (pairs - keep * keep).abs() < 3e-3,
            "both of a pair kept: {pairs}"
        );
        assert_eq!(mask, dropout_mask(len, keep, 42, 0));
        let other = dropout_mask(len, keep, 43, 0);
        let same = mask.iter().zip(&other).filter(|(a, b)| a == b).count() as f64 / len as f64;
        // Independent masks agree where both keep or both drop: 0.81 + 0.01.
        assert!((same - 0.82).abs() < 3e-3, "two seeds agree on {same}");
    }
}
