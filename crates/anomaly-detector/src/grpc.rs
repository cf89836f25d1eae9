//! gRPC `Detector`: side-effect-free scoring and the replica's status.

use std::sync::Arc;

use proact_proto::v1::detector_server::Detector;
use proact_proto::v1::{DetectorStatus, DetectorStatusRequest, ScoreRequest, ScoreResponse, ScoredReading};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::episodes::Episodes;

pub struct DetectorService {
    pub episodes: Arc<Mutex<Episodes>>,
    pub replica_id: String,
    pub shards: Vec<u32>,
    pub model_version: String,
}

#[tonic::async_trait]
impl Detector for DetectorService {
    async fn score(&self, req: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let items = req.into_inner().items;
        if items.len() > 10_000 {
            return Err(Status::invalid_argument("at most 10000 readings per call"));
        }
        let ep = self.episodes.lock().await;
        let scores = items
            .iter()
            .map(|t| {
                let (score, severity, reason) = ep.score(t);
                ScoredReading {
                    equipement_id: t.equipement_id.clone(),
                    ts_micros: t.ts_micros,
                    score,
                    severity: severity as i32,
                    reasons: reason.into_iter().collect(),
                    model_version: self.model_version.clone(),
                }
            })
            .collect();
        Ok(Response::new(ScoreResponse { scores }))
    }

    async fn status(&self, _req: Request<DetectorStatusRequest>) -> Result<Response<DetectorStatus>, Status> {
        let ep = self.episodes.lock().await;
        Ok(Response::new(DetectorStatus {
            replica_id: self.replica_id.clone(),
            shards_owned: self.shards.clone(),
            model_versions: [("rules".to_string(), self.model_version.clone())].into_iter().collect(),
            lag: vec![],
            equipments_tracked: ep.tracked() as u64,
        }))
    }
}
