//! Publishing work-order transitions on the `proact:workorders` stream.
//!
//! Each transition row carries its encoded `WorkOrderEvent`, written in the same transaction
//! as the change (an outbox). After a commit, [`publish_pending`] puts every unpublished
//! event on the stream in transition order and marks it with its stream id, so an event
//! missed while Redis was down goes out with the next change, or when a service calls
//! [`publish_pending`] at start. A crash between the `XADD` and the mark, or two replicas
//! publishing at once, can repeat an event: consumers keep one per `transition_id`.

use bytes::Bytes;
use deadpool_postgres::Pool;
use fred::prelude::*;
use proact_proto::streams::{PAYLOAD_FIELD, WORK_ORDERS_STREAM};

use crate::MaintenanceError;

/// Why events could not be published (they stay in the outbox).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error(transparent)]
    Store(#[from] MaintenanceError),
}

/// Publishes every pending event, oldest first; returns how many went out.
pub async fn publish_pending(pool: &Pool, redis: &Client) -> Result<usize, PublishError> {
    let client = pool.get().await.map_err(MaintenanceError::from)?;
    let mut sent = 0;
    loop {
        let batch = proact_store::work_orders::unpublished(&client, 256).await.map_err(MaintenanceError::from)?;
        if batch.is_empty() {
            return Ok(sent);
        }
        for e in batch {
            let id: String =
                redis.xadd(WORK_ORDERS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(e.event))).await?;
            proact_store::work_orders::mark_published(&client, e.id, &id).await.map_err(MaintenanceError::from)?;
            sent += 1;
        }
    }
}
