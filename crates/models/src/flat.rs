//! The compiled, flat form of a forest used for scoring.
//!
//! Every node of every tree lives in one `Vec<FlatNode>` of 16-byte nodes in depth-first
//! pre-order, so the left child is always the next node (no pointer to load) and a tree's hot
//! top levels share cache lines. Leaves keep the positive-class probability inline for the
//! binary fast path and an offset into `leaf_probs` for the full distribution.

use serde::{Deserialize, Serialize};

use crate::tree::{Tree, TreeNode};

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlatNode {
    /// Split threshold (`x <= value` goes left), or the leaf's class-1 probability.
    pub value: f64,
    /// Split feature, or `u32::MAX` for a leaf.
    pub feature: u32,
    /// Right child index (split) or offset into `leaf_probs` (leaf).
    pub next: u32,
}

/// A forest compiled for inference: allocation-free single-event scoring and blocked batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlatForest {
    pub n_features: usize,
    pub n_classes: usize,
    pub nodes: Vec<FlatNode>,
    /// Index of each tree's root in `nodes`.
    pub roots: Vec<u32>,
    pub leaf_probs: Vec<f64>,
}

impl FlatForest {
    pub fn compile(trees: &[Tree], n_features: usize, n_classes: usize) -> FlatForest {
        let mut f = FlatForest { n_features, n_classes, nodes: Vec::new(), roots: Vec::new(), leaf_probs: Vec::new() };
        for t in trees {
            f.roots.push(f.nodes.len() as u32);
            f.emit(t, 0);
        }
        f
    }

    fn emit(&mut self, t: &Tree, i: usize) {
        match &t.nodes[i] {
            TreeNode::Leaf { probs } => {
                let p1 = if self.n_classes > 1 { probs[1] } else { 0.0 };
                self.nodes.push(FlatNode { value: p1, feature: LEAF, next: self.leaf_probs.len() as u32 });
                self.leaf_probs.extend_from_slice(probs);
            }
            TreeNode::Split { feature, threshold, left, right } => {
                let me = self.nodes.len();
                self.nodes.push(FlatNode { value: *threshold, feature: *feature as u32, next: 0 });
                self.emit(t, *left);
                self.nodes[me].next = self.nodes.len() as u32;
                self.emit(t, *right);
            }
        }
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    #[inline]
    fn leaf(&self, root: u32, x: &[f64]) -> &FlatNode {
        let mut i = root as usize;
        loop {
            let n = &self.nodes[i];
            if n.feature == LEAF {
                return n;
            }
            i = if x[n.feature as usize] <= n.value { i + 1 } else { n.next as usize };
        }
    }

    /// Probability of class 1 (failure / anomaly) for one event; no allocation.
    ///
    /// # Panics
    /// If `x` is shorter than the model's feature count (a schema mismatch the loader refuses).
    pub fn predict_proba(&self, x: &[f64]) -> f64 {
        assert!(x.len() >= self.n_features, "feature vector has {} values, model needs {}", x.len(), self.n_features);
        let mut s = 0.0;
        for &r in &self.roots {
            s += self.leaf(r, x).value;
        }
        s / self.roots.len() as f64
    }

    /// Full class distribution for one event into `out` (`n_classes` long).
    pub fn predict_proba_into(&self, x: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for &r in &self.roots {
            let off = self.leaf(r, x).next as usize;
            for (o, p) in out.iter_mut().zip(&self.leaf_probs[off..off + self.n_classes]) {
                *o += p;
            }
        }
        let k = self.roots.len() as f64;
        out.iter_mut().for_each(|v| *v /= k);
    }

    /// Class-1 probabilities for a row-major batch (`rows × n_features`) into `out`.
    ///
    /// Tree-major over blocks of rows: one tree's nodes stay in cache while a block walks it.
    /// Splits the batch over `threads` (1 = current thread). The per-row sum order is the same
    /// as [`FlatForest::predict_proba`], so results are bit-identical.
    pub fn predict_proba_batch(&self, x: &[f64], out: &mut [f64], threads: usize) {
        let d = self.n_features;
        assert_eq!(x.len(), out.len() * d, "batch must be rows × {d} values");
        let threads = threads.max(1).min(out.len().div_ceil(256).max(1));
        if threads == 1 {
            self.batch_block(x, out);
            return;
        }
        let per = out.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (xc, oc) in x.chunks(per * d).zip(out.chunks_mut(per)) {
                s.spawn(move || self.batch_block(xc, oc));
            }
        });
    }

    fn batch_block(&self, x: &[f64], out: &mut [f64]) {
        const BLOCK: usize = 64;
        let d = self.n_features;
        let k = self.roots.len() as f64;
        for (xb, ob) in x.chunks(BLOCK * d).zip(out.chunks_mut(BLOCK)) {
            ob.iter_mut().for_each(|v| *v = 0.0);
            for &r in &self.roots {
                for (row, o) in xb.chunks_exact(d).zip(ob.iter_mut()) {
                    *o += self.leaf(r, row).value;
                }
            }
            ob.iter_mut().for_each(|v| *v /= k);
        }
    }
}
