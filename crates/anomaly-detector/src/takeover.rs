//! Taking a shard over, and finishing entries left pending.
//!
//! A replica that gains a shard rebuilds its equipment's state from what the previous owner
//! left (the online detectors' checkpoint, the stream's tail, the episode hash, the seen
//! records), then scores the entries that
//! owner read and never acknowledged. Between batches, the heartbeat also finishes entries
//! delivered to this replica whose read reply was lost, and claims those other replicas left
//! idle.

use std::collections::{HashMap, HashSet};

use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream};
use proact_proto::time::now_micros;
use proact_server::otel::Tracing;
use proact_server::redis::{ack, StreamEntry};

use crate::scoring::{BatchOutcome, Scoring};
use crate::{checkpoint, publish, seen};

impl Scoring {
    /// Taking a shard over: first rebuild its equipment's windows and episodes from the entries
    /// the previous owner already processed (the stream tail up to the group's last delivered
    /// id), then finish the entries it left unacked.
    ///
    /// Only the entries left unacked publish what they cause (deduplicated): the events of an
    /// acked entry were published before its ack, and replaying them from a tail that starts in
    /// the middle of an episode would raise that episode again under another id (the id is its
    /// first abnormal reading, which the tail does not have); at 1,500 readings/s, 5,000 entries
    /// are half a minute of a shard.
    ///
    /// Before the warm-up, each equipment's last published episode transition is restored from
    /// the shard's episode hash (see [`publish`]): an episode raised before the tail starts stays
    /// open, under its id, so an unacked abnormal reading inside it does not raise it again; the
    /// unacked reading that made the recorded transition publishes it again, held until a
    /// replica holds it (the previous owner may have stopped or lost the shard before one did,
    /// see [`crate::engine::Engine::restore`]); and an open no-data alarm stays open until the
    /// equipment's data comes back, then clears. After
    /// the warm-up, the previous owner's seen records (see [`seen`]) seed the silence clock of
    /// the equipment the tail did not reach, so one silent since shortly before the takeover is
    /// still alarmed, once, after the silence time.
    pub(crate) async fn take_over(&self, shard: u32) -> anyhow::Result<()> {
        let ctx = &self.settings;
        let write = &self.redis;
        let key = telemetry_stream(shard);
        let mut warmed = HashSet::new();
        let records = publish::load_episodes(write, shard).await?;
        let seen = if ctx.record_seen {
            seen::load(write, &ctx.replica, shard, ctx.shards, now_micros(), ctx.seen_retention_micros).await?
        } else {
            Vec::new()
        };
        let online =
            if ctx.checkpoint_every.is_some() { checkpoint::load(write, shard, ctx.shards).await? } else { Vec::new() };
        {
            let mut engine = self.engine.lock().await;
            // Before the warm-up: it learns only what is newer than the checkpoint.
            for (equipment, state) in online {
                engine.restore_online(&equipment, state);
            }
            for (equipment, record) in records {
                // Only equipment this shard still holds (the shard count may have changed).
                if shard_for(&equipment, ctx.shards) == shard {
                    engine.restore(&equipment, record);
                }
            }
        }
        if let Some(last) = last_delivered(write, &key, &ctx.group).await? {
            if last != "0-0" {
                let entries = warm_up_tail(write, &key, &last).await?;
                metrics::counter!("proact_detector_warmup_entries_total").increment(entries.len() as u64);
                // Already scored by the previous owner (and traced there): rebuild state, and
                // publish only what the entries it left unacked cause (see above).
                let unacked = pending_ids(write, &key, &ctx.group).await?;
                let batch = self.score(&Tracing::disabled(), &entries, |e| unacked.contains(&e.id)).await?;
                reclaimed_late(&batch, &entries, "left unacked by the shard's previous owner");
                warmed = entries.into_iter().map(|e| e.id).collect();
            }
        }
        {
            let mut engine = self.engine.lock().await;
            for (equipment, record) in seen {
                engine.seed_seen(&equipment, record);
            }
        }
        // The unacked entries the warm-up just scored are only claimed and acked; older ones are
        // scored now.
        self.claim_pending(&key, 0, &warmed).await?;
        Ok(())
    }

    /// Scores and acks the group's entries of `key` that other consumers read and left unacked
    /// for at least `min_idle_ms` (all of them with 0); those in `scored` are only acked.
    pub(crate) async fn claim_pending(
        &self,
        key: &str,
        min_idle_ms: u64,
        scored: &HashSet<String>,
    ) -> anyhow::Result<()> {
        let (ctx, write) = (&self.settings, &self.redis);
        let keys = [key.to_string()];
        let mut cursor = "0-0".to_string();
        loop {
            let claimed =
                proact_server::redis::claim_stale(write, &ctx.group, &ctx.replica, &keys, min_idle_ms, ctx.batch)
                    .await?;
            if claimed.is_empty() {
                break;
            }
            metrics::counter!("proact_detector_claimed_total").increment(claimed.len() as u64);
            // Our own entries held for unconfirmed alerts are idle too: they are not scored again.
            let fresh: Vec<StreamEntry> =
                self.ackable(&claimed).iter().filter(|e| !scored.contains(&e.id)).cloned().collect();
            let batch = self.process(&fresh).await?;
            if !batch.fenced.is_empty() {
                // Lost this shard meanwhile: its new owner takes the entries.
                break;
            }
            reclaimed_late(&batch, &fresh, "claimed from another consumer");
            ack(write, &ctx.group, &self.ackable(&claimed)).await?;
            let last = claimed.last().map(|e| e.id.clone()).unwrap_or_default();
            if last == cursor {
                break;
            }
            cursor = last;
        }
        Ok(())
    }

    /// Scores and acks the entries of `keys` delivered to this replica that it never received:
    /// Redis records a delivery when it sends the reply, so a read whose reply is lost (the
    /// connection cut mid-read, Redis restarting) leaves them in this consumer's pending list,
    /// where no one else looks while the shard stays ours. Called between batches, when every
    /// pending entry of ours is such an orphan (a batch is scored and acked before the next read),
    /// but for those held for unconfirmed alert events (see [`crate::scoring`]).
    ///
    /// The pending list is read a page at a time, each key from the last id its previous page
    /// gave: held entries are passed over, not read again, so orphans behind more held entries
    /// than one page holds are still reached.
    pub(crate) async fn score_orphans(&self, keys: &[String]) -> anyhow::Result<()> {
        let (ctx, write) = (&self.settings, &self.redis);
        let mut keys: Vec<String> = keys.to_vec();
        let mut after: Vec<String> = keys.iter().map(|_| "0".to_string()).collect();
        while !keys.is_empty() {
            let pending =
                proact_server::redis::read_own_pending_after(write, &ctx.group, &ctx.replica, &keys, &after, ctx.batch)
                    .await?;
            // A key whose page came back short has nothing pending past it.
            let mut next = (Vec::new(), Vec::new());
            for key in &keys {
                let page: Vec<&StreamEntry> = pending.iter().filter(|e| e.key == *key).collect();
                if let Some(last) = page.last().filter(|_| page.len() as u64 >= ctx.batch) {
                    next.0.push(key.clone());
                    next.1.push(last.id.clone());
                }
            }
            (keys, after) = next;
            // Those held for unconfirmed alerts are pending on purpose, not orphans.
            let orphans = self.ackable(&pending).into_owned();
            if orphans.is_empty() {
                continue;
            }
            tracing::info!(entries = orphans.len(), "scoring entries delivered to this replica but never received");
            metrics::counter!("proact_detector_orphaned_entries_total").increment(orphans.len() as u64);
            let batch = self.process(&orphans).await?;
            if !batch.fenced.is_empty() {
                // Lost a shard meanwhile: its new owner takes the entries.
                return Ok(());
            }
            reclaimed_late(&batch, &orphans, "delivered to this replica but never received");
            ack(write, &ctx.group, &self.ackable(&orphans)).await?;
        }
        Ok(())
    }
}

/// Counts and logs (once per batch) the reclaimed entries that were too late to score.
///
/// A reclaimed entry (another consumer's, idle for two lease TTLs; or one of ours whose read
/// reply was lost) can be older than the lateness tolerance behind its equipment's newest
/// reading, when live reads went on past it meanwhile. It is acked without being scored, by
/// choice: the window is ordered by event time and has already dropped what it would need to
/// place the reading, and an episode only moves forward in event time, so scoring it in its
/// own equipment order would raise, escalate or clear an episode in the past, after the
/// events already published for later readings (a second, contradicting history on the
/// dashboard). Keeping it pending would only have it reclaimed again. What is lost is at most
/// the readings of one batch read by a replica that lost its lease; the count says when.
fn reclaimed_late(batch: &BatchOutcome, entries: &[StreamEntry], how: &'static str) {
    if batch.too_late == 0 {
        return;
    }
    metrics::counter!("proact_detector_reclaimed_late_entries_total").increment(batch.too_late);
    let first = entries.first().map_or("", |e| e.id.as_str());
    let last = entries.last().map_or("", |e| e.id.as_str());
    tracing::warn!(
        entries = batch.too_late,
        of = entries.len(),
        how,
        first_id = first,
        last_id = last,
        "reclaimed entries older than the lateness tolerance: acked without scoring"
    );
}

/// How many already-processed readings rebuild a shard's state on takeover. Counted in
/// readings, not entries: an entry holds one reading or an ingest batch of up to 128, and
/// 5,000 batch entries would be 640,000 readings a shard, seconds of scoring before the new
/// owner scores anything live.
const WARM_UP_READINGS: usize = 5_000;
/// Entries of the tail read per `XREVRANGE`.
const WARM_UP_CHUNK: u64 = 256;
/// Unacked entries looked at per shard on takeover.
const PENDING_LOOKED_AT: u64 = 5_000;

/// The shard's tail up to `last` (the group's last delivered id), oldest first, reaching back
/// until it holds [`WARM_UP_READINGS`] readings or the stream's start.
async fn warm_up_tail(client: &Client, key: &str, last: &str) -> Result<Vec<StreamEntry>, Error> {
    let mut newest_first = Vec::new();
    let (mut readings, mut end) = (0, last.to_string());
    'read: loop {
        let chunk: Vec<(String, HashMap<String, bytes::Bytes>)> =
            client.xrevrange(key, end.as_str(), "-", Some(WARM_UP_CHUNK)).await?;
        let more = chunk.len() as u64 == WARM_UP_CHUNK;
        // Exclusive: the next chunk starts below this one's oldest entry.
        let Some(below) = chunk.last().map(|(id, _)| format!("({id}")) else { break };
        for (id, mut f) in chunk {
            let (field, payload) = entry_payload(&mut f);
            readings += readings_in(field, payload.as_deref());
            newest_first.push(StreamEntry { key: key.to_string(), id, payload, field });
            if readings >= WARM_UP_READINGS {
                break 'read;
            }
        }
        if !more {
            break;
        }
        end = below;
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// The readings a shard entry holds, counted from a batch's framing (a batch that does not
/// frame counts as one: the scoring skips it as undecodable either way).
fn readings_in(field: &str, payload: Option<&[u8]>) -> usize {
    use proact_server::redis::{BATCH_FIELD, STATUS_FIELD};
    match (field, payload) {
        (_, None) | (STATUS_FIELD, _) => 0,
        (BATCH_FIELD, Some(p)) => proact_proto::streams::batch_len(p).unwrap_or(1),
        _ => 1,
    }
}

async fn last_delivered(client: &Client, key: &str, group: &str) -> Result<Option<String>, Error> {
    let groups = proact_server::redis::groups(client, key).await?;
    Ok(groups.into_iter().find(|g| g.name == group).map(|g| g.last_delivered))
}

/// What a heartbeat asks of each owned shard's pending list.
pub(crate) struct ShardPending {
    pub shard: u32,
    /// Entries delivered and not acked (for status).
    pub pending: u64,
    /// Whether some were idle for at least the reclaim time (then worth an XAUTOCLAIM).
    pub stale: bool,
}

/// The pending count of every shard in `shards` and whether each holds entries idle for
/// `min_idle_ms`, in one round trip (XAUTOCLAIM then runs only for a shard that has stale
/// entries): the heartbeat runs on the scoring task, so each round trip it waits is time no
/// reading is read.
pub(crate) async fn shard_pending(
    client: &Client,
    group: &str,
    shards: &[u32],
    min_idle_ms: u64,
) -> Result<Vec<ShardPending>, Error> {
    if shards.is_empty() {
        return Ok(Vec::new());
    }
    let pipeline = client.pipeline();
    for &s in shards {
        let _: () = pipeline.xpending(telemetry_stream(s), group, ()).await?;
        let _: () = pipeline.xpending(telemetry_stream(s), group, (min_idle_ms, "-", "+", 1)).await?;
    }
    let replies = pipeline.try_all::<Value>().await;
    let mut replies = replies.into_iter();
    let mut out = Vec::with_capacity(shards.len());
    for &shard in shards {
        let (summary, idle) = (replies.next(), replies.next());
        let pending = match summary {
            Some(Ok(Value::Array(a))) => a.first().and_then(|x| x.as_u64()).unwrap_or(0),
            _ => 0,
        };
        let stale = match idle {
            Some(Ok(Value::Array(rows))) => !rows.is_empty(),
            Some(Ok(_)) | None => false,
            Some(Err(e)) => return Err(e),
        };
        out.push(ShardPending { shard, pending, stale });
    }
    Ok(out)
}

/// Ids of the entries of `key` delivered to a consumer of `group` and not acked (up to as
/// many as a warm-up reads).
async fn pending_ids(client: &Client, key: &str, group: &str) -> Result<HashSet<String>, Error> {
    let reply: Value = client.xpending(key, group, ("-", "+", PENDING_LOOKED_AT)).await?;
    let Value::Array(rows) = reply else { return Ok(HashSet::new()) };
    Ok(rows
        .into_iter()
        .filter_map(|r| match r {
            Value::Array(f) => f.first().and_then(|id| id.as_string()),
            _ => None,
        })
        .collect())
}

/// The payload of an entry read with `XRANGE`, and the field it came from (a single reading,
/// or a batch of them).
fn entry_payload(fields: &mut HashMap<String, bytes::Bytes>) -> (&'static str, Option<bytes::Bytes>) {
    use proact_server::redis::{BATCH_FIELD, PAYLOAD_FIELD, STATUS_FIELD};
    for field in [BATCH_FIELD, STATUS_FIELD] {
        if let Some(payload) = fields.remove(field) {
            return (field, Some(payload));
        }
    }
    (PAYLOAD_FIELD, fields.remove(PAYLOAD_FIELD))
}

#[cfg(test)]
mod tests {
    use super::{entry_payload, readings_in};
    use proact_server::redis::{BATCH_FIELD, PAYLOAD_FIELD, STATUS_FIELD};
    use std::collections::HashMap;

    /// The warm-up replays every kind of shard entry: a status it dropped would leave a dead
    /// device's no-data alarm unraised on the new owner.
    #[test]
    fn warm_up_entries_keep_their_field() {
        for field in [PAYLOAD_FIELD, BATCH_FIELD, STATUS_FIELD] {
            let mut fields = HashMap::from([(field.to_string(), bytes::Bytes::from_static(b"x"))]);
            assert_eq!(entry_payload(&mut fields), (field, Some(bytes::Bytes::from_static(b"x"))));
        }
        assert_eq!(entry_payload(&mut HashMap::new()), (PAYLOAD_FIELD, None));
    }

    /// The warm-up is bounded in readings: a batch entry counts for what it holds.
    #[test]
    fn a_batch_entry_counts_for_its_readings_and_a_status_for_none() {
        use proact_proto::v1::{Telemetry, TelemetryBatch};
        use prost::Message;
        let batch = TelemetryBatch { items: vec![Telemetry::default(); 128] }.encode_to_vec();
        assert_eq!(readings_in(BATCH_FIELD, Some(&batch)), 128);
        assert_eq!(readings_in(PAYLOAD_FIELD, Some(b"x")), 1);
        assert_eq!(readings_in(STATUS_FIELD, Some(b"x")), 0);
        assert_eq!(readings_in(BATCH_FIELD, None), 0);
        assert_eq!(readings_in(BATCH_FIELD, Some(&[0xff, 0x01])), 1, "a broken batch counts as one");
    }
}
