//! Writing telemetry batches into the partitioned `telemetry` table, idempotently.
//!
//! Three paths, all safe to run twice on the same rows (rows are unique on
//! (`equipement_id`, `ts`)); `docs/BENCHMARKS.md` ("Archive") has their measured speed:
//!
//! - [`WriteMethod::Staging`]: binary `COPY` into a per-connection temporary staging table
//!   (temporary tables are not WAL-logged), then one `INSERT … SELECT … ON CONFLICT DO NOTHING`.
//! - [`WriteMethod::Unnest`]: one `INSERT … SELECT FROM unnest($1::text[], …) ON CONFLICT DO
//!   NOTHING` with the columns as binary array parameters.
//! - [`WriteMethod::CopyFirst`]: binary `COPY` straight into `telemetry` (bulk-load speed); if
//!   the batch holds a row that is already stored (a redelivery after a crash between commit
//!   and ack), the unique index refuses the COPY, the transaction rolls back and the batch goes
//!   through the staging path instead. First deliveries, nearly all of them, pay raw COPY.
//!
//! The COPY stream is encoded here rather than through `BinaryCopyInWriter`: five fixed
//! column types, written straight into one buffer, with no per-value type checks.

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use proact_proto::v1::Telemetry;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::StoreError;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// Timestamps the archive accepts: years 0001 to 9999 (PostgreSQL stores far more, but a
/// partition per absurd date is not worth having; ingest refuses such readings anyway).
pub const MIN_TS_MICROS: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
pub const MAX_TS_MICROS: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

/// How a batch is written; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMethod {
    Staging,
    Unnest,
    #[default]
    CopyFirst,
}

impl std::str::FromStr for WriteMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "staging" => Ok(Self::Staging),
            "unnest" => Ok(Self::Unnest),
            "copy-first" => Ok(Self::CopyFirst),
            _ => Err(format!("unknown write method {s:?} (staging, unnest, copy-first)")),
        }
    }
}

impl std::fmt::Display for WriteMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Staging => "staging",
            Self::Unnest => "unnest",
            Self::CopyFirst => "copy-first",
        })
    }
}

/// What a failed write means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection lost, server down or restarting, lock timeout, schema being changed…:
    /// retry the same batch later; nothing about the rows is wrong.
    Transient,
    /// A row's `ts` has no partition (created on demand by the archive, then retried).
    MissingPartition,
    /// PostgreSQL refuses a row's content (invalid text, value out of range…): retrying the
    /// same rows fails the same way; isolate the row.
    Data,
}

/// Classifies a storage error (see [`Failure`]).
pub fn classify(e: &StoreError) -> Failure {
    let StoreError::Pg(pg) = e else { return Failure::Transient };
    let Some(code) = pg.code() else { return Failure::Transient };
    // PostgreSQL reports a row no partition accepts as a check violation on the parent table
    // that names no constraint (the table has no CHECK of its own). The message text is
    // translated with the server's lc_messages, so it is not read.
    if *code == SqlState::CHECK_VIOLATION {
        if let Some(db) = pg.as_db_error() {
            if db.constraint().is_none() && db.table() == Some("telemetry") {
                return Failure::MissingPartition;
            }
        }
    }
    match &code.code()[..2] {
        // Data exceptions, integrity constraints, program limits (e.g. a row too large).
        "22" | "23" | "54" => Failure::Data,
        // Everything else (connection, resources, operator intervention, a schema out of date,
        // internal errors) says nothing about the rows: retry, never dead-letter on it.
        _ => Failure::Transient,
    }
}

/// Whether `ts_micros` can be stored (see [`MIN_TS_MICROS`]).
pub fn storable_ts(ts_micros: i64) -> bool {
    (MIN_TS_MICROS..=MAX_TS_MICROS).contains(&ts_micros)
}

/// JSONB in binary form is a version byte then the JSON text; sent as is, no re-parse here.
#[derive(Debug)]
pub struct RawJsonb(pub String);

impl ToSql for RawJsonb {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send + 'static>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

fn extra_json(t: &Telemetry) -> String {
    if t.extra.is_empty() {
        return "{}".to_string();
    }
    // Sorted keys: the same reading always gives the same document. Non-finite values (ingest
    // refuses them) would become null rather than invalid JSON.
    let sorted: std::collections::BTreeMap<&String, &f64> = t.extra.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "{}".to_string())
}

fn received(t: &Telemetry) -> i64 {
    if t.received_micros > 0 && storable_ts(t.received_micros) {
        t.received_micros
    } else {
        t.ts_micros
    }
}

/// `extra` as a JSON object, keys sorted, written straight into `out`.
fn write_extra_json(t: &Telemetry, out: &mut BytesMut) {
    if t.extra.is_empty() {
        out.put_slice(b"{}");
        return;
    }
    let mut kv: Vec<(&String, &f64)> = t.extra.iter().collect();
    kv.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.put_u8(b'{');
    for (i, (k, v)) in kv.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        // serde_json escapes the key and prints non-finite numbers as null.
        let mut w = out.writer();
        let _ = serde_json::to_writer(&mut w, k);
        let out2 = w.into_inner();
        out2.put_u8(b':');
        let mut w = out2.writer();
        let _ = serde_json::to_writer(&mut w, v);
    }
    out.put_u8(b'}');
}

/// The rows as one binary COPY stream: header, tuples, trailer.
pub fn encode_copy(rows: &[Telemetry]) -> Bytes {
    let mut b = BytesMut::with_capacity(19 + rows.len() * 96 + 2);
    b.put_slice(b"PGCOPY\n\xff\r\n\0");
    b.put_i32(0); // flags
    b.put_i32(0); // header extension length
    for t in rows {
        b.put_i16(6);
        b.put_i32(t.equipement_id.len() as i32);
        b.put_slice(t.equipement_id.as_bytes());
        b.put_i32(8);
        b.put_i64(t.ts_micros - PG_EPOCH_OFFSET_MICROS);
        b.put_i32(8);
        b.put_f64(t.temperature);
        b.put_i32(8);
        b.put_f64(t.vibration);
        // JSONB: length, version byte, the text written in place.
        let at = b.len();
        b.put_i32(0);
        b.put_u8(1);
        write_extra_json(t, &mut b);
        let len = (b.len() - at - 4) as i32;
        b[at..at + 4].copy_from_slice(&len.to_be_bytes());
        b.put_i32(8);
        b.put_i64(received(t) - PG_EPOCH_OFFSET_MICROS);
    }
    b.put_i16(-1);
    b.freeze()
}

const COLUMNS: &str = "equipement_id, ts, temperature, vibration, extra, received_at";

async fn copy_into(tx: &tokio_postgres::Transaction<'_>, table: &str, data: Bytes) -> Result<u64, StoreError> {
    let sink = tx.copy_in::<_, Bytes>(&format!("COPY {table} ({COLUMNS}) FROM STDIN BINARY")).await?;
    futures::pin_mut!(sink);
    // One message per ~1 MiB keeps the socket busy without one huge allocation on the wire.
    let mut data = data;
    while data.len() > 1 << 20 {
        sink.feed(data.split_to(1 << 20)).await?;
    }
    sink.feed(data).await?;
    Ok(sink.finish().await?)
}

async fn write_staging(client: &mut tokio_postgres::Client, data: Bytes) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    // One round trip; the notice that the staging table already exists is noise.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS telemetry_stage (
            equipement_id text, ts timestamptz, temperature double precision,
            vibration double precision, extra jsonb, received_at timestamptz
         ) ON COMMIT DELETE ROWS",
    )
    .await?;
    copy_into(&tx, "telemetry_stage", data).await?;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO telemetry ({COLUMNS}) SELECT {COLUMNS} FROM telemetry_stage
                 ON CONFLICT (equipement_id, ts) DO NOTHING"
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

async fn write_unnest(client: &mut tokio_postgres::Client, rows: &[Telemetry]) -> Result<u64, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|t| t.equipement_id.as_str()).collect();
    let ts: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|t| crate::micros_to_ts(t.ts_micros)).collect();
    let temp: Vec<f64> = rows.iter().map(|t| t.temperature).collect();
    let vib: Vec<f64> = rows.iter().map(|t| t.vibration).collect();
    let extra: Vec<RawJsonb> = rows.iter().map(|t| RawJsonb(extra_json(t))).collect();
    let rec: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|t| crate::micros_to_ts(received(t))).collect();
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO telemetry ({COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::jsonb[],
                                      $6::timestamptz[])
                 ON CONFLICT (equipement_id, ts) DO NOTHING"
            ),
            &[&ids, &ts, &temp, &vib, &extra, &rec],
        )
        .await?;
    Ok(inserted)
}

/// Writes `rows` in one transaction with `method`; returns how many rows were new.
/// Every row's `ts` must be [`storable_ts`] and have a partition (else
/// [`Failure::MissingPartition`]).
pub async fn write_telemetry(
    client: &mut tokio_postgres::Client,
    rows: &[Telemetry],
    method: WriteMethod,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    match method {
        WriteMethod::Staging => write_staging(client, encode_copy(rows)).await,
        WriteMethod::Unnest => write_unnest(client, rows).await,
        WriteMethod::CopyFirst => {
            let data = encode_copy(rows);
            let tx = client.transaction().await?;
            match copy_into(&tx, "telemetry", data.clone()).await {
                Ok(n) => {
                    tx.commit().await?;
                    Ok(n)
                }
                Err(StoreError::Pg(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    // Some rows are stored already: a redelivery. Roll back, take the slow path.
                    drop(tx);
                    write_staging(client, data).await
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Plain binary COPY into `telemetry`, not idempotent: the reference the benchmarks compare
/// the idempotent paths with.
pub async fn copy_telemetry_plain(client: &mut tokio_postgres::Client, rows: &[Telemetry]) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    let n = copy_into(&tx, "telemetry", encode_copy(rows)).await?;
    tx.commit().await?;
    Ok(n)
}

/// The time of the latest stored reading of each of `ids` (`None`: never heard from).
pub async fn last_readings(
    client: &tokio_postgres::Client,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Option<chrono::DateTime<chrono::Utc>>>, StoreError> {
    // One index probe per equipment (the unique index on (equipement_id, ts) answers max(ts)
    // backwards), instead of scanning recent telemetry.
    let rows = client
        .query(
            "SELECT e.id, (SELECT max(t.ts) FROM telemetry t WHERE t.equipement_id = e.id) FROM unnest($1::text[]) AS e(id)",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every stored reading of the equipment whose id starts with `prefix`, as (equipment, event
/// time in µs, temperature), duplicates included if any: what a run that used its own ids
/// (`just chaos`) reads back to count losses and duplicates.
pub async fn readings_with_prefix(
    client: &tokio_postgres::Client,
    prefix: &str,
) -> Result<Vec<(String, i64, f64)>, StoreError> {
    let pattern = format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let rows = client
        .query(
            "SELECT equipement_id, (extract(epoch FROM ts) * 1000000)::int8, temperature \
             FROM telemetry WHERE equipement_id LIKE $1",
            &[&pattern],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Calls `visit(equipement_id, ts_ms, [temperature, vibration])` for every reading in
/// `[from, to)`, ordered by equipment then time, streaming: the history may not fit in memory.
pub async fn for_each_reading(
    client: &tokio_postgres::Client,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    mut visit: impl FnMut(&str, i64, [f64; 2]),
) -> Result<(), StoreError> {
    use futures::TryStreamExt;
    let params: [&(dyn ToSql + Sync); 2] = [&from, &to];
    let stream = client
        .query_raw(
            "SELECT equipement_id, ts, temperature, vibration FROM telemetry
             WHERE ts >= $1 AND ts < $2 ORDER BY equipement_id, ts",
            params.iter().map(|p| *p as &dyn ToSql),
        )
        .await?;
    futures::pin_mut!(stream);
    while let Some(row) = stream.try_next().await? {
        let ts: chrono::DateTime<chrono::Utc> = row.get(1);
        visit(row.get(0), ts.timestamp_millis(), [row.get(2), row.get(3)]);
    }
    Ok(())
}

/// SQL and parameters for gRPC `Archive.QueryRange`: `equipement_id`'s readings in
/// `[from, to)`, oldest first, at most `limit`. Rows map with [`row_to_point`].
pub fn range_sql(
    equipement_id: String,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> (String, crate::SqlParams) {
    let sql = "SELECT ts, temperature, vibration, extra FROM telemetry
               WHERE equipement_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4"
        .to_string();
    (sql, vec![Box::new(equipement_id), Box::new(from), Box::new(to), Box::new(limit)])
}

/// One row of [`range_sql`].
pub fn row_to_point(r: &tokio_postgres::Row) -> proact_proto::v1::TelemetryPoint {
    let extra: serde_json::Value = r.get(3);
    proact_proto::v1::TelemetryPoint {
        ts_micros: r.get::<_, chrono::DateTime<chrono::Utc>>(0).timestamp_micros(),
        temperature: r.get(1),
        vibration: r.get(2),
        extra: extra
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect())
            .unwrap_or_default(),
    }
}

/// SQL and parameters for gRPC `Archive.QueryBuckets`: min, max, mean and count of one
/// field per bucket of `q.bucket_seconds` (> 0) on `q.time_zone`'s clock (UTC when empty).
/// Rows map with [`row_to_bucket`].
pub fn buckets_sql(
    q: proact_proto::v1::BucketsRequest,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> (String, crate::SqlParams) {
    let tz = if q.time_zone.is_empty() { "UTC".to_string() } else { q.time_zone.clone() };
    // The column is chosen from a fixed list; an extra channel is a bound parameter.
    let (value, extra_key) = match q.field.as_str() {
        "" | "temperature" => ("temperature".to_string(), None),
        "vibration" => ("vibration".to_string(), None),
        other => ("(extra->>$6)::double precision".to_string(), Some(other.to_string())),
    };
    // Whole-day buckets are calendar days in `tz` (23 or 25 hours across a DST change),
    // starting at local midnight. Shorter buckets are fixed lengths of real time aligned
    // on the local clock (local hours, quarter hours…): each row's bucket starts as long
    // before the row as its local time is past its local bin, so the hour a fall-back
    // change repeats stays two buckets instead of one with twice the rows.
    let bucket = if q.bucket_seconds % 86_400 == 0 {
        "(date_bin(make_interval(secs => $4), ts AT TIME ZONE $5, TIMESTAMP '2000-01-03') AT TIME ZONE $5)"
    } else {
        "(ts - ((ts AT TIME ZONE $5) - date_bin(make_interval(secs => $4), ts AT TIME ZONE $5, TIMESTAMP '2000-01-03')))"
    };
    let sql = format!(
        "SELECT {bucket} AS b, min({value}), max({value}), avg({value}), count({value})
         FROM telemetry WHERE equipement_id = $1 AND ts >= $2 AND ts < $3
         GROUP BY b ORDER BY b"
    );
    let mut params: crate::SqlParams = vec![
        Box::new(q.equipement_id),
        Box::new(from),
        Box::new(to),
        Box::new(f64::from(q.bucket_seconds)),
        Box::new(tz),
    ];
    if let Some(k) = extra_key {
        params.push(Box::new(k));
    }
    (sql, params)
}

/// One row of [`buckets_sql`].
pub fn row_to_bucket(r: &tokio_postgres::Row) -> proact_proto::v1::Bucket {
    proact_proto::v1::Bucket {
        start_micros: r.get::<_, chrono::DateTime<chrono::Utc>>(0).timestamp_micros(),
        min: r.get::<_, Option<f64>>(1).unwrap_or(f64::NAN),
        max: r.get::<_, Option<f64>>(2).unwrap_or(f64::NAN),
        avg: r.get::<_, Option<f64>>(3).unwrap_or(f64::NAN),
        count: r.get::<_, i64>(4) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_json_is_sorted_escaped_and_matches_serde() {
        let mut t = Telemetry::default();
        let mut b = BytesMut::new();
        write_extra_json(&t, &mut b);
        assert_eq!(&b[..], b"{}");
        t.extra.insert("pressure".into(), 5.5);
        t.extra.insert("a\"b".into(), -1.0);
        t.extra.insert("flow".into(), f64::NAN);
        let mut b = BytesMut::new();
        write_extra_json(&t, &mut b);
        assert_eq!(std::str::from_utf8(&b).unwrap(), extra_json(&t));
        assert_eq!(std::str::from_utf8(&b).unwrap(), r#"{"a\"b":-1.0,"flow":null,"pressure":5.5}"#);
    }

    #[test]
    fn copy_stream_frames_every_field() {
        let t = Telemetry { equipement_id: "P-1".into(), ts_micros: PG_EPOCH_OFFSET_MICROS, ..Default::default() };
        let b = encode_copy(&[t]);
        // header 19, tuple: 2 + (4+3) + (4+8)·3 + (4+1+2) + (4+8), trailer 2
        assert_eq!(b.len(), 19 + 2 + 7 + 36 + 7 + 12 + 2);
        assert_eq!(&b[b.len() - 2..], &[0xff, 0xff]);
        assert_eq!(&b[21..25], &3i32.to_be_bytes());
    }
}
