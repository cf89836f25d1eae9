//! Model artefacts: what the trainer publishes and the detector loads.
//!
//! File format (`proact-model/1`): one ASCII header line, then a JSON body:
//!
//! ```text
//! proact-model/1 sha256=<64 hex of the body> bytes=<body length>\n
//! {"name":…,"version":…,"kind":…,"feature_schema":{…},"params":…,"training":…,"metrics":…,"payload":…}
//! ```
//!
//! The checksum covers the exact body bytes (metadata and model alike), so verifying needs no
//! re-serialisation and any flipped byte is refused before a model is built from it. A signed
//! artefact's header ends with ` ed25519=<128 hex>`, the signature of the same body
//! ([`crate::signature`]): the checksum says the bytes are whole, the signature who wrote them.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::flat::FlatForest;
use crate::metrics::Metrics;
use crate::normal::NormalBehaviourModel;
use crate::scorer::{ForestScorer, NormalScorer, Scorer};
use crate::signature::{ArtefactSigner, ArtefactVerifier};
use crate::ModelError;

pub const ARTEFACT_FORMAT: &str = "proact-model/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    RandomForest,
    NormalBehaviour,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::RandomForest => "random_forest",
            ModelKind::NormalBehaviour => "normal_behaviour",
        }
    }
}

/// The feature schema a model was trained on: ids must match to score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRef {
    pub id: String,
    pub names: Vec<String>,
}

impl From<&proact_features::FeatureSchema> for SchemaRef {
    fn from(s: &proact_features::FeatureSchema) -> Self {
        SchemaRef { id: s.id().to_string(), names: s.names().to_vec() }
    }
}

impl SchemaRef {
    /// A schema for tabular (non-window) features such as AI4I or AMDEC tables:
    /// `tabular/<table>:<hash of the names>`.
    pub fn tabular(table: &str, names: &[&str]) -> SchemaRef {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in names.iter().flat_map(|n| n.bytes().chain(std::iter::once(b'\n'))) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        SchemaRef { id: format!("tabular/{table}:{h:016x}"), names: names.iter().map(|s| s.to_string()).collect() }
    }
}

/// What data a model was trained on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingRange {
    /// Where the rows came from (e.g. `archive:telemetry`, `csv:ai4i2020.csv`).
    pub source: String,
    /// Event-time range (RFC 3339), when the data is a time series.
    pub from: Option<String>,
    pub to: Option<String>,
    pub rows: usize,
    /// Equipment the model is for (normal-behaviour models are per equipment).
    pub equipement_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ModelPayload {
    RandomForest {
        forest: FlatForest,
        importances: Vec<f64>,
        /// Class-1 probability at which the detector raises.
        threshold: f64,
    },
    NormalBehaviour {
        model: NormalBehaviourModel,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtefact {
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    pub feature_schema: SchemaRef,
    /// Training parameters as given (learner, trees, depth, seed… or NB method, quantile…).
    pub params: serde_json::Value,
    pub training: TrainingRange,
    pub metrics: Option<Metrics>,
    pub created_at: String,
    pub payload: ModelPayload,
}

impl ModelArtefact {
    /// Serialises to the `proact-model/1` format, unsigned.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.encode(None)
    }

    /// Serialises to the `proact-model/1` format with an `ed25519=` signature of the body in the
    /// header (what the trainer stores when it has a signing key).
    pub fn to_signed_bytes(&self, signer: &ArtefactSigner) -> Result<Vec<u8>, ModelError> {
        self.encode(Some(signer))
    }

    fn encode(&self, signer: Option<&ArtefactSigner>) -> Result<Vec<u8>, ModelError> {
        let body = serde_json::to_vec(self).map_err(|e| ModelError::Artefact(format!("cannot serialise: {e}")))?;
        let mut header = format!("{ARTEFACT_FORMAT} sha256={} bytes={}", sha256_hex(&body), body.len());
        if let Some(signer) = signer {
            header.push_str(" ed25519=");
            header.push_str(&signer.sign_body(&body));
        }
        header.push('\n');
        let mut out = header.into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// sha256 of the body, as written in the header (what the registry stores).
    pub fn sha256(&self) -> Result<String, ModelError> {
        let body = serde_json::to_vec(self).map_err(|e| ModelError::Artefact(format!("cannot serialise: {e}")))?;
        Ok(sha256_hex(&body))
    }

    /// Parses and verifies an artefact: header, length, checksum, then content consistency. A
    /// signature, if any, is not checked: [`ModelArtefact::from_signed_bytes`] does.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelArtefact, ModelError> {
        let (_, body) = split_checked(bytes)?;
        Self::from_body(body)
    }

    /// As [`ModelArtefact::from_bytes`], after checking that one of `verifier`'s keys signed
    /// the body: an unsigned or badly signed artefact is refused before its body is parsed.
    pub fn from_signed_bytes(bytes: &[u8], verifier: &ArtefactVerifier) -> Result<ModelArtefact, ModelError> {
        let (signature, body) = split_checked(bytes)?;
        verifier.verify_body(body, signature)?;
        Self::from_body(body)
    }

    fn from_body(body: &[u8]) -> Result<ModelArtefact, ModelError> {
        let a: ModelArtefact = serde_json::from_slice(body)
            .map_err(|e| ModelError::Artefact(format!("body is not a valid artefact: {e}")))?;
        a.validate()?;
        Ok(a)
    }

    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        std::fs::write(path, self.to_bytes()?).map_err(|e| ModelError::Io(path.display().to_string(), e))
    }

    pub fn load(path: &Path) -> Result<ModelArtefact, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
        Self::from_bytes(&bytes)
    }

    /// Reads a file that one of `verifier`'s keys must have signed.
    pub fn load_signed(path: &Path, verifier: &ArtefactVerifier) -> Result<ModelArtefact, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
        Self::from_signed_bytes(&bytes, verifier)
    }

    /// Writes the signed form of the artefact to a file.
    pub fn save_signed(&self, path: &Path, signer: &ArtefactSigner) -> Result<(), ModelError> {
        std::fs::write(path, self.to_signed_bytes(signer)?).map_err(|e| ModelError::Io(path.display().to_string(), e))
    }

    fn validate(&self) -> Result<(), ModelError> {
        let (kind, n_features) = match &self.payload {
            // The forest's structure was checked when it was deserialised (`FlatForest`).
            ModelPayload::RandomForest { forest, threshold, importances } => {
                if !(0.0..=1.0).contains(threshold) {
                    return Err(ModelError::Artefact(format!(
                        "random-forest threshold {threshold} is not a probability in [0, 1]"
                    )));
                }
                if importances.iter().any(|x| !x.is_finite()) {
                    return Err(ModelError::Artefact("a feature importance is not finite".into()));
                }
                (ModelKind::RandomForest, forest.n_features())
            }
            ModelPayload::NormalBehaviour { model } => {
                let k = model.features.len();
                let ok = k <= crate::normal::MAX_NB_FEATURES
                    && model.center.len() == k
                    && model.scale.len() == k
                    && (model.precision.is_empty() || Some(model.precision.len()) == k.checked_mul(k))
                    && model.features.iter().all(|&f| f < model.n_features)
                    && model.center.iter().chain(&model.precision).all(|x| x.is_finite())
                    && model.scale.iter().all(|x| x.is_finite() && *x > 0.0);
                if !ok {
                    return Err(ModelError::Artefact("normal-behaviour model is inconsistent".into()));
                }
                if !(model.threshold.is_finite() && model.threshold >= 0.0) {
                    return Err(ModelError::Artefact(format!(
                        "normal-behaviour threshold {} is not a finite distance",
                        model.threshold
                    )));
                }
                (ModelKind::NormalBehaviour, model.n_features)
            }
        };
        if kind != self.kind {
            return Err(ModelError::Artefact(format!("kind {:?} does not match payload {:?}", self.kind, kind)));
        }
        if n_features != self.feature_schema.names.len() {
            return Err(ModelError::Artefact(format!(
                "model uses {n_features} features but its schema lists {}",
                self.feature_schema.names.len()
            )));
        }
        Ok(())
    }

    /// Refuses a model trained on another feature schema than the caller computes.
    pub fn check_schema(&self, schema_id: &str) -> Result<(), ModelError> {
        if self.feature_schema.id != schema_id {
            return Err(ModelError::SchemaMismatch {
                model: format!("{} {}", self.name, self.version),
                expected: schema_id.to_string(),
                found: self.feature_schema.id.clone(),
            });
        }
        Ok(())
    }

    /// A scorer for the detector, after checking the schema matches `schema_id`.
    pub fn scorer(&self, schema_id: &str) -> Result<Arc<dyn Scorer>, ModelError> {
        self.check_schema(schema_id)?;
        let meta = crate::scorer::ScorerMeta {
            name: self.name.clone(),
            version: self.version.clone(),
            schema_id: self.feature_schema.id.clone(),
        };
        Ok(match &self.payload {
            ModelPayload::RandomForest { forest, threshold, .. } => {
                Arc::new(ForestScorer { meta, forest: forest.clone(), threshold: *threshold })
            }
            ModelPayload::NormalBehaviour { model } => Arc::new(NormalScorer { meta, model: model.clone() }),
        })
    }
}

/// Splits an artefact into its header's signature (if any) and its body, checking the body's
/// length and checksum.
fn split_checked(bytes: &[u8]) -> Result<(Option<&str>, &[u8]), ModelError> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| ModelError::Artefact("no header line: not a proact model artefact".into()))?;
    let line = std::str::from_utf8(&bytes[..nl]).map_err(|_| ModelError::Artefact("header is not UTF-8".into()))?;
    let body = &bytes[nl + 1..];
    let mut parts = line.split(' ');
    if parts.next() != Some(ARTEFACT_FORMAT) {
        return Err(ModelError::Artefact(format!("unsupported format {line:?}, expected {ARTEFACT_FORMAT}")));
    }
    let (mut sha, mut len, mut signature) = (None, None, None);
    // Unknown fields are skipped, so a later writer can add one without breaking readers.
    for p in parts {
        if let Some(v) = p.strip_prefix("sha256=") {
            sha = Some(v);
        } else if let Some(v) = p.strip_prefix("bytes=") {
            len = v.parse::<usize>().ok();
        } else if let Some(v) = p.strip_prefix("ed25519=") {
            signature = Some(v);
        }
    }
    let (Some(sha256), Some(len)) = (sha, len) else {
        return Err(ModelError::Artefact("header lacks sha256= or bytes=".into()));
    };
    if body.len() != len {
        return Err(ModelError::Artefact(format!(
            "truncated or padded artefact: header says {len} bytes, body has {}",
            body.len()
        )));
    }
    let actual = sha256_hex(body);
    if actual != sha256 {
        return Err(ModelError::Checksum { expected: sha256.to_string(), actual });
    }
    Ok((signature, body))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}
