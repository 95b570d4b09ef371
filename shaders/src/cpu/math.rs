//! Vectorisable `exp` and `erf`, and the masked softmax of one attention row.

use super::simd::LANES;

/// `e^x` for `x ≤ 88`, within 7.8e-8 relative of f64 `exp` on [−87, 0] (measured by the test
/// below; Cephes' `expf`: `2^n · e^r` with `n = round(x·log₂e)` and a degree-7 polynomial on
/// `|r| ≤ ln2/2`); exactly 0 below −87, so a masked score of −∞ gives a weight of 0.
/// Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a `round` call.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // ln 2 in two parts, so that n·ln2 is subtracted without losing r's low bits.
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * (r * r) + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { e * two_n }
}

/// `erf(x)` as a rational function of x (the minimax approximation XLA and Eigen use for f32),
/// evaluated in f64: the approximation is within 6.5e-8 of erf on [−4, 4], and f64 keeps the
/// evaluation from adding more (in f32 it reached 4.2e-7 near |x| = 3.6, where GELU's
/// `1 + erf` cancels). `|x| ≥ 4` gives ±1 to f32 precision.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = f64::from(x.clamp(-4.0, 4.0));
    let x2 = x * x;
    let numerator = ((((((-2.726_142_258_013_06e-10 * x2 + 2.770_681_424_959_02e-8) * x2
        - 2.101_024_020_825_08e-6)
        * x2
        - 5.692_506_394_623_46e-5)
        * x2
        - 7.349_906_303_268_55e-4)
        * x2
        - 2.954_599_808_540_25e-3)
        * x2
        - 1.609_603_332_624_15e-2)
        * x;
    let denominator = (((-1.456_607_184_649_96e-5 * x2 - 2.133_740_552_789_05e-4) * x2
        - 1.682_826_974_382_03e-3)
        * x2
        - 7.373_329_167_204_68e-3)
        * x2
        - 1.426_473_905_141_89e-2;
    (numerator / denominator) as f32
}

multiversion! {
    /// `row ← softmax(row + bias)` over one query's scores, where `bias` is 0 for real keys and −∞
    /// for padding (whose weights come out exactly 0).
    pub(super) fn softmax_row(row: &mut [f32], bias: &[f32]) {
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact_mut(LANES).zip(bias.chunks_exact(LANES));
        for (r, b) in &mut chunks {
            for i in 0..LANES {
                r[i] += b[i];
                max[i] = if r[i] > max[i] { r[i] } else { max[i] };
            }
        }
        let tail = row.len() - row.len() % LANES;
        for i in tail..row.len() {
            row[i] += bias[i];
            max[0] = if row[i] > max[0] { row[i] } else { max[0] };
        }
        let max = max.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if max == f32::NEG_INFINITY {
            // Every key is padding: no weights (what Flex's own attention does).
            row.fill(0.0);
            return;
        }
        let mut sum = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for r in &mut chunks {
            for i in 0..LANES {
                r[i] = exp(r[i] - max);
                sum[i] += r[i];
            }
        }
        for r in chunks.into_remainder() {
            *r = exp(*r - max);
            sum[0] += *r;
        }
        let inv = 1.0 / sum.iter().sum::<f32>();
        for r in row.iter_mut() {
            *r *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of the vectorisable `exp` over the range softmax uses (x − max ≤ 0).
    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        eprintln!("exp: worst relative error {worst:e}");
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    /// Absolute error of the rational `erf` against f64 erf (computed from its series/continued
    /// fraction through libm, which Flex's own GELU uses).
    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -6.0 + 12.0 * i as f32 / 200_000.0;
            let err = (erf(x) as f64 - libm::erf(x as f64)).abs();
            worst = worst.max(err);
        }
        eprintln!("erf: worst absolute error {worst:e}");
        assert!(worst < 2e-7, "worst absolute error {worst:e}");
    }

    #[test]
    fn softmax_row_masks_and_normalises() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let bias: Vec<f32> = (0..37)
            .map(|i| if i % 5 == 3 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let logits = row.clone();
        softmax_row(&mut row, &bias);
        let max = logits
            .iter()
            .zip(&bias)
            .filter(|(_, b)| b.is_finite())
            .map(|(l, _)| *l as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits
            .iter()
            .zip(&bias)
            .filter(|(_, b)| b.is_finite())
            .map(|(l, _)| (*l as f64 - max).exp())
            .sum();
        for ((p, l), b) in row.iter().zip(&logits).zip(&bias) {
            let want = if b.is_finite() {
                (*l as f64 - max).exp() / sum
            } else {
                0.0
            };
            assert!((*p as f64 - want).abs() < 1e-6, "{p} vs {want}");
        }
        let mut all_padding = vec![1.0f32; 5];
        softmax_row(&mut all_padding, &[f32::NEG_INFINITY; 5]);
        assert_eq!(all_padding, vec![0.0; 5]);
    }
}
