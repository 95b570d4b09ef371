//! The validation split (`--validation-fraction`): a share of the training data held out of
//! fine-tuning and head training, so that search and checkpoint selection never look at dev
//! (dev stays the report). The split is stratified (by label for classification, by the score
//! rounded to an integer for regression, by article for SQuAD) and seeded by a fixed seed and
//! the dataset alone: every seed of a run and every trial of a search holds out the same
//! examples.

use super::data::{Sample, Target};
use super::sample::dataset_key;
use crate::train::SplitMix64;

/// The split's name in `results.json` (`[method]["validation"][metric]`).
pub const VALIDATION: &str = "validation";

/// Independent of the run's seeds: the split must not move between seeds or trials.
const SPLIT_SEED: u64 = 0x7A11_DA7E_5EED_0001;

/// The stratum an example is drawn in.
fn stratum(target: &Target) -> i64 {
    match *target {
        Target::Class(c) => c as i64,
        Target::Score(s) => s.round() as i64,
        Target::Span { .. } => 0,
    }
}

/// `k` of `items` drawn without replacement (Fisher–Yates from the front).
fn draw(items: &mut [usize], k: usize, rng: &mut SplitMix64) {
    let n = items.len();
    for i in 0..k.min(n.saturating_sub(1)) {
        items.swap(i, i + rng.below(n - i));
    }
}

/// The indices (increasing) of the examples held out for validation: the share `fraction` of
/// every stratum (rounded), at least one example, and never all of them.
pub fn validation_indices(samples: &[Sample], fraction: f64) -> Vec<usize> {
    let n = samples.len();
    if n < 2 || fraction <= 0.0 {
        return Vec::new();
    }
    let mut strata: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, s) in samples.iter().enumerate() {
        strata.entry(stratum(&s.target)).or_default().push(i);
    }
    let mut rng = SplitMix64::new(SPLIT_SEED ^ dataset_key(samples));
    let mut held = Vec::new();
    for members in strata.values_mut() {
        let k = (fraction * members.len() as f64).round() as usize;
        draw(members, k, &mut rng);
        held.extend_from_slice(&members[..k.min(members.len())]);
    }
    if held.is_empty() {
        let mut all: Vec<usize> = (0..n).collect();
        draw(&mut all, 1, &mut rng);
        held.push(all[0]);
    }
    held.truncate(n - 1);
    held.sort_unstable();
    held
}

/// Splits `samples` into (training, validation) by [`validation_indices`].
pub fn split_validation(samples: Vec<Sample>, fraction: f64) -> (Vec<Sample>, Vec<Sample>) {
    let held = validation_indices(&samples, fraction);
    let mut is_held = vec![false; samples.len()];
    held.iter().for_each(|&i| is_held[i] = true);
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (sample, held) in samples.into_iter().zip(is_held) {
        if held {
            validation.push(sample);
        } else {
            train.push(sample);
        }
    }
    (train, validation)
}

/// SQuAD: the articles (indices, increasing) held out of `n`, the share `fraction` rounded, at
/// least one and at most `n - 1`; seeded by the fixed seed and the article count and titles'
/// hash `key`.
pub fn validation_articles(n: usize, fraction: f64, key: u64) -> Vec<usize> {
    if n < 2 || fraction <= 0.0 {
        return Vec::new();
    }
    let k = ((fraction * n as f64).round() as usize).clamp(1, n - 1);
    let mut rng = SplitMix64::new(SPLIT_SEED ^ key.rotate_left(7));
    let mut order: Vec<usize> = (0..n).collect();
    draw(&mut order, k, &mut rng);
    let mut held = order[..k].to_vec();
    held.sort_unstable();
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::Encoded;

    fn sample(i: usize, target: Target) -> Sample {
        Sample {
            encoded: Encoded {
                ids: vec![101, 1000 + i as u32, 102],
                type_ids: vec![0; 3],
                offsets: vec![(0, 0); 3],
                sequence_ids: vec![None, Some(0), None],
                tokens: vec![String::new(); 3],
            },
            target,
        }
    }

    #[test]
    fn the_split_is_stratified_seeded_and_disjoint() {
        // 80 of class 0, 20 of class 1.
        let samples: Vec<Sample> = (0..100)
            .map(|i| sample(i, Target::Class(usize::from(i % 5 == 0))))
            .collect();
        let held = validation_indices(&samples, 0.1);
        assert_eq!(held.len(), 10);
        let ones = held.iter().filter(|&&i| i % 5 == 0).count();
        assert_eq!(ones, 2, "the classes' shares are kept");
        assert_eq!(held, validation_indices(&samples, 0.1), "same every time");
        assert_ne!(held, (0..10).collect::<Vec<_>>(), "not the first rows");
        let (train, validation) = split_validation(samples.clone(), 0.1);
        assert_eq!((train.len(), validation.len()), (90, 10));
        assert!(validation.iter().all(|v| !train.contains(v)), "disjoint");
        let scores: Vec<Sample> = (0..50)
            .map(|i| sample(i, Target::Score((i % 6) as f32 + 0.2)))
            .collect();
        assert!(!validation_indices(&scores, 0.2).is_empty());
        assert_eq!(validation_indices(&samples[..2], 0.01).len(), 1);
        assert!(validation_indices(&samples[..1], 0.5).is_empty());
    }

    #[test]
    fn articles_are_held_out_whole_and_never_all() {
        assert_eq!(validation_articles(22, 0.1, 9).len(), 2);
        assert_eq!(
            validation_articles(22, 0.1, 9),
            validation_articles(22, 0.1, 9)
        );
        assert_eq!(validation_articles(3, 0.9, 9).len(), 2);
        assert_eq!(validation_articles(3, 0.01, 9).len(), 1);
        assert!(validation_articles(1, 0.5, 9).is_empty());
    }
}
