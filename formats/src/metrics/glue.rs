//! GLUE metrics, matching scikit-learn (`accuracy_score`, `f1_score`, `matthews_corrcoef`) and
//! scipy (`pearsonr`, `spearmanr`) including their conventions for degenerate inputs.

/// Fraction of equal labels.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "prediction and label counts differ");
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

/// F1 of class `positive`; 0 when there are no true positives (scikit-learn's `zero_division`
/// default, which also warns).
pub fn f1_binary(pred: &[usize], gold: &[usize], positive: usize) -> f64 {
    assert_eq!(pred.len(), gold.len(), "prediction and label counts differ");
    let tp = pred
        .iter()
        .zip(gold)
        .filter(|(p, g)| **p == positive && **g == positive)
        .count() as f64;
    let fp = pred
        .iter()
        .zip(gold)
        .filter(|(p, g)| **p == positive && **g != positive)
        .count() as f64;
    let fn_ = pred
        .iter()
        .zip(gold)
        .filter(|(p, g)| **p != positive && **g == positive)
        .count() as f64;
    if tp == 0.0 {
        return 0.0;
    }
    2.0 * tp / (2.0 * tp + fp + fn_)
}

/// Matthews correlation coefficient, multi-class form (scikit-learn's); 0 when undefined.
pub fn matthews(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "prediction and label counts differ");
    let k = pred.iter().chain(gold).copied().max().map_or(0, |m| m + 1);
    let mut confusion = vec![vec![0f64; k]; k];
    for (&p, &g) in pred.iter().zip(gold) {
        confusion[g][p] += 1.0;
    }
    let t_sum: Vec<f64> = (0..k).map(|i| confusion[i].iter().sum()).collect(); // true counts
    let p_sum: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| confusion[i][j]).sum())
        .collect();
    let n_correct: f64 = (0..k).map(|i| confusion[i][i]).sum();
    let n: f64 = pred.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_ytyp = n_correct * n - dot(&t_sum, &p_sum);
    let cov_ypyp = n * n - dot(&p_sum, &p_sum);
    let cov_ytyt = n * n - dot(&t_sum, &t_sum);
    if cov_ypyp * cov_ytyt == 0.0 {
        return 0.0;
    }
    cov_ytyp / (cov_ytyt * cov_ypyp).sqrt()
}

/// Pearson's r; NaN when either input is constant (as scipy returns).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "prediction and label counts differ");
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman's rho: Pearson's r of the ranks, ties getting their average rank.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// 1-based ranks with ties averaged (scipy's `rankdata(method="average")`).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-computed cases; the scikit-learn/scipy fixtures are in tests/tests/glue_metrics.rs.
    #[test]
    fn hand_checked() {
        let gold = [1, 1, 0, 0, 1];
        let pred = [1, 0, 0, 1, 1];
        assert_eq!(accuracy(&pred, &gold), 0.6);
        // tp=2, fp=1, fn=1 -> 4/6
        assert!((f1_binary(&pred, &gold, 1) - 4.0 / 6.0).abs() < 1e-15);
        // (tp*tn - fp*fn)/sqrt(...) = (2*1 - 1*1)/sqrt(3*2*3*2) = 1/6
        assert!((matthews(&pred, &gold) - 1.0 / 6.0).abs() < 1e-15);
        assert_eq!(matthews(&[1, 1, 1], &[0, 1, 0]), 0.0);
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0]),
            vec![1.5, 3.0, 1.5, 4.0]
        );
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-15);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-15);
    }
}
