//! Training data: archived telemetry (PostgreSQL `telemetry`) or a labelled CSV, replayed per
//! equipment through the shared feature window, exactly as the detector computes features live
//! (`FeatureSchema::base()`, default `WindowConfig`), sampled every few seconds of event time,
//! and labelled from the GMAO history or the CSV's label column.
//!
//! Labels from the intervention history come from `proact_maintenance::labels::Labels`: imported
//! corrective interventions and closed work orders alike (positive within the horizon before a
//! failure's onset, hard negative before a false alarm, left out during a repair or around a
//! *no fault found*), docs/models.md "Labels from work orders".

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use proact_features::{FeatureSchema, Window, WindowConfig};
use proact_maintenance::labels::Labels;

use crate::error::TrainerError;

/// How windows are cut from a series.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// The detector's window (the default one, unless a test needs a smaller one).
    pub window: WindowConfig,
    /// One training row per equipment at most every this many ms of event time.
    pub every_ms: i64,
    /// Easy negatives (label 0, not a false alarm's hard negative) are kept at most every this
    /// many ms per equipment; 0 or less than `every_ms`: like every other row. Thinning them
    /// keeps a long healthy history from drowning short failure precursors in rows to fit
    /// (and raises the positives' share, so the forest flags more eagerly).
    pub negative_every_ms: i64,
    /// Rows are taken only once a series has run this long, so half-empty windows at the start
    /// of an export do not teach the model what a cold start looks like.
    pub warmup_ms: i64,
}

impl Default for Sampling {
    fn default() -> Self {
        let window = WindowConfig::default();
        Sampling { window, every_ms: 600_000, negative_every_ms: 0, warmup_ms: window.max_span_ms }
    }
}

/// Feature rows with labels, in equipment then time order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub schema: FeatureSchema,
    pub equipment: Vec<String>,
    /// Per row: index into `equipment`.
    pub eq: Vec<u32>,
    pub ts_ms: Vec<i64>,
    /// Row-major, `schema.len()` values per row.
    pub x: Vec<f64>,
    /// 1 = the window precedes a failure (or the CSV says anomalous).
    pub y: Vec<u8>,
    /// Where the rows came from, e.g. `archive:telemetry, labels gmao:corrective 12, work orders 3
    /// confirmed / 1 false alarms / 0 no fault found, horizon 48 h`.
    pub source: String,
}

impl Dataset {
    fn new(source: String) -> Self {
        Dataset {
            schema: FeatureSchema::base(),
            equipment: Vec::new(),
            eq: Vec::new(),
            ts_ms: Vec::new(),
            x: Vec::new(),
            y: Vec::new(),
            source,
        }
    }

    pub fn rows(&self) -> usize {
        self.y.len()
    }

    pub fn n_features(&self) -> usize {
        self.schema.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let d = self.n_features();
        &self.x[i * d..(i + 1) * d]
    }

    pub fn positives(&self) -> usize {
        self.y.iter().filter(|&&v| v == 1).count()
    }

    /// Event-time range of the rows.
    pub fn range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let lo = *self.ts_ms.iter().min()?;
        let hi = *self.ts_ms.iter().max()?;
        Some((DateTime::from_timestamp_millis(lo)?, DateTime::from_timestamp_millis(hi)?))
    }

    fn equipment_index(&mut self, id: &str) -> u32 {
        match self.equipment.iter().position(|e| e == id) {
            Some(i) => i as u32,
            None => {
                self.equipment.push(id.to_string());
                (self.equipment.len() - 1) as u32
            }
        }
    }
}

/// Replays one equipment's series (in event-time order) and decides which events yield a row.
struct Sampler {
    cfg: Sampling,
    window: Window,
    first: Option<i64>,
    last_row: Option<i64>,
    /// The last easy negative kept ([`Sampling::negative_every_ms`]).
    last_negative: Option<i64>,
    buf: Vec<f64>,
}

impl Sampler {
    fn new(schema: &FeatureSchema, cfg: Sampling) -> Self {
        Sampler {
            cfg,
            window: Window::new(schema, cfg.window),
            first: None,
            last_row: None,
            last_negative: None,
            buf: vec![0.0; schema.len()],
        }
    }

    /// Whether a row at `ts_ms` labelled `label` is kept: every positive and hard negative,
    /// easy negatives at most every `negative_every_ms` (when that is longer than the stride).
    fn keeps(&mut self, ts_ms: i64, label: u8, hard_negative: impl FnOnce() -> bool) -> bool {
        if label != 0 || self.cfg.negative_every_ms <= self.cfg.every_ms {
            return true;
        }
        let thinned = self.last_negative.is_some_and(|l| ts_ms - l < self.cfg.negative_every_ms);
        if thinned && !hard_negative() {
            return false;
        }
        self.last_negative = Some(ts_ms);
        true
    }

    /// Pushes one event; returns the window's features when this event yields a training row.
    fn push(&mut self, ts_ms: i64, values: &[f64]) -> Option<&[f64]> {
        let placed = self.window.push(ts_ms, values).ok()?;
        if !placed.accepted() {
            return None;
        }
        let first = *self.first.get_or_insert(ts_ms);
        if ts_ms - first < self.cfg.warmup_ms || self.last_row.is_some_and(|l| ts_ms - l < self.cfg.every_ms) {
            return None;
        }
        self.window.write_features(&mut self.buf).ok()?;
        self.last_row = Some(ts_ms);
        Some(&self.buf)
    }
}

/// Reads `telemetry` in `[from, to)` equipment by equipment, streaming (the history may not fit
/// in memory, the sampled rows do), and labels each row from `labels`.
pub async fn from_archive(
    client: &tokio_postgres::Client,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sampling: Sampling,
    labels: &Labels,
) -> Result<Dataset, TrainerError> {
    let mut ds = Dataset::new(format!("archive:telemetry, {}", labels.describe()));
    let schema = ds.schema.clone();
    let mut current: Option<(String, u32, Sampler)> = None;
    proact_store::telemetry::for_each_reading(client, from, to, |id, ts_ms, values| {
        if current.as_ref().is_none_or(|(c, _, _)| c != id) {
            let idx = ds.equipment_index(id);
            current = Some((id.to_string(), idx, Sampler::new(&schema, sampling)));
        }
        let (eq, idx, sampler) = current.as_mut().expect("set above");
        let Some(label) = sampler.push(ts_ms, &values).is_some().then(|| labels.label(eq, ts_ms)).flatten() else {
            return;
        };
        if !sampler.keeps(ts_ms, label, || labels.is_hard_negative(eq, ts_ms)) {
            return;
        }
        ds.eq.push(*idx);
        ds.ts_ms.push(ts_ms);
        ds.x.extend_from_slice(&sampler.buf);
        ds.y.push(label);
    })
    .await?;
    Ok(ds)
}

fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

fn parse_label(s: &str) -> Option<u8> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "anomaly" => Some(1),
        "false" | "no" | "normal" | "" => Some(0),
        other => other.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| u8::from(v != 0.0)),
    }
}

/// A labelled CSV: a timestamp column (`timestamp`, `ts`, `datetime` or `time`; RFC 3339 or
/// `YYYY-MM-DD HH:MM:SS` in UTC), `temperature`, `vibration`, the label column (1/0, true/false),
/// and optionally `equipement_id` (else the whole file is one equipment named after the file).
/// Each row's label is the label of the window ending at it.
pub fn from_csv(path: &Path, label_column: &str, sampling: Sampling) -> Result<Dataset, TrainerError> {
    let bad = |m: String| TrainerError::Data(format!("{}: {m}", path.display()));
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers: Vec<String> =
        rdr.headers().map_err(|e| bad(e.to_string()))?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let ts_col = col(&["timestamp", "ts", "datetime", "time"])
        .ok_or_else(|| bad("no timestamp column (timestamp, ts, datetime or time)".into()))?;
    let t_col = col(&["temperature"]).ok_or_else(|| bad("no temperature column".into()))?;
    let v_col = col(&["vibration"]).ok_or_else(|| bad("no vibration column".into()))?;
    let label_lc = label_column.to_ascii_lowercase();
    let l_col = col(&[label_lc.as_str()])
        .ok_or_else(|| bad(format!("no label column {label_column:?} (see --label-column)")))?;
    let eq_col = col(&["equipement_id", "equipment_id"]);
    let default_eq = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "csv".into());

    let mut series: HashMap<String, Vec<(i64, [f64; 2], u8)>> = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let line = i + 2;
        let field = |c: usize| rec.get(c).unwrap_or("");
        let ts =
            parse_ts(field(ts_col)).ok_or_else(|| bad(format!("line {line}: bad timestamp {:?}", field(ts_col))))?;
        // A missing measurement is carried forward by the window, as live.
        let num = |c: usize| field(c).trim().parse::<f64>().unwrap_or(f64::NAN);
        let label =
            parse_label(field(l_col)).ok_or_else(|| bad(format!("line {line}: bad label {:?}", field(l_col))))?;
        let eq = eq_col.map(|c| field(c).trim().to_string()).filter(|s| !s.is_empty()).unwrap_or(default_eq.clone());
        series.entry(eq).or_default().push((ts, [num(t_col), num(v_col)], label));
    }
    let mut ds = Dataset::new(format!("csv:{} (label column {label_column})", path.display()));
    let schema = ds.schema.clone();
    let mut ids: Vec<String> = series.keys().cloned().collect();
    ids.sort();
    for id in ids {
        let mut rows = series.remove(&id).unwrap_or_default();
        rows.sort_by_key(|r| r.0);
        let idx = ds.equipment_index(&id);
        let mut sampler = Sampler::new(&schema, sampling);
        for (ts, values, label) in rows {
            if let Some(f) = sampler.push(ts, &values) {
                ds.eq.push(idx);
                ds.ts_ms.push(ts);
                ds.x.extend_from_slice(f);
                ds.y.push(label);
            }
        }
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easy_negatives_are_thinned_and_the_rest_kept() {
        let cfg = Sampling { every_ms: 10_000, negative_every_ms: 60_000, ..Sampling::default() };
        let mut s = Sampler::new(&FeatureSchema::base(), cfg);
        let kept: Vec<i64> = (0..13).map(|i| i * 10_000).filter(|&t| s.keeps(t, 0, || false)).collect();
        assert_eq!(kept, vec![0, 60_000, 120_000], "one easy negative a minute");
        assert!(s.keeps(130_000, 1, || false), "every positive");
        assert!(s.keeps(140_000, 0, || true), "every hard negative");
        assert!(!s.keeps(150_000, 0, || false), "a minute after the last negative kept");
        let mut off = Sampler::new(&FeatureSchema::base(), Sampling { negative_every_ms: 0, ..cfg });
        assert!((0..13).all(|i| off.keeps(i * 10_000, 0, || false)), "no thinning by default");
    }

    #[test]
    fn csv_rows_follow_the_window_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pump.csv");
        let mut s = String::from("timestamp,temperature,vibration,anomaly\n");
        for i in 0..300 {
            let t = DateTime::from_timestamp(1_767_225_600 + i, 0).unwrap().to_rfc3339();
            s.push_str(&format!("{t},{},{},{}\n", 60.0 + (i % 7) as f64, 3.0, u8::from(i >= 200)));
        }
        std::fs::write(&p, s).unwrap();
        let cfg = Sampling { every_ms: 5_000, ..Sampling::default() };
        let ds = from_csv(&p, "anomaly", cfg).unwrap();
        assert_eq!(ds.equipment, vec!["pump".to_string()]);
        // Warm-up 60 s, then one row every 5 s up to t = 299 s.
        assert_eq!(ds.rows(), 48);
        assert_eq!(ds.positives(), 20);
        assert_eq!(ds.x.len(), ds.rows() * ds.n_features());
        assert!(from_csv(&p, "nope", cfg).unwrap_err().to_string().contains("--label-column"));
    }
}
