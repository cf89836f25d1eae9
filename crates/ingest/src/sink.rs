//! Writes accepted readings to their shard streams and rejections to the dead-letter
//! stream, in one pipelined round trip per batch. A batch is written whole or reported as
//! failed, so callers ack their sources only after it returned `Ok`.

use std::time::Instant;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::streams::XCap;
use proact_proto::streams::{shard_for, telemetry_stream, DEAD_LETTER_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{DeadLetter, Telemetry};
use prost::Message;

/// Bound on the raw payload kept in a dead letter.
pub const DLQ_PAYLOAD_LIMIT: usize = 4096;

/// Where accepted and rejected inputs go.
#[derive(Clone)]
pub struct StreamSink {
    client: Client,
    stream_keys: Vec<String>,
    /// Approximate MAXLEN applied on every add; `None`: never trim here.
    max_len: Option<i64>,
}

impl StreamSink {
    pub fn new(client: Client, shards: u32, max_len: Option<i64>) -> Self {
        Self { client, stream_keys: (0..shards).map(telemetry_stream).collect(), max_len }
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
        let pipeline = self.client.pipeline();
        let shards = self.stream_keys.len() as u32;
        for t in accepted {
            let key = &self.stream_keys[shard_for(&t.equipement_id, shards) as usize];
            let cap = self.cap();
            let _: () =
                pipeline.xadd(key.as_str(), false, cap, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await?;
        }
        for d in dead {
            let _: () = pipeline
                .xadd(DEAD_LETTER_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(d.encode_to_vec())))
                .await?;
        }
        let results: Vec<Value> = pipeline.all().await?;
        // A pipeline returns per-command errors as values: any of them fails the batch.
        if let Some(Value::String(e)) = results.iter().find(|v| matches!(v, Value::String(s) if s.starts_with("ERR"))) {
            return Err(Error::new(ErrorKind::Unknown, e.to_string()));
        }
        metrics::histogram!("proact_ingest_stream_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("proact_ingest_batch_size").record((accepted.len() + dead.len()) as f64);
        Ok(())
    }

    fn cap(&self) -> XCap {
        self.max_len.and_then(|n| XCap::try_from(("MAXLEN", "~", n)).ok()).unwrap_or_else(|| XCap::from(None::<()>))
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
