//! gRPC `Detector`: side-effect-free scoring and the replica's status.

use std::sync::Arc;

use proact_proto::v1::detector_server::Detector;
use proact_proto::v1::{DetectorStatus, DetectorStatusRequest, ScoreRequest, ScoreResponse, ScoredReading, ShardLag};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::engine::Engine;

/// What the scoring loop reports about itself.
#[derive(Debug, Clone, Default)]
pub struct LoopStatus {
    pub shards: Vec<u32>,
    pub lag: Vec<(u32, u64)>,
}

pub struct DetectorService {
    pub engine: Arc<Mutex<Engine>>,
    pub replica_id: String,
    pub status: Arc<std::sync::RwLock<LoopStatus>>,
}

#[tonic::async_trait]
impl Detector for DetectorService {
    async fn score(&self, req: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let items = req.into_inner().items;
        if items.len() > 10_000 {
            return Err(Status::invalid_argument("at most 10000 readings per call"));
        }
        let engine = self.engine.lock().await;
        let scores = items
            .iter()
            .map(|t| {
                let a = engine.score(t);
                ScoredReading {
                    equipement_id: t.equipement_id.clone(),
                    ts_micros: t.ts_micros,
                    score: a.score,
                    severity: a.severity as i32,
                    reasons: if a.reason.is_empty() { vec![] } else { vec![a.reason] },
                    model_version: a.model_version,
                }
            })
            .collect();
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
