//! `proact-model-eval nab`: scores a detector's per-row output on the NAB development series
//! with the NAB rules of [`proact_model_eval::nab`], beside the published detectors.
//!
//! The results directory follows NAB's layout (`<family>/<file>.csv`, or `<family>/<prefix>_<file>.csv`
//! as NAB names a detector's outputs), one row per row of the data file, with a `timestamp`
//! column and a score column. Two ways of turning scores into detections are reported:
//! - the NAB way: one threshold on the score column for the whole corpus, optimised per profile
//!   (this looks at the labels; it is how NAB's scoreboard and the published rows are made);
//! - fixed detections (`--detections-column`, e.g. the replay's episode onsets): the detector's
//!   own alerting decisions, made without any label, scored as they are.
//!
//! `--check-published` verifies the scorer against NAB's own per-row scores shipped with the HTM
//! outputs (`S(t)_<profile>` columns at NAB's thresholds from `config/thresholds.json`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use proact_model_eval::nab::{
    load_profiles, load_windows, read_columns, sweep, sweep_crossings, LabelledFile, Outcome, Profile,
};

#[derive(clap::Args)]
pub struct NabArgs {
    #[command(flatten)]
    data: crate::DataDir,
    /// Detector outputs in NAB's layout (default: the HTM outputs shipped in NAB_dev).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Column holding the continuous anomaly score.
    #[arg(long, default_value = "anomaly_score")]
    score_column: String,
    /// Column marking the detector's own detections (non-zero = a detection), scored as they are.
    #[arg(long)]
    detections_column: Option<String>,
    /// Name printed for the detector.
    #[arg(long, default_value = "HTM (numenta), shipped outputs")]
    name: String,
    /// Check the scorer against NAB's per-row scores in the shipped HTM outputs; fails on a mismatch.
    #[arg(long)]
    check_published: bool,
    /// One line per file.
    #[arg(long)]
    per_file: bool,
    /// Also sweep the threshold with a detection where the score crosses it (for a score that
    /// stays high while an alarm lasts, as the replay's online score does), not on every row
    /// at or above it.
    #[arg(long)]
    crossings: bool,
    /// Score only these families (e.g. `realTraffic,realTweets`: a part held out from tuning);
    /// default all. The published rows are for all 51 files, not comparable with a part.
    #[arg(long, value_delimiter = ',')]
    families: Vec<String>,
}

/// Published NAB standard scores on exactly these 51 files (NAB_dev/SOURCE.md).
const PUBLISHED_STANDARD: [(&str, f64); 5] = [
    ("ARTime", 77.0),
    ("HTM (numenta)", 73.0),
    ("relative entropy", 55.6),
    ("Random Cut Forest", 55.1),
    ("windowed Gaussian", 44.8),
];

struct ResultFile {
    labelled: LabelledFile,
    scores: Vec<f64>,
    detections: Vec<usize>,
    /// NAB's own per-row scores (`S(t)_<profile>`), with --check-published.
    published: Vec<Vec<f64>>,
}

fn result_path(dir: &Path, name: &str) -> Result<PathBuf> {
    let (family, file) = name.split_once('/').with_context(|| format!("window key {name:?} is not family/file"))?;
    let direct = dir.join(family).join(file);
    if direct.is_file() {
        return Ok(direct);
    }
    let suffix = format!("_{file}");
    let found = std::fs::read_dir(dir.join(family))
        .with_context(|| format!("reading {}", dir.join(family).display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|f| f.to_string_lossy().ends_with(&suffix)));
    found.with_context(|| format!("no result for {name} in {} (looked for {file} and *{suffix})", dir.display()))
}

fn load(a: &NabArgs, nab: &Path, profiles: &[Profile]) -> Result<Vec<ResultFile>> {
    let windows = load_windows(&nab.join("labels/combined_windows.json"))?;
    let mut names: Vec<&String> = windows
        .keys()
        .filter(|n| a.families.is_empty() || a.families.iter().any(|f| n.split('/').next() == Some(f.as_str())))
        .collect();
    if names.is_empty() {
        bail!("no NAB file in families {:?}", a.families);
    }
    names.sort();
    let results = a.results.clone().unwrap_or_else(|| nab.join("results/numenta"));
    let mut columns = vec![a.score_column.as_str()];
    if let Some(d) = &a.detections_column {
        columns.push(d);
    }
    let published: Vec<String> = profiles.iter().map(|p| format!("S(t)_{}", p.name)).collect();
    if a.check_published {
        columns.extend(published.iter().map(String::as_str));
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let data = read_columns(&nab.join("data").join(name), &["value"])?;
        let path = result_path(&results, name)?;
        let mut c = read_columns(&path, &columns)?;
        if c.ts != data.ts {
            bail!("{}: its timestamps are not those of data/{name} (one output row per input row)", path.display());
        }
        let labelled = LabelledFile::new(name, &c.ts, &windows[name])?;
        let mut values = c.values.drain(..);
        let scores = values.next().expect("score column asked");
        let detections = match &a.detections_column {
            Some(_) => {
                let d = values.next().expect("detections column asked");
                d.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect()
            }
            None => Vec::new(),
        };
        out.push(ResultFile { labelled, scores, detections, published: values.collect() });
    }
    Ok(out)
}

/// NAB's threshold per profile for the HTM detector (`config/thresholds.json`, key `numenta`).
fn htm_thresholds(nab: &Path, profiles: &[Profile]) -> Result<Vec<f64>> {
    let path = nab.join("config/thresholds.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    profiles
        .iter()
        .map(|p| {
            json["numenta"][&p.name]["threshold"]
                .as_f64()
                .with_context(|| format!("{}: no numenta.{}.threshold", path.display(), p.name))
        })
        .collect()
}

fn check_published(nab: &Path, files: &[ResultFile], profiles: &[Profile]) -> Result<()> {
    let thresholds = htm_thresholds(nab, profiles)?;
    println!("\nScorer check against NAB's own per-row scores (HTM outputs, NAB's thresholds over 58 files):");
    println!("| profile | threshold | files | files matching | our raw sum | NAB's raw sum |\n|---|---:|---:|---:|---:|---:|");
    let mut bad = Vec::new();
    for (k, (p, t)) in profiles.iter().zip(&thresholds).enumerate() {
        let (mut ours, mut theirs, mut matching) = (0.0, 0.0, 0);
        for f in files {
            let det = f.scores.iter().enumerate().filter(|(_, s)| **s >= *t).map(|(i, _)| i);
            let o = f.labelled.score_detections(det, p).raw;
            let nab_raw: f64 = f.published[k].iter().sum();
            ours += o;
            theirs += nab_raw;
            if (o - nab_raw).abs() < 1e-6 {
                matching += 1;
            } else {
                bad.push(format!("{} {}: ours {o:.9}, NAB {nab_raw:.9}", p.name, f.labelled.name));
            }
        }
        println!("| {} | {t:.6} | {} | {matching} | {ours:.6} | {theirs:.6} |", p.name, files.len());
    }
    if !bad.is_empty() {
        bail!("the scorer disagrees with NAB on {} file × profile pairs:\n{}", bad.len(), bad.join("\n"));
    }
    Ok(())
}

pub fn nab(a: &NabArgs) -> Result<()> {
    let nab = a.data.dir.join("NAB_dev");
    let profiles = load_profiles(&nab.join("config/profiles.json"))?;
    let files = load(a, &nab, &profiles)?;
    let windows: usize = files.iter().map(|f| f.labelled.windows()).sum();
    println!(
        "NAB development series: {} files, {} windows, {} rows; detector: {}",
        files.len(),
        windows,
        files.iter().map(|f| f.labelled.rows()).sum::<usize>(),
        a.name
    );
    if a.check_published {
        check_published(&nab, &files, &profiles)?;
    }
    let pairs: Vec<(&LabelledFile, &[f64])> = files.iter().map(|f| (&f.labelled, &f.scores[..])).collect();
    println!("\n| {} | profile | NAB score | threshold | windows found | missed | false positives |", a.name);
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut standard = Vec::new();
    for p in &profiles {
        let mut sweeps =
            vec![("one threshold optimised over the corpus", "NAB's way, sees the labels", sweep(&pairs, p)?)];
        if a.crossings {
            let how = "a detection where the score crosses it, sees the labels";
            sweeps.push(("one threshold optimised over the corpus, crossings", how, sweep_crossings(&pairs, p)?));
        }
        for (what, how, s) in sweeps {
            println!(
                "| {what} ({how}) | {} | {:.1} | {:.6} | {} | {} | {} |",
                p.name, s.score, s.threshold, s.outcome.tp, s.outcome.fn_, s.outcome.fp
            );
            if p.name == "standard" {
                standard.push((what, s.score));
            }
        }
        if a.detections_column.is_some() {
            let mut total = Outcome::default();
            for f in &files {
                total.add(&f.labelled.score_detections(f.detections.iter().copied(), p));
            }
            let score = total.normalised(p);
            println!(
                "| its own detections (no label used) | {} | {:.1} | | {} | {} | {} |",
                p.name, score, total.tp, total.fn_, total.fp
            );
            if p.name == "standard" {
                standard.push(("its own detections", score));
            }
        }
    }
    if !a.families.is_empty() {
        println!("\n(families {}: the published rows below are for all 51 files)", a.families.join(", "));
    }
    println!("\nStandard profile beside the published detectors (51 files, one threshold swept over them):");
    println!("| detector | NAB standard |\n|---|---:|");
    for (how, s) in &standard {
        println!("| **{} ({how})** | **{s:.1}** |", a.name);
    }
    for (name, s) in PUBLISHED_STANDARD {
        println!("| {name} (published) | {s:.1} |");
    }
    println!("| null (never fires) | 0.0 |");
    if a.per_file {
        let p = &profiles[0];
        println!("\n| file | windows | standard raw (own detections or swept threshold) |\n|---|---:|---:|");
        let best = sweep(&pairs, p)?.threshold;
        for f in &files {
            let o = if a.detections_column.is_some() {
                f.labelled.score_detections(f.detections.iter().copied(), p)
            } else {
                let det = f.scores.iter().enumerate().filter(|(_, s)| **s >= best).map(|(i, _)| i);
                f.labelled.score_detections(det, p)
            };
            println!("| {} | {} | {:.3} |", f.labelled.name, f.labelled.windows(), o.raw);
        }
    }
    Ok(())
}
