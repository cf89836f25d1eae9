//! Typed access to the PostgreSQL contract tables several services share.
//!
//! Writing batches idempotently:
//!
//! Telemetry goes through binary `COPY` (see [`telemetry`] for the paths and why), so a
//! redelivered entry never duplicates a row. Alert events are upserts keyed by `alert_id`
//! that never move an alert back to an older state.
#![forbid(unsafe_code)]

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use proact_proto::v1::{Alert, AlertsQuery, Telemetry};
use tokio_postgres::types::ToSql;

pub mod planning;
pub mod telemetry;

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

/// Upserts alert states; an older update never overwrites a newer one.
///
/// The detector knows nothing of operators: its later events for an episode (escalated,
/// cleared) carry empty operator fields and the state `open`. They keep what an operator
/// already set (who acknowledged, the comment, the assignee), and an acknowledged alert does
/// not go back to open (states 1 = open, 2 = acknowledged; the gateway's live view applies the
/// same rule, `merge_operator_fields`).
pub async fn store_alerts(pool: &Pool, alerts: &[Alert]) -> Result<(), StoreError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare(
            "INSERT INTO alerts (alert_id, equipement_id, start_ts, end_ts, severity, score, reason, rule,
                                 model_version, trace_id, state, updated_at, acknowledged_by, comment,
                                 assigned_to, value)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (alert_id) DO UPDATE SET
                end_ts = EXCLUDED.end_ts, severity = EXCLUDED.severity, score = EXCLUDED.score,
                reason = EXCLUDED.reason, rule = EXCLUDED.rule, model_version = EXCLUDED.model_version,
                state = CASE WHEN EXCLUDED.state = 1 AND alerts.state = 2 THEN alerts.state ELSE EXCLUDED.state END,
                updated_at = EXCLUDED.updated_at,
                acknowledged_by = COALESCE(NULLIF(EXCLUDED.acknowledged_by, ''), alerts.acknowledged_by),
                comment = COALESCE(NULLIF(EXCLUDED.comment, ''), alerts.comment),
                assigned_to = COALESCE(NULLIF(EXCLUDED.assigned_to, ''), alerts.assigned_to),
                value = EXCLUDED.value
             WHERE alerts.updated_at <= EXCLUDED.updated_at",
        )
        .await?;
    for a in alerts {
        let end = (a.end_micros > 0).then(|| micros_to_ts(a.end_micros));
        tx.execute(
            &stmt,
            &[
                &a.alert_id,
                &a.equipement_id,
                &micros_to_ts(a.start_micros),
                &end,
                &(a.severity as i16),
                &a.score,
                &a.reason,
                &a.rule,
                &a.model_version,
                &a.trace_id,
                &(a.state as i16),
                &micros_to_ts(a.updated_micros),
                &a.acknowledged_by,
                &a.comment,
                &a.assigned_to,
                &a.value,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub fn row_to_alert(r: &tokio_postgres::Row) -> Alert {
    let ts = |c: &str| r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(c).map(|t| t.timestamp_micros()).unwrap_or(0);
    Alert {
        alert_id: r.get("alert_id"),
        equipement_id: r.get("equipement_id"),
        start_micros: ts("start_ts"),
        end_micros: ts("end_ts"),
        severity: i32::from(r.get::<_, i16>("severity")),
        score: r.get("score"),
        reason: r.get("reason"),
        rule: r.get("rule"),
        model_version: r.get("model_version"),
        trace_id: r.get("trace_id"),
        state: i32::from(r.get::<_, i16>("state")),
        updated_micros: ts("updated_at"),
        acknowledged_by: r.get("acknowledged_by"),
        comment: r.get("comment"),
        assigned_to: r.get("assigned_to"),
        value: r.get("value"),
    }
}

/// SQL and parameters for an alerts query with optional filters, newest first.
pub fn alerts_sql(q: &AlertsQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut sql = String::from("SELECT * FROM alerts WHERE true");
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if !q.equipement_id.is_empty() {
        params.push(Box::new(q.equipement_id.clone()));
        sql.push_str(&format!(" AND equipement_id = ${}", params.len()));
    }
    if q.min_severity > 0 {
        params.push(Box::new(q.min_severity as i16));
        sql.push_str(&format!(" AND severity >= ${}", params.len()));
    }
    if q.state > 0 {
        params.push(Box::new(q.state as i16));
        sql.push_str(&format!(" AND state = ${}", params.len()));
    }
    if q.from_micros > 0 {
        params.push(Box::new(micros_to_ts(q.from_micros)));
        sql.push_str(&format!(" AND start_ts >= ${}", params.len()));
    }
    if q.to_micros > 0 {
        params.push(Box::new(micros_to_ts(q.to_micros)));
        sql.push_str(&format!(" AND start_ts < ${}", params.len()));
    }
    let limit = if q.limit == 0 { 1000 } else { q.limit.min(100_000) };
    sql.push_str(&format!(" ORDER BY start_ts DESC LIMIT {limit}"));
    (sql, params)
}

/// One alert by id, if it exists.
pub async fn get_alert(client: &tokio_postgres::Client, alert_id: &str) -> Result<Option<Alert>, StoreError> {
    Ok(client.query_opt("SELECT * FROM alerts WHERE alert_id = $1", &[&alert_id]).await?.as_ref().map(row_to_alert))
}

/// Alerts matching `q`, newest first.
pub async fn list_alerts(pool: &Pool, q: &AlertsQuery) -> Result<Vec<Alert>, StoreError> {
    let (sql, params) = alerts_sql(q);
    let client = pool.get().await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    Ok(client.query(sql.as_str(), &refs).await?.iter().map(row_to_alert).collect())
}
