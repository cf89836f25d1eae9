//! gRPC `Detector`: side-effect-free scoring and the replica's status.

use std::sync::Arc;

use proact_proto::v1::detector_server::Detector;
use proact_proto::v1::{DetectorStatus, DetectorStatusRequest, ScoreRequest, ScoreResponse, ScoredReading, ShardLag};
use tokio::sync::{Mutex, Semaphore};
use tonic::{Request, Response, Status};

use crate::engine::Engine;

/// What the scoring loop reports about itself.
#[derive(Debug, Clone, Default)]
pub struct LoopStatus {
    pub shards: Vec<u32>,
    pub lag: Vec<(u32, u64)>,
}

/// Readings one `Score` call may carry.
pub const MAX_SCORE_ITEMS: usize = 1_000;
/// Readings scored per hold of the engine lock: the live scoring loop waits at most this many
/// scores behind a `Score` call, not the whole call.
const SCORE_CHUNK: usize = 64;
/// `Score` calls served at once; more get RESOURCE_EXHAUSTED instead of queuing on the lock.
pub const SCORE_CONCURRENCY: usize = 4;

pub struct DetectorService {
    pub engine: Arc<Mutex<Engine>>,
    pub replica_id: String,
    pub status: Arc<std::sync::RwLock<LoopStatus>>,
    score_slots: Semaphore,
}

impl DetectorService {
    pub fn new(engine: Arc<Mutex<Engine>>, replica_id: String, status: Arc<std::sync::RwLock<LoopStatus>>) -> Self {
        Self { engine, replica_id, status, score_slots: Semaphore::new(SCORE_CONCURRENCY) }
    }
}

#[tonic::async_trait]
impl Detector for DetectorService {
    async fn score(&self, req: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let items = req.into_inner().items;
        if items.len() > MAX_SCORE_ITEMS {
            return Err(Status::invalid_argument(format!(
                "{} readings in one call; at most {MAX_SCORE_ITEMS}",
                items.len()
            )));
        }
        let _slot = self.score_slots.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!("{SCORE_CONCURRENCY} Score calls already running; retry later"))
        })?;
        let mut scores = Vec::with_capacity(items.len());
        for chunk in items.chunks(SCORE_CHUNK) {
            let engine = self.engine.lock().await;
            scores.extend(chunk.iter().map(|t| {
                let a = engine.score(t);
                ScoredReading {
                    equipement_id: t.equipement_id.clone(),
                    ts_micros: t.ts_micros,
                    score: a.score,
                    severity: a.severity as i32,
                    reasons: if a.reason.is_empty() { vec![] } else { vec![a.reason] },
                    model_version: a.model_version,
                }
            }));
        }
        Ok(Response::new(ScoreResponse { scores }))
    }

    async fn status(&self, _req: Request<DetectorStatusRequest>) -> Result<Response<DetectorStatus>, Status> {
        let engine = self.engine.lock().await;
        let st = self.status.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut model_versions: std::collections::HashMap<String, String> = crate::models::version_map(engine.models());
        model_versions.insert("rules".into(), crate::engine::RULES_VERSION.into());
        Ok(Response::new(DetectorStatus {
            replica_id: self.replica_id.clone(),
            shards_owned: st.shards,
            model_versions,
            lag: st.lag.into_iter().map(|(shard, pending)| ShardLag { shard, pending }).collect(),
            equipments_tracked: engine.tracked() as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use proact_proto::v1::Telemetry;

    fn service() -> DetectorService {
        let engine = Arc::new(Mutex::new(Engine::new(EngineConfig::default())));
        DetectorService::new(engine, "r".into(), Arc::default())
    }

    fn request(n: usize) -> Request<ScoreRequest> {
        let items = (0..n)
            .map(|i| Telemetry {
                equipement_id: "P".into(),
                ts_micros: i as i64,
                temperature: 95.0,
                ..Default::default()
            })
            .collect();
        Request::new(ScoreRequest { items })
    }

    #[tokio::test]
    async fn score_takes_at_most_its_bound_and_answers_every_reading() {
        let s = service();
        let err = s.score(request(MAX_SCORE_ITEMS + 1)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let ok = s.score(request(MAX_SCORE_ITEMS)).await.unwrap().into_inner();
        assert_eq!(ok.scores.len(), MAX_SCORE_ITEMS, "every chunk scored, in order");
        assert!(ok.scores.iter().enumerate().all(|(i, r)| r.ts_micros == i as i64));
    }

    #[tokio::test]
    async fn score_calls_beyond_the_concurrency_bound_are_refused_not_queued() {
        let s = service();
        let held: Vec<_> = (0..SCORE_CONCURRENCY).map(|_| s.score_slots.try_acquire().unwrap()).collect();
        let err = s.score(request(1)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        drop(held);
        assert!(s.score(request(1)).await.is_ok());
    }
}
