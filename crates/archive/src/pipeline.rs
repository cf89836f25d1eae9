//! The telemetry path of the archive: Redis Streams → batches → PostgreSQL → `XACK`.
//!
//! One reader task owns the consumer-group reads over every telemetry shard: at start it
//! finishes this consumer's own pending entries (delivered before a crash, never acked), then
//! reads new ones, and from time to time claims entries a dead replica left pending. It
//! gathers entries across shards into batches closed by size (`batch_rows`) or age
//! (`linger`), and hands them to writer tasks through a bounded channel, so reading the next
//! batch overlaps writing this one and a slow database slows the reads instead of filling
//! memory. A writer stores a batch in one transaction, dead-letters what cannot be stored,
//! and only then acks the entries: a crash anywhere before the ack means redelivery, and
//! redelivery writes nothing twice (see `proact_store::telemetry`).
//!
//! Failures: a database that is down, restarting or frozen makes the writer retry the same
//! batch with backoff (readiness false meanwhile) while the group keeps its position; a
//! batch PostgreSQL refuses because of its content is bisected until the refused rows are
//! isolated, the rest commits, and each refused row is dead-lettered after `max_attempts`
//! tries. An undecodable entry is dead-lettered at once; an entry delivered more than
//! `max_deliveries` times (a crash loop) is dead-lettered without another try.
//!
//! An entry may carry one reading (field `p`) or a batch of them (field `b`): its readings
//! are rows of the same transaction, a reading refused alone is dead-lettered alone (its
//! position says which of the entry's readings it was), and the entry is acked once all
//! of them are committed or dead-lettered. Batches and reads are sized in readings, not
//! entries.
//!
//! One file, longer than most (about 650 lines), on purpose: the reader, the writers, the
//! decode-and-dead-letter path and the retry policy share private types (the batch, the
//! writer's state, the stats) that splitting it would make crate-public.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::Pool;
use fred::prelude::*;
use proact_proto::streams::{batch_len, decode_readings, BATCH_FIELD, DEAD_LETTER_STREAM, PAYLOAD_FIELD, STATUS_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{DeadLetter, RejectReason, Telemetry};
use proact_server::backoff::Backoff;
use proact_server::otel::{KeyValue, PipelineSpan, Tracing};
use proact_server::redis::StreamEntry;
use proact_server::shutdown::bounded_after;
use proact_server::Readiness;
use proact_store::telemetry::{classify, storable_ts, write_telemetry, Failure, WriteMethod};
use proact_store::StoreError;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::partitions::Partitions;

/// Counters a test or a benchmark reads; the same numbers go to `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Telemetry rows committed (new or already stored).
    pub rows_committed: AtomicU64,
    /// Of those, rows that were new.
    pub rows_inserted: AtomicU64,
    /// Stream entries acknowledged.
    pub entries_acked: AtomicU64,
    /// Entries sent to the dead-letter stream.
    pub dead_letters: AtomicU64,
    /// Milliseconds part of the newest committed entry id (when it was added to its stream).
    pub last_committed_ms: AtomicI64,
}

/// How the telemetry path reads and writes.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub group: String,
    pub consumer: String,
    pub keys: Vec<String>,
    /// `XREADGROUP … COUNT` per shard, in readings (divided by the readings per entry seen).
    pub read_count: u64,
    pub block_ms: u64,
    pub claim_idle_ms: u64,
    /// A batch is written once it holds this many readings…
    pub batch_rows: usize,
    /// …or its oldest entry waited this long.
    pub linger: Duration,
    pub writers: usize,
    pub method: WriteMethod,
    pub max_attempts: u32,
    pub max_deliveries: u64,
    pub write_timeout: Duration,
    /// After shutdown starts, how long writers keep retrying a batch before leaving it pending.
    pub grace: Duration,
    /// Fault injection for tests: commit but never ack (a crash between commit and ack).
    pub skip_ack: bool,
    /// Days of telemetry kept (0: all); a reading whose partition is past them is refused.
    pub retention_days: u32,
}

/// Entries read together; `redelivered` when they come from a pending list (own or claimed).
pub struct Batch {
    pub entries: Vec<StreamEntry>,
    pub redelivered: bool,
}

/// What the writers share.
pub struct Writer {
    pub cfg: PipelineConfig,
    pub pool: Pool,
    pub redis: Client,
    pub ready: Readiness,
    pub parts: Arc<Partitions>,
    pub stats: Arc<Stats>,
    /// Cancelled `grace` after shutdown began: stop retrying, leave entries pending.
    pub abort: CancellationToken,
    /// Records an `archive.store` span for each sampled reading, from read to commit.
    pub traces: Tracing,
}

/// A write that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("PostgreSQL did not answer within {0:?}; connection dropped")]
    Timeout(Duration),
    #[error("partitions: {0}")]
    Partition(#[from] crate::partitions::PartitionError),
}

impl WriteError {
    fn failure(&self) -> Failure {
        match self {
            WriteError::Store(e) => classify(e),
            _ => Failure::Transient,
        }
    }
}

/// How long a Redis call made after shutdown began may take beyond its block time before it is
/// abandoned: a live Redis answers well within it, a gone one never does.
const REDIS_PATIENCE: Duration = Duration::from_secs(1);

/// Runs the reader and the writers until shutdown; returns once the batches in hand are
/// written and acked (or, past the grace period, left pending for the next start).
pub async fn run(w: Arc<Writer>, read: Client, shutdown: CancellationToken) {
    let (tx, rx) = mpsc::channel::<Batch>(w.cfg.writers.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut writers = Vec::new();
    for _ in 0..w.cfg.writers.max(1) {
        let (w, rx) = (w.clone(), rx.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(batch) = next else { break };
                w.write_batch(batch).await;
            }
        }));
    }
    read_loop(&w, read, tx, shutdown).await;
    for t in writers {
        let _ = t.await;
    }
}

async fn read_loop(w: &Writer, read: Client, tx: mpsc::Sender<Batch>, shutdown: CancellationToken) {
    let cfg = &w.cfg;
    for key in &cfg.keys {
        let mut backoff = Backoff::server_call();
        loop {
            let ensure = proact_server::redis::ensure_group(&w.redis, key, &cfg.group);
            let created = bounded_after(&shutdown, REDIS_PATIENCE, ensure).await;
            let e = match created {
                None => return,
                Some(Ok(())) => break,
                Some(Err(e)) => e,
            };
            w.ready.set("redis", false);
            tracing::warn!(error = %e, key, "cannot create consumer group; retrying");
            if !backoff.wait(&shutdown).await {
                return;
            }
        }
    }
    // Own pending entries first, walking each shard's pending list with a cursor, so a batch
    // still being written is not read again.
    let mut cursors: Vec<String> = cfg.keys.iter().map(|_| "0".to_string()).collect();
    let mut backoff = Backoff::server_call();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let pending = xreadgroup(&read, cfg, &cursors, None, cfg.read_count);
        let Some(pending) = bounded_after(&shutdown, REDIS_PATIENCE, pending).await else {
            return;
        };
        match pending {
            Ok(entries) if entries.is_empty() => break,
            Ok(entries) => {
                w.ready.set("redis", true);
                for e in &entries {
                    if let Some(i) = cfg.keys.iter().position(|k| *k == e.key) {
                        cursors[i] = e.id.clone();
                    }
                }
                tracing::info!(entries = entries.len(), "finishing own pending entries");
                if tx.send(Batch { entries, redelivered: true }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                w.ready.set("redis", false);
                tracing::warn!(error = %e, "reading own pending entries failed; retrying");
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }

    let new: Vec<String> = cfg.keys.iter().map(|_| ">".to_string()).collect();
    let claim_every = Duration::from_millis(cfg.claim_idle_ms.max(1000) / 2);
    let mut last_claim = Instant::now();
    let mut acc: Vec<StreamEntry> = Vec::new();
    let mut acc_rows = 0;
    let mut sizing = EntrySizing::default();
    let mut first_at = Instant::now();
    let mut backoff = Backoff::server_call();
    while !shutdown.is_cancelled() {
        if last_claim.elapsed() >= claim_every {
            last_claim = Instant::now();
            let claim = proact_server::redis::claim_stale(
                &w.redis,
                &cfg.group,
                &cfg.consumer,
                &cfg.keys,
                cfg.claim_idle_ms,
                sizing.count(cfg.read_count),
            );
            let Some(claimed) = bounded_after(&shutdown, REDIS_PATIENCE, claim).await else { break };
            match claimed {
                Ok(claimed) if !claimed.is_empty() => {
                    tracing::info!(entries = claimed.len(), "claimed entries another consumer left pending");
                    metrics::counter!("proact_archive_claimed_total").increment(claimed.len() as u64);
                    if tx.send(Batch { entries: claimed, redelivered: true }).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming stale entries failed"),
            }
        }
        // With a partial batch in hand, wait only for what is left of its linger time.
        let block = if acc.is_empty() {
            cfg.block_ms
        } else {
            (cfg.linger.saturating_sub(first_at.elapsed()).as_millis() as u64).max(1)
        };
        // Given its block time and a round trip after shutdown: a read abandoned half-way would
        // still deliver entries (to this consumer's pending list) that nobody handles until the
        // next start, so only a Redis that does not answer at all is given up on.
        let patience = Duration::from_millis(block) + REDIS_PATIENCE;
        let count = sizing.count(cfg.read_count);
        let Some(read) = bounded_after(&shutdown, patience, xreadgroup(&read, cfg, &new, Some(block), count)).await
        else {
            break;
        };
        match read {
            Ok(entries) => {
                w.ready.set("redis", true);
                backoff.reset();
                if acc.is_empty() && !entries.is_empty() {
                    first_at = Instant::now();
                }
                acc_rows += sizing.observe(&entries);
                acc.extend(entries);
            }
            Err(e) => {
                w.ready.set("redis", false);
                tracing::warn!(error = %e, "stream read failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
        if !acc.is_empty() && (acc_rows >= cfg.batch_rows || first_at.elapsed() >= cfg.linger) {
            let entries = std::mem::take(&mut acc);
            acc_rows = 0;
            if tx.send(Batch { entries, redelivered: false }).await.is_err() {
                return;
            }
        }
    }
    // Stop intake, flush what is in hand; the writers drain the channel.
    if !acc.is_empty() {
        let _ = tx.send(Batch { entries: acc, redelivered: false }).await;
    }
}

/// `XREADGROUP` over every shard from `ids` (`>` for new entries, an id for own pending ones),
/// parsed straight from the reply without intermediate maps (one call per hash slot on a
/// Redis Cluster: [`proact_server::redis::xreadgroup_raw`]).
async fn xreadgroup(
    client: &Client,
    cfg: &PipelineConfig,
    ids: &[String],
    block_ms: Option<u64>,
    count: u64,
) -> Result<Vec<StreamEntry>, fred::error::Error> {
    let replies =
        proact_server::redis::xreadgroup_raw(client, &cfg.group, &cfg.consumer, &cfg.keys, ids, count, block_ms)
            .await?;
    Ok(replies.into_iter().flat_map(proact_server::redis::parse_xread).collect())
}

/// How many readings the entries read lately carried, so that a read asks for about as many
/// readings as configured whatever kind of entries the streams hold (a backlog of batch
/// entries read `read_count` entries at a time would be a hundred times the memory).
#[derive(Debug)]
struct EntrySizing {
    /// Readings per entry, in 1/16ths (a moving average over reads).
    per_entry_x16: u64,
}

impl Default for EntrySizing {
    fn default() -> Self {
        Self { per_entry_x16: 16 }
    }
}

impl EntrySizing {
    /// Notes the entries of one read; returns how many readings they carry.
    fn observe(&mut self, entries: &[StreamEntry]) -> usize {
        if entries.is_empty() {
            return 0;
        }
        let rows: usize = entries.iter().map(entry_rows).sum();
        let now_x16 = (rows as u64 * 16 / entries.len() as u64).max(16);
        self.per_entry_x16 = (self.per_entry_x16 * 3 + now_x16) / 4;
        rows
    }

    /// Entries to ask for, per shard, to get about `readings` readings.
    fn count(&self, readings: u64) -> u64 {
        (readings * 16 / self.per_entry_x16.max(16)).max(1)
    }
}

/// Readings in an entry, counted from its framing (a broken one counts as one: it will be
/// dead-lettered whole).
fn entry_rows(e: &StreamEntry) -> usize {
    match (e.field, e.payload.as_deref()) {
        (BATCH_FIELD, Some(p)) => batch_len(p).unwrap_or(1).max(1),
        _ => 1,
    }
}

/// Milliseconds part of a stream entry id (`<ms>-<seq>`).
fn id_ms(id: &str) -> i64 {
    id.split('-').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Why a reading (or a whole entry) goes to the dead-letter stream.
pub type Refusal = (RejectReason, String);

/// The readings of a telemetry entry, in order; an entry that cannot be read at all is
/// refused whole. Each reading is then checked by [`storable`].
pub fn decode_entry(e: &StreamEntry) -> Result<Vec<Telemetry>, Refusal> {
    let Some(payload) = e.payload.as_ref() else {
        return Err((RejectReason::UndecodableEntry, "entry has no payload field".into()));
    };
    decode_readings(e.field, payload.as_ref()).map_err(|err| (RejectReason::UndecodableEntry, err.to_string()))
}

/// Whether PostgreSQL can store `t`, or why it goes to the dead-letter stream (alone).
pub fn storable(t: &Telemetry) -> Result<(), Refusal> {
    if storable_ts(t.ts_micros) {
        Ok(())
    } else {
        Err((RejectReason::AbsurdTimestamp, format!("ts_micros {} is outside the years 0001-9999", t.ts_micros)))
    }
}

/// One fuzzing step, shared by the libFuzzer target (`crates/archive/fuzz`) and the stable
/// corpus-replay test: the bytes are a telemetry entry's payload (an empty input: an entry
/// without one), read as a single-reading entry and as a batch entry. Panics if decoding
/// panics, if a row it accepts cannot be framed as binary COPY exactly as PostgreSQL reads
/// it, or if a refused entry's or reading's dead letter is malformed.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    for field in [PAYLOAD_FIELD, BATCH_FIELD] {
        let e = StreamEntry {
            key: proact_proto::streams::telemetry_stream(0),
            id: "1-0".into(),
            payload: (!data.is_empty()).then(|| Bytes::copy_from_slice(data)),
            field,
        };
        let readings = match decode_entry(&e) {
            Ok(readings) => readings,
            Err((reason, detail)) => {
                let d = dead_letter(&e, reason, detail);
                assert!(d.reason != RejectReason::Unspecified as i32 && !d.detail.is_empty());
                assert!(d.payload.len() <= 4096 && d.payload_truncated == (data.len() > 4096));
                continue;
            }
        };
        assert!(field == BATCH_FIELD || readings.len() == 1, "a single entry holds one reading");
        if let (BATCH_FIELD, Some(n)) = (field, batch_len(data)) {
            assert_eq!(n, readings.len(), "the framing count the reader sizes batches with");
        }
        for (item, t) in readings.iter().enumerate() {
            if let Err((reason, detail)) = storable(t) {
                let d = reading_dead_letter(&e, item, t, reason, detail);
                assert!(d.reason != RejectReason::Unspecified as i32 && !d.detail.is_empty());
                assert!(d.payload.len() <= 4096);
                continue;
            }
            let copy = proact_store::telemetry::encode_copy(std::slice::from_ref(t));
            let fields = copy_fields(&copy);
            assert_eq!(fields[0], t.equipement_id.as_bytes());
            let extra = &fields[4];
            assert_eq!(extra[0], 1, "jsonb version byte");
            let doc: serde_json::Value = serde_json::from_slice(&extra[1..]).expect("extra is JSON");
            assert_eq!(doc.as_object().map(|o| o.len()), Some(t.extra.len()), "one key per extra field");
        }
    }
}

/// The six fields of the single tuple of a binary COPY stream; panics on bad framing.
fn copy_fields(copy: &[u8]) -> Vec<&[u8]> {
    let (head, mut rest) = copy.split_at(19);
    assert_eq!(&head[..11], b"PGCOPY\n\xff\r\n\0");
    let mut take = |n: usize| {
        let (a, b) = rest.split_at(n);
        rest = b;
        a
    };
    assert_eq!(take(2), 6i16.to_be_bytes());
    let fields = (0..6)
        .map(|_| {
            let len = i32::from_be_bytes(take(4).try_into().expect("4 bytes"));
            take(usize::try_from(len).expect("no NULL field"))
        })
        .collect();
    assert_eq!(take(2), (-1i16).to_be_bytes(), "trailer right after the tuple");
    assert!(rest.is_empty());
    fields
}

pub(crate) fn dead_letter(e: &StreamEntry, reason: RejectReason, detail: String) -> DeadLetter {
    let position = format!("{} {}", e.key, e.id);
    let payload = e.payload.as_deref().unwrap_or_default();
    proact_proto::dead_letter::dead_letter("archive", &position, reason, &detail, payload, now_micros())
}

/// The dead letter of reading `t`, number `item` (from 0) of entry `e`: alone, as a
/// `Telemetry`, whatever kind of entry carried it; its position names the reading in a batch
/// entry (`<key> <id> #<item>`).
pub(crate) fn reading_dead_letter(
    e: &StreamEntry,
    item: usize,
    t: &Telemetry,
    reason: RejectReason,
    detail: String,
) -> DeadLetter {
    let position = match e.field {
        BATCH_FIELD => format!("{} {} #{item}", e.key, e.id),
        _ => format!("{} {}", e.key, e.id),
    };
    proact_proto::dead_letter::dead_letter("archive", &position, reason, &detail, &t.encode_to_vec(), now_micros())
}

/// Adds `dead` to the dead-letter stream in one pipeline.
pub(crate) async fn send_dead_letters(redis: &Client, dead: &[DeadLetter]) -> Result<(), fred::error::Error> {
    if dead.is_empty() {
        return Ok(());
    }
    let pipeline = redis.pipeline();
    for d in dead {
        let _: () = pipeline
            .xadd(DEAD_LETTER_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(d.encode_to_vec())))
            .await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    metrics::counter!("proact_archive_dead_letters_total").increment(dead.len() as u64);
    Ok(())
}

/// How many times each of `entries` was delivered (from `XPENDING`); absent when not pending.
pub(crate) async fn delivery_counts(
    redis: &Client,
    group: &str,
    entries: &[StreamEntry],
) -> Result<HashMap<(String, String), u64>, fred::error::Error> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in entries {
        by_key.entry(e.key.as_str()).or_default().push(e.id.as_str());
    }
    let mut out = HashMap::new();
    for (key, ids) in by_key {
        let wanted: HashSet<&str> = ids.iter().copied().collect();
        let (lo, hi) = (ids.iter().min().copied().unwrap_or("-"), ids.iter().max().copied().unwrap_or("+"));
        // Ids compare as strings only at equal length; ask for the whole range of this batch.
        let (lo, hi) = if ids.iter().all(|i| i.len() == lo.len()) { (lo, hi) } else { ("-", "+") };
        let reply: Value = redis.xpending(key, group, (lo, hi, (ids.len() as u64) * 4 + 100)).await?;
        let Value::Array(rows) = reply else { continue };
        for r in rows {
            let Value::Array(f) = r else { continue };
            if f.len() < 4 {
                continue;
            }
            let (Some(id), Value::Integer(n)) = (f[0].as_string(), &f[3]) else { continue };
            if wanted.contains(id.as_str()) {
                out.insert((key.to_string(), id), *n as u64);
            }
        }
    }
    Ok(out)
}

/// Waits `d`, or returns true at once if `abort` fires.
async fn pause(abort: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = abort.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

impl Writer {
    /// A reading past the retention goes to the dead-letter stream: its partition is dropped
    /// (or being dropped, when a concurrent detach waits for a long query, or will be within
    /// the hour, by a replica whose clock may be ahead), and storing it would create that
    /// partition again only for the next maintenance pass to drop it.
    fn within_retention(&self, t: &Telemetry, now: i64) -> Result<(), Refusal> {
        if self.parts.past_retention(t.ts_micros, now, self.cfg.retention_days) {
            Err((
                RejectReason::PastRetention,
                format!(
                    "ts_micros {} is older than the archive keeps (PROACT_ARCHIVE_RETENTION_DAYS={}): its partition is dropped, or will be within the hour",
                    t.ts_micros, self.cfg.retention_days
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// Awaits a Redis call until `abort` (the grace period's end): a call made while Redis is
    /// gone waits for a reconnection, which must not hold the drain past it.
    async fn until_abort<T>(&self, call: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            r = call => Some(r),
            _ = self.abort.cancelled() => None,
        }
    }

    /// Stores, dead-letters and acks one batch. Returns without acking only when aborted
    /// (shutdown past its grace period): the entries stay pending for the next start.
    pub async fn write_batch(&self, batch: Batch) {
        let started = Instant::now();
        let started_at = std::time::SystemTime::now();
        let Batch { entries, redelivered } = batch;
        tracing::debug!(entries = entries.len(), redelivered, "batch in");
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut skip: HashSet<usize> = HashSet::new();
        if redelivered {
            let Some(counts) = self.until_abort(delivery_counts(&self.redis, &self.cfg.group, &entries)).await else {
                return;
            };
            match counts {
                Ok(counts) => {
                    for (i, e) in entries.iter().enumerate() {
                        let n = counts.get(&(e.key.clone(), e.id.clone())).copied().unwrap_or(0);
                        if n > self.cfg.max_deliveries {
                            skip.insert(i);
                            let why =
                                || format!("delivered {n} times without being stored (the archive kept failing on it)");
                            // Reading by reading when it can be read: none is cut by the
                            // dead letter's payload bound.
                            match decode_entry(e) {
                                Ok(ts) => dead.extend(ts.iter().enumerate().map(|(item, t)| {
                                    reading_dead_letter(e, item, t, RejectReason::Unspecified, why())
                                })),
                                Err(_) => dead.push(dead_letter(e, RejectReason::Unspecified, why())),
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "XPENDING failed; delivery counts not checked for this batch"),
            }
        }
        let now = now_micros();
        let mut rows: Vec<Telemetry> = Vec::with_capacity(entries.len());
        // Where each row came from: (entry, reading within it).
        let mut row_entry: Vec<(usize, usize)> = Vec::with_capacity(entries.len());
        let mut statuses = 0;
        for (i, e) in entries.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            // An equipment status (docs/adr/0006) is not a row: the detector's to act on,
            // acknowledged here with the batch.
            if e.field == STATUS_FIELD {
                statuses += 1;
                continue;
            }
            match decode_entry(e) {
                Ok(ts) => {
                    for (item, t) in ts.into_iter().enumerate() {
                        match storable(&t).and_then(|()| self.within_retention(&t, now)) {
                            Ok(()) => {
                                rows.push(t);
                                row_entry.push((i, item));
                            }
                            Err((reason, detail)) => dead.push(reading_dead_letter(e, item, &t, reason, detail)),
                        }
                    }
                }
                Err((reason, detail)) => dead.push(dead_letter(e, reason, detail)),
            }
        }

        metrics::counter!("proact_archive_status_entries_total").increment(statuses);
        tracing::debug!(rows = rows.len(), dead = dead.len(), statuses, "batch decoded");
        let spans: Vec<PipelineSpan> = if self.traces.enabled() {
            rows.iter()
                .filter_map(|t| {
                    // Most rows carry no trace: `follow` returns at once, nothing allocated.
                    let mut span = self.traces.follow("archive.store", &t.trace_context, started_at, Vec::new())?;
                    span.set_attribute(KeyValue::new("equipement_id", t.equipement_id.clone()));
                    span.set_attribute(KeyValue::new("batch.rows", rows.len() as i64));
                    Some(span)
                })
                .collect()
        } else {
            Vec::new()
        };
        let Some((inserted, rejected)) = self.store_with_retry(&rows).await else {
            tracing::warn!(entries = entries.len(), "shutting down with a batch not stored; it stays pending");
            return;
        };
        tracing::debug!(inserted, rejected = rejected.len(), "batch stored");
        let stored = rows.len() - rejected.len();
        for (row, err) in rejected {
            let (entry, item) = row_entry[row];
            dead.push(reading_dead_letter(
                &entries[entry],
                item,
                &rows[row],
                RejectReason::Unspecified,
                format!("PostgreSQL refused the row {} times: {err}", self.cfg.max_attempts),
            ));
        }
        spans.into_iter().for_each(PipelineSpan::end);
        self.stats.rows_committed.fetch_add(stored as u64, Ordering::Relaxed);
        self.stats.rows_inserted.fetch_add(inserted, Ordering::Relaxed);
        metrics::counter!("proact_archive_rows_written_total").increment(inserted);
        metrics::counter!("proact_archive_rows_duplicate_total").increment((stored as u64).saturating_sub(inserted));

        let mut backoff = Backoff::server_call();
        loop {
            let Some(sent) = self.until_abort(send_dead_letters(&self.redis, &dead)).await else { return };
            let Err(e) = sent else { break };
            tracing::warn!(error = %e, "dead-letter write failed; retrying");
            if pause(&self.abort, backoff.next_delay()).await {
                return;
            }
        }
        self.stats.dead_letters.fetch_add(dead.len() as u64, Ordering::Relaxed);
        if !self.cfg.skip_ack {
            let mut backoff = Backoff::server_call();
            loop {
                let Some(acked) =
                    self.until_abort(proact_server::redis::ack(&self.redis, &self.cfg.group, &entries)).await
                else {
                    return;
                };
                let Err(e) = acked else { break };
                tracing::warn!(error = %e, "ack failed; retrying");
                if pause(&self.abort, backoff.next_delay()).await {
                    return;
                }
            }
            self.stats.entries_acked.fetch_add(entries.len() as u64, Ordering::Relaxed);
        }
        if let Some(newest) = entries.iter().map(|e| id_ms(&e.id)).max() {
            self.stats.last_committed_ms.fetch_max(newest, Ordering::Relaxed);
            let lag = (now_micros() / 1000 - newest).max(0) as f64 / 1000.0;
            metrics::gauge!("proact_archive_lag_seconds").set(lag);
        }
        metrics::histogram!("proact_archive_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("proact_archive_batch_entries").record(entries.len() as f64);
    }

    /// Stores `rows`, retrying what is not the rows' fault until it works or `abort`.
    /// Returns rows inserted and the rows refused for good (index, error), or `None` if aborted.
    async fn store_with_retry(&self, rows: &[Telemetry]) -> Option<(u64, Vec<(usize, String)>)> {
        let mut backoff = Backoff::server_call();
        let mut partition_retries = 0;
        loop {
            let result = match self.parts.ensure(&self.pool, rows.iter().map(|t| t.ts_micros)).await {
                Ok(_) => self.store_isolating(rows).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(r) => {
                    self.ready.set("postgres", true);
                    return Some(r);
                }
                Err(e) if e.failure() == Failure::MissingPartition && partition_retries < 3 => {
                    // Dropped by retention or by hand since we last looked: look again.
                    partition_retries += 1;
                    if let Ok(client) = self.pool.get().await {
                        let _ = self.parts.refresh(&client).await;
                    }
                }
                Err(e) => {
                    self.ready.set("postgres", false);
                    tracing::warn!(error = %e, rows = rows.len(), retry_in = ?backoff.peek(), "telemetry batch not stored; retrying");
                    metrics::counter!("proact_archive_write_retries_total").increment(1);
                    if pause(&self.abort, backoff.next_delay()).await {
                        return None;
                    }
                    partition_retries = 0;
                    if let Ok(client) = self.pool.get().await {
                        let _ = self.parts.refresh(&client).await;
                    }
                }
            }
        }
    }

    /// One attempt at `rows`; on a data error, bisects until the refused rows are alone, each
    /// retried up to `max_attempts` times. Any other failure ends the attempt (the caller
    /// retries everything; the halves already committed are idempotent).
    async fn store_isolating(&self, rows: &[Telemetry]) -> Result<(u64, Vec<(usize, String)>), WriteError> {
        let mut inserted = 0;
        let mut rejected = Vec::new();
        let mut todo = vec![(0, rows.len())];
        while let Some((a, b)) = todo.pop() {
            if a == b {
                continue;
            }
            let err = match self.store_once(&rows[a..b]).await {
                Ok(n) => {
                    inserted += n;
                    continue;
                }
                Err(e) if e.failure() == Failure::Data => e,
                Err(e) => return Err(e),
            };
            if b - a > 1 {
                let m = a + (b - a) / 2;
                metrics::counter!("proact_archive_bisections_total").increment(1);
                todo.push((m, b));
                todo.push((a, m));
                continue;
            }
            // One row PostgreSQL refuses: a few more tries (a refusal could come from a
            // constraint that changes), then it is dead-lettered and the group moves on.
            let mut last = err;
            let mut stored = false;
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            for _ in 1..self.cfg.max_attempts {
                if pause(&self.abort, backoff.next_delay()).await {
                    return Err(last);
                }
                match self.store_once(&rows[a..b]).await {
                    Ok(n) => {
                        inserted += n;
                        stored = true;
                        break;
                    }
                    Err(e) if e.failure() == Failure::Data => last = e,
                    Err(e) => return Err(e),
                }
            }
            if !stored {
                tracing::warn!(error = %last, equipement_id = %rows[a].equipement_id, ts_micros = rows[a].ts_micros,
                    "PostgreSQL refuses a row; dead-lettering it");
                rejected.push((a, last.to_string()));
            }
        }
        Ok((inserted, rejected))
    }

    /// One transaction, bounded in time: a frozen server or a half-open connection costs a
    /// timeout, and the connection is dropped rather than returned to the pool.
    async fn store_once(&self, rows: &[Telemetry]) -> Result<u64, WriteError> {
        let t = self.cfg.write_timeout;
        let mut client = match tokio::time::timeout(t, self.pool.get()).await {
            Ok(c) => c.map_err(StoreError::from)?,
            Err(_) => return Err(WriteError::Timeout(t)),
        };
        match tokio::time::timeout(t, write_telemetry(&mut client, rows, self.cfg.method)).await {
            Ok(r) => Ok(r?),
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(WriteError::Timeout(t))
            }
        }
    }
}
