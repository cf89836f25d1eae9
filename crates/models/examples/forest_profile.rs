//! Profiling driver for the compiled forest, meant to run under `valgrind --tool=cachegrind
//! --cache-sim=yes --branch-sim=yes` (simulated cache misses and branch mispredictions per row:
//! this machine's VM exposes no hardware counters, and timings are noisy under shared load).
//!
//! ```sh
//! cargo run --release -p proact-models --example forest_profile -- save /tmp/forest.model
//! valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes \
//!   target/release/examples/forest_profile score /tmp/forest.model batch 2000
//! ```
//! Modes: `none` (load only: subtract it), `single`, `single-ref`, `batch`, `batch-ref`
//! (`-ref` = the stored-node walk that was the scorer before the quantised form). Data and
//! forest are the benchmark's synthetic case: 50,000 × 20, 40k train, 100 trees, depth 16.

use std::path::Path;

use ndarray::Array2;
use proact_models::metrics::{stratified_split, synthetic_classification};
use proact_models::{ArtefactInfo, ModelArtefact, ModelPayload, RandomForestParams, SchemaRef};

fn data() -> (Vec<f64>, Vec<usize>, Vec<usize>, Vec<usize>) {
    let (x, y) = synthetic_classification(50_000, 20, 2026);
    let (tr, te) = stratified_split(&y, 0.2, 42);
    (x, y, tr, te)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let d = 20;
    match args.get(1).map(String::as_str) {
        Some("save") => {
            let (x, y, tr, _) = data();
            let xs: Vec<f64> = tr.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
            let ys: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
            let xa = Array2::from_shape_vec((tr.len(), d), xs)?;
            let rf =
                RandomForestParams::default().n_trees(100).max_depth(16).threads(2).seed(42).fit_arrays(&xa, &ys)?;
            let names: Vec<String> = (0..d).map(|i| format!("x{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let info = ArtefactInfo::new("profile", "1", SchemaRef::tabular("synthetic", &names));
            rf.to_artefact(info, 0.5).save(Path::new(&args[2]))?;
            let f = rf.compiled();
            println!("{} trees, {} nodes, {} bytes stored", f.n_trees(), f.nodes().len(), f.nodes().len() * 16);
        }
        Some("score") => {
            let a = ModelArtefact::load(Path::new(&args[2]))?;
            let ModelPayload::RandomForest { forest, .. } = &a.payload else { anyhow::bail!("not a forest") };
            let mode = args[3].as_str();
            let rows: usize = args[4].parse()?;
            let (x, _, _, te) = data();
            let xs: Vec<f64> = te.iter().take(rows).flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
            let mut out = vec![0.0; rows];
            match mode {
                "none" => {}
                "single" => (0..rows).for_each(|r| out[r] = forest.predict_proba(&xs[r * d..(r + 1) * d])),
                "single-ref" => {
                    (0..rows).for_each(|r| out[r] = forest.predict_proba_reference(&xs[r * d..(r + 1) * d]))
                }
                "batch" => forest.predict_proba_batch(&xs, &mut out, 1),
                "batch-ref" => forest.predict_proba_batch_reference(&xs, &mut out, 1),
                "time" => {
                    let mut best = f64::INFINITY;
                    for _ in 0..7 {
                        let t0 = std::time::Instant::now();
                        forest.predict_proba_batch(&xs, &mut out, 2);
                        best = best.min(t0.elapsed().as_secs_f64());
                    }
                    let mut lat: Vec<f64> = (0..rows)
                        .map(|r| {
                            let t0 = std::time::Instant::now();
                            std::hint::black_box(forest.predict_proba(&xs[r * d..(r + 1) * d]));
                            t0.elapsed().as_nanos() as f64 / 1000.0
                        })
                        .collect();
                    lat.sort_by(f64::total_cmp);
                    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
                    println!(
                        "batch {:.0} rows/s, single p50 {:.2} p90 {:.2} p99 {:.2} us",
                        rows as f64 / best,
                        p(0.5),
                        p(0.9),
                        p(0.99)
                    );
                }
                m => anyhow::bail!("unknown mode {m}"),
            }
            println!("{mode}: {rows} rows, sum {}", out.iter().sum::<f64>());
        }
        _ => anyhow::bail!("usage: forest_profile save FILE | score FILE MODE ROWS"),
    }
    Ok(())
}
