//! The ProAct domain: the contract tables' schema ([`schema`], the migrations every service
//! applies at start), every query against them (one module per area), and the equipment
//! taxonomy ([`taxonomy`]). No SQL against a shared table lives outside this crate.
//!
//! Writing batches idempotently:
//!
//! Telemetry goes through binary `COPY` (see [`telemetry`] for the paths and why), so a
//! redelivered entry never duplicates a row. Alert events are upserts keyed by `alert_id`
//! that never move an alert back to an older state.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use proact_proto::v1::Telemetry;

pub mod alerts;
pub mod knowledge;
pub mod partitions;
pub mod planning;
pub mod reference;
pub mod schema;
pub mod simulated;
pub mod taxonomy;
pub mod telemetry;
pub mod work_orders;

pub use alerts::{alerts_sql, get_alert, list_alerts, row_to_alert, store_alerts};

/// Bound parameters of a query built here and run by the caller (streamed, for instance).
pub type SqlParams = Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>;

/// A storage failure: the batch was not committed and must be retried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

pub fn micros_to_ts(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Stores telemetry rows with the default [`telemetry::WriteMethod`]; returns how many were new.
pub async fn store_telemetry(pool: &Pool, rows: &[Telemetry]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut client = pool.get().await?;
    telemetry::write_telemetry(&mut client, rows, telemetry::WriteMethod::default()).await
}
