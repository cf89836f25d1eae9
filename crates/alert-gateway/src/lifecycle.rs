//! The alert lifecycle an operator drives: acknowledge (with a comment and who), assign to a
//! technician, clear. Each change is stored in PostgreSQL and appended to the alerts stream,
//! so every gateway replica pushes it to its clients and the archive records it.

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind, AlertState};
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no alert with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Store(#[from] proact_store::StoreError),
    #[error("alerts stream: {0}")]
    Redis(#[from] fred::error::Error),
}

impl From<LifecycleError> for tonic::Status {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            LifecycleError::Invalid(_) => tonic::Status::failed_precondition(e.to_string()),
            _ => tonic::Status::unavailable(e.to_string()),
        }
    }
}

/// An operator's action on an alert.
#[derive(Debug, Clone)]
pub enum Change {
    Acknowledge { by: String, comment: String },
    Assign { technician_id: String, by: String, comment: String },
    Clear { by: String, comment: String },
}

/// Applies `change` to alert `alert_id`; returns the alert as it now is.
pub async fn apply(
    pool: &deadpool_postgres::Pool,
    redis: &Client,
    alert_id: &str,
    change: Change,
) -> Result<Alert, LifecycleError> {
    let client = pool.get().await.map_err(proact_store::StoreError::from)?;
    let mut alert = proact_store::get_alert(&client, alert_id)
        .await?
        .ok_or_else(|| LifecycleError::NotFound(alert_id.to_string()))?;
    drop(client);
    let cleared = alert.state == AlertState::Cleared as i32;
    let kind = match change {
        Change::Acknowledge { by, comment } => {
            if cleared {
                return Err(LifecycleError::Invalid(format!("alert {alert_id} is already cleared")));
            }
            require("by", &by)?;
            alert.state = AlertState::Acknowledged as i32;
            alert.acknowledged_by = by;
            alert.comment = comment;
            AlertEventKind::Acknowledged
        }
        Change::Assign { technician_id, by, comment } => {
            if cleared {
                return Err(LifecycleError::Invalid(format!("alert {alert_id} is already cleared")));
            }
            require("technician_id", &technician_id)?;
            alert.assigned_to = technician_id;
            if !comment.is_empty() {
                alert.comment = comment;
            }
            if alert.acknowledged_by.is_empty() {
                alert.acknowledged_by = by;
            }
            AlertEventKind::Assigned
        }
        Change::Clear { by, comment } => {
            if cleared {
                // Clearing twice is not an error and changes nothing.
                return Ok(alert);
            }
            alert.state = AlertState::Cleared as i32;
            if alert.end_micros == 0 {
                alert.end_micros = now_micros();
            }
            if !by.is_empty() && alert.acknowledged_by.is_empty() {
                alert.acknowledged_by = by;
            }
            if !comment.is_empty() {
                alert.comment = comment;
            }
            AlertEventKind::Cleared
        }
    };
    alert.updated_micros = now_micros().max(alert.updated_micros + 1);
    proact_store::store_alerts(pool, std::slice::from_ref(&alert)).await?;
    let event = AlertEvent { kind: kind as i32, alert: Some(alert.clone()), ..Default::default() };
    let _: String =
        redis.xadd(ALERTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(event.encode_to_vec()))).await?;
    metrics::counter!("proact_gateway_lifecycle_changes_total").increment(1);
    Ok(alert)
}

fn require(name: &str, v: &str) -> Result<(), LifecycleError> {
    if v.trim().is_empty() || v.len() > 200 {
        return Err(LifecycleError::Invalid(format!("{name} must be 1-200 characters")));
    }
    Ok(())
}
