//! The one interface the detector scores through, whatever the model kind.

use crate::artefact::ModelKind;
use crate::flat::FlatForest;
use crate::normal::NormalBehaviourModel;

/// Scores a feature vector (in the artefact's schema order) for the detector.
///
/// Object-safe and `Send + Sync` so the detector can hold an `Arc<dyn Scorer>` and swap it
/// atomically on hot reload. `score` must not allocate (it runs once per event).
pub trait Scorer: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> ModelKind;
    /// Model name, stamped on alerts.
    fn name(&self) -> &str;
    /// Model version, stamped on alerts.
    fn version(&self) -> &str;
    /// Feature schema id the model expects (see `proact_features::FeatureSchema::id`).
    fn schema_id(&self) -> &str;
    /// Anomaly/failure score in [0, 1]; higher is worse.
    fn score(&self, features: &[f64]) -> f64;
    /// Score at or above which the model flags the event.
    fn threshold(&self) -> f64;
    fn is_anomalous(&self, features: &[f64]) -> bool {
        self.score(features) >= self.threshold()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ScorerMeta {
    pub name: String,
    pub version: String,
    pub schema_id: String,
}

/// RandomForest scorer: class-1 probability from the compiled forest.
#[derive(Debug)]
pub struct ForestScorer {
    pub(crate) meta: ScorerMeta,
    pub forest: FlatForest,
    pub threshold: f64,
}

impl Scorer for ForestScorer {
    fn kind(&self) -> ModelKind {
        ModelKind::RandomForest
    }
    fn name(&self) -> &str {
        &self.meta.name
    }
    fn version(&self) -> &str {
        &self.meta.version
    }
    fn schema_id(&self) -> &str {
        &self.meta.schema_id
    }
    fn score(&self, features: &[f64]) -> f64 {
        self.forest.predict_proba(features)
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
}

/// Normal-behaviour scorer: `d / (d + threshold)`, flagged from 0.5.
#[derive(Debug)]
pub struct NormalScorer {
    pub(crate) meta: ScorerMeta,
    pub model: NormalBehaviourModel,
}

impl Scorer for NormalScorer {
    fn kind(&self) -> ModelKind {
        ModelKind::NormalBehaviour
    }
    fn name(&self) -> &str {
        &self.meta.name
    }
    fn version(&self) -> &str {
        &self.meta.version
    }
    fn schema_id(&self) -> &str {
        &self.meta.schema_id
    }
    fn score(&self, features: &[f64]) -> f64 {
        self.model.score(features)
    }
    fn threshold(&self) -> f64 {
        0.5
    }
}
