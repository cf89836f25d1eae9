//! The trainer's errors, and the one place they become gRPC statuses.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("storage: {0}")]
    Store(#[from] proact_store::StoreError),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error("Redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("model {name} has no version {version:?}: list the versions with `proact-trainer list`")]
    NotFound { name: String, version: String },
    #[error("model {0} has no active version: train one or promote a candidate")]
    NoActive(String),
    #[error(
        "artefact of {name} {version} is corrupted ({detail}): it is not served; train a new version or roll back to another one"
    )]
    Corrupt { name: String, version: String, detail: String },
    /// The request makes no sense in the current state (already active, nothing to roll back to).
    #[error("{0}")]
    Conflict(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("model: {0}")]
    Model(#[from] proact_models::ModelError),
    #[error("a training run is already in progress; try again when it has finished")]
    Busy,
    #[error(
        "{action} is recorded in PostgreSQL but its model event could not be published to Redis ({source}): detectors \
         load it at their next start, or repeat the command once Redis is back"
    )]
    Publish { action: String, source: fred::error::Error },
    #[error("internal: {0}")]
    Internal(String),
}

impl From<deadpool_postgres::PoolError> for TrainerError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        TrainerError::Pool(e.to_string())
    }
}

impl From<proact_maintenance::MaintenanceError> for TrainerError {
    fn from(e: proact_maintenance::MaintenanceError) -> Self {
        match e {
            proact_maintenance::MaintenanceError::Store(e) => TrainerError::Store(e),
            other => TrainerError::Data(format!("intervention history: {other}")),
        }
    }
}

impl From<tokio::task::JoinError> for TrainerError {
    fn from(e: tokio::task::JoinError) -> Self {
        TrainerError::Internal(format!("training task failed: {e}"))
    }
}

impl From<TrainerError> for Status {
    fn from(e: TrainerError) -> Status {
        let msg = e.to_string();
        match e {
            TrainerError::Pg(_)
            | TrainerError::Store(_)
            | TrainerError::Pool(_)
            | TrainerError::Redis(_)
            | TrainerError::Publish { .. } => {
                Status::unavailable(proact_server::telemetry::logged_error("registry storage unavailable", &msg))
            }
            TrainerError::NotFound { .. } | TrainerError::NoActive(_) => Status::not_found(msg),
            TrainerError::Corrupt { .. } => Status::data_loss(msg),
            TrainerError::Conflict(_) => Status::failed_precondition(msg),
            TrainerError::Data(_) | TrainerError::Model(_) => Status::failed_precondition(msg),
            TrainerError::Busy => Status::aborted(msg),
            TrainerError::Internal(_) => {
                Status::internal(proact_server::telemetry::logged_error("registry failure", &msg))
            }
        }
    }
}
