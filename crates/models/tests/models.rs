use std::sync::Arc;

use linfa::prelude::*;
use ndarray::{Array1, Array2};
use proact_features::{features_over_series, FeatureSchema, WindowConfig};
use proact_models::metrics::{evaluate, roc_auc, stratified_split, synthetic_classification};
use proact_models::ModelPayload;
use proact_models::{
    ArtefactInfo, ArtefactSigner, FeatureSampling, ModelArtefact, ModelError, ModelKind, NbMethod,
    NormalBehaviourParams, RandomForestParams, SchemaRef, Scorer, SignatureError, TreeLearner,
};

fn data(n: usize, d: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let (x, y) = synthetic_classification(n, d, seed);
    (Array2::from_shape_vec((n, d), x).unwrap(), y)
}

fn small_forest(learner: TreeLearner, sampling: FeatureSampling, threads: usize) -> RandomForestParams {
    RandomForestParams::default()
        .n_trees(15)
        .max_depth(8)
        .learner(learner)
        .feature_sampling(sampling)
        .threads(threads)
        .seed(7)
}

#[test]
fn fixed_seed_gives_the_same_forest_whatever_the_thread_count() {
    let (x, y) = data(600, 8, 1);
    let a = small_forest(TreeLearner::Histogram, FeatureSampling::SqrtPerSplit, 1).fit_arrays(&x, &y).unwrap();
    let b = small_forest(TreeLearner::Histogram, FeatureSampling::SqrtPerSplit, 3).fit_arrays(&x, &y).unwrap();
    assert_eq!(a.trees, b.trees);
    assert_eq!(a.flat, b.flat);
    assert_eq!(a.importances, b.importances);
    let c = small_forest(TreeLearner::Histogram, FeatureSampling::SqrtPerSplit, 1).seed(8).fit_arrays(&x, &y).unwrap();
    assert_ne!(a.flat, c.flat, "another seed grows another forest");
    // Not asserted for TreeLearner::LinfaTrees: linfa-trees 0.8.1 sums class weights in
    // HashMap order, so near-tied splits can differ between runs; one reason it is not the default.
}

#[test]
fn probabilities_sum_to_one_and_importances_too() {
    let (x, y) = data(500, 6, 2);
    for learner in [TreeLearner::Histogram, TreeLearner::LinfaTrees] {
        let rf = small_forest(learner, FeatureSampling::All, 2).fit_arrays(&x, &y).unwrap();
        let mut probs = [0.0; 2];
        for row in x.rows() {
            let row = row.to_vec();
            rf.flat.predict_proba_into(&row, &mut probs);
            assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{probs:?}");
            assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
            assert!((rf.flat.predict_proba(&row) - probs[1]).abs() < 1e-12);
        }
        assert!((rf.importances.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn compiled_forest_predicts_exactly_what_the_trees_predict() {
    let (x, y) = data(800, 10, 3);
    let rf = small_forest(TreeLearner::Histogram, FeatureSampling::SqrtPerSplit, 2).fit_arrays(&x, &y).unwrap();
    let (xt, _) = data(300, 10, 4);
    let batch = rf.predict_proba(&xt);
    for (i, row) in xt.rows().into_iter().enumerate() {
        let row = row.to_vec();
        let reference = rf.predict_proba_trees(&row);
        assert_eq!(rf.flat.predict_proba(&row), reference[1], "row {i}");
        assert_eq!(batch[i], reference[1], "batch row {i}");
    }
    // The linfa trait path agrees with the argmax of the probabilities.
    let labels: Array1<usize> = rf.predict(&xt);
    for (i, row) in xt.rows().into_iter().enumerate() {
        assert_eq!(labels[i], usize::from(rf.predict_proba_trees(&row.to_vec())[1] > 0.5));
    }
}

#[test]
fn fit_through_the_linfa_trait_learns_something() {
    let (x, y) = data(2_000, 8, 5);
    let (train, test) = stratified_split(&y, 0.2, 42);
    let xtr = x.select(ndarray::Axis(0), &train);
    let ytr = Array1::from_iter(train.iter().map(|&i| y[i]));
    let ds = Dataset::new(xtr, ytr);
    let rf = RandomForestParams::default().n_trees(30).seed(1).fit(&ds).unwrap();
    let xte = x.select(ndarray::Axis(0), &test);
    let yte: Vec<usize> = test.iter().map(|&i| y[i]).collect();
    let m = evaluate(&yte, rf.predict_proba(&xte).as_slice().unwrap(), 0.5);
    assert!(m.f1 > 0.75 && m.roc_auc > 0.9, "{m:?}");
}

#[test]
fn split_is_stratified_and_deterministic_and_auc_is_sane() {
    let y: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
    let (tr, te) = stratified_split(&y, 0.2, 9);
    assert_eq!(te.len(), 200);
    assert_eq!(te.iter().filter(|&&i| y[i] == 1).count(), 20);
    assert_eq!(tr.len() + te.len(), 1000);
    assert_eq!(stratified_split(&y, 0.2, 9), (tr, te));
    assert_eq!(roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]), 0.75);
    assert_eq!(roc_auc(&[0, 1], &[0.5, 0.5]), 0.5);
}

fn forest_artefact() -> (ModelArtefact, SchemaRef) {
    let (x, y) = data(300, 16, 6);
    let rf = small_forest(TreeLearner::Histogram, FeatureSampling::SqrtPerSplit, 1).fit_arrays(&x, &y).unwrap();
    let schema = SchemaRef::from(&FeatureSchema::base());
    let info = ArtefactInfo {
        created_at: "2026-11-24T00:00:00Z".into(),
        ..ArtefactInfo::new("pump-failure", "7", schema.clone())
    };
    let a = rf.to_artefact(info, 0.5);
    (a, schema)
}

#[test]
fn artefact_round_trips_and_scores_like_the_forest() {
    let (a, schema) = forest_artefact();
    let bytes = a.to_bytes().unwrap();
    let back = ModelArtefact::from_bytes(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.sha256().unwrap(), a.sha256().unwrap());
    let scorer: Arc<dyn Scorer> = back.scorer(&schema.id).unwrap();
    assert_eq!(scorer.kind(), ModelKind::RandomForest);
    assert_eq!(scorer.version(), "7");
    let x = vec![0.3; 16];
    let s = scorer.score(&x);
    assert!((0.0..=1.0).contains(&s));
}

#[test]
fn corrupted_artefact_is_refused_by_checksum() {
    let (a, _) = forest_artefact();
    let mut bytes = a.to_bytes().unwrap();
    let n = bytes.len();
    // Flip one digit of some threshold deep in the body: still valid JSON, wrong model.
    let pos = (n / 2..n).find(|&i| bytes[i].is_ascii_digit()).unwrap();
    bytes[pos] = if bytes[pos] == b'1' { b'2' } else { b'1' };
    match ModelArtefact::from_bytes(&bytes) {
        Err(ModelError::Checksum { .. }) => {}
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(matches!(ModelArtefact::from_bytes(&bytes[..n - 1]), Err(ModelError::Artefact(_))));
    assert!(matches!(ModelArtefact::from_bytes(b"{}"), Err(ModelError::Artefact(_))));
}

/// The checksum can be recomputed by whoever edits the bytes; the signature cannot. A byte
/// changed in a signed body, with a header whose checksum and length match the new body and the
/// old signature kept, is refused; so are an unsigned artefact and one signed by another key.
#[test]
fn only_an_artefact_signed_by_a_trusted_key_loads_with_a_verifier() {
    let (a, _) = forest_artefact();
    let (key, other) = (ArtefactSigner::generate(), ArtefactSigner::generate());
    let trusted = key.verifier();
    let signed = a.to_signed_bytes(&key).unwrap();
    assert_eq!(ModelArtefact::from_signed_bytes(&signed, &trusted).unwrap(), a);
    // Readers that do not verify still read it (the signature is one more header field).
    assert_eq!(ModelArtefact::from_bytes(&signed).unwrap(), a);

    let nl = signed.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&signed[..nl]).unwrap();
    let sig = header.split(' ').find_map(|p| p.strip_prefix("ed25519=")).unwrap();
    let mut body = signed[nl + 1..].to_vec();
    // A decimal of the raise threshold: still a valid artefact, another model.
    let at = body.windows(12).rposition(|w| w == b"\"threshold\":").unwrap();
    let pos = (at..body.len()).find(|&i| body[i] == b'.').unwrap() + 1;
    body[pos] = if body[pos] == b'1' { b'2' } else { b'1' };
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let mut tampered = format!("proact-model/1 sha256={sha} bytes={} ed25519={sig}\n", body.len()).into_bytes();
    tampered.extend_from_slice(&body);
    assert!(ModelArtefact::from_bytes(&tampered).is_ok(), "the checksum alone does not see it");
    let refused = |bytes: &[u8]| match ModelArtefact::from_signed_bytes(bytes, &trusted) {
        Err(ModelError::Signature(e)) => e,
        other => panic!("expected a signature error, got {other:?}"),
    };
    assert_eq!(refused(&tampered), SignatureError::Invalid);
    assert_eq!(refused(&a.to_bytes().unwrap()), SignatureError::Unsigned);
    assert_eq!(refused(&a.to_signed_bytes(&other).unwrap()), SignatureError::Invalid);
    // Files: the same check.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signed.model");
    a.save_signed(&path, &key).unwrap();
    assert_eq!(ModelArtefact::load_signed(&path, &trusted).unwrap(), a);
    assert!(ModelArtefact::load_signed(&path, &other.verifier()).is_err());
}

/// A well-formed artefact (right checksum) whose numbers make no sense is refused before a
/// scorer is built from it: a threshold outside [0, 1] would silence or flood the detector.
#[test]
fn artefact_with_nonsense_numbers_is_refused() {
    let (a, _) = forest_artefact();
    for bad in [1.5, -0.1, f64::NAN] {
        let mut b = a.clone();
        if let ModelPayload::RandomForest { threshold, .. } = &mut b.payload {
            *threshold = bad;
        }
        // NaN is written as null, which is not a number: refused at parse or validation.
        let err = ModelArtefact::from_bytes(&b.to_bytes().unwrap()).unwrap_err();
        assert!(matches!(err, ModelError::Artefact(_)), "threshold {bad}: {err}");
    }
}

#[test]
fn schema_mismatch_is_refused() {
    let (a, _) = forest_artefact();
    let other = FeatureSchema::with_extra_channels(&["pressure"]).unwrap();
    let err = a.scorer(other.id()).unwrap_err();
    assert!(matches!(err, ModelError::SchemaMismatch { .. }), "{err}");
    assert!(err.to_string().contains("retrain"));
}

/// Temperature/vibration series: noise around a level, optionally shifted from `shift_at`.
fn series(n: usize, seed: u64, shift_at: Option<usize>) -> (Vec<i64>, Vec<f64>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ts = Vec::new();
    let mut v = Vec::new();
    for i in 0..n {
        ts.push(1_700_000_000_000 + i as i64 * 1_000);
        let shift = if shift_at.is_some_and(|s| i >= s) { 1.0 } else { 0.0 };
        v.push(70.0 + rng.gen_range(-1.0..1.0) + 6.0 * shift);
        v.push(3.0 + rng.gen_range(-0.3..0.3) + 1.0 * shift);
    }
    (ts, v)
}

#[test]
fn normal_behaviour_flags_a_shifted_signal_and_not_the_normal_one() {
    let schema = FeatureSchema::base();
    let cfg = WindowConfig { max_span_ms: 20_000, max_len: 20, tolerance_ms: 2_000 };
    let (ts, v) = series(1_000, 1, None);
    let train = features_over_series(&schema, cfg, &ts, &v).unwrap();
    // Skip the warm-up rows where the window is still filling.
    let rows = &train.values[30 * schema.len()..];
    for method in [NbMethod::Mahalanobis { shrinkage: 0.2 }, NbMethod::RobustZ] {
        let params = NormalBehaviourParams { method, margin: 1.5, ..Default::default() };
        let model = params.fit(rows, schema.len()).unwrap();
        let artefact = model.to_artefact(ArtefactInfo::new("pump-01-nb", "1", (&schema).into()));
        let scorer = ModelArtefact::from_bytes(&artefact.to_bytes().unwrap()).unwrap().scorer(schema.id()).unwrap();

        let (ts2, v2) = series(600, 2, None);
        let normal = features_over_series(&schema, cfg, &ts2, &v2).unwrap();
        let flagged = (30..600).filter(|&i| scorer.is_anomalous(normal.row(i))).count();
        assert!(flagged < 6, "{method:?}: {flagged} false alarms on a normal signal");

        let (ts3, v3) = series(600, 3, Some(300));
        let shifted = features_over_series(&schema, cfg, &ts3, &v3).unwrap();
        let caught = (310..600).filter(|&i| scorer.is_anomalous(shifted.row(i))).count();
        assert!(caught > 250, "{method:?}: only {caught}/290 shifted rows flagged");
        assert!(scorer.score(shifted.row(400)) > scorer.score(normal.row(400)));
    }
}

/// Held-out rows plus the values where a quantised comparison could go wrong: every threshold
/// of the forest exactly, its neighbours one ulp away, NaN, ±∞, ±0.
fn hard_rows(forest: &proact_models::FlatForest, held_out: &Array2<f64>) -> Vec<Vec<f64>> {
    let d = forest.n_features();
    let mut rows: Vec<Vec<f64>> = held_out.rows().into_iter().map(|r| r.to_vec()).collect();
    let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, f64::MAX, f64::MIN];
    let n = rows.len();
    for (k, node) in forest.nodes().iter().filter(|n| n.feature != u32::MAX).enumerate().take(3_000) {
        let t = node.value;
        for v in [t, f64::from_bits(t.to_bits() + 1), f64::from_bits(t.to_bits() - 1)] {
            let mut row = rows[k % n].clone();
            row[node.feature as usize] = v;
            rows.push(row);
        }
    }
    for (k, &s) in specials.iter().enumerate() {
        for f in 0..d {
            let mut row = rows[(k * d + f) % n].clone();
            row[f] = s;
            rows.push(row);
        }
    }
    rows
}

#[test]
fn quantised_scoring_is_bit_identical_to_the_stored_walk() {
    let (x, y) = data(3_000, 10, 11);
    let (xt, _) = data(400, 10, 12);
    for learner in [TreeLearner::Histogram, TreeLearner::LinfaTrees] {
        let sampling =
            if learner == TreeLearner::Histogram { FeatureSampling::SqrtPerSplit } else { FeatureSampling::All };
        let rf = RandomForestParams::default()
            .n_trees(40)
            .max_depth(14)
            .learner(learner)
            .feature_sampling(sampling)
            .threads(2)
            .seed(3)
            .fit_arrays(&x, &y)
            .unwrap();
        let f = rf.compiled();
        assert!(f.is_quantised(), "{learner:?}: this forest must take the quantised path");
        let rows = hard_rows(f, &xt);
        let flat_rows: Vec<f64> = rows.iter().flatten().copied().collect();
        let reference: Vec<f64> = rows.iter().map(|r| f.predict_proba_reference(r)).collect();
        for threads in [1, 2] {
            let mut batch = vec![0.0; rows.len()];
            f.predict_proba_batch(&flat_rows, &mut batch, threads);
            let mut batch_ref = vec![0.0; rows.len()];
            f.predict_proba_batch_reference(&flat_rows, &mut batch_ref, threads);
            for i in 0..rows.len() {
                assert_eq!(batch[i].to_bits(), reference[i].to_bits(), "{learner:?} batch row {i}: {:?}", rows[i]);
                assert_eq!(batch_ref[i].to_bits(), reference[i].to_bits(), "{learner:?} reference batch row {i}");
            }
        }
        let mut probs = [0.0; 2];
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(f.predict_proba(row).to_bits(), reference[i].to_bits(), "{learner:?} row {i}: {row:?}");
            // The trees themselves, walked node by node, agree too.
            assert_eq!(rf.predict_proba_trees(row)[1].to_bits(), reference[i].to_bits(), "{learner:?} trees row {i}");
            f.predict_proba_into(row, &mut probs);
            assert_eq!(probs[1].to_bits(), reference[i].to_bits(), "{learner:?} distribution row {i}");
        }
    }
}

#[test]
fn quantised_scoring_keeps_every_class_of_a_multiclass_forest() {
    let (x, y2) = data(2_000, 8, 13);
    // Three classes: the binary label split by the sign of a feature.
    let y: Vec<usize> = y2.iter().zip(x.rows()).map(|(&c, r)| if c == 1 && r[5] > 0.0 { 2 } else { c }).collect();
    let rf = small_forest(TreeLearner::Histogram, FeatureSampling::SqrtPerSplit, 2).fit_arrays(&x, &y).unwrap();
    assert!(rf.compiled().is_quantised());
    let (xt, _) = data(300, 8, 14);
    let mut probs = [0.0; 3];
    for row in hard_rows(rf.compiled(), &xt) {
        rf.flat.predict_proba_into(&row, &mut probs);
        let reference = rf.predict_proba_trees(&row);
        for c in 0..3 {
            assert_eq!(probs[c].to_bits(), reference[c].to_bits(), "class {c} of {row:?}");
        }
    }
}

/// A balanced tree splitting feature 0 at `thresholds` (sorted), leaves with probabilities
/// that differ by leaf, so a wrong turn anywhere changes the score.
fn balanced_tree(thresholds: &[f64]) -> proact_models::Tree {
    use proact_models::{Tree, TreeNode};
    fn grow(t: &[f64], nodes: &mut Vec<TreeNode>, leaf: &mut usize) -> usize {
        let me = nodes.len();
        if t.is_empty() {
            let p = (*leaf % 97) as f64 / 96.0;
            *leaf += 1;
            nodes.push(TreeNode::Leaf { probs: vec![1.0 - p, p] });
            return me;
        }
        nodes.push(TreeNode::Leaf { probs: vec![] });
        let mid = t.len() / 2;
        let left = grow(&t[..mid], nodes, leaf);
        let right = grow(&t[mid + 1..], nodes, leaf);
        nodes[me] = TreeNode::Split { feature: 0, threshold: t[mid], left, right };
        me
    }
    let mut nodes = Vec::new();
    grow(thresholds, &mut nodes, &mut 0);
    Tree { nodes }
}

#[test]
fn forests_that_cannot_be_ranked_in_u16_keep_the_stored_walk_and_its_results() {
    use proact_models::FlatForest;
    // 70,000 distinct thresholds on one feature: more than a u16 rank holds.
    let many: Vec<f64> = (0..70_000).map(|i| f64::from(i) * 0.5).collect();
    // A NaN threshold: `x <= NaN` is false, so everything goes right.
    let with_nan = [1.0, 2.0, f64::NAN, 4.0];
    let ok: Vec<f64> = (0..1_000).map(f64::from).collect();
    for (thresholds, quantised) in [(&many[..], false), (&with_nan[..], false), (&ok[..], true)] {
        let trees = vec![balanced_tree(thresholds), balanced_tree(&thresholds[thresholds.len() / 3..])];
        let f = FlatForest::compile(&trees, 2, 2);
        assert_eq!(f.is_quantised(), quantised, "{} thresholds", thresholds.len());
        let xs: Vec<f64> = (0..5_000).flat_map(|i| [f64::from(i) * 7.25 - 3.0, 0.0]).chain([f64::NAN, 0.0]).collect();
        let mut batch = vec![0.0; xs.len() / 2];
        f.predict_proba_batch(&xs, &mut batch, 2);
        for (i, row) in xs.chunks(2).enumerate() {
            let walk: f64 = trees.iter().map(|t| t.leaf_probs(row)[1]).sum::<f64>() / 2.0;
            assert_eq!(f.predict_proba(row).to_bits(), walk.to_bits(), "row {row:?}");
            assert_eq!(batch[i].to_bits(), walk.to_bits(), "batch row {row:?}");
        }
    }
}

/// The stored form of a two-tree forest exactly as `proact-model/1` artefacts carry it.
const STORED_FOREST_V1: &str = concat!(
    r#"{"n_features":2,"n_classes":2,"nodes":["#,
    r#"{"value":0.5,"feature":0,"next":4},{"value":-1.25,"feature":1,"next":3},"#,
    r#"{"value":0.1,"feature":4294967295,"next":0},{"value":0.7,"feature":4294967295,"next":2},"#,
    r#"{"value":0.9,"feature":4294967295,"next":4},"#,
    r#"{"value":0.0,"feature":4294967295,"next":6}],"#,
    r#""roots":[0,5],"leaf_probs":[0.9,0.1,0.3,0.7,0.1,0.9,1.0,0.0]}"#
);

#[test]
fn stored_forests_of_format_1_load_score_and_serialise_unchanged() {
    use proact_models::FlatForest;
    let f: FlatForest = serde_json::from_str(STORED_FOREST_V1).unwrap();
    assert!(f.is_quantised());
    // Same bytes back: artefacts written before and after the quantised form hash alike.
    assert_eq!(serde_json::to_string(&f).unwrap(), STORED_FOREST_V1);
    // (x0, x1) → tree 1 leaf + tree 2 leaf (always 0.0), averaged.
    for (x, p) in [([0.5, -1.25], 0.05), ([0.5, -1.0], 0.35), ([0.6, -9.0], 0.45), ([f64::NAN, -2.0], 0.45)] {
        assert_eq!(f.predict_proba(&x), p, "{x:?}");
        assert_eq!(f.predict_proba_reference(&x), p, "{x:?}");
    }
    // Nodes that do not form trees are refused when the artefact is read, not when scoring.
    // Roots sharing a subtree were always accepted: still scored, by the stored walk.
    let shared: FlatForest =
        serde_json::from_str(&STORED_FOREST_V1.replace(r#""roots":[0,5]"#, r#""roots":[0,1,1,1]"#)).unwrap();
    assert!(!shared.is_quantised());
    assert_eq!(shared.predict_proba(&[0.0, 0.0]), (0.7 + 3.0 * 0.7) / 4.0);
    let backwards =
        STORED_FOREST_V1.replace(r#"{"value":-1.25,"feature":1,"next":3}"#, r#"{"value":-1.25,"feature":1,"next":1}"#);
    let err = serde_json::from_str::<FlatForest>(&backwards).unwrap_err();
    assert!(err.to_string().contains("inconsistent"), "{err}");
    let bad_feature = STORED_FOREST_V1.replace(r#""feature":1,"#, r#""feature":7,"#);
    assert!(serde_json::from_str::<FlatForest>(&bad_feature).is_err());
}
