//! Hot model reload: the detector follows the model-events stream and, when a version is
//! promoted or rolled back to, fetches its artefact from the registry over gRPC, verifies
//! its signature (with `PROACT_MODEL_VERIFY_KEY`), checksum and feature schema, and hands the
//! new set to the scoring loop, which swaps it between two batches. A bad artefact is refused
//! (counted, logged, reported in status) and the models in use keep serving.
//!
//! The signature is what ties an artefact to the trainer: the registry's table, the events
//! stream and the checksum can all be written by whoever reaches PostgreSQL or Redis, the
//! trainer's secret key cannot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_models::{ArtefactVerifier, ModelArtefact, ModelError, Scorer};
use proact_proto::streams::{MODEL_EVENTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::model_registry_client::ModelRegistryClient;
use proact_proto::v1::{GetModelRequest, ListModelsRequest, ModelEvent, ModelEventKind, ModelStatus};
use proact_server::otel::Tracing;
use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::engine::Models;

/// Name of the supervised anomaly model over the shared features.
pub const FOREST_MODEL: &str = "anomaly-rf";
/// Prefix of the per-equipment normal-behaviour models: `normal-behaviour/<equipement_id>`.
pub const NORMAL_PREFIX: &str = "normal-behaviour/";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("registry: {0}")]
    Registry(#[from] tonic::Status),
    #[error("registry unreachable: {0}")]
    Transport(#[from] proact_server::grpc::ConnectError),
    #[error("artefact {name} {version}: {detail}")]
    Artefact { name: String, version: String, detail: String },
}

/// The public keys whose signatures the detector trusts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VerifyArgs {
    /// Ed25519 public keys (64 hex characters each, comma-separated during a key rotation) that
    /// must have signed every model artefact loaded, from the registry or a file: the public
    /// half of the trainer's PROACT_MODEL_SIGNING_KEY (`proact-trainer keygen`). Unset:
    /// artefacts load unchecked (a warning at start).
    #[arg(long, env = "PROACT_MODEL_VERIFY_KEY")]
    pub model_verify_key: Option<String>,
}

impl VerifyArgs {
    pub fn verifier(&self) -> Result<Option<Arc<ArtefactVerifier>>, proact_server::ConfigError> {
        self.model_verify_key
            .as_deref()
            .map(|k| {
                ArtefactVerifier::from_hex_list(k)
                    .map(Arc::new)
                    .map_err(|e| proact_server::ConfigError::new("PROACT_MODEL_VERIFY_KEY", k, e.to_string()))
            })
            .transpose()
    }
}

/// Where the models come from: the trainer's registry, called with the internal gRPC token.
#[derive(Clone, Debug)]
pub struct Registry {
    pub url: String,
    pub traces: Tracing,
    pub token: Option<String>,
    /// When set, only artefacts signed by one of its keys are loaded.
    pub verify: Option<Arc<ArtefactVerifier>>,
}

impl Registry {
    async fn client(&self) -> Result<ModelRegistryClient<proact_server::grpc::ClientTrace<Channel>>, LoadError> {
        Ok(ModelRegistryClient::new(
            proact_server::grpc::connect(&self.url, &self.traces, self.token.as_deref()).await?,
        ))
    }
}

/// Downloads and verifies one version, returning its scorer.
pub async fn fetch(
    registry: &Registry,
    name: &str,
    version: &str,
    schema_id: &str,
) -> Result<Arc<dyn Scorer>, LoadError> {
    let mut client = registry.client().await?;
    let mut stream = client.get(GetModelRequest { name: name.into(), version: version.into() }).await?.into_inner();
    let mut bytes = Vec::new();
    let mut expected_sha = String::new();
    let mut described: Option<proact_proto::v1::ModelVersion> = None;
    while let Some(chunk) = stream.message().await? {
        if let Some(m) = chunk.model {
            expected_sha = m.sha256.clone();
            described = Some(m);
        }
        if chunk.offset as usize != bytes.len() {
            return Err(LoadError::Artefact {
                name: name.into(),
                version: version.into(),
                detail: "chunks out of order".into(),
            });
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let bad = |detail: String| LoadError::Artefact { name: name.into(), version: version.into(), detail };
    // What arrived must be what was asked for, whole.
    let m = described.ok_or_else(|| bad("the registry sent no description of the version".into()))?;
    if m.name != name || m.version != version {
        return Err(bad(format!("the registry sent {} {} instead", m.name, m.version)));
    }
    if m.size_bytes != 0 && m.size_bytes != bytes.len() as u64 {
        return Err(bad(format!("{} bytes received, the registry lists {}", bytes.len(), m.size_bytes)));
    }
    // The artefact checks its own payload checksum (and signature); the registry's sha256
    // covers the bytes.
    let artefact = parse(&bytes, registry.verify.as_deref()).map_err(|e| bad(e.to_string()))?;
    if !expected_sha.is_empty() {
        let got = artefact.sha256().map_err(|e| bad(e.to_string()))?;
        if got != expected_sha {
            return Err(bad(format!("sha256 {got} differs from the registry's {expected_sha}")));
        }
    }
    artefact.scorer(schema_id).map_err(|e| bad(e.to_string()))
}

/// Parses an artefact, refusing it unless signed by a trusted key when a verifier is set.
fn parse(bytes: &[u8], verify: Option<&ArtefactVerifier>) -> Result<ModelArtefact, ModelError> {
    let Some(verifier) = verify else { return ModelArtefact::from_bytes(bytes) };
    ModelArtefact::from_signed_bytes(bytes, verifier).inspect_err(|e| {
        if matches!(e, ModelError::Signature(_)) {
            metrics::counter!("proact_detector_model_signature_refusals_total").increment(1);
        }
    })
}

/// The version of `name` the registry lists as active, if any.
async fn active_version(registry: &Registry, name: &str) -> Result<Option<String>, LoadError> {
    let mut client = registry.client().await?;
    let list = client.list(ListModelsRequest { name: name.to_string() }).await?.into_inner();
    Ok(list.models.into_iter().find(|m| m.name == name && m.status == ModelStatus::Active as i32).map(|m| m.version))
}

/// Loads every active model the detector uses.
pub async fn load_active(registry: &Registry, schema_id: &str) -> Result<Models, LoadError> {
    let mut client = registry.client().await?;
    let list = client.list(ListModelsRequest { name: String::new() }).await?.into_inner();
    let mut models = Models::default();
    for m in list.models.into_iter().filter(|m| m.status == ModelStatus::Active as i32) {
        if m.name != FOREST_MODEL && !m.name.starts_with(NORMAL_PREFIX) {
            continue;
        }
        match fetch(registry, &m.name, &m.version, schema_id).await {
            Ok(s) => install(&mut models, s),
            Err(e) => {
                metrics::counter!("proact_detector_model_reload_failures_total").increment(1);
                tracing::error!(model = %m.name, version = %m.version, error = %e, "model refused; keeping the previous one");
            }
        }
    }
    Ok(models)
}

/// Loads artefact files given at start; a bad file (an unsigned one too, with a verifier) stops
/// the service (it is configuration).
pub fn load_files(
    paths: &[std::path::PathBuf],
    schema_id: &str,
    verify: Option<&ArtefactVerifier>,
) -> anyhow::Result<Models> {
    let mut models = Models::default();
    for p in paths {
        let artefact = std::fs::read(p)
            .map_err(|e| ModelError::Io(p.display().to_string(), e))
            .and_then(|bytes| parse(&bytes, verify))
            .map_err(|e| anyhow::anyhow!("PROACT_DETECTOR_MODEL_FILES: {}: {e}", p.display()))?;
        let scorer = artefact
            .scorer(schema_id)
            .map_err(|e| anyhow::anyhow!("PROACT_DETECTOR_MODEL_FILES: {}: {e}", p.display()))?;
        tracing::info!(model = %scorer.name(), version = %scorer.version(), file = %p.display(), "model file loaded");
        install(&mut models, scorer);
    }
    Ok(models)
}

fn install(models: &mut Models, s: Arc<dyn Scorer>) {
    let replaced = if s.name() == FOREST_MODEL {
        models.forest.replace(s.clone())
    } else if let Some(eq) = s.name().strip_prefix(NORMAL_PREFIX) {
        models.normal.insert(eq.to_string(), s.clone())
    } else {
        return;
    };
    // One series per model name and version: 1 for the version serving, 0 once replaced.
    if let Some(old) = replaced {
        metrics::gauge!("proact_detector_model_info", "model" => old.name().to_string(), "version" => old.version().to_string())
            .set(0.0);
    }
    metrics::gauge!("proact_detector_model_info", "model" => s.name().to_string(), "version" => s.version().to_string())
        .set(1.0);
}

/// Follows the model-events stream from its end and publishes each new model set on `tx`.
pub async fn follow(
    redis: Client,
    registry: Registry,
    schema_id: String,
    tx: watch::Sender<Models>,
    shutdown: CancellationToken,
) {
    let mut last = "$".to_string();
    if let Ok(v) = redis.xrevrange::<Value, _, _, _>(MODEL_EVENTS_STREAM, "+", "-", Some(1)).await {
        if let Some(id) = first_id(&v) {
            last = id;
        }
    }
    while !shutdown.is_cancelled() {
        let r: Result<Value, Error> = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = redis.xread::<Value, _, _>(Some(64), Some(1000), MODEL_EVENTS_STREAM, last.as_str()) => r,
        };
        let resp = match r.and_then(proact_server::redis::xread_response) {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(error = %e, "model-events read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for (id, fields) in resp.get(MODEL_EVENTS_STREAM).cloned().unwrap_or_default() {
            last = id;
            let Some(ev) = fields.get(PAYLOAD_FIELD).and_then(|p: &Bytes| ModelEvent::decode(p.as_ref()).ok()) else {
                continue;
            };
            let kind = ModelEventKind::try_from(ev.kind).unwrap_or(ModelEventKind::Unspecified);
            if !matches!(kind, ModelEventKind::Promoted | ModelEventKind::RolledBack) {
                continue;
            }
            let Some(m) = ev.model else { continue };
            // Names the detector does not know (another release's models) are not its to run.
            if m.name != FOREST_MODEL && !m.name.starts_with(NORMAL_PREFIX) {
                continue;
            }
            // Anyone who can write to Redis can write an event: the registry says which
            // version is active, and only that one is loaded.
            match active_version(&registry, &m.name).await {
                Ok(Some(v)) if v == m.version => {}
                Ok(other) => {
                    metrics::counter!("proact_detector_model_reload_failures_total").increment(1);
                    tracing::error!(model = %m.name, version = %m.version, active = ?other,
                        "model event for a version the registry does not list as active; ignored");
                    continue;
                }
                Err(e) => {
                    metrics::counter!("proact_detector_model_reload_failures_total").increment(1);
                    tracing::error!(model = %m.name, version = %m.version, error = %e,
                        "registry unreachable to confirm a model event; the previous model keeps serving");
                    continue;
                }
            }
            match fetch(&registry, &m.name, &m.version, &schema_id).await {
                Ok(s) => {
                    tracing::info!(model = %m.name, version = %m.version, "model loaded; swapping");
                    metrics::counter!("proact_detector_model_reloads_total").increment(1);
                    tx.send_modify(|models| install(models, s));
                }
                Err(e) => {
                    metrics::counter!("proact_detector_model_reload_failures_total").increment(1);
                    tracing::error!(model = %m.name, version = %m.version, error = %e, "model refused; the previous one keeps serving");
                }
            }
        }
    }
}

fn first_id(v: &Value) -> Option<String> {
    match v {
        Value::Array(entries) => entries.first().and_then(|e| match e {
            Value::Array(p) => p.first().and_then(|id| id.as_string()),
            _ => None,
        }),
        _ => None,
    }
}

/// Versions by model name, for status.
pub fn version_map(models: &Models) -> HashMap<String, String> {
    models.versions().into_iter().collect()
}
