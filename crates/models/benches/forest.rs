//! Criterion benches of the forest: fit, single-event and batch scoring, and the feature
//! window update, on deterministic synthetic data (no ../shared needed). The side-by-side
//! comparison with scikit-learn is bench/trainer/run.sh. `*_reference` is the stored-node walk
//! (f64 thresholds, one branch per level) that scored before the quantised form: before/after in
//! one run.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use ndarray::Array2;
use proact_features::{FeatureSchema, FeatureVector, Window, WindowConfig};
use proact_models::metrics::synthetic_classification;
use proact_models::RandomForestParams;

fn forest(c: &mut Criterion) {
    let (n, d) = (10_000, 20);
    let (x, y) = synthetic_classification(n, d, 1);
    let xa = Array2::from_shape_vec((n, d), x.clone()).unwrap();
    let params = RandomForestParams::default().n_trees(100).max_depth(16).threads(2).seed(1);
    let mut g = c.benchmark_group("forest");
    g.sample_size(10);
    g.bench_function("fit_100_trees_10k_x_20", |b| b.iter(|| params.fit_arrays(&xa, &y).unwrap()));
    let rf = params.fit_arrays(&xa, &y).unwrap();
    let flat = rf.compiled();
    let mut i = 0;
    g.bench_function("predict_proba_single", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            black_box(flat.predict_proba(&x[i * d..(i + 1) * d]))
        })
    });
    g.bench_function("predict_proba_single_reference", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            black_box(flat.predict_proba_reference(&x[i * d..(i + 1) * d]))
        })
    });
    let mut out = vec![0.0; n];
    g.bench_function("predict_proba_batch_10k_2_threads", |b| b.iter(|| flat.predict_proba_batch(&x, &mut out, 2)));
    g.bench_function("predict_proba_batch_10k_2_threads_reference", |b| {
        b.iter(|| flat.predict_proba_batch_reference(&x, &mut out, 2))
    });
    g.finish();
}

fn window(c: &mut Criterion) {
    let schema = FeatureSchema::with_extra_channels(&["pressure", "current"]).unwrap();
    let cfg = WindowConfig::default();
    c.bench_function("window_push_and_features_4ch", |b| {
        b.iter_batched_ref(
            || (Window::new(&schema, cfg), FeatureVector::default(), 0i64),
            |(w, fv, t)| {
                for k in 0..1_000 {
                    *t += 100;
                    let v = [70.0 + (k % 7) as f64, 3.0, 1.0, 2.0];
                    let _ = w.push(*t, &v).unwrap();
                    w.features_into(fv).unwrap();
                }
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, forest, window);
criterion_main!(benches);
