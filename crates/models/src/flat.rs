//! The compiled, flat form of a forest used for scoring.
//!
//! Two forms of the same forest live here:
//!
//! - The **stored** form, what artefacts carry (`payload.forest`, unchanged since
//!   `proact-model/1`): one `Vec<FlatNode>` of 16-byte nodes in depth-first pre-order (left child
//!   = next node), f64 thresholds, leaves with their class-1 probability inline and an offset
//!   into `leaf_probs`. It is the reference: [`FlatForest::predict_proba_reference`] walks it.
//! - The **quantised** form, derived from the stored one whenever a forest is compiled or
//!   deserialised (so artefacts need no new format and old ones get it too), and used by every
//!   scoring method. Measured on the benchmark's depth-16 forest (docs/BENCHMARKS.md), the stored
//!   walk was bound by one data-dependent, unpredictable branch per level and by 7.6 MB of nodes;
//!   the quantised form removes both:
//!   - every threshold of feature `f` is replaced by its rank among the forest's distinct
//!     thresholds of `f`, and each feature value by the number of those thresholds below it
//!     (`Quantised::quantise`, one binary search per feature per row). `x <= t` becomes
//!     `q <= rank(t)` on u16 integers, **exactly** (NaN maps past every threshold, so it still
//!     goes right), so probabilities are bit-identical to the stored walk;
//!   - a node is 8 bytes (u32 child, u16 feature, u16 rank), 3.8 MB for that forest (plus, read
//!     once per tree at the leaf, 12 bytes per node of leaf value and offset; the stored form is
//!     kept too, for serialising and as the reference: memory is traded for speed);
//!   - each tree is laid out breadth-first with both children adjacent, so the descent is
//!     branch-free (`child + (q > rank)`) and the top levels share cache lines;
//!   - a leaf points to itself with a rank no value exceeds, so a descent can run a fixed number
//!     of steps (the tree's depth) and many descents advance in lockstep: 32 trees for a single
//!     event, a block of rows per tree in a batch (tree-major: the tree stays in L1/L2 while the
//!     block walks it). Independent descents overlap their memory latency instead of waiting on
//!     one mispredicted branch at a time.
//!
//!   A forest whose thresholds cannot be ranked in u16 (more than 65,535 distinct thresholds on
//!   one feature, a NaN threshold, or more than 65,536 features), or whose stored trees share
//!   subtrees, keeps the stored walk.

use serde::{Deserialize, Serialize, Serializer};

use crate::tree::{Tree, TreeNode};

const LEAF: u32 = u32::MAX;

/// Largest feature count scored without allocating (a stack buffer of quantised values).
const MAX_STACK_FEATURES: usize = 512;

/// Trees descending in lockstep for one event. 16, 32, 64 and 100 measured alike on the
/// benchmark's forest (within this machine's noise); 32 should keep more misses in flight than
/// 16 when the caches are cold.
const LOCKSTEP_TREES: usize = 32;

/// Rows per block in batch scoring: one tree is walked by this many rows before the next. The
/// whole forest streams through L2 once per block, so larger blocks cut L2 misses (simulated
/// 310 → 130 per row from 128 to 512 rows); 512 quantised rows of 20 features are 20 KB.
const BATCH_BLOCK: usize = 512;

/// One node of the stored form.
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
///
/// Serialises as the stored form only (`n_features`, `n_classes`, `nodes`, `roots`,
/// `leaf_probs`: the same JSON, hence the same checksums, as before the quantised form existed);
/// deserialising checks the structure and rebuilds the quantised form.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "StoredForest")]
pub struct FlatForest {
    n_features: usize,
    n_classes: usize,
    nodes: Vec<FlatNode>,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    leaf_probs: Vec<f64>,
    quantised: Option<Quantised>,
}

/// The stored form as it is (de)serialised.
#[derive(Deserialize)]
struct StoredForest {
    n_features: usize,
    n_classes: usize,
    nodes: Vec<FlatNode>,
    roots: Vec<u32>,
    leaf_probs: Vec<f64>,
}

impl Serialize for FlatForest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Same fields, same order as `StoredForest`; borrowed so saving copies nothing.
        #[derive(Serialize)]
        struct Stored<'a> {
            n_features: usize,
            n_classes: usize,
            nodes: &'a [FlatNode],
            roots: &'a [u32],
            leaf_probs: &'a [f64],
        }
        Stored {
            n_features: self.n_features,
            n_classes: self.n_classes,
            nodes: &self.nodes,
            roots: &self.roots,
            leaf_probs: &self.leaf_probs,
        }
        .serialize(s)
    }
}

impl TryFrom<StoredForest> for FlatForest {
    type Error = String;

    fn try_from(s: StoredForest) -> Result<FlatForest, String> {
        FlatForest::from_stored(s.n_features, s.n_classes, s.nodes, s.roots, s.leaf_probs)
    }
}

/// The quantised form equals the stored one by construction, so only the stored form counts.
impl PartialEq for FlatForest {
    fn eq(&self, o: &FlatForest) -> bool {
        self.n_features == o.n_features
            && self.n_classes == o.n_classes
            && self.nodes == o.nodes
            && self.roots == o.roots
            && self.leaf_probs == o.leaf_probs
    }
}

impl FlatForest {
    pub fn compile(trees: &[Tree], n_features: usize, n_classes: usize) -> FlatForest {
        let mut f = FlatForest {
            n_features,
            n_classes,
            nodes: Vec::new(),
            roots: Vec::new(),
            leaf_probs: Vec::new(),
            quantised: None,
        };
        for t in trees {
            f.roots.push(f.nodes.len() as u32);
            f.emit(t, 0);
        }
        f.quantised = Quantised::build(&f);
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

    /// Checks a stored forest (from an artefact) and builds its quantised form.
    fn from_stored(
        n_features: usize,
        n_classes: usize,
        nodes: Vec<FlatNode>,
        roots: Vec<u32>,
        leaf_probs: Vec<f64>,
    ) -> Result<FlatForest, String> {
        let bad_node = nodes.iter().enumerate().find(|(i, n)| {
            if n.feature == LEAF {
                n.next as usize + n_classes > leaf_probs.len()
            } else {
                // Children after their parent: every path ends, whatever the input.
                n.feature as usize >= n_features || n.next as usize <= *i || n.next as usize >= nodes.len()
            }
        });
        if let Some((i, _)) = bad_node {
            return Err(format!("forest structure is inconsistent at node {i}"));
        }
        if roots.is_empty() || roots.iter().any(|&r| r as usize >= nodes.len()) {
            return Err("forest structure is inconsistent: no tree, or a root out of range".into());
        }
        if n_classes == 0 {
            return Err("forest structure is inconsistent: no class".into());
        }
        let mut f = FlatForest { n_features, n_classes, nodes, roots, leaf_probs, quantised: None };
        f.quantised = Quantised::build(&f);
        Ok(f)
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }
    pub fn n_features(&self) -> usize {
        self.n_features
    }
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }
    /// The stored nodes (depth-first, f64 thresholds), as serialised.
    pub fn nodes(&self) -> &[FlatNode] {
        &self.nodes
    }
    pub fn roots(&self) -> &[u32] {
        &self.roots
    }
    pub fn leaf_probs(&self) -> &[f64] {
        &self.leaf_probs
    }
    /// Whether scoring uses the quantised form (else the stored walk; see the module doc).
    pub fn is_quantised(&self) -> bool {
        self.quantised.is_some()
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

    fn check_len(&self, x: &[f64]) {
        assert!(x.len() >= self.n_features, "feature vector has {} values, model needs {}", x.len(), self.n_features);
    }

    /// Probability of class 1 (failure / anomaly) for one event; no allocation.
    ///
    /// # Panics
    /// If `x` is shorter than the model's feature count (a schema mismatch the loader refuses).
    pub fn predict_proba(&self, x: &[f64]) -> f64 {
        self.check_len(x);
        match &self.quantised {
            Some(q) if self.n_features <= MAX_STACK_FEATURES => {
                let mut buf = [0u16; MAX_STACK_FEATURES];
                let qx = &mut buf[..self.n_features];
                q.quantise(x, qx);
                let mut s = 0.0;
                q.for_each_leaf(qx, |leaf| s += q.value[leaf]);
                s / self.roots.len() as f64
            }
            _ => self.predict_proba_reference(x),
        }
    }

    /// Class-1 probability by walking the stored nodes with f64 comparisons: the reference the
    /// quantised form is checked against (bit for bit), and the "before" of the benchmarks.
    pub fn predict_proba_reference(&self, x: &[f64]) -> f64 {
        self.check_len(x);
        let mut s = 0.0;
        for &r in &self.roots {
            s += self.leaf(r, x).value;
        }
        s / self.roots.len() as f64
    }

    /// Full class distribution for one event into `out` (`n_classes` long).
    pub fn predict_proba_into(&self, x: &[f64], out: &mut [f64]) {
        self.check_len(x);
        out.iter_mut().for_each(|v| *v = 0.0);
        let nc = self.n_classes;
        let mut add = |off: usize| {
            for (o, p) in out.iter_mut().zip(&self.leaf_probs[off..off + nc]) {
                *o += p;
            }
        };
        match &self.quantised {
            Some(q) if self.n_features <= MAX_STACK_FEATURES => {
                let mut buf = [0u16; MAX_STACK_FEATURES];
                let qx = &mut buf[..self.n_features];
                q.quantise(x, qx);
                q.for_each_leaf(qx, |leaf| add(q.leaf_off[leaf] as usize));
            }
            _ => {
                for &r in &self.roots {
                    add(self.leaf(r, x).next as usize);
                }
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
        match &self.quantised {
            Some(q) => self.batch_threads(x, out, threads, |xc, oc| q.batch(self.n_features, xc, oc)),
            None => self.predict_proba_batch_reference(x, out, threads),
        }
    }

    /// The batch scorer on the stored nodes (tree-major blocks of 64 rows, f64 comparisons):
    /// the reference and the "before" of the benchmarks.
    pub fn predict_proba_batch_reference(&self, x: &[f64], out: &mut [f64], threads: usize) {
        self.batch_threads(x, out, threads, |xc, oc| self.batch_block_reference(xc, oc));
    }

    fn batch_threads(&self, x: &[f64], out: &mut [f64], threads: usize, work: impl Fn(&[f64], &mut [f64]) + Sync) {
        let d = self.n_features;
        assert_eq!(x.len(), out.len() * d, "batch must be rows × {d} values");
        let threads = threads.max(1).min(out.len().div_ceil(256).max(1));
        if threads == 1 {
            work(x, out);
            return;
        }
        let per = out.len().div_ceil(threads);
        let work = &work;
        std::thread::scope(|s| {
            for (xc, oc) in x.chunks(per * d).zip(out.chunks_mut(per)) {
                s.spawn(move || work(xc, oc));
            }
        });
    }

    fn batch_block_reference(&self, x: &[f64], out: &mut [f64]) {
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

/// A node of the quantised form: go to `child` if `q[feature] <= rank`, else `child + 1`.
/// A leaf has `child` = itself and `rank` = `u16::MAX`, which no quantised value exceeds.
#[derive(Debug, Clone, Copy)]
struct QNode {
    child: u32,
    feature: u16,
    rank: u16,
}

/// The quantised, breadth-first form (see the module doc). Indices are into `nodes`; `value`
/// and `leaf_off` are parallel to it and read once per tree, at the leaf.
#[derive(Debug, Clone)]
struct Quantised {
    nodes: Vec<QNode>,
    /// Class-1 probability of a leaf (exactly the stored leaf's `value`).
    value: Vec<f64>,
    /// Offset of a leaf's distribution in `leaf_probs`.
    leaf_off: Vec<u32>,
    roots: Vec<u32>,
    /// Steps from each tree's root to its deepest leaf.
    depth: Vec<u32>,
    /// Distinct thresholds of each feature, ascending, feature after feature.
    cuts: Vec<f64>,
    /// `cuts[cut_start[f]..cut_start[f + 1]]` are feature `f`'s.
    cut_start: Vec<u32>,
}

impl Quantised {
    /// `None` when the forest cannot be ranked in u16, or when its stored nodes are not
    /// disjoint trees (a subtree shared by two parents or roots: harmless for the stored walk,
    /// which `proact-model/1` always accepted, but it would be copied here, without bound).
    fn build(f: &FlatForest) -> Option<Quantised> {
        let d = f.n_features;
        if d == 0 || d > usize::from(u16::MAX) + 1 {
            return None;
        }
        let mut per_feature: Vec<Vec<f64>> = vec![Vec::new(); d];
        for n in f.nodes.iter().filter(|n| n.feature != LEAF) {
            if n.value.is_nan() {
                return None;
            }
            per_feature[n.feature as usize].push(n.value);
        }
        let mut cuts = Vec::new();
        let mut cut_start = Vec::with_capacity(d + 1);
        for c in &mut per_feature {
            c.sort_by(f64::total_cmp);
            // `==`, not bitwise: -0.0 and 0.0 split alike.
            c.dedup_by(|a, b| a == b);
            if c.len() > usize::from(u16::MAX) {
                return None;
            }
            cut_start.push(cuts.len() as u32);
            cuts.extend_from_slice(c);
        }
        cut_start.push(cuts.len() as u32);

        let total = f.nodes.len();
        let mut q = Quantised {
            nodes: Vec::with_capacity(total),
            value: Vec::with_capacity(total),
            leaf_off: Vec::with_capacity(total),
            roots: Vec::with_capacity(f.roots.len()),
            depth: Vec::with_capacity(f.roots.len()),
            cuts,
            cut_start,
        };
        let placeholder = QNode { child: 0, feature: 0, rank: 0 };
        // (stored index, quantised index, level), breadth-first per tree.
        let mut queue = std::collections::VecDeque::new();
        for &root in &f.roots {
            let at = q.nodes.len();
            q.roots.push(at as u32);
            q.nodes.push(placeholder);
            q.value.push(0.0);
            q.leaf_off.push(0);
            queue.push_back((root as usize, at, 0u32));
            let mut depth = 0;
            while let Some((si, qi, level)) = queue.pop_front() {
                let n = f.nodes[si];
                if n.feature == LEAF {
                    q.nodes[qi] = QNode { child: qi as u32, feature: 0, rank: u16::MAX };
                    q.value[qi] = n.value;
                    q.leaf_off[qi] = n.next;
                    depth = depth.max(level);
                    continue;
                }
                // Disjoint trees emit exactly their stored nodes; more means shared subtrees.
                if q.nodes.len() + 2 > total {
                    return None;
                }
                let c = q.nodes.len();
                q.nodes.extend([placeholder, placeholder]);
                q.value.extend([0.0, 0.0]);
                q.leaf_off.extend([0, 0]);
                let feature = n.feature as usize;
                let rank = q.cuts_of(feature).partition_point(|&t| t < n.value);
                q.nodes[qi] = QNode { child: c as u32, feature: feature as u16, rank: rank as u16 };
                queue.push_back((si + 1, c, level + 1));
                queue.push_back((n.next as usize, c + 1, level + 1));
            }
            q.depth.push(depth);
        }
        Some(q)
    }

    fn cuts_of(&self, f: usize) -> &[f64] {
        &self.cuts[self.cut_start[f] as usize..self.cut_start[f + 1] as usize]
    }

    /// `qx[f]` = number of feature `f`'s thresholds below `x[f]` (all of them for NaN), so that
    /// `x[f] <= t` ⇔ `qx[f] <= rank(t)`.
    #[inline]
    fn quantise(&self, x: &[f64], qx: &mut [u16]) {
        for (f, (q, &v)) in qx.iter_mut().zip(x).enumerate() {
            let cuts = self.cuts_of(f);
            let n = if v.is_nan() { cuts.len() } else { cuts.partition_point(|&t| t < v) };
            *q = n as u16;
        }
    }

    #[inline(always)]
    fn step(&self, i: u32, qx: &[u16]) -> u32 {
        let n = self.nodes[i as usize];
        n.child + u32::from(qx[usize::from(n.feature)] > n.rank)
    }

    /// Calls `leaf` with each tree's leaf for one quantised row, in tree order; trees descend
    /// in lockstep groups so their cache misses overlap.
    #[inline]
    fn for_each_leaf(&self, qx: &[u16], mut leaf: impl FnMut(usize)) {
        for (roots, depths) in self.roots.chunks(LOCKSTEP_TREES).zip(self.depth.chunks(LOCKSTEP_TREES)) {
            let mut idx = [0u32; LOCKSTEP_TREES];
            let idx = &mut idx[..roots.len()];
            idx.copy_from_slice(roots);
            let depth = depths.iter().copied().max().unwrap_or(0);
            for _ in 0..depth {
                for i in idx.iter_mut() {
                    *i = self.step(*i, qx);
                }
            }
            for &i in idx.iter() {
                leaf(i as usize);
            }
        }
    }

    /// Class-1 probabilities of a row-major batch, tree-major over blocks of rows.
    fn batch(&self, d: usize, x: &[f64], out: &mut [f64]) {
        let k = self.roots.len() as f64;
        let mut qx = vec![0u16; BATCH_BLOCK * d];
        let mut idx = vec![0u32; BATCH_BLOCK];
        for (xb, ob) in x.chunks(BATCH_BLOCK * d).zip(out.chunks_mut(BATCH_BLOCK)) {
            for (row, qrow) in xb.chunks_exact(d).zip(qx.chunks_exact_mut(d)) {
                self.quantise(row, qrow);
            }
            ob.iter_mut().for_each(|v| *v = 0.0);
            let idx = &mut idx[..ob.len()];
            for (&root, &depth) in self.roots.iter().zip(&self.depth) {
                idx.iter_mut().for_each(|i| *i = root);
                for _ in 0..depth {
                    for (i, qrow) in idx.iter_mut().zip(qx.chunks_exact(d)) {
                        *i = self.step(*i, qrow);
                    }
                }
                for (o, &i) in ob.iter_mut().zip(idx.iter()) {
                    *o += self.value[i as usize];
                }
            }
            ob.iter_mut().for_each(|v| *v /= k);
        }
    }
}
