//! RandomForest on the linfa traits: bootstrap per tree, feature sampling, parallel training,
//! class probabilities and feature importances, deterministic for a seed.

use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::flat::FlatForest;
use crate::tree::{grow_hist, grow_linfa, Binned, HistParams, Tree};
use crate::ModelError;

/// One grown tree and its impurity decreases per feature.
type Grown = Result<(Tree, Vec<f64>), ModelError>;

/// Which tree learner grows the trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeLearner {
    /// Our histogram Gini learner (≤256 quantile bins per feature, per-split feature sampling).
    /// The default: measured ~30–100× faster than linfa-trees here (see docs/BENCHMARKS.md).
    Histogram,
    /// linfa-trees 0.8.1 `DecisionTree` per tree on the bootstrap sample. It has no per-split
    /// feature sampling, so each tree gets a feature subspace instead. Kept as the baseline.
    LinfaTrees,
}

/// How features are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSampling {
    /// Every split sees every feature (bagged trees).
    All,
    /// √d features drawn per split (scikit-learn's `max_features="sqrt"`). Histogram only.
    SqrtPerSplit,
    /// √d features drawn once per tree (random subspaces; all linfa-trees can do).
    SqrtPerTree,
}

/// Hyper-parameters; `fit` through linfa's [`Fit`] trait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomForestParams {
    pub n_trees: usize,
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub feature_sampling: FeatureSampling,
    pub learner: TreeLearner,
    pub max_bins: usize,
    pub seed: u64,
    /// Training threads; results do not depend on it (each tree has its own seeded RNG).
    pub threads: usize,
}

impl Default for RandomForestParams {
    fn default() -> Self {
        RandomForestParams {
            n_trees: 100,
            max_depth: 16,
            min_samples_split: 2,
            min_samples_leaf: 1,
            feature_sampling: FeatureSampling::SqrtPerSplit,
            learner: TreeLearner::Histogram,
            max_bins: 256,
            seed: 42,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl RandomForestParams {
    pub fn n_trees(mut self, n: usize) -> Self {
        self.n_trees = n;
        self
    }
    pub fn max_depth(mut self, d: usize) -> Self {
        self.max_depth = d;
        self
    }
    pub fn feature_sampling(mut self, f: FeatureSampling) -> Self {
        self.feature_sampling = f;
        self
    }
    pub fn learner(mut self, l: TreeLearner) -> Self {
        self.learner = l;
        self
    }
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }
    pub fn threads(mut self, t: usize) -> Self {
        self.threads = t.max(1);
        self
    }

    fn validate(&self) -> Result<(), ModelError> {
        if self.n_trees == 0 || self.max_depth == 0 || self.max_bins < 2 || self.max_bins > 256 {
            return Err(ModelError::Params(format!(
                "n_trees and max_depth must be ≥ 1 and max_bins in 2..=256 (got {}, {}, {})",
                self.n_trees, self.max_depth, self.max_bins
            )));
        }
        if self.learner == TreeLearner::LinfaTrees && self.feature_sampling == FeatureSampling::SqrtPerSplit {
            return Err(ModelError::Params(
                "linfa-trees cannot sample features per split: use sqrt_per_tree or all".into(),
            ));
        }
        Ok(())
    }

    /// Fits on a row-major matrix and class labels `0..n_classes`.
    pub fn fit_arrays(&self, x: &Array2<f64>, y: &[usize]) -> Result<RandomForest, ModelError> {
        self.validate()?;
        let (n, d) = x.dim();
        if n == 0 || d == 0 || y.len() != n {
            return Err(ModelError::Data(format!(
                "need a non-empty matrix and one label per row ({n} rows, {} labels)",
                y.len()
            )));
        }
        if x.iter().any(|v| v.is_infinite()) {
            return Err(ModelError::Data("training matrix contains infinite values".into()));
        }
        let n_classes = y.iter().max().map_or(0, |m| m + 1).max(2);
        let binned = (self.learner == TreeLearner::Histogram).then(|| Binned::new(x, self.max_bins));
        let sqrt_d = ((d as f64).sqrt().round() as usize).clamp(1, d);
        let threads = self.threads.clamp(1, self.n_trees);

        let grow = |t: usize| -> Grown {
            // One RNG per tree, seeded from (seed, tree): the forest is the same for any thread
            // count and schedule.
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut w = vec![0u32; n];
            for _ in 0..n {
                w[rng.gen_range(0..n)] += 1;
            }
            let candidates: Vec<usize> = match self.feature_sampling {
                FeatureSampling::SqrtPerTree => {
                    let mut s = sample(&mut rng, d, sqrt_d).into_vec();
                    s.sort_unstable();
                    s
                }
                _ => (0..d).collect(),
            };
            match &binned {
                Some(b) => {
                    let mtry = match self.feature_sampling {
                        FeatureSampling::SqrtPerSplit => sqrt_d,
                        _ => candidates.len(),
                    };
                    let hp = HistParams {
                        max_depth: self.max_depth,
                        min_samples_split: self.min_samples_split as f64,
                        min_samples_leaf: self.min_samples_leaf as f64,
                        mtry,
                    };
                    Ok(grow_hist(b, y, n_classes, &w, &candidates, &hp, &mut rng))
                }
                None => Ok(grow_linfa(x, y, n_classes, &w, &candidates, self.max_depth)?),
            }
        };

        let mut results: Vec<Option<Grown>> = (0..self.n_trees).map(|_| None).collect();
        std::thread::scope(|s| {
            // Round-robin tree ids over threads; each writes only its own slots.
            let mut slots: Vec<Vec<(usize, &mut Option<_>)>> = (0..threads).map(|_| Vec::new()).collect();
            for (t, slot) in results.iter_mut().enumerate() {
                slots[t % threads].push((t, slot));
            }
            for mine in slots {
                let grow = &grow;
                s.spawn(move || {
                    for (t, slot) in mine {
                        *slot = Some(grow(t));
                    }
                });
            }
        });
        let mut trees = Vec::with_capacity(self.n_trees);
        let mut importances = vec![0.0; d];
        for r in results {
            let (tree, imp) = r.expect("every tree slot is filled")?;
            // Normalise per tree before averaging, as scikit-learn does.
            let s: f64 = imp.iter().sum();
            if s > 0.0 {
                importances.iter_mut().zip(&imp).for_each(|(a, b)| *a += b / s);
            }
            trees.push(tree);
        }
        let s: f64 = importances.iter().sum();
        if s > 0.0 {
            importances.iter_mut().for_each(|v| *v /= s);
        }
        let flat = FlatForest::compile(&trees, d, n_classes);
        Ok(RandomForest { params: self.clone(), n_features: d, n_classes, trees, importances, flat })
    }
}

/// A trained forest: the trees (the reference), their compiled form, and importances.
#[derive(Debug, Clone)]
pub struct RandomForest {
    pub params: RandomForestParams,
    pub n_features: usize,
    pub n_classes: usize,
    pub trees: Vec<Tree>,
    /// Mean decrease in Gini impurity per feature, summing to 1.
    pub importances: Vec<f64>,
    pub flat: FlatForest,
}

impl RandomForest {
    /// Class probabilities by walking the node lists (averaged leaf class frequencies). The
    /// compiled [`FlatForest`] returns exactly the same numbers faster.
    pub fn predict_proba_trees(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.n_classes];
        for t in &self.trees {
            for (o, p) in out.iter_mut().zip(t.leaf_probs(x)) {
                *o += p;
            }
        }
        let k = self.trees.len() as f64;
        out.iter_mut().for_each(|v| *v /= k);
        out
    }

    /// Class-1 probability per row of `x` (compiled form).
    pub fn predict_proba<D: Data<Elem = f64>>(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        let std = x.as_standard_layout();
        let mut out = vec![0.0; x.nrows()];
        self.flat.predict_proba_batch(std.as_slice().expect("standard layout"), &mut out, self.params.threads);
        Array1::from(out)
    }

    /// The compiled form, for the detector.
    pub fn compiled(&self) -> &FlatForest {
        &self.flat
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, ModelError> for RandomForestParams
where
    D: Data<Elem = f64>,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = RandomForest;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<RandomForest, ModelError> {
        let x = dataset.records().to_owned();
        let y: Vec<usize> = dataset.targets().as_single_targets().to_vec();
        self.fit_arrays(&x, &y)
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<usize>> for RandomForest {
    /// Most probable class per row.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<usize>) {
        let mut probs = vec![0.0; self.n_classes];
        for (row, out) in x.rows().into_iter().zip(y.iter_mut()) {
            let row = row.to_vec();
            self.flat.predict_proba_into(&row, &mut probs);
            // Ties go to the lower class, as argmax in scikit-learn.
            *out = probs.iter().enumerate().fold(0, |b, (i, &p)| if p > probs[b] { i } else { b });
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<usize> {
        Array1::zeros(x.nrows())
    }
}
