//! gRPC `ModelRegistry`: the versions stored in PostgreSQL (`models`), their status and
//! metrics. Training, promotion and artefact download arrive with the model crate (issue 6).

use std::pin::Pin;

use futures::Stream;
use proact_proto::v1::model_registry_server::ModelRegistry;
use proact_proto::v1::{
    GetModelRequest, ListModelsRequest, ListModelsResponse, ModelChunk, ModelEvent, ModelMetrics, ModelVersion,
    PromoteModelRequest, RollbackModelRequest, TriggerTrainingRequest, TriggerTrainingResponse, WatchModelsRequest,
};
use tonic::{Request, Response, Status};

pub struct RegistryService {
    pub pool: deadpool_postgres::Pool,
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn row_to_version(r: &tokio_postgres::Row) -> ModelVersion {
    let metrics: serde_json::Value = r.get("metrics");
    let f = |k: &str| metrics.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let schema: serde_json::Value = r.get("feature_schema");
    let ts = |c: &str| r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(c).map(|t| t.timestamp_micros()).unwrap_or(0);
    ModelVersion {
        name: r.get("name"),
        version: r.get("version"),
        status: i32::from(r.get::<_, i16>("status")),
        metrics: Some(ModelMetrics {
            precision: f("precision"),
            recall: f("recall"),
            f1: f("f1"),
            roc_auc: f("roc_auc"),
            confusion: metrics
                .get("confusion")
                .and_then(|c| c.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default(),
            test_rows: metrics.get("test_rows").and_then(|v| v.as_u64()).unwrap_or(0),
        }),
        parameters_json: r.get::<_, serde_json::Value>("parameters").to_string(),
        feature_schema: schema
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        sha256: r.get("sha256"),
        created_micros: ts("created_at"),
        data_from_micros: ts("data_from"),
        data_to_micros: ts("data_to"),
        size_bytes: r.get::<_, i32>("size_bytes") as u64,
    }
}

fn pending(method: &str) -> Status {
    Status::unimplemented(format!(
        "ModelRegistry.{method} needs the RandomForest trainer and promotion gate (issue 6), not built yet"
    ))
}

#[tonic::async_trait]
impl ModelRegistry for RegistryService {
    type GetStream = Out<ModelChunk>;
    type WatchStream = Out<ModelEvent>;

    async fn list(&self, req: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let name = req.into_inner().name;
        let client = self.pool.get().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let rows = client
            .query(
                "SELECT name, version, status, metrics, parameters, feature_schema, sha256, created_at, data_from,
                        data_to, octet_length(artefact) AS size_bytes
                 FROM models WHERE $1 = '' OR name = $1 ORDER BY name, created_at DESC",
                &[&name],
            )
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ListModelsResponse { models: rows.iter().map(row_to_version).collect() }))
    }

    async fn get(&self, _req: Request<GetModelRequest>) -> Result<Response<Self::GetStream>, Status> {
        Err(pending("Get"))
    }

    async fn promote(&self, _req: Request<PromoteModelRequest>) -> Result<Response<ModelEvent>, Status> {
        Err(pending("Promote"))
    }

    async fn rollback(&self, _req: Request<RollbackModelRequest>) -> Result<Response<ModelEvent>, Status> {
        Err(pending("Rollback"))
    }

    async fn trigger_training(
        &self,
        _req: Request<TriggerTrainingRequest>,
    ) -> Result<Response<TriggerTrainingResponse>, Status> {
        Err(pending("TriggerTraining"))
    }

    async fn watch(&self, _req: Request<WatchModelsRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(pending("Watch"))
    }
}
