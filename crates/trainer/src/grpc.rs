//! gRPC `ModelRegistry`: list, get (artefact streamed in chunks), promote, roll back, trigger
//! training, watch (the model-events stream). Errors become statuses in `error.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use futures::Stream;
use proact_proto::streams::{MODEL_EVENTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::model_registry_server::ModelRegistry;
use proact_proto::v1::{
    GetModelRequest, ListModelsRequest, ListModelsResponse, ModelChunk, ModelEvent, PromoteModelRequest,
    RollbackModelRequest, TriggerTrainingRequest, TriggerTrainingResponse, WatchModelsRequest,
};
use prost::Message;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::train::Trainer;

/// Largest `data` of one `ModelChunk` (gRPC's default message limit is 4 MiB; small chunks keep
/// a large forest from being one huge message).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// `Watch` streams open at once (each holds a Redis connection); more get RESOURCE_EXHAUSTED.
pub const MAX_WATCHERS: usize = 64;

pub struct RegistryService {
    trainer: Trainer,
    /// Each `Watch` reads the stream on its own connection: a blocking `XREAD` holds it.
    redis_url: String,
    shutdown: CancellationToken,
    watch_slots: Arc<Semaphore>,
}

impl RegistryService {
    pub fn new(trainer: Trainer, redis_url: String, shutdown: CancellationToken) -> Self {
        Self { trainer, redis_url, shutdown, watch_slots: Arc::new(Semaphore::new(MAX_WATCHERS)) }
    }
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Splits an artefact into chunks; the first carries the version's metadata.
pub fn chunks(model: proact_proto::v1::ModelVersion, bytes: &[u8]) -> Vec<ModelChunk> {
    let mut out: Vec<ModelChunk> = bytes
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, c)| ModelChunk { model: None, data: c.to_vec(), offset: (i * CHUNK_BYTES) as u64 })
        .collect();
    if out.is_empty() {
        out.push(ModelChunk::default());
    }
    out[0].model = Some(model);
    out
}

fn name_matches(filter: &str, name: &str) -> bool {
    filter.is_empty() || filter == name || (filter.ends_with('/') && name.starts_with(filter))
}

#[tonic::async_trait]
impl ModelRegistry for RegistryService {
    type GetStream = Out<ModelChunk>;
    type WatchStream = Out<ModelEvent>;

    async fn list(&self, req: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let models = self.trainer.registry().list(&req.into_inner().name).await?;
        Ok(Response::new(ListModelsResponse { models }))
    }

    async fn get(&self, req: Request<GetModelRequest>) -> Result<Response<Self::GetStream>, Status> {
        let r = req.into_inner();
        let (model, bytes) = self.trainer.registry().artefact(&r.name, &r.version).await?;
        let items: Vec<Result<ModelChunk, Status>> = chunks(model, &bytes).into_iter().map(Ok).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn promote(&self, req: Request<PromoteModelRequest>) -> Result<Response<ModelEvent>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.trainer.registry().promote(&r.name, &r.version, r.force).await?))
    }

    async fn rollback(&self, req: Request<RollbackModelRequest>) -> Result<Response<ModelEvent>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.trainer.registry().rollback(&r.name, &r.version).await?))
    }

    async fn trigger_training(
        &self,
        req: Request<TriggerTrainingRequest>,
    ) -> Result<Response<TriggerTrainingResponse>, Status> {
        let name = req.into_inner().name;
        let out = self.trainer.run(&name).await?;
        for s in &out.skipped {
            tracing::info!(reason = %s, "skipped by TriggerTraining");
        }
        Ok(Response::new(TriggerTrainingResponse { trained: out.trained, events: out.events }))
    }

    async fn watch(&self, req: Request<WatchModelsRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let filter = req.into_inner().name;
        let slot = self.watch_slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!("{MAX_WATCHERS} Watch streams already open; retry later"))
        })?;
        // A caller waiting on a stream is better told at once that Redis is away than kept
        // through a failover: it retries, as it would after any UNAVAILABLE.
        let client = proact_server::redis::connect_within(&self.redis_url, std::time::Duration::from_secs(5))
            .await
            .map_err(|e| Status::unavailable(format!("Redis: {e}")))?;
        // From now on: read the newest id first so nothing published after this call is missed.
        let mut last = "$".to_string();
        let newest: Result<Value, Error> = client.xrevrange(MODEL_EVENTS_STREAM, "+", "-", Some(1)).await;
        if let Ok(Value::Array(entries)) = newest {
            if let Some(Value::Array(pair)) = entries.first() {
                if let Some(id) = pair.first().and_then(|v| v.as_string()) {
                    last = id;
                }
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ModelEvent, Status>>(64);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            while !tx.is_closed() {
                let r: Result<Value, Error> = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    r = client.xread::<Value, _, _>(Some(64), Some(1000), MODEL_EVENTS_STREAM, last.as_str()) => r,
                };
                let resp = match r.and_then(proact_server::redis::xread_response) {
                    Ok(resp) => resp,
                    Err(e) => {
                        tracing::warn!(error = %e, "model-events read failed (Watch)");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                for (id, fields) in resp.get(MODEL_EVENTS_STREAM).cloned().unwrap_or_default() {
                    last = id;
                    let Some(ev) = fields.get(PAYLOAD_FIELD).and_then(|p: &Bytes| ModelEvent::decode(p.as_ref()).ok())
                    else {
                        continue;
                    };
                    let name = ev.model.as_ref().map(|m| m.name.as_str()).unwrap_or("");
                    if name_matches(&filter, name) && tx.send(Ok(ev)).await.is_err() {
                        break;
                    }
                }
            }
            let _ = client.quit().await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_bytes_with_offsets() {
        let bytes: Vec<u8> = (0..(2 * CHUNK_BYTES + 10)).map(|i| i as u8).collect();
        let c = chunks(Default::default(), &bytes);
        assert_eq!(c.len(), 3);
        assert!(c[0].model.is_some() && c[1].model.is_none());
        assert_eq!(c.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![0, CHUNK_BYTES as u64, 2 * CHUNK_BYTES as u64]);
        assert!(c.iter().all(|c| c.data.len() <= CHUNK_BYTES));
        assert_eq!(c.iter().flat_map(|c| c.data.iter().copied()).collect::<Vec<u8>>(), bytes);
    }

    #[test]
    fn watch_filters_by_name_or_prefix() {
        assert!(name_matches("", "anomaly-rf"));
        assert!(name_matches("anomaly-rf", "anomaly-rf"));
        assert!(name_matches("normal-behaviour/", "normal-behaviour/P-1"));
        assert!(!name_matches("normal-behaviour/P-1", "normal-behaviour/P-2"));
    }
}
