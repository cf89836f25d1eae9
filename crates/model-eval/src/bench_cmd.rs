//! `export` and `bench`: the Rust side of the trainer benchmark (`bench/trainer/run.sh`). The
//! AI4I split and a synthetic dataset are written as CSV for both implementations, then one
//! forest configuration is timed (fit, batch and single-event prediction) and printed as JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use proact_models::metrics::{evaluate, stratified_split, synthetic_classification};
use proact_models::{FeatureSampling, RandomForestParams, TreeLearner};

use crate::ai4i::{read_ai4i, AI4I_FEATURES};

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[arg(long)]
    train: PathBuf,
    #[arg(long)]
    test: PathBuf,
    #[arg(long, default_value_t = 100)]
    trees: usize,
    #[arg(long, default_value_t = 16)]
    depth: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value = "histogram")]
    learner: String,
    #[arg(long, default_value = "sqrt_per_split")]
    sampling: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fit repetitions (the best is reported, as timeit does).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn write_csv(path: &Path, names: &[&str], x: &Array2<f64>, y: &[usize], rows: &[usize]) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header: Vec<&str> = names.to_vec();
    header.push("label");
    w.write_record(&header)?;
    for &r in rows {
        let mut rec: Vec<String> = x.row(r).iter().map(|v| format!("{v:?}")).collect();
        rec.push(y[r].to_string());
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

pub(crate) fn export(out: &Path, dir: &Path, synthetic_rows: usize) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let d = 20;
    let (xs, ys) = synthetic_classification(synthetic_rows, d, 2026);
    let xs = Array2::from_shape_vec((synthetic_rows, d), xs)?;
    let (tr, te) = stratified_split(&ys, 0.2, 42);
    let names: Vec<String> = (0..d).map(|i| format!("x{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_csv(&out.join("synthetic_train.csv"), &names, &xs, &ys, &tr)?;
    write_csv(&out.join("synthetic_test.csv"), &names, &xs, &ys, &te)?;
    println!("synthetic: {} train / {} test rows, {d} features", tr.len(), te.len());
    match read_ai4i(dir) {
        Ok((x, y)) => {
            let (tr, te) = stratified_split(&y, 0.2, 42);
            write_csv(&out.join("ai4i_train.csv"), &AI4I_FEATURES, &x, &y, &tr)?;
            write_csv(&out.join("ai4i_test.csv"), &AI4I_FEATURES, &x, &y, &te)?;
            println!("ai4i: {} train / {} test rows", tr.len(), te.len());
        }
        Err(e) => println!("ai4i skipped: {e:#}"),
    }
    Ok(())
}

fn read_matrix(path: &Path) -> Result<(Array2<f64>, Vec<usize>)> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| path.display().to_string())?;
    let d = rdr.headers()?.len() - 1;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = rec?;
        for v in rec.iter().take(d) {
            x.push(v.parse::<f64>()?);
        }
        y.push(rec[d].parse::<usize>()?);
    }
    let n = y.len();
    Ok((Array2::from_shape_vec((n, d), x)?, y))
}

pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    let (xtr, ytr) = read_matrix(&a.train)?;
    let (xte, yte) = read_matrix(&a.test)?;
    let learner = match a.learner.as_str() {
        "histogram" => TreeLearner::Histogram,
        "linfa" => TreeLearner::LinfaTrees,
        other => bail!("unknown learner {other:?} (histogram | linfa)"),
    };
    let sampling = match a.sampling.as_str() {
        "sqrt_per_split" => FeatureSampling::SqrtPerSplit,
        "sqrt_per_tree" => FeatureSampling::SqrtPerTree,
        "all" => FeatureSampling::All,
        other => bail!("unknown sampling {other:?}"),
    };
    let params = RandomForestParams::default()
        .n_trees(a.trees)
        .max_depth(a.depth)
        .threads(a.threads)
        .learner(learner)
        .feature_sampling(sampling)
        .seed(a.seed);
    let mut fit_s = f64::INFINITY;
    let mut rf = None;
    for _ in 0..a.repeat.max(1) {
        let t0 = Instant::now();
        let m = params.fit_arrays(&xtr, &ytr)?;
        fit_s = fit_s.min(t0.elapsed().as_secs_f64());
        rf = Some(m);
    }
    let rf = rf.context("no fit")?;
    let flat = rf.compiled();
    let xs = xte.as_standard_layout().to_owned();
    let xs = xs.as_slice().context("layout")?;
    let mut out = vec![0.0; yte.len()];
    let mut out_ref = vec![0.0; yte.len()];
    // Batch: best of several passes over the whole test set, the scorer and the stored-node
    // reference walk interleaved so that both see the same machine load.
    let (mut batch_s, mut batch_ref_s) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let t0 = Instant::now();
        flat.predict_proba_batch(xs, &mut out, a.threads);
        batch_s = batch_s.min(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        flat.predict_proba_batch_reference(xs, &mut out_ref, a.threads);
        batch_ref_s = batch_ref_s.min(t0.elapsed().as_secs_f64());
    }
    let m = evaluate(&yte, &out, 0.5);
    // Single event: each test row scored alone, timed individually; one scorer over all rows,
    // then the other (interleaving them would have each evict the other's nodes from cache).
    let d = xte.ncols();
    let rows = yte.len().min(20_000);
    let mut sink = 0.0;
    let mut identical = out.iter().zip(&out_ref).all(|(a, b)| a.to_bits() == b.to_bits());
    let mut time_single = |score: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
        let mut lat = Vec::with_capacity(rows);
        for r in 0..rows {
            let row = &xs[r * d..(r + 1) * d];
            let t0 = Instant::now();
            let p = score(row);
            lat.push(t0.elapsed().as_nanos() as f64 / 1000.0);
            identical &= p.to_bits() == out[r].to_bits();
            sink += p;
        }
        lat
    };
    let mut lat = time_single(&|row| flat.predict_proba(row));
    let mut lat_ref = time_single(&|row| flat.predict_proba_reference(row));
    lat.sort_by(f64::total_cmp);
    lat_ref.sort_by(f64::total_cmp);
    let pct = |l: &[f64], q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
    let json = serde_json::json!({
        "impl": format!("proact-{}", a.learner),
        "sampling": a.sampling,
        "fit_s": fit_s,
        "f1": m.f1,
        "roc_auc": m.roc_auc,
        "batch_rows_per_s": yte.len() as f64 / batch_s,
        "single_p50_us": pct(&lat, 0.5),
        "single_p99_us": pct(&lat, 0.99),
        "reference_batch_rows_per_s": yte.len() as f64 / batch_ref_s,
        "reference_single_p50_us": pct(&lat_ref, 0.5),
        "reference_single_p99_us": pct(&lat_ref, 0.99),
        "bit_identical_to_reference": identical,
        "nodes": flat.nodes().len(),
        "quantised": flat.is_quantised(),
        "checksum": sink,
    });
    println!("{json}");
    Ok(())
}
