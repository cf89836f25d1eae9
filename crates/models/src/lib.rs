//! Models of the trainer and the anomaly detector.
//!
//! Where it sits: `trainer` fits models here on features from `proact-features` (archived
//! telemetry windows) or on tabular data (AI4I-like tables), evaluates them, and publishes a
//! checksummed [`ModelArtefact`]; `anomaly-detector` loads the artefact, checks its feature
//! schema, and scores every event through the object-safe [`Scorer`].
//!
//! - [`RandomForestParams`] / [`RandomForest`]: bootstrap + per-split feature sampling, trees
//!   grown in parallel, class probabilities, importances, deterministic for a seed; fitted
//!   through linfa's `Fit` trait and predicted through `Predict`.
//! - [`FlatForest`]: the compiled form the detector uses (allocation-free single event, blocked
//!   batch scoring), scored through a quantised, branch-free layout derived from the stored
//!   nodes (bit-identical results; see `flat.rs`).
//! - [`NormalBehaviourParams`] / [`NormalBehaviourModel`]: unsupervised per-equipment model
//!   for equipment without failure labels.
//! - [`signature`]: Ed25519 signatures of artefacts (the trainer signs, the detector verifies).
//! - [`metrics`]: precision, recall, F1, ROC AUC, confusion matrix, stratified split.
//! - [`selection`]: hyper-parameter selection under a false-alarm budget, leave-one-group-out
//!   over files, so that reported scores come from files the selection never saw.

mod artefact;
mod flat;
mod forest;
pub mod metrics;
mod normal;
mod scorer;
pub mod selection;
pub mod signature;
mod tree;

pub use artefact::{ModelArtefact, ModelKind, ModelPayload, SchemaRef, TrainingRange, ARTEFACT_FORMAT};
pub use flat::{FlatForest, FlatNode};
pub use forest::{FeatureSampling, RandomForest, RandomForestParams, TreeLearner};
pub use metrics::{Confusion, Metrics};
pub use normal::{HoldoutCheck, NbMethod, NormalBehaviourModel, NormalBehaviourParams, MAX_NB_FEATURES};
pub use scorer::{ForestScorer, NormalScorer, Scorer};
pub use signature::{ArtefactSigner, ArtefactVerifier, SignatureError};
pub use tree::{Tree, TreeNode};

/// Errors of model training, loading and scoring setup.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("invalid training data: {0}")]
    Data(String),
    #[error("linfa: {0}")]
    Linfa(#[from] linfa::Error),
    #[error("artefact checksum mismatch (header says {expected}, body hashes to {actual}): the file is corrupted or was modified; fetch it again from the registry")]
    Checksum { expected: String, actual: String },
    #[error("invalid artefact: {0}")]
    Artefact(String),
    #[error("model {model} was trained on feature schema {found}, but this process computes {expected}: retrain it or run a matching version")]
    SchemaMismatch { model: String, expected: String, found: String },
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// Who and what an artefact is, apart from the model itself.
#[derive(Debug, Clone, Default)]
pub struct ArtefactInfo {
    pub name: String,
    pub version: String,
    pub feature_schema: Option<SchemaRef>,
    pub training: TrainingRange,
    pub metrics: Option<Metrics>,
    /// RFC 3339 creation time (injected so tests and replays are reproducible).
    pub created_at: String,
}

impl ArtefactInfo {
    pub fn new(name: &str, version: &str, schema: SchemaRef) -> Self {
        ArtefactInfo { name: name.into(), version: version.into(), feature_schema: Some(schema), ..Default::default() }
    }

    fn into_artefact(self, kind: ModelKind, params: serde_json::Value, payload: ModelPayload) -> ModelArtefact {
        let schema = self.feature_schema.unwrap_or_else(|| SchemaRef { id: String::new(), names: Vec::new() });
        ModelArtefact {
            name: self.name,
            version: self.version,
            kind,
            feature_schema: schema,
            params,
            training: self.training,
            metrics: self.metrics,
            created_at: self.created_at,
            payload,
        }
    }
}

impl RandomForest {
    /// Packs the compiled forest (the detector never needs the node lists) into an artefact;
    /// `threshold` is the class-1 probability at which the detector raises.
    pub fn to_artefact(&self, info: ArtefactInfo, threshold: f64) -> ModelArtefact {
        let params = serde_json::to_value(&self.params).unwrap_or(serde_json::Value::Null);
        let payload =
            ModelPayload::RandomForest { forest: self.flat.clone(), importances: self.importances.clone(), threshold };
        info.into_artefact(ModelKind::RandomForest, params, payload)
    }
}

impl NormalBehaviourModel {
    pub fn to_artefact(&self, info: ArtefactInfo) -> ModelArtefact {
        let params = serde_json::to_value(&self.params).unwrap_or(serde_json::Value::Null);
        info.into_artefact(ModelKind::NormalBehaviour, params, ModelPayload::NormalBehaviour { model: self.clone() })
    }
}
