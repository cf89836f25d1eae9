//! Writes accepted readings to their shard streams and rejections to the dead-letter
//! stream, in one pipelined round trip per batch. A batch is written whole or reported as
//! failed, so callers ack their sources only after it returned `Ok`.

use std::time::Instant;

use bytes::BytesMut;
use fred::prelude::*;
use fred::types::Key;
use proact_proto::streams::{shard_for, telemetry_stream, DEAD_LETTER_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{DeadLetter, Telemetry};
use prost::Message;

/// Bound on the raw payload kept in a dead letter.
pub const DLQ_PAYLOAD_LIMIT: usize = 4096;

/// Where accepted and rejected inputs go.
///
/// Streams are never capped here: `XADD … MAXLEN` would cut entries a consumer group has
/// not read yet. Trimming is [`crate::trim`]'s job.
#[derive(Clone)]
pub struct StreamSink {
    client: Client,
    /// Shard keys, made once: cloning a `Key` shares its bytes.
    stream_keys: Vec<Key>,
    dlq_key: Key,
    field: Key,
}

impl StreamSink {
    pub fn new(client: Client, shards: u32) -> Self {
        Self {
            client,
            stream_keys: (0..shards).map(|s| Key::from(telemetry_stream(s))).collect(),
            dlq_key: Key::from(DEAD_LETTER_STREAM),
            field: Key::from(PAYLOAD_FIELD),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Appends every reading to its shard (in order, per equipment) and every dead letter
    /// to the dead-letter stream, in one pipeline.
    pub async fn write(&self, accepted: &[Telemetry], dead: &[DeadLetter]) -> Result<(), Error> {
        if accepted.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // One buffer for the whole batch; each entry is a cheap slice of it.
        let size: usize = accepted.iter().map(Message::encoded_len).sum::<usize>()
            + dead.iter().map(Message::encoded_len).sum::<usize>();
        let mut buf = BytesMut::with_capacity(size);
        let pipeline = self.client.pipeline();
        let shards = self.stream_keys.len() as u32;
        for t in accepted {
            let key = self.stream_keys[shard_for(&t.equipement_id, shards) as usize].clone();
            t.encode(&mut buf).map_err(|e| Error::new(ErrorKind::Unknown, e.to_string()))?;
            let entry = buf.split().freeze();
            let _: () = pipeline.xadd(key, false, None::<()>, "*", (self.field.clone(), entry)).await?;
        }
        for d in dead {
            d.encode(&mut buf).map_err(|e| Error::new(ErrorKind::Unknown, e.to_string()))?;
            let entry = buf.split().freeze();
            let _: () =
                pipeline.xadd(self.dlq_key.clone(), false, None::<()>, "*", (self.field.clone(), entry)).await?;
        }
        let results: Vec<Value> = pipeline.all().await?;
        // A pipeline may return per-command errors as values: any of them fails the batch.
        if let Some(e) = results.iter().find_map(|v| match v {
            Value::String(s) if s.starts_with("ERR") || s.starts_with("OOM") || s.starts_with("READONLY") => Some(s),
            _ => None,
        }) {
            return Err(Error::new(ErrorKind::Unknown, e.to_string()));
        }
        metrics::histogram!("proact_ingest_stream_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("proact_ingest_batch_size").record((accepted.len() + dead.len()) as f64);
        Ok(())
    }
}

/// A dead letter for `payload`, bounded in size.
pub fn dead_letter(
    source: &str,
    topic: &str,
    rejection: &crate::validate::Rejection,
    payload: &[u8],
    now: i64,
) -> DeadLetter {
    let truncated = payload.len() > DLQ_PAYLOAD_LIMIT;
    DeadLetter {
        source: source.to_string(),
        topic: topic.to_string(),
        reason: rejection.reason as i32,
        detail: rejection.detail.clone(),
        payload: payload[..payload.len().min(DLQ_PAYLOAD_LIMIT)].to_vec(),
        payload_truncated: truncated,
        at_micros: now,
    }
}
