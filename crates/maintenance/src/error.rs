//! What can go wrong with a work order, and the one place that maps it to gRPC and HTTP.
//!
//! Every refusal happens before anything is written: a refused request changes nothing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proact_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("work order {id} is already {state}: it cannot be changed any more")]
    AlreadyClosed { id: String, state: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("technician_id: unknown technician {0:?} (not in the workload table)")]
    UnknownTechnician(String),
    #[error("{field}: failure mode {code:?} is not in the AMDEC of {equipement_id} (known: {})", known.join(", "))]
    NotInAmdec { field: &'static str, code: String, equipement_id: String, known: Vec<String> },
    #[error("storage unavailable, nothing was changed: {0}")]
    Store(#[from] StoreError),
}

impl MaintenanceError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        MaintenanceError::Invalid { field, reason: reason.into() }
    }
}

impl From<tokio_postgres::Error> for MaintenanceError {
    fn from(e: tokio_postgres::Error) -> Self {
        MaintenanceError::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for MaintenanceError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        MaintenanceError::Store(e.into())
    }
}

impl From<MaintenanceError> for tonic::Status {
    fn from(e: MaintenanceError) -> Self {
        let msg = e.to_string();
        match e {
            MaintenanceError::NotFound { .. } => tonic::Status::not_found(msg),
            MaintenanceError::AlreadyClosed { .. } => tonic::Status::failed_precondition(msg),
            MaintenanceError::Invalid { .. }
            | MaintenanceError::UnknownTechnician(_)
            | MaintenanceError::NotInAmdec { .. } => tonic::Status::invalid_argument(msg),
            MaintenanceError::Store(_) => {
                tonic::Status::unavailable(proact_server::telemetry::logged_error("database unavailable", &msg))
            }
        }
    }
}

impl IntoResponse for MaintenanceError {
    fn into_response(self) -> Response {
        let code = match self {
            MaintenanceError::NotFound { .. } => StatusCode::NOT_FOUND,
            MaintenanceError::AlreadyClosed { .. } => StatusCode::CONFLICT,
            MaintenanceError::Invalid { .. }
            | MaintenanceError::UnknownTechnician(_)
            | MaintenanceError::NotInAmdec { .. } => StatusCode::BAD_REQUEST,
            MaintenanceError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let error = match &self {
            MaintenanceError::Store(e) => proact_server::telemetry::logged_error("database unavailable", e),
            _ => self.to_string(),
        };
        (code, Json(serde_json::json!({ "error": error }))).into_response()
    }
}
