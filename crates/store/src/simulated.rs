//! `simulated_history`: the record of the demo's back-filled past (`proact-trainer backfill`),
//! which makes the back-fill idempotent: a finished one is not written again, an interrupted
//! one is resumed with its recorded plan.

use tokio_postgres::GenericClient;

use crate::StoreError;

/// Serialises back-fills between processes ("SIMHIST").
const LOCK: i64 = 0x0053_494d_4849_5354;

/// A back-fill on record.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    pub id: i64,
    pub plan: serde_json::Value,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub readings: i64,
    pub failures: i32,
    pub false_alarms: i32,
}

/// Takes the back-fill lock until the end of the transaction `tx` (so it is released however
/// the back-fill ends, even if its connection goes back to a pool); `false` when another
/// back-fill holds it.
pub async fn try_lock(tx: &tokio_postgres::Transaction<'_>) -> Result<bool, StoreError> {
    Ok(tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK]).await?.get(0))
}

/// The latest back-fill on record, finished or not.
pub async fn latest(client: &impl GenericClient) -> Result<Option<Backfill>, StoreError> {
    Ok(client
        .query_opt(
            "SELECT id, plan, started_at, finished_at, readings, failures, false_alarms
             FROM simulated_history ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|r| Backfill {
            id: r.get(0),
            plan: r.get(1),
            started_at: r.get(2),
            finished_at: r.get(3),
            readings: r.get(4),
            failures: r.get(5),
            false_alarms: r.get(6),
        }))
}

/// Records the start of a back-fill with `plan`; returns its id.
pub async fn begin(client: &impl GenericClient, plan: &serde_json::Value) -> Result<i64, StoreError> {
    Ok(client.query_one("INSERT INTO simulated_history (plan) VALUES ($1) RETURNING id", &[plan]).await?.get(0))
}

/// Marks back-fill `id` finished with what it wrote.
pub async fn finish(
    client: &impl GenericClient,
    id: i64,
    readings: i64,
    failures: i32,
    false_alarms: i32,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE simulated_history SET finished_at = now(), readings = $2, failures = $3, false_alarms = $4
             WHERE id = $1",
            &[&id, &readings, &failures, &false_alarms],
        )
        .await?;
    Ok(())
}
