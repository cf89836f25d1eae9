//! The alert lifecycle an operator drives: acknowledge (with a comment and who), assign to a
//! technician, clear. Each change is stored in PostgreSQL (the alert's row plus a line of
//! `alert_actions`) and appended to the alerts stream, so every gateway replica pushes it to
//! its clients and the archive records it.
//!
//! The alert's row is written by the archive from the alerts stream, a few milliseconds
//! after the detector raised it: an operator quick enough to act before that still finds
//! the alert, in this replica's feed or, failing that, in the recent alerts stream, and the
//! gateway's own upsert then creates the row (the archive's later, older write of the
//! raise loses to it: upserts never move an alert back in time).

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind, AlertState};
use prost::Message;

use crate::feed::{self, SharedRecent};

/// Stream entries searched for an alert the archive has not stored yet.
const STREAM_SCAN: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no alert with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Store(#[from] proact_store::StoreError),
    #[error("storage: {0}")]
    Pg(#[from] tokio_postgres::Error),
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

/// What the lifecycle needs: the database, the alerts stream, and this replica's feed memory.
pub struct Lifecycle<'a> {
    pub pool: &'a deadpool_postgres::Pool,
    pub redis: &'a Client,
    pub recent: &'a SharedRecent,
}

impl Lifecycle<'_> {
    /// The alert as the database, this replica's feed or the recent stream knows it.
    pub async fn find(&self, alert_id: &str) -> Result<Option<Alert>, LifecycleError> {
        let client = self.pool.get().await.map_err(proact_store::StoreError::from)?;
        let stored = proact_store::get_alert(&client, alert_id).await?;
        drop(client);
        let fed = self.recent.lock().unwrap_or_else(|p| p.into_inner()).get(alert_id);
        // The feed may be newer than the row (the archive is behind) or older (another
        // replica acted): the most recently updated one wins.
        let best = match (stored, fed) {
            (Some(s), Some(f)) => Some(if f.updated_micros > s.updated_micros { f } else { s }),
            (s, f) => s.or(f),
        };
        if best.is_some() {
            return Ok(best);
        }
        Ok(feed::find_in_stream(self.redis, alert_id, STREAM_SCAN).await?)
    }

    /// Applies `change` to alert `alert_id`; returns the alert as it now is.
    pub async fn apply(&self, alert_id: &str, change: Change) -> Result<Alert, LifecycleError> {
        let mut alert = self.find(alert_id).await?.ok_or_else(|| LifecycleError::NotFound(alert_id.to_string()))?;
        let cleared = alert.state == AlertState::Cleared as i32;
        let (kind, action) = match change {
            Change::Acknowledge { by, comment } => {
                if cleared {
                    return Err(LifecycleError::Invalid(format!("alert {alert_id} is already cleared")));
                }
                require("by", &by)?;
                limit("comment", &comment)?;
                alert.state = AlertState::Acknowledged as i32;
                alert.acknowledged_by = by.clone();
                alert.comment = comment.clone();
                (
                    AlertEventKind::Acknowledged,
                    Action { name: "acknowledged", by, comment, technician_id: String::new() },
                )
            }
            Change::Assign { technician_id, by, comment } => {
                if cleared {
                    return Err(LifecycleError::Invalid(format!("alert {alert_id} is already cleared")));
                }
                require("technician_id", &technician_id)?;
                limit("by", &by)?;
                limit("comment", &comment)?;
                alert.assigned_to = technician_id.clone();
                if !comment.is_empty() {
                    alert.comment = comment.clone();
                }
                // Assigning is taking charge: an open alert counts as acknowledged by whoever assigned it.
                if alert.state == AlertState::Open as i32 && !by.trim().is_empty() {
                    alert.state = AlertState::Acknowledged as i32;
                    alert.acknowledged_by = by.clone();
                }
                (AlertEventKind::Assigned, Action { name: "assigned", by, comment, technician_id })
            }
            Change::Clear { by, comment } => {
                if cleared {
                    // Clearing twice is not an error and changes nothing.
                    return Ok(alert);
                }
                limit("by", &by)?;
                limit("comment", &comment)?;
                alert.state = AlertState::Cleared as i32;
                if alert.end_micros == 0 {
                    alert.end_micros = now_micros();
                }
                if !by.is_empty() && alert.acknowledged_by.is_empty() {
                    alert.acknowledged_by = by.clone();
                }
                if !comment.is_empty() {
                    alert.comment = comment.clone();
                }
                (AlertEventKind::Cleared, Action { name: "cleared", by, comment, technician_id: String::new() })
            }
        };
        alert.updated_micros = now_micros().max(alert.updated_micros + 1);
        proact_store::store_alerts(self.pool, std::slice::from_ref(&alert)).await?;
        let client = self.pool.get().await.map_err(proact_store::StoreError::from)?;
        proact_store::alerts::record_action(
            &client,
            &alert.alert_id,
            action.name,
            &action.by,
            &action.comment,
            &action.technician_id,
        )
        .await?;
        let event = AlertEvent { kind: kind as i32, alert: Some(alert.clone()), ..Default::default() };
        let _: String = self
            .redis
            .xadd(ALERTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(event.encode_to_vec())))
            .await?;
        metrics::counter!("proact_gateway_lifecycle_changes_total", "action" => action.name).increment(1);
        Ok(alert)
    }
}

struct Action {
    name: &'static str,
    by: String,
    comment: String,
    technician_id: String,
}

fn require(name: &str, v: &str) -> Result<(), LifecycleError> {
    if v.trim().is_empty() {
        return Err(LifecycleError::Invalid(format!("{name} must not be empty")));
    }
    limit(name, v)
}

fn limit(name: &str, v: &str) -> Result<(), LifecycleError> {
    if v.chars().count() > 500 {
        return Err(LifecycleError::Invalid(format!("{name} must be at most 500 characters")));
    }
    Ok(())
}

pub use proact_store::alerts::ActionRecord;

/// Who did what on `alert_id`, oldest first.
pub async fn history(pool: &deadpool_postgres::Pool, alert_id: &str) -> Result<Vec<ActionRecord>, LifecycleError> {
    let client = pool.get().await.map_err(proact_store::StoreError::from)?;
    Ok(proact_store::alerts::action_history(&client, alert_id).await?)
}
