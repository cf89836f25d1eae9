//! `ai4i`: AI4I 2020 failure prediction (Type one-hot and the five numeric columns,
//! stratified 80/20), beside scikit-learn's F1 on the same split when the trainer benchmark has
//! produced it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::Array2;
use proact_models::metrics::{evaluate, stratified_split};
use proact_models::RandomForestParams;

use crate::DataDir;

#[derive(clap::Args)]
pub(crate) struct Ai4iArgs {
    #[command(flatten)]
    data: DataDir,
    #[arg(long, default_value_t = 100)]
    trees: usize,
    #[arg(long, default_value_t = 16)]
    depth: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// scikit-learn results written by bench/trainer/run.sh, printed alongside.
    #[arg(long, default_value = "target/bench-trainer/results.json")]
    sklearn: PathBuf,
}

pub(crate) const AI4I_FEATURES: [&str; 8] = [
    "type_l",
    "type_m",
    "type_h",
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
];

pub(crate) fn read_ai4i(dir: &Path) -> Result<(Array2<f64>, Vec<usize>)> {
    let path = dir.join("AI4I2020/ai4i2020.csv");
    let bytes = std::fs::read(&path)
        .with_context(|| format!("{}: AI4I not found (use --datasets or PROACT_DATASETS)", path.display()))?;
    // The file starts with a UTF-8 BOM that would otherwise glue itself to the first header.
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut rdr = csv::ReaderBuilder::new().from_reader(body);
    let headers = rdr.headers()?.clone();
    let col =
        |name: &str| headers.iter().position(|h| h.trim() == name).with_context(|| format!("AI4I: no column {name:?}"));
    let numeric = [
        col("Air temperature [K]")?,
        col("Process temperature [K]")?,
        col("Rotational speed [rpm]")?,
        col("Torque [Nm]")?,
        col("Tool wear [min]")?,
    ];
    let (type_col, label_col) = (col("Type")?, col("Machine failure")?);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for rec in rdr.records() {
        let rec = rec?;
        let t = rec[type_col].trim();
        x.extend([f64::from(t == "L"), f64::from(t == "M"), f64::from(t == "H")]);
        for c in numeric {
            x.push(rec[c].trim().parse::<f64>().with_context(|| format!("AI4I: bad number {:?}", &rec[c]))?);
        }
        y.push(rec[label_col].trim().parse::<usize>()?);
    }
    let n = y.len();
    Ok((Array2::from_shape_vec((n, AI4I_FEATURES.len()), x)?, y))
}

pub(crate) fn ai4i(a: &Ai4iArgs) -> Result<()> {
    let (x, y) = read_ai4i(&a.data.dir)?;
    let (train, test) = stratified_split(&y, 0.2, a.seed);
    let xtr = x.select(ndarray::Axis(0), &train);
    let ytr: Vec<usize> = train.iter().map(|&i| y[i]).collect();
    let xte = x.select(ndarray::Axis(0), &test);
    let yte: Vec<usize> = test.iter().map(|&i| y[i]).collect();
    let params = RandomForestParams::default().n_trees(a.trees).max_depth(a.depth).seed(a.seed);
    let t0 = Instant::now();
    let rf = params.fit_arrays(&xtr, &ytr)?;
    let fit_s = t0.elapsed().as_secs_f64();
    let m = evaluate(&yte, rf.predict_proba(&xte).as_slice().unwrap_or_default(), 0.5);
    println!(
        "AI4I 2020 machine failure: {} rows, stratified 80/20 (seed {}), {} trees, depth {}",
        y.len(),
        a.seed,
        a.trees,
        a.depth
    );
    println!("| Implementation | F1 | precision | recall | ROC AUC | fit s |\n|---|---|---|---|---|---|");
    println!(
        "| ProAct RandomForest | {:.4} | {:.4} | {:.4} | {:.4} | {fit_s:.3} |",
        m.f1, m.precision, m.recall, m.roc_auc
    );
    match std::fs::read_to_string(&a.sklearn).ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) {
        Some(v) => match v.get("ai4i").and_then(|d| d.get("sklearn")) {
            Some(sk) => println!(
                "| scikit-learn RandomForestClassifier (same split, from {}) | {:.4} | | | {:.4} | {:.3} |",
                a.sklearn.display(),
                sk["f1"].as_f64().unwrap_or(f64::NAN),
                sk["roc_auc"].as_f64().unwrap_or(f64::NAN),
                sk["fit_s"].as_f64().unwrap_or(f64::NAN)
            ),
            None => println!("(no AI4I entry in {}: run bench/trainer/run.sh)", a.sklearn.display()),
        },
        None => println!("(scikit-learn numbers: run bench/trainer/run.sh, which writes {})", a.sklearn.display()),
    }
    println!("confusion: {:?}", m.confusion);
    let mut imp: Vec<(&str, f64)> = AI4I_FEATURES.iter().copied().zip(rf.importances.iter().copied()).collect();
    imp.sort_by(|p, q| q.1.total_cmp(&p.1));
    println!("importances: {}", imp.iter().map(|(n, v)| format!("{n} {v:.3}")).collect::<Vec<_>>().join(", "));
    Ok(())
}
