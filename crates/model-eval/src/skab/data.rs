//! Reading SKAB: its CSV files (semicolon-separated, naive local timestamps, an `anomaly`
//! label), their channels mapped to ProAct's, and the files grouped by experiment.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use proact_features::FeatureSchema;

use super::TRAIN_ROWS;

/// SKAB column → ProAct channel name. Temperature (motor body) and Accelerometer1RMS map to the
/// contract's `temperature` and `vibration`; the rest are extra channels.
pub(super) const SKAB_CHANNELS: [(&str, &str); 8] = [
    ("Temperature", "temperature"),
    ("Accelerometer1RMS", "vibration"),
    ("Accelerometer2RMS", "accelerometer2_rms"),
    ("Current", "current"),
    ("Pressure", "pressure"),
    ("Thermocouple", "thermocouple"),
    ("Voltage", "voltage"),
    ("Volume Flow RateRMS", "volume_flow_rate_rms"),
];

pub(super) struct Series {
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
    pub labels: Vec<usize>,
}

/// Reads one SKAB file. `labelled`: the `anomaly` column is required; otherwise (the
/// anomaly-free file, which has none) every row is labelled normal.
pub(super) fn read_skab(path: &Path, schema: &FeatureSchema, labelled: bool) -> Result<Series> {
    let mut rdr =
        csv::ReaderBuilder::new().delimiter(b';').from_path(path).with_context(|| path.display().to_string())?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| format!("{}: no column {name}", path.display()))
    };
    let ts_col = col("datetime")?;
    let label_col = if labelled { Some(col("anomaly")?) } else { None };
    let mut order = vec![0; schema.channels().len()];
    for (skab, ch) in SKAB_CHANNELS {
        let i = schema.channel_index(ch).context("schema lacks a SKAB channel")?;
        order[i] = col(skab)?;
    }
    let mut s = Series { ts: Vec::new(), values: Vec::new(), labels: Vec::new() };
    for rec in rdr.records() {
        let rec = rec?;
        s.ts.push(
            parse_naive_ms(&rec[ts_col])
                .with_context(|| format!("{}: bad datetime {:?}", path.display(), &rec[ts_col]))?,
        );
        for &c in &order {
            s.values
                .push(rec[c].parse::<f64>().with_context(|| format!("{}: bad number {:?}", path.display(), &rec[c]))?);
        }
        let label = match label_col {
            Some(c) => rec[c].parse::<f64>().with_context(|| format!("{}: bad label {:?}", path.display(), &rec[c]))?,
            None => 0.0,
        };
        s.labels.push(usize::from(label >= 0.5));
    }
    Ok(s)
}

/// `YYYY-MM-DD hh:mm:ss` (no zone; SKAB is local time, only differences matter) → ms.
pub(super) fn parse_naive_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (H. Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

pub(super) fn skab_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let root = dir.join("SKAB/data");
    let mut files = Vec::new();
    for sub in ["valve1", "valve2", "other"] {
        let d = root.join(sub);
        let rd = std::fs::read_dir(&d)
            .with_context(|| format!("{}: SKAB not found (use --datasets or PROACT_DATASETS)", d.display()))?;
        for e in rd {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "csv") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

pub(super) struct SkabFile {
    /// Path under `SKAB/data`, e.g. `valve1/0.csv`.
    pub name: String,
    /// Subfolder: one kind of experiment (`valve1`, `valve2`, `other`).
    pub group: String,
    pub series: Series,
}

pub(super) fn skab_schema() -> Result<FeatureSchema> {
    let extras: Vec<&str> = SKAB_CHANNELS[2..].iter().map(|(_, c)| *c).collect();
    Ok(FeatureSchema::with_extra_channels(&extras)?)
}

pub(super) fn load_skab(dir: &Path, schema: &FeatureSchema) -> Result<Vec<SkabFile>> {
    let root = dir.join("SKAB/data");
    let mut out = Vec::new();
    for path in skab_files(dir)? {
        let series = read_skab(&path, schema, true)?;
        if series.labels.len() <= TRAIN_ROWS {
            bail!("{}: {} rows, the protocol needs more than {TRAIN_ROWS}", path.display(), series.labels.len());
        }
        let rel = path.strip_prefix(&root).unwrap_or(&path);
        let group = rel.parent().map(|p| p.display().to_string()).unwrap_or_default();
        out.push(SkabFile { name: rel.display().to_string(), group, series });
    }
    Ok(out)
}
