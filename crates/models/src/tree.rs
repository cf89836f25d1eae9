//! Tree learners: a histogram Gini learner (the default) and the linfa-trees baseline.
//!
//! Both produce the same node-list [`Tree`], which [`crate::FlatForest`] compiles for scoring.

use linfa::prelude::*;
use linfa_trees::DecisionTree;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One node of a trained tree, before compilation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TreeNode {
    /// `x[feature] <= threshold` goes left.
    Split { feature: usize, threshold: f64, left: usize, right: usize },
    /// Class frequencies of the (bootstrap-weighted) training samples that reached the leaf.
    Leaf { probs: Vec<f64> },
}

/// A trained tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
}

impl Tree {
    /// Walks the node list (the reference the compiled form is checked against).
    pub fn leaf_probs(&self, x: &[f64]) -> &[f64] {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                TreeNode::Split { feature, threshold, left, right } => {
                    i = if x[*feature] <= *threshold { *left } else { *right };
                }
                TreeNode::Leaf { probs } => return probs,
            }
        }
    }
}

/// Feature values quantised into at most 256 bins per feature, shared by all trees of a fit.
///
/// Row-major so that one pass over a node's samples fills the histograms of every candidate
/// feature while touching each row's cache line once.
pub(crate) struct Binned {
    pub n_rows: usize,
    pub n_features: usize,
    pub bins: Vec<u8>,
    /// `edges[f][b]`: threshold between bin `b` and `b + 1` (midpoint of neighbouring values,
    /// as scikit-learn places its thresholds).
    pub edges: Vec<Vec<f64>>,
}

impl Binned {
    pub fn new(x: &Array2<f64>, max_bins: usize) -> Binned {
        let (n_rows, n_features) = x.dim();
        let mut bins = vec![0u8; n_rows * n_features];
        let mut edges = Vec::with_capacity(n_features);
        let mut col: Vec<f64> = Vec::with_capacity(n_rows);
        for f in 0..n_features {
            col.clear();
            col.extend(x.column(f).iter().copied().filter(|v| !v.is_nan()));
            col.sort_by(f64::total_cmp);
            col.dedup();
            let e: Vec<f64> = if col.len() <= max_bins {
                col.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0).collect()
            } else {
                // Quantile edges over distinct values keep rare extremes (failures) separable.
                let mut e: Vec<f64> = (1..max_bins)
                    .map(|k| {
                        let i = k * col.len() / max_bins;
                        col[i - 1] + (col[i] - col[i - 1]) / 2.0
                    })
                    .collect();
                e.dedup();
                e
            };
            for r in 0..n_rows {
                let v = x[[r, f]];
                // NaN compares false with every edge, so it falls in the last bin (goes right),
                // matching the compiled form's `x <= t` test.
                let b = e.partition_point(|&t| v > t || v.is_nan());
                bins[r * n_features + f] = b as u8;
            }
            edges.push(e);
        }
        Binned { n_rows, n_features, bins, edges }
    }
}

pub(crate) struct HistParams {
    pub max_depth: usize,
    pub min_samples_split: f64,
    pub min_samples_leaf: f64,
    /// Features tried per split.
    pub mtry: usize,
}

/// Grows one tree on bootstrap weights `w` over `candidates` features with Gini splits.
/// Returns the tree and per-feature weighted impurity decrease (MDI importance).
pub(crate) fn grow_hist<R: Rng>(
    data: &Binned,
    y: &[usize],
    n_classes: usize,
    w: &[u32],
    candidates: &[usize],
    p: &HistParams,
    rng: &mut R,
) -> (Tree, Vec<f64>) {
    let d = data.n_features;
    let mut idx: Vec<u32> = (0..data.n_rows as u32).filter(|&i| w[i as usize] > 0).collect();
    let mut nodes: Vec<TreeNode> = Vec::new();
    let mut importance = vec![0.0; d];
    let mut feats: Vec<usize> = candidates.to_vec();
    let mut hist = vec![0.0f64; 256 * n_classes * p.mtry.max(1)];
    let mut tried: Vec<usize> = Vec::with_capacity(p.mtry);
    let mut totals = vec![0.0; n_classes];
    let mut left = vec![0.0; n_classes];
    let total_w: f64 = idx.iter().map(|&i| f64::from(w[i as usize])).sum();

    // (start, end, depth, node slot to fill)
    nodes.push(TreeNode::Leaf { probs: vec![] });
    let mut stack = vec![(0usize, idx.len(), 0usize, 0usize)];
    while let Some((start, end, depth, slot)) = stack.pop() {
        totals.iter_mut().for_each(|v| *v = 0.0);
        for &i in &idx[start..end] {
            totals[y[i as usize]] += f64::from(w[i as usize]);
        }
        let node_w: f64 = totals.iter().sum();
        let pure = totals.iter().filter(|&&v| v > 0.0).count() <= 1;
        let mut best: Option<(usize, usize, f64)> = None; // (feature, bin, proxy)
        if !pure && depth < p.max_depth && node_w >= p.min_samples_split && end - start >= 2 {
            let parent_proxy = totals.iter().map(|v| v * v).sum::<f64>() / node_w;
            // Draw features in random order until `mtry` non-constant ones were evaluated,
            // as scikit-learn's splitter does (constant features don't use up the budget).
            feats.shuffle(rng);
            let mut fi = 0;
            while fi < feats.len() {
                tried.clear();
                while tried.len() < p.mtry && fi < feats.len() {
                    tried.push(feats[fi]);
                    fi += 1;
                }
                let stride = 256 * n_classes;
                for (k, f) in tried.iter().enumerate() {
                    let nb = (data.edges[*f].len() + 1) * n_classes;
                    hist[k * stride..k * stride + nb].iter_mut().for_each(|v| *v = 0.0);
                }
                for &i in &idx[start..end] {
                    let i = i as usize;
                    let row = &data.bins[i * d..(i + 1) * d];
                    let (c, wi) = (y[i], f64::from(w[i]));
                    for (k, &f) in tried.iter().enumerate() {
                        hist[k * stride + row[f] as usize * n_classes + c] += wi;
                    }
                }
                let mut evaluated = 0;
                for (k, &f) in tried.iter().enumerate() {
                    let nbins = data.edges[f].len() + 1;
                    let h = &hist[k * stride..k * stride + nbins * n_classes];
                    left.iter_mut().for_each(|v| *v = 0.0);
                    let mut wl = 0.0;
                    let mut non_constant = false;
                    for b in 0..nbins - 1 {
                        let mut bw = 0.0;
                        for c in 0..n_classes {
                            left[c] += h[b * n_classes + c];
                            bw += h[b * n_classes + c];
                        }
                        wl += bw;
                        let wr = node_w - wl;
                        if wl <= 0.0 {
                            continue;
                        }
                        if wr <= 0.0 {
                            break;
                        }
                        non_constant = true;
                        if wl < p.min_samples_leaf || wr < p.min_samples_leaf || bw == 0.0 {
                            continue;
                        }
                        let mut sl = 0.0;
                        let mut sr = 0.0;
                        for c in 0..n_classes {
                            sl += left[c] * left[c];
                            let r = totals[c] - left[c];
                            sr += r * r;
                        }
                        let proxy = sl / wl + sr / wr;
                        if proxy > parent_proxy + 1e-12 && best.is_none_or(|(_, _, bp)| proxy > bp) {
                            best = Some((f, b, proxy));
                        }
                    }
                    if non_constant {
                        evaluated += 1;
                    }
                }
                if evaluated > 0 {
                    break;
                }
            }
        }
        match best {
            None => {
                nodes[slot] = TreeNode::Leaf { probs: totals.iter().map(|v| v / node_w).collect() };
            }
            Some((f, b, proxy)) => {
                let parent_proxy = totals.iter().map(|v| v * v).sum::<f64>() / node_w;
                // Weighted Gini decrease = (proxy - parent_proxy), normalised by the root weight.
                importance[f] += (proxy - parent_proxy) / total_w;
                let slice = &mut idx[start..end];
                let mut lo = 0;
                for j in 0..slice.len() {
                    let i = slice[j] as usize;
                    if (data.bins[i * d + f] as usize) <= b {
                        slice.swap(lo, j);
                        lo += 1;
                    }
                }
                let mid = start + lo;
                let l = nodes.len();
                nodes.push(TreeNode::Leaf { probs: vec![] });
                nodes.push(TreeNode::Leaf { probs: vec![] });
                nodes[slot] = TreeNode::Split { feature: f, threshold: data.edges[f][b], left: l, right: l + 1 };
                stack.push((mid, end, depth + 1, l + 1));
                stack.push((start, mid, depth + 1, l));
            }
        }
    }
    (Tree { nodes }, importance)
}

/// Baseline learner: linfa-trees' `DecisionTree` on the bootstrap sample, restricted to the
/// tree's feature subspace (it has no per-split feature sampling). Leaf class frequencies are
/// recovered by routing the bootstrap sample through the tree, since linfa-trees keeps only
/// the majority class in its leaves.
pub(crate) fn grow_linfa(
    x: &Array2<f64>,
    y: &[usize],
    n_classes: usize,
    w: &[u32],
    subspace: &[usize],
    max_depth: usize,
) -> Result<(Tree, Vec<f64>), linfa::Error> {
    let rows: Vec<usize> = (0..x.nrows()).flat_map(|i| std::iter::repeat_n(i, w[i] as usize)).collect();
    let xs = Array2::from_shape_fn((rows.len(), subspace.len()), |(r, c)| x[[rows[r], subspace[c]]]);
    let ys = Array1::from_iter(rows.iter().map(|&r| y[r]));
    let ds = Dataset::new(xs, ys);
    let dt: DecisionTree<f64, usize> = DecisionTree::params().max_depth(Some(max_depth)).fit(&ds)?;
    let mut nodes = Vec::new();
    let mut stack = vec![(dt.root_node(), 0usize)];
    nodes.push(TreeNode::Leaf { probs: vec![] });
    while let Some((node, slot)) = stack.pop() {
        if node.is_leaf() {
            nodes[slot] = TreeNode::Leaf { probs: vec![0.0; n_classes] };
            continue;
        }
        let (f, t, _) = node.split();
        let children = node.children();
        let (Some(l), Some(r)) = (children[0].as_deref(), children[1].as_deref()) else {
            nodes[slot] = TreeNode::Leaf { probs: vec![0.0; n_classes] };
            continue;
        };
        let li = nodes.len();
        nodes.push(TreeNode::Leaf { probs: vec![] });
        nodes.push(TreeNode::Leaf { probs: vec![] });
        nodes[slot] = TreeNode::Split { feature: subspace[f], threshold: t, left: li, right: li + 1 };
        stack.push((l, li));
        stack.push((r, li + 1));
    }
    let mut tree = Tree { nodes };
    let mut reach = vec![0.0; n_classes * tree.nodes.len()];
    let mut importance = vec![0.0; x.ncols()];
    for &r in &rows {
        let row = x.row(r);
        let mut i = 0;
        while let TreeNode::Split { feature, threshold, left, right } = &tree.nodes[i] {
            i = if row[*feature] <= *threshold { *left } else { *right };
        }
        reach[i * n_classes + y[r]] += 1.0;
    }
    for (i, node) in tree.nodes.iter_mut().enumerate() {
        if let TreeNode::Leaf { probs } = node {
            let s: f64 = reach[i * n_classes..(i + 1) * n_classes].iter().sum();
            for c in 0..n_classes {
                probs[c] = if s > 0.0 { reach[i * n_classes + c] / s } else { 1.0 / n_classes as f64 };
            }
        }
    }
    for (f, imp) in subspace.iter().zip(dt.feature_importance()) {
        importance[*f] += imp;
    }
    Ok((tree, importance))
}
