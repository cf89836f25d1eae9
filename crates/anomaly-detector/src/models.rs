//! Hot model reload: the detector follows the model-events stream and, when a version is
//! promoted or rolled back to, fetches its artefact from the registry over gRPC, verifies
//! its checksum and feature schema, and hands the new set to the scoring loop, which swaps
//! it between two batches. A bad artefact is refused (counted, logged, reported in status)
//! and the models in use keep serving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_models::{ModelArtefact, Scorer};
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

/// Where the models come from: the trainer's registry, called with the internal gRPC token.
#[derive(Clone, Debug)]
pub struct Registry {
    pub url: String,
    pub traces: Tracing,
    pub token: Option<String>,
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
    while let Some(chunk) = stream.message().await? {
        if let Some(m) = chunk.model {
            expected_sha = m.sha256;
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
    // The artefact checks its own payload checksum; the registry's sha256 covers the bytes.
    let artefact = ModelArtefact::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
    if !expected_sha.is_empty() {
        let got = artefact.sha256().map_err(|e| bad(e.to_string()))?;
        if got != expected_sha {
            return Err(bad(format!("sha256 {got} differs from the registry's {expected_sha}")));
        }
    }
    artefact.scorer(schema_id).map_err(|e| bad(e.to_string()))
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

/// Loads artefact files given at start; a bad file stops the service (it is configuration).
pub fn load_files(paths: &[std::path::PathBuf], schema_id: &str) -> anyhow::Result<Models> {
    let mut models = Models::default();
    for p in paths {
        let artefact =
            ModelArtefact::load(p).map_err(|e| anyhow::anyhow!("PROACT_DETECTOR_MODEL_FILES: {}: {e}", p.display()))?;
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
