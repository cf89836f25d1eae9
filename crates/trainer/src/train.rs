//! One training run: data ([`crate::dataset`]) → seeded stratified 80/20 split → fit → held-out
//! metrics → artefact → candidate in the registry → promotion gate.
//!
//! Models (names are what the detector maps, see `anomaly-detector/src/models.rs`):
//! - `anomaly-rf`: the RandomForest over the shared features of every equipment, labelled from
//!   the GMAO history (or the CSV); skipped with a message when there is no positive label.
//! - `normal-behaviour/<equipement_id>`: per equipment, fitted on its failure-free training
//!   rows only, threshold calibrated on them (a quantile of training distances × margin);
//!   metrics on its held-out rows, meaningful when that equipment has failure labels.
//!
//! No model is trained on the AMDEC table: its criticality is a function of S, O and D, and
//! where those are missing the equipment type predicts less than the same mode's scores
//! elsewhere in the AMDEC (measured in docs/models.md, "Criticality").

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ndarray::Array2;
use proact_maintenance::labels::Labels;
use proact_models::metrics::{evaluate, stratified_split};
use proact_models::{ArtefactInfo, NormalBehaviourParams, RandomForestParams, SchemaRef, TrainingRange};
use proact_proto::v1::{ModelEvent, ModelVersion};
use serde_json::json;

use crate::dataset::{self, Dataset, Sampling};
use crate::error::TrainerError;
use crate::registry::{metrics_json, Candidate, Holdout, Registry};

/// Name of the supervised anomaly model (the detector's `FOREST_MODEL`).
pub const FOREST_MODEL: &str = "anomaly-rf";
/// Prefix of the per-equipment normal-behaviour models (the detector's `NORMAL_PREFIX`).
pub const NORMAL_PREFIX: &str = "normal-behaviour/";

/// Everything a run needs besides the registry.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub sampling: Sampling,
    /// A window is positive when a corrective intervention starts within this after it.
    pub horizon_ms: i64,
    /// Telemetry read: `[to − history, to)` unless `from`/`to` are given (`to` defaults to now).
    pub history_days: u32,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub rf: RandomForestParams,
    /// Class-1 probability at which the forest flags (stored in the artefact).
    pub rf_threshold: f64,
    pub nb: NormalBehaviourParams,
    /// Fewer failure-free training rows than this: no normal-behaviour model for the equipment.
    pub nb_min_rows: usize,
    /// Train from this labelled CSV instead of the archive and the GMAO history.
    pub labelled_csv: Option<PathBuf>,
    pub label_column: String,
    pub test_fraction: f64,
    pub split_seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            sampling: Sampling::default(),
            horizon_ms: 48 * 3_600_000,
            history_days: 90,
            from: None,
            to: None,
            rf: RandomForestParams::default().n_trees(100).max_depth(12),
            rf_threshold: 0.5,
            nb: NormalBehaviourParams { margin: 2.0, ..NormalBehaviourParams::default() },
            nb_min_rows: 32,
            labelled_csv: None,
            label_column: "label".into(),
            test_fraction: 0.2,
            split_seed: proact_dataprep::SPLIT_SEED,
        }
    }
}

impl TrainSettings {
    fn range(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or(to - chrono::Duration::days(i64::from(self.history_days)));
        (from, to)
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct TrainOutcome {
    pub trained: Vec<ModelVersion>,
    /// One per trained version: PROMOTED or REFUSED (with the gate's reason).
    pub events: Vec<ModelEvent>,
    /// Models not trained, and why.
    pub skipped: Vec<String>,
}

/// Which models a `--name` asks for.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    forest: bool,
    /// None: no normal-behaviour model; Some(None): every equipment; Some(Some(id)): one.
    normal: Option<Option<String>>,
}

fn wanted(name: &str) -> Result<Wanted, TrainerError> {
    let name = name.trim();
    Ok(match name {
        "" => Wanted { forest: true, normal: Some(None) },
        FOREST_MODEL => Wanted { forest: true, normal: None },
        "normal-behaviour" | NORMAL_PREFIX => Wanted { forest: false, normal: Some(None) },
        _ => match name.strip_prefix(NORMAL_PREFIX) {
            Some(eq) => Wanted { forest: false, normal: Some(Some(eq.to_string())) },
            None => {
                return Err(TrainerError::Data(format!(
                    "unknown model {name:?}: use {FOREST_MODEL}, normal-behaviour or {NORMAL_PREFIX}<equipement_id> \
                     (criticality-rf is no longer trained: docs/models.md, \"Criticality\")"
                )))
            }
        },
    })
}

/// The next version of a name: `YYYYMMDD-HHMMSS` of the run, made greater than the latest
/// stored version when the clock did not move on (`.001`, `.002`…), so versions of a name sort
/// in the order they were made.
pub fn next_version(base: &str, latest: Option<&str>) -> String {
    match latest {
        Some(l) if l >= base => match l.rsplit_once('.') {
            Some((head, n)) if n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{head}.{:03}", n.parse::<u32>().unwrap_or(0) + 1)
            }
            _ => format!("{l}.001"),
        },
        _ => base.to_string(),
    }
}

/// Serialises runs (schedule, gRPC, CLI in one process) and holds the settings.
#[derive(Clone)]
pub struct Trainer {
    registry: Registry,
    settings: Arc<TrainSettings>,
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl Trainer {
    pub fn new(registry: Registry, settings: TrainSettings) -> Self {
        Trainer { registry, settings: Arc::new(settings), busy: Arc::default() }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Trains `name` (every model when empty); refuses to start while another run is going.
    pub async fn run(&self, name: &str) -> Result<TrainOutcome, TrainerError> {
        let _guard = self.busy.try_lock().map_err(|_| TrainerError::Busy)?;
        let started = std::time::Instant::now();
        let r = train(&self.registry, &self.settings, name, Utc::now()).await;
        metrics::histogram!("proact_trainer_run_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("proact_trainer_runs_total", "result" => if r.is_ok() { "ok" } else { "error" }).increment(1);
        r
    }
}

/// One run at `now` (used for the default range and the version names).
pub async fn train(
    registry: &Registry,
    s: &TrainSettings,
    name: &str,
    now: DateTime<Utc>,
) -> Result<TrainOutcome, TrainerError> {
    let want = wanted(name)?;
    let ds = match &s.labelled_csv {
        Some(p) => {
            let (p, col, sampling) = (p.clone(), s.label_column.clone(), s.sampling);
            tokio::task::spawn_blocking(move || dataset::from_csv(&p, &col, sampling)).await??
        }
        None => {
            let client = registry.pool().get().await?;
            let (from, to) = s.range(now);
            let labels = Labels::load(&client, s.horizon_ms).await?;
            dataset::from_archive(&client, from, to, s.sampling, &labels).await?
        }
    };
    tracing::info!(
        rows = ds.rows(),
        positives = ds.positives(),
        equipment = ds.equipment.len(),
        source = %ds.source,
        "training data ready"
    );
    let mut out = TrainOutcome::default();
    if ds.rows() == 0 {
        out.skipped.push(format!(
            "no training rows from {} (empty range, or every series shorter than the {} s warm-up): nothing trained",
            ds.source,
            s.sampling.warmup_ms / 1000
        ));
        return Ok(out);
    }
    let latest = registry.latest_versions().await?;
    let base = now.format("%Y%m%d-%H%M%S").to_string();
    let version_of = move |name: &str| next_version(&base, latest.get(name).map(String::as_str));
    let created_at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (ds, settings) = (Arc::new(ds), s.clone());
    let (candidates, skipped) = tokio::task::spawn_blocking(move || {
        let mut candidates = Vec::new();
        let mut skipped = Vec::new();
        let mut push = |r: Result<Candidate, String>| match r {
            Ok(c) => candidates.push(c),
            Err(why) => {
                tracing::warn!(reason = %why, "model skipped");
                skipped.push(why)
            }
        };
        if want.forest && ds.rows() > 0 {
            push(fit_forest(&ds, &settings, &version_of(FOREST_MODEL), &created_at));
        }
        if let Some(only) = &want.normal {
            let mut found = false;
            for (i, eq) in ds.equipment.iter().enumerate() {
                if only.as_ref().is_some_and(|o| o != eq) {
                    continue;
                }
                found = true;
                let name = format!("{NORMAL_PREFIX}{eq}");
                push(fit_normal(&ds, &settings, i as u32, &name, &version_of(&name), &created_at));
            }
            if let (Some(eq), false) = (only, found) {
                push(Err(format!("{NORMAL_PREFIX}{eq}: no training rows for this equipment")));
            }
        }
        (candidates, skipped)
    })
    .await?;
    out.skipped = skipped;
    for c in candidates {
        let mv = registry.insert_candidate(&c).await?;
        tracing::info!(model = %mv.name, version = %mv.version, f1 = c.metrics["f1"].as_f64(), "candidate stored");
        let ev = registry.promote(&mv.name, &mv.version, false).await?;
        tracing::info!(model = %mv.name, version = %mv.version, kind = ev.kind, detail = %ev.detail, "promotion gate");
        out.trained.push(mv);
        out.events.push(ev);
    }
    Ok(out)
}

fn training_range(ds: &Dataset, rows: usize, equipement_id: Option<String>, idx: &[usize]) -> TrainingRange {
    let ts = idx.iter().map(|&i| ds.ts_ms[i]);
    let fmt = |ms: Option<i64>| {
        ms.and_then(DateTime::from_timestamp_millis).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    TrainingRange { source: ds.source.clone(), from: fmt(ts.clone().min()), to: fmt(ts.max()), rows, equipement_id }
}

fn data_params(s: &TrainSettings, ds: &Dataset) -> serde_json::Value {
    json!({
        "source": ds.source,
        "feature_schema_id": ds.schema.id(),
        "window": {
            "max_span_ms": s.sampling.window.max_span_ms,
            "max_len": s.sampling.window.max_len,
            "tolerance_ms": s.sampling.window.tolerance_ms,
        },
        "sample_every_ms": s.sampling.every_ms,
        "negative_every_ms": s.sampling.negative_every_ms,
        "warmup_ms": s.sampling.warmup_ms,
        "label_horizon_ms": s.horizon_ms,
        "test_fraction": s.test_fraction,
        "split_seed": s.split_seed,
    })
}

fn range_of(r: &TrainingRange) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let p = |s: &Option<String>| {
        s.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
    };
    (p(&r.from), p(&r.to))
}

fn holdout(ds: &Dataset, test: &[usize]) -> Holdout {
    Holdout {
        n_features: ds.n_features(),
        x: test.iter().flat_map(|&i| ds.row(i).iter().copied()).collect(),
        y: test.iter().map(|&i| ds.y[i]).collect(),
    }
}

fn fit_forest(ds: &Dataset, s: &TrainSettings, version: &str, created_at: &str) -> Result<Candidate, String> {
    let (n, pos) = (ds.rows(), ds.positives());
    if pos == 0 {
        return Err(format!(
            "{FOREST_MODEL}: no positive label among {n} windows ({}): skipped. Load the GMAO history \
             (`proact-trainer load-reference`) with corrective interventions on archived equipment, or train from \
             --labelled-csv",
            ds.source
        ));
    }
    if pos == n {
        return Err(format!("{FOREST_MODEL}: every one of the {n} windows is labelled positive: skipped"));
    }
    let y: Vec<usize> = ds.y.iter().map(|&v| usize::from(v)).collect();
    let (train, test) = stratified_split(&y, s.test_fraction, s.split_seed);
    let d = ds.n_features();
    let x_train = Array2::from_shape_fn((train.len(), d), |(i, j)| ds.x[train[i] * d + j]);
    let y_train: Vec<usize> = train.iter().map(|&i| y[i]).collect();
    let rf = s.rf.fit_arrays(&x_train, &y_train).map_err(|e| format!("{FOREST_MODEL}: training failed: {e}"))?;
    let y_test: Vec<usize> = test.iter().map(|&i| y[i]).collect();
    let scores: Vec<f64> = test.iter().map(|&i| rf.flat.predict_proba(ds.row(i))).collect();
    let m = evaluate(&y_test, &scores, s.rf_threshold);
    let all: Vec<usize> = (0..n).collect();
    let info = ArtefactInfo {
        name: FOREST_MODEL.into(),
        version: version.into(),
        feature_schema: Some(SchemaRef::from(&ds.schema)),
        training: training_range(ds, n, None, &all),
        metrics: Some(m.clone()),
        created_at: created_at.into(),
    };
    let artefact = rf.to_artefact(info, s.rf_threshold);
    let (data_from, data_to) = range_of(&artefact.training);
    Ok(Candidate {
        parameters: json!({"model": artefact.params, "threshold": s.rf_threshold, "data": data_params(s, ds)}),
        metrics: metrics_json(&m, train.len()),
        data_from,
        data_to,
        holdout: holdout(ds, &test),
        artefact,
    })
}

fn fit_normal(
    ds: &Dataset,
    s: &TrainSettings,
    eq: u32,
    name: &str,
    version: &str,
    created_at: &str,
) -> Result<Candidate, String> {
    let idx: Vec<usize> = (0..ds.rows()).filter(|&i| ds.eq[i] == eq).collect();
    let y: Vec<usize> = idx.iter().map(|&i| usize::from(ds.y[i])).collect();
    let (train, test) = stratified_split(&y, s.test_fraction, s.split_seed);
    // Healthy rows only: the model learns what normal looks like, its threshold is calibrated on them.
    let healthy: Vec<usize> = train.iter().filter(|&&k| y[k] == 0).map(|&k| idx[k]).collect();
    if healthy.len() < s.nb_min_rows {
        return Err(format!(
            "{name}: {} failure-free training windows, fewer than the {} needed: skipped",
            healthy.len(),
            s.nb_min_rows
        ));
    }
    let d = ds.n_features();
    let rows: Vec<f64> = healthy.iter().flat_map(|&i| ds.row(i).iter().copied()).collect();
    let model = s.nb.fit(&rows, d).map_err(|e| format!("{name}: training failed: {e}"))?;
    let test_idx: Vec<usize> = test.iter().map(|&k| idx[k]).collect();
    let y_test: Vec<usize> = test.iter().map(|&k| y[k]).collect();
    let scores: Vec<f64> = test_idx.iter().map(|&i| model.score(ds.row(i))).collect();
    // 0.5 is where score = d / (d + threshold) crosses the calibrated distance (NormalScorer).
    let m = evaluate(&y_test, &scores, 0.5);
    let info = ArtefactInfo {
        name: name.into(),
        version: version.into(),
        feature_schema: Some(SchemaRef::from(&ds.schema)),
        training: training_range(ds, idx.len(), Some(ds.equipment[eq as usize].clone()), &idx),
        metrics: Some(m.clone()),
        created_at: created_at.into(),
    };
    let artefact = model.to_artefact(info);
    let (data_from, data_to) = range_of(&artefact.training);
    Ok(Candidate {
        parameters: json!({"model": artefact.params, "threshold_distance": model.threshold, "data": data_params(s, ds)}),
        metrics: metrics_json(&m, healthy.len()),
        data_from,
        data_to,
        holdout: holdout(ds, &test_idx),
        artefact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        assert_eq!(next_version("20261124-100000", None), "20261124-100000");
        assert_eq!(next_version("20261124-100000", Some("20261123-235959")), "20261124-100000");
        assert_eq!(next_version("20261124-100000", Some("20261124-100000")), "20261124-100000.001");
        assert_eq!(next_version("20261124-100000", Some("20261124-100000.009")), "20261124-100000.010");
        // A clock that went back still yields a greater version.
        let v = next_version("20261124-090000", Some("20261124-100000"));
        assert!(v.as_str() > "20261124-100000", "{v}");
    }

    #[test]
    fn names_select_models() {
        let w = |forest, normal| Wanted { forest, normal };
        assert_eq!(wanted("").unwrap(), w(true, Some(None)));
        assert_eq!(wanted("anomaly-rf").unwrap(), w(true, None));
        assert_eq!(wanted("normal-behaviour").unwrap(), w(false, Some(None)));
        assert_eq!(wanted("normal-behaviour/P-1").unwrap(), w(false, Some(Some("P-1".into()))));
        let dropped = wanted("criticality-rf").unwrap_err().to_string();
        assert!(dropped.contains("no longer trained"), "{dropped}");
    }
}
