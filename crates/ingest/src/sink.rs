//! Writes accepted readings to their shard streams and rejections to the dead-letter
//! stream, in one pipelined round trip per batch. A batch is written whole or reported as
//! failed, so callers ack their sources only after it returned `Ok`.
//!
//! By default ([`EntryKind::Batch`]) a batch's readings for one shard go in one entry (a
//! `TelemetryBatch` in field `b`, at most [`MAX_ENTRY_READINGS`] per entry), so Redis and
//! every consumer pay their per-entry costs once per batch; [`EntryKind::Single`] writes one
//! entry (field `p`) per reading, what consumers older than batch entries read
//! (docs/adr/0004-batched-stream-entries.md).
//!
//! Redis replicates asynchronously: a master that dies right after a write can take it with
//! it, and its promoted replica never had it. With a [`ReplicaWait`] the batch is `Ok` only
//! once that many replicas of every master written have it: a `WAIT` per hash slot written,
//! queued after the writes in the same pipeline (so on each node's connection it follows
//! them: still one round trip, plus the replication delay).

use std::time::Instant;

use bytes::BytesMut;
use fred::prelude::*;
use fred::types::Key;
use fred::types::{ClusterHash, CustomCommand};
use proact_proto::streams::{
    shard_for, telemetry_stream, BATCH_FIELD, DEAD_LETTER_STREAM, PAYLOAD_FIELD, STATUS_FIELD,
};
use proact_proto::v1::{DeadLetter, EquipmentStatus, Telemetry};
use prost::Message;

/// How many replicas must hold a batch before it is acknowledged, and how long to wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaWait {
    /// 0: no wait.
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// Bound on the raw payload kept in a dead letter.
pub const DLQ_PAYLOAD_LIMIT: usize = proact_proto::dead_letter::PAYLOAD_LIMIT;

/// How a batch's readings are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteMode {
    /// One pipelined `XADD` per reading.
    Xadd,
    /// One pipelined `EVAL` per shard that runs the shard's `XADD`s server-side: the same
    /// entries, far fewer commands for the client to encode and the server to parse.
    Script,
}

/// What one telemetry stream entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EntryKind {
    /// The readings of one batch for one shard, in one entry (field `b`).
    Batch,
    /// One reading per entry (field `p`), written as [`WriteMode`] says.
    Single,
}

/// Most readings in one batch entry: bounds what a consumer's read of N entries holds (and
/// what a detector's warm-up replays), while already dividing the per-entry costs by a
/// hundred.
pub const MAX_ENTRY_READINGS: usize = 128;

/// Appends each argument to the stream `KEYS[1]` as field `p`, in order.
const XADD_ALL: &str = "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'p', ARGV[i]) end return #ARGV";

/// Where accepted and rejected inputs go.
///
/// Streams are never capped here: `XADD … MAXLEN` would cut entries a consumer group has
/// not read yet. Trimming is [`crate::trim`]'s job.
#[derive(Clone)]
pub struct StreamSink {
    client: Client,
    mode: WriteMode,
    entries: EntryKind,
    wait: ReplicaWait,
    /// Shard keys, made once: cloning a `Key` shares its bytes.
    stream_keys: Vec<Key>,
    /// Each shard key's hash slot, then the dead-letter stream's: what a batch must `WAIT`
    /// on, known without hashing a key per reading.
    stream_slots: Vec<u16>,
    dlq_slot: u16,
    dlq_key: Key,
    field: Key,
    batch_field: Key,
}

impl StreamSink {
    pub fn new(client: Client, shards: u32) -> Self {
        Self::with_mode(client, shards, WriteMode::Script)
    }

    pub fn with_mode(client: Client, shards: u32, mode: WriteMode) -> Self {
        let stream_keys: Vec<Key> = (0..shards).map(|s| Key::from(telemetry_stream(s))).collect();
        let dlq_key = Key::from(DEAD_LETTER_STREAM);
        Self {
            client,
            mode,
            entries: EntryKind::Batch,
            wait: ReplicaWait::default(),
            stream_slots: stream_keys.iter().map(|k| fred::util::redis_keyslot(k.as_bytes())).collect(),
            dlq_slot: fred::util::redis_keyslot(dlq_key.as_bytes()),
            stream_keys,
            dlq_key,
            field: Key::from(PAYLOAD_FIELD),
            batch_field: Key::from(BATCH_FIELD),
        }
    }

    /// Chooses what one telemetry entry carries ([`EntryKind::Batch`]: the default).
    pub fn with_entries(mut self, entries: EntryKind) -> Self {
        self.entries = entries;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Makes every write wait for `wait.replicas` replicas (none: the default).
    pub fn with_replica_wait(mut self, wait: ReplicaWait) -> Self {
        self.wait = wait;
        self
    }

    /// Appends every reading to its shard (in order, per equipment) and every dead letter
    /// to the dead-letter stream, in one pipeline.
    pub async fn write(&self, accepted: &[Telemetry], dead: &[DeadLetter]) -> Result<(), Error> {
        if accepted.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // One buffer for the whole batch; each entry is a cheap slice of it.
        // (Plus a batch entry's framing: a tag and a length per reading.)
        let size: usize = accepted.iter().map(Message::encoded_len).sum::<usize>()
            + accepted.len() * 6
            + dead.iter().map(Message::encoded_len).sum::<usize>();
        let mut buf = BytesMut::with_capacity(size);
        let pipeline = self.client.pipeline();
        let shards = self.stream_keys.len() as u32;
        // The hash slots written, for the WAITs (one Redis: all in "slot" 0); none without.
        let mut slots = std::collections::BTreeSet::new();
        let waiting = self.wait.replicas > 0;
        let clustered = waiting && self.client.is_clustered();
        let mut note_slot = |slot: u16| {
            if waiting {
                slots.insert(if clustered { slot } else { 0 });
            }
        };
        match (self.entries, self.mode) {
            (EntryKind::Batch, _) => {
                // Each shard's readings in arrival order, so per-equipment order holds; an
                // entry is a `TelemetryBatch` framed by hand, to encode the readings in place.
                let mut per_shard: Vec<Vec<&Telemetry>> = vec![Vec::new(); self.stream_keys.len()];
                for t in accepted {
                    per_shard[shard_for(&t.equipement_id, shards) as usize].push(t);
                }
                for (shard, readings) in per_shard.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
                    note_slot(self.stream_slots[shard]);
                    for chunk in readings.chunks(MAX_ENTRY_READINGS) {
                        for t in chunk {
                            prost::encoding::message::encode(1, *t, &mut buf);
                        }
                        let entry = buf.split().freeze();
                        let key = self.stream_keys[shard].clone();
                        let _: () =
                            pipeline.xadd(key, false, None::<()>, "*", (self.batch_field.clone(), entry)).await?;
                    }
                }
            }
            (EntryKind::Single, WriteMode::Xadd) => {
                for t in accepted {
                    let shard = shard_for(&t.equipement_id, shards) as usize;
                    note_slot(self.stream_slots[shard]);
                    let key = self.stream_keys[shard].clone();
                    t.encode(&mut buf).map_err(|e| Error::new(ErrorKind::Unknown, e.to_string()))?;
                    let entry = buf.split().freeze();
                    let _: () = pipeline.xadd(key, false, None::<()>, "*", (self.field.clone(), entry)).await?;
                }
            }
            (EntryKind::Single, WriteMode::Script) => {
                // EVAL script 1 key entry...: the key is argument 2 (for cluster routing).
                let head = || vec![Value::from(XADD_ALL), Value::Integer(1)];
                let mut per_shard: Vec<Vec<Value>> = vec![Vec::new(); self.stream_keys.len()];
                for t in accepted {
                    t.encode(&mut buf).map_err(|e| Error::new(ErrorKind::Unknown, e.to_string()))?;
                    let shard = shard_for(&t.equipement_id, shards) as usize;
                    let args = &mut per_shard[shard];
                    if args.is_empty() {
                        note_slot(self.stream_slots[shard]);
                        args.extend(head());
                        args.push(Value::Bytes(self.stream_keys[shard].clone().into_bytes()));
                    }
                    args.push(Value::Bytes(buf.split().freeze()));
                }
                let eval = CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false);
                for args in per_shard.into_iter().filter(|a| !a.is_empty()) {
                    let _: () = pipeline.custom(eval.clone(), args).await?;
                }
            }
        }
        if !dead.is_empty() {
            note_slot(self.dlq_slot);
        }
        for d in dead {
            d.encode(&mut buf).map_err(|e| Error::new(ErrorKind::Unknown, e.to_string()))?;
            let entry = buf.split().freeze();
            let _: () =
                pipeline.xadd(self.dlq_key.clone(), false, None::<()>, "*", (self.field.clone(), entry)).await?;
        }
        self.commit(pipeline, &slots).await?;
        metrics::histogram!("proact_ingest_stream_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("proact_ingest_batch_size").record((accepted.len() + dead.len()) as f64);
        Ok(())
    }

    /// Appends each equipment status to its equipment's shard (field `s`, in order), in one
    /// pipeline, with the same replica wait as readings: docs/adr/0006-equipment-status-entries.md.
    pub async fn write_statuses(&self, statuses: &[EquipmentStatus]) -> Result<(), Error> {
        if statuses.is_empty() {
            return Ok(());
        }
        let pipeline = self.client.pipeline();
        let clustered = self.client.is_clustered();
        let mut slots = std::collections::BTreeSet::new();
        for s in statuses {
            let shard = shard_for(&s.equipement_id, self.stream_keys.len() as u32) as usize;
            if self.wait.replicas > 0 {
                slots.insert(if clustered { self.stream_slots[shard] } else { 0 });
            }
            let entry = bytes::Bytes::from(s.encode_to_vec());
            let _: () =
                pipeline.xadd(self.stream_keys[shard].clone(), false, None::<()>, "*", (STATUS_FIELD, entry)).await?;
        }
        self.commit(pipeline, &slots).await
    }

    /// Queues a `WAIT` per hash slot written, sends the pipeline, and fails if any command
    /// failed or too few replicas have the writes.
    async fn commit(
        &self,
        pipeline: fred::clients::Pipeline<Client>,
        slots: &std::collections::BTreeSet<u16>,
    ) -> Result<(), Error> {
        let waits = slots.len();
        for &slot in slots {
            let wait = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
            let args = vec![Value::Integer(i64::from(self.wait.replicas)), Value::Integer(self.wait.timeout_ms as i64)];
            let _: () = pipeline.custom(wait, args).await?;
        }
        let results: Vec<Value> = pipeline.all().await?;
        // A pipeline may return per-command errors as values: any of them fails the batch.
        if let Some(e) = results.iter().find_map(|v| match v {
            Value::String(s) if s.starts_with("ERR") || s.starts_with("OOM") || s.starts_with("READONLY") => Some(s),
            _ => None,
        }) {
            return Err(Error::new(ErrorKind::Unknown, e.to_string()));
        }
        let reached = results.iter().rev().take(waits).filter_map(Value::as_i64).min();
        if let Some(n) = reached.filter(|&n| n < i64::from(self.wait.replicas)) {
            metrics::counter!("proact_ingest_replica_wait_failures_total").increment(1);
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the batch reached {n} of {} replicas within {} ms (PROACT_INGEST_REDIS_WAIT_REPLICAS); \
                     not acknowledged, it will be redelivered",
                    self.wait.replicas, self.wait.timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

/// A dead letter for `payload`, every field bounded (`proact_proto::dead_letter`).
pub fn dead_letter(
    source: &str,
    topic: &str,
    rejection: &crate::validate::Rejection,
    payload: &[u8],
    now: i64,
) -> DeadLetter {
    proact_proto::dead_letter::dead_letter(source, topic, rejection.reason, &rejection.detail, payload, now)
}
