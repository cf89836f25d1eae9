//! The one feature function shared by the trainer and the anomaly detector.
//!
//! Where it sits: telemetry read from Redis Streams by `anomaly-detector` (live) and archived
//! history or CSV files read by `trainer` and `proact-model-eval` (offline) both go through a
//! per-equipment [`Window`] on event time and the same [`Window::features_into`], so a model
//! never sees features computed differently in training and in serving.
//!
//! The schema is fixed and versioned: per channel (temperature, vibration, then any extra
//! numeric channels sorted by name) the statistics in [`STATS`]; [`FeatureSchema::id`] is the
//! string artefacts store and the detector compares before loading a model.
//!
//! Cost: O(1) amortised per in-order event and no allocation after construction, because the
//! detector's budget is ≥100,000 events/s per core including scoring.

mod schema;
mod window;

pub use schema::{FeatureSchema, BASE_CHANNELS, FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION, STATS};
pub use window::{features, Placement, Window, WindowConfig, WindowStats};

/// Errors of the feature code. Late or duplicate events are not errors: see [`Placement`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeatureError {
    #[error("expected {expected} values (one per schema channel), got {got}")]
    ChannelCount { expected: usize, got: usize },
    #[error("the window is empty: push at least one event before computing features")]
    EmptyWindow,
    #[error("invalid channel name {0:?}: use 1-64 of A-Z a-z 0-9 _ - .")]
    BadChannel(String),
    #[error("series has {rows} timestamps but {values} values, not a multiple of {channels} channels")]
    SeriesShape { rows: usize, values: usize, channels: usize },
}

/// One feature vector, in the order of [`FeatureSchema::names`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureVector {
    pub values: Vec<f64>,
}

impl FeatureVector {
    pub fn as_slice(&self) -> &[f64] {
        &self.values
    }
}

impl std::ops::Deref for FeatureVector {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.values
    }
}

/// Features computed over a whole series: one row per input row, row-major.
#[derive(Debug, Clone)]
pub struct SeriesFeatures {
    pub n_features: usize,
    /// `rows × n_features` values; row `i` is the window's features just after event `i`.
    pub values: Vec<f64>,
    /// What happened to each input event. A refused event's row repeats the previous features
    /// (zeros before the first accepted event) so rows stay aligned with labels.
    pub placements: Vec<Placement>,
}

impl SeriesFeatures {
    pub fn rows(&self) -> usize {
        self.placements.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// Offline path (CSV replay, training): replays a series event by event through a fresh
/// [`Window`] — exactly what the detector does live — and records the features after each.
///
/// `values` is row-major, `schema.channels().len()` values per timestamp.
pub fn features_over_series(
    schema: &FeatureSchema,
    cfg: WindowConfig,
    ts_ms: &[i64],
    values: &[f64],
) -> Result<SeriesFeatures, FeatureError> {
    let c = schema.channels().len();
    if values.len() != ts_ms.len() * c {
        return Err(FeatureError::SeriesShape { rows: ts_ms.len(), values: values.len(), channels: c });
    }
    let n_features = schema.len();
    let mut window = Window::new(schema, cfg);
    let mut out = vec![0.0; ts_ms.len() * n_features];
    let mut placements = Vec::with_capacity(ts_ms.len());
    for (i, &ts) in ts_ms.iter().enumerate() {
        let placement = window.push(ts, &values[i * c..(i + 1) * c])?;
        let row = i * n_features..(i + 1) * n_features;
        if window.is_empty() {
            // Nothing accepted yet: keep the zero row.
        } else if placement.accepted() || i == 0 {
            window.write_features(&mut out[row])?;
        } else {
            out.copy_within((i - 1) * n_features..i * n_features, i * n_features);
        }
        placements.push(placement);
    }
    Ok(SeriesFeatures { n_features, values: out, placements })
}
