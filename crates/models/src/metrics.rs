//! Held-out evaluation: seeded stratified split, confusion matrix, precision/recall/F1, ROC AUC.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Binary confusion matrix (positive = class 1 = failure/anomaly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    pub fn from_predictions(y_true: &[usize], y_pred: &[bool]) -> Confusion {
        let mut c = Confusion::default();
        for (&t, &p) in y_true.iter().zip(y_pred) {
            match (t == 1, p) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }

    pub fn add(&mut self, o: &Confusion) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.tn += o.tn;
        self.fn_ += o.fn_;
    }

    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// `TP / (TP + (FP + FN) / 2)`, the SKAB formula (equal to 2PR/(P+R)).
    pub fn f1(&self) -> f64 {
        let d = self.tp as f64 + (self.fp + self.fn_) as f64 / 2.0;
        if d == 0.0 {
            0.0
        } else {
            self.tp as f64 / d
        }
    }
    /// False alarm rate FP / (FP + TN).
    pub fn far(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
    /// Missed alarm rate FN / (FN + TP).
    pub fn mar(&self) -> f64 {
        ratio(self.fn_, self.fn_ + self.tp)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Metrics stored with a model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub roc_auc: f64,
    pub confusion: Confusion,
    /// Score threshold the confusion matrix was computed at.
    pub threshold: f64,
    pub n: usize,
}

/// Metrics of `scores` (higher = more likely positive) against 0/1 labels at `threshold`
/// (positive when `score >= threshold`).
pub fn evaluate(y_true: &[usize], scores: &[f64], threshold: f64) -> Metrics {
    let pred: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
    let c = Confusion::from_predictions(y_true, &pred);
    Metrics {
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        roc_auc: roc_auc(y_true, scores),
        confusion: c,
        threshold,
        n: y_true.len(),
    }
}

/// Area under the ROC curve by the rank-sum statistic, ties counted half (as scikit-learn).
/// 0.5 when only one class is present.
pub fn roc_auc(y_true: &[usize], scores: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut n_pos) = (0.0, 0usize);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if y_true[k] == 1 {
                rank_sum += avg_rank;
                n_pos += 1;
            }
        }
        i = j + 1;
    }
    let n_neg = y_true.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return 0.5;
    }
    (rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos as f64 * n_neg as f64)
}

/// Deterministic stratified split: per class, a seeded shuffle, then the first
/// `round(test_fraction × class size)` rows go to the test set. Returns sorted (train, test).
pub fn stratified_split(y: &[usize], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_classes = y.iter().max().map_or(0, |m| m + 1);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for c in 0..n_classes {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        idx.shuffle(&mut rng);
        let k = (idx.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Deterministic synthetic binary classification table for tests and the benchmark (so they
/// run without the shared datasets): `n × d` row-major features, the label a noisy non-linear
/// function of the first 5 features, ~30 % positives, 3 % label noise.
pub fn synthetic_classification(n: usize, d: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
    use rand::Rng;
    let d = d.max(5);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n * d);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let s = 1.5 * row[0] * row[1] + (3.0 * row[2]).sin() + row[3] * row[3] - 0.8 * row[4];
        let mut label = usize::from(s > 0.55);
        if rng.gen_bool(0.03) {
            label = 1 - label;
        }
        x.extend_from_slice(&row);
        y.push(label);
    }
    (x, y)
}
