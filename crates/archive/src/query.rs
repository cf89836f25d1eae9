//! gRPC `Archive`: history for charts and investigations. Answers stream row by row: the
//! rows go through a bounded channel to the gRPC stream, and tokio-postgres stops reading
//! the socket while that channel is full, so a slow client holds back PostgreSQL instead of
//! a year of data piling up in memory here.

use std::pin::Pin;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::{Stream, StreamExt};
use proact_proto::v1::archive_server::Archive;
use proact_proto::v1::{Alert, AlertsQuery, Bucket, BucketsRequest, TelemetryPoint, TelemetryRangeRequest};
use tokio_postgres::types::ToSql;
use tonic::{Request, Response, Status};

use proact_store::{alerts_sql, micros_to_ts, row_to_alert};

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ArchiveService {
    pub pool: Pool,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("archive database: {e}"))
}

fn range(from: i64, to: i64) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), Status> {
    let to = if to == 0 { i64::MAX / 2 } else { to };
    if from > to {
        return Err(Status::invalid_argument("from_micros is after to_micros"));
    }
    Ok((micros_to_ts(from), micros_to_ts(to.min(253_402_300_799_000_000))))
}

/// A bad argument (an unknown time zone…) is the caller's; anything else is ours.
fn pg_status(e: tokio_postgres::Error) -> Status {
    match e.code() {
        Some(c) if c.code().starts_with("22") => Status::invalid_argument(e.to_string()),
        _ => internal(e),
    }
}

/// Runs `sql` and streams its rows through `map`, on a pooled connection held by the stream.
/// Longest wait for a free query connection before the call is refused.
const QUERY_SLOT_WAIT: Duration = Duration::from_secs(2);

fn stream_rows<T, F>(pool: Pool, sql: String, params: Vec<Box<dyn ToSql + Sync + Send>>, map: F) -> Out<T>
where
    T: Send + 'static,
    F: Fn(&tokio_postgres::Row) -> T + Send + Sync + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<T, Status>>(256);
    tokio::spawn(async move {
        let client = match tokio::time::timeout(QUERY_SLOT_WAIT, pool.get()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let _ = tx.send(Err(internal(e))).await;
                return;
            }
            Err(_) => {
                metrics::counter!("proact_archive_queries_refused_total").increment(1);
                let _ = tx
                    .send(Err(Status::resource_exhausted(format!(
                        "every query connection ({}) is busy; retry later",
                        pool.status().max_size
                    ))))
                    .await;
                return;
            }
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = match client.query_raw(sql.as_str(), refs).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(pg_status(e))).await;
                return;
            }
        };
        futures::pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let item = row.map(|r| map(&r)).map_err(pg_status);
            if tx.send(item).await.is_err() {
                return; // the client went away
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Archive for ArchiveService {
    type QueryRangeStream = Out<TelemetryPoint>;
    type QueryBucketsStream = Out<Bucket>;
    type QueryAlertsStream = Out<Alert>;

    async fn query_range(
        &self,
        req: Request<TelemetryRangeRequest>,
    ) -> Result<Response<Self::QueryRangeStream>, Status> {
        let q = req.into_inner();
        let (from, to) = range(q.from_micros, q.to_micros)?;
        let limit = if q.limit == 0 { i64::MAX } else { i64::from(q.limit) };
        let (sql, params) = proact_store::telemetry::range_sql(q.equipement_id, from, to, limit);
        Ok(Response::new(stream_rows(self.pool.clone(), sql, params, proact_store::telemetry::row_to_point)))
    }

    async fn query_buckets(&self, req: Request<BucketsRequest>) -> Result<Response<Self::QueryBucketsStream>, Status> {
        let q = req.into_inner();
        let (from, to) = range(q.from_micros, q.to_micros)?;
        if q.bucket_seconds == 0 {
            return Err(Status::invalid_argument("bucket_seconds must be > 0"));
        }
        let (sql, params) = proact_store::telemetry::buckets_sql(q, from, to);
        Ok(Response::new(stream_rows(self.pool.clone(), sql, params, proact_store::telemetry::row_to_bucket)))
    }

    async fn query_alerts(&self, req: Request<AlertsQuery>) -> Result<Response<Self::QueryAlertsStream>, Status> {
        let (sql, params) = alerts_sql(&req.into_inner());
        Ok(Response::new(stream_rows(self.pool.clone(), sql, params, row_to_alert)))
    }
}
