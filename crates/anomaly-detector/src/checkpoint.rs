//! The online detectors' state, checkpointed in Redis, so that a restarted replica or one
//! taking a shard over continues each equipment's learning instead of starting cold.
//!
//! Per shard, a hash `proact:detector:online:{shard}` on one Redis, in the lease's slot on a
//! cluster (see [`crate::leases::KeyLayout`]) (field: the equipment id, value: its
//! [`EquipmentDetector`] as LZ4-compressed JSON, about ten kilobytes, see [`encode`] and
//! docs/BENCHMARKS.md).
//! One hash per shard rather than one key per equipment: it shares the `{shard}` hash tag
//! (one Redis Cluster slot) with the shard's lease, so the write is fenced by the same script
//! as the seen records ([`crate::seen`]) and a replica that lost the shard never overwrites
//! its new owner's states; and a takeover loads it in one HGETALL, without knowing the ids.
//!
//! Written at a bounded rate (every `PROACT_DETECTOR_CHECKPOINT_SECS`, the equipment that
//! learned since the last write) and at shutdown before the leases are released, by a
//! [`Checkpointer`] off the scoring loop; loaded when
//! a shard is taken over, before its warm-up (which then learns only what is newer than the
//! checkpoint). Readings scored between the last write and a crash are learned again from
//! the stream's tail by the warm-up, as far as it reaches. A state this version cannot read
//! is skipped (the equipment starts cold); states of equipment another shard holds now (the
//! shard count changed) are ignored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use proact_online::EquipmentDetector;
use proact_proto::streams::shard_for;
use tokio::sync::{mpsc, Mutex, OwnedRwLockWriteGuard, RwLock};

use crate::engine::Engine;
use crate::leases::KeyLayout;

/// States one fenced script writes at most. A state is some 10 KB stored and Redis runs one
/// script at a time: small calls let the scoring loop's own commands in between.
pub const STATES_PER_CALL: usize = 16;

/// The hash of the online states of `shard`'s equipment, in the slot of the shard's lease.
pub fn online_key(layout: KeyLayout, shard: u32) -> String {
    layout.shard_key("online", shard)
}

/// What a compressed state starts with: a byte JSON never starts with, then the format.
const LZ4_JSON: &[u8] = b"\0lz4";

/// The largest JSON a stored state may decompress to: far above any state (the state is
/// bounded at 64 KiB in memory), so that a corrupt size field cannot make a takeover
/// allocate gigabytes.
const MAX_JSON_BYTES: usize = 4 << 20;

/// The stored form of a state: its JSON (readable by every version, and by people with
/// `redis-cli` and an LZ4 tool), compressed: the pattern tables are mostly zeros, and plain
/// JSON made a checkpoint of 10,000 equipment a few hundred megabytes of Redis memory (LZ4
/// over JSON stores less than half of it; the seasonal profiles' floats are most of the rest).
/// [`LZ4_JSON`], the JSON's length (4 bytes, little-endian), the LZ4 block.
pub fn encode(state: &EquipmentDetector) -> Bytes {
    let json = serde_json::to_vec(state).expect("an online state always serialises");
    let mut out = Vec::with_capacity(LZ4_JSON.len() + json.len() / 4);
    out.extend_from_slice(LZ4_JSON);
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(&json));
    Bytes::from(out)
}

/// A stored state, if this version can read it: compressed ([`encode`]), or plain JSON as
/// versions before the compression wrote it (a rolling upgrade loads those).
pub fn decode(raw: &[u8]) -> Option<EquipmentDetector> {
    let Some(block) = raw.strip_prefix(LZ4_JSON) else {
        return serde_json::from_slice(raw).ok();
    };
    let (size, block) = block.split_first_chunk::<4>()?;
    let size = u32::from_le_bytes(*size) as usize;
    if size > MAX_JSON_BYTES {
        return None;
    }
    let json = lz4_flex::block::decompress(block, size).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Writes `states` under `replica`'s leases, one fenced script per shard and
/// [`STATES_PER_CALL`] equipment, in one round trip; returns how many calls were fenced off
/// (shards lost meanwhile).
pub async fn write(
    client: &Client,
    replica: &str,
    shards: u32,
    states: &[(String, EquipmentDetector)],
) -> Result<usize, Error> {
    let encoded = encode_all(states);
    let layout = KeyLayout::of(client);
    let mut calls = Vec::new();
    for (shard, set) in by_shard(&encoded, shards) {
        crate::seen::fenced_hash_calls(
            &mut calls,
            layout,
            replica,
            shard,
            &online_key(layout, shard),
            &set,
            &[],
            STATES_PER_CALL,
        );
    }
    crate::seen::run(client, calls).await
}

fn encode_all(states: &[(String, EquipmentDetector)]) -> Vec<(String, Bytes)> {
    states.iter().map(|(id, state)| (id.clone(), encode(state))).collect()
}

fn by_shard(encoded: &[(String, Bytes)], shards: u32) -> BTreeMap<u32, Vec<(&str, Bytes)>> {
    let mut out: BTreeMap<u32, Vec<(&str, Bytes)>> = BTreeMap::new();
    for (id, value) in encoded {
        out.entry(shard_for(id, shards)).or_default().push((id, value.clone()));
    }
    out
}

/// Slices queued for the writer at most: past it (Redis slower than the states change) a
/// slice is not taken, its states stay dirty for the next round.
const QUEUED_SLICES: usize = 2;

/// Checkpoints the online states in the background: the scoring loop takes a slice of the
/// equipment that learned ([`Checkpointer::take_slice`], every [`Checkpointer::tick_every`]),
/// so that each is written about once per interval, and a task of its own serialises and
/// writes them on a connection of its own, while scoring goes on.
///
/// Fencing is the same as inline writes: each script checks the shard's lease. A write queued
/// under a lease that was lost and gained again since would pass that check with an old state,
/// so the loop reports lost shards ([`Checkpointer::lost`]) and holds
/// [`Checkpointer::pause`] while its leases change: states taken before a loss are dropped, and
/// no write started before a loss ends after it.
pub struct Checkpointer {
    slices: u32,
    next_slice: u32,
    every: Duration,
    tx: mpsc::Sender<Slice>,
    writer: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Held shared by each write, exclusively while the leases change.
    gate: Arc<RwLock<()>>,
    /// Per shard, how many times it was lost.
    epochs: Vec<AtomicU64>,
}

/// States taken from the engine, with the epoch of every shard when they were.
struct Slice {
    states: Vec<(String, EquipmentDetector)>,
    epochs: Vec<u64>,
}

/// While it lives, no checkpoint write runs (see [`Checkpointer::pause`]).
pub struct Paused {
    _gate: OwnedRwLockWriteGuard<()>,
}

impl Checkpointer {
    /// Starts the writer on `client` (a connection of its own: a write does not delay the
    /// loop's commands behind it), for a checkpoint `every` interval.
    pub fn start(client: Client, replica: String, shards: u32, every: Duration) -> Self {
        let shared = Arc::new(Shared {
            gate: Arc::new(RwLock::new(())),
            epochs: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        });
        let (tx, rx) = mpsc::channel(QUEUED_SLICES);
        let writer = tokio::spawn(write_slices(client, replica, shards, rx, shared.clone()));
        // About one slice a second.
        let slices = every.as_secs().clamp(1, 120) as u32;
        Self { slices, next_slice: 0, every, tx, writer, shared }
    }

    /// How often the loop takes a slice.
    pub fn tick_every(&self) -> Duration {
        self.every / self.slices
    }

    /// Takes the states of the next slice of equipment that learned since their last write and
    /// queues them for the writer; returns how many. With the queue full, takes none.
    pub fn take_slice(&mut self, engine: &mut Engine) -> usize {
        let Ok(permit) = self.tx.try_reserve() else {
            metrics::counter!("proact_detector_checkpoint_slices_deferred_total").increment(1);
            return 0;
        };
        let (slice, slices) = (self.next_slice, self.slices);
        self.next_slice = (slice + 1) % slices;
        let states = engine.take_online_changes_of(|id| shard_for(id, slices) == slice);
        let n = states.len();
        if n > 0 {
            permit.send(Slice { states, epochs: self.epochs() });
        }
        n
    }

    /// Per shard, how many times it was reported lost.
    pub(crate) fn epochs(&self) -> Vec<u64> {
        self.shared.epochs.iter().map(|e| e.load(Ordering::SeqCst)).collect()
    }

    /// Waits for the write in progress, if any, and holds the next ones until the guard is
    /// dropped: hold it while the leases change, and report the shards lost before dropping it.
    /// A write is one shard's part of a slice, so the wait is short next to a whole inline
    /// checkpoint, which held the heartbeat as long as it took.
    pub async fn pause(&self) -> Paused {
        Paused { _gate: self.shared.gate.clone().write_owned().await }
    }

    /// `shards` were lost: the states of theirs taken so far are not written.
    pub fn lost(&self, shards: &[u32]) {
        for &s in shards {
            if let Some(e) = self.shared.epochs.get(s as usize) {
                e.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Takes every state that learned since its last write, and returns once the writer wrote
    /// it and everything queued before (at shutdown, before the leases are released).
    pub async fn finish(self, engine: &Mutex<Engine>) {
        let states = engine.lock().await.take_online_changes();
        if !states.is_empty() {
            let epochs = self.epochs();
            let _ = self.tx.send(Slice { states, epochs }).await;
        }
        drop(self.tx);
        let _ = self.writer.await;
    }
}

/// The writer: serialises each slice off the runtime's workers, then writes it shard by
/// shard, each under the gate and only if the shard was not lost since the slice was taken.
async fn write_slices(
    client: Client,
    replica: String,
    shards: u32,
    mut rx: mpsc::Receiver<Slice>,
    shared: Arc<Shared>,
) {
    let layout = KeyLayout::of(&client);
    while let Some(Slice { states, epochs }) = rx.recv().await {
        let started = Instant::now();
        let taken = states.len();
        let Ok(encoded) = tokio::task::spawn_blocking(move || encode_all(&states)).await else { continue };
        let (mut written, mut dropped) = (0, 0);
        for (shard, set) in by_shard(&encoded, shards) {
            let _gate = shared.gate.read().await;
            if shared.epochs[shard as usize].load(Ordering::SeqCst) != epochs[shard as usize] {
                dropped += set.len();
                continue;
            }
            let mut calls = Vec::new();
            let key = online_key(layout, shard);
            crate::seen::fenced_hash_calls(&mut calls, layout, &replica, shard, &key, &set, &[], STATES_PER_CALL);
            match crate::seen::run(&client, calls).await {
                Ok(0) => written += set.len(),
                Ok(_) => dropped += set.len(),
                // Those states are written again once they learn more.
                Err(e) => tracing::warn!(error = %e, shard, states = set.len(), "online states not checkpointed"),
            }
        }
        metrics::counter!("proact_detector_checkpointed_states_total").increment(written as u64);
        metrics::histogram!("proact_detector_checkpoint_slice_seconds").record(started.elapsed().as_secs_f64());
        if dropped > 0 {
            tracing::info!(states = dropped, of = taken, "online states of lost shards not checkpointed");
        }
    }
}

/// The states of `shard`'s equipment, for a replica that just took it.
pub async fn load(client: &Client, shard: u32, shards: u32) -> Result<Vec<(String, EquipmentDetector)>, Error> {
    let raw: std::collections::HashMap<String, Bytes> =
        client.hgetall(online_key(KeyLayout::of(client), shard)).await?;
    let mut out = Vec::with_capacity(raw.len());
    for (id, value) in raw {
        if shard_for(&id, shards) != shard {
            continue;
        }
        match decode(&value) {
            Some(state) => out.push((id, state)),
            None => tracing::warn!(shard, equipement_id = %id, "unreadable online state skipped; it starts cold"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proact_online::OnlineConfig;

    /// An equipment that has learned a day of a noisy cycle on two channels.
    fn learned() -> EquipmentDetector {
        let cfg = OnlineConfig::default();
        let mut state = EquipmentDetector::default();
        for i in 0..2_880_i64 {
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let noise = ((i * 7_919) % 101) as f64 / 101.0 - 0.5;
            state.observe(i * 300_000_000, &[60.0 + 5.0 * phase.sin() + noise, 2.0 + 0.3 * noise], &cfg);
        }
        state
    }

    #[test]
    fn a_stored_state_reads_back_the_same_and_takes_less_than_half_its_json() {
        let state = learned();
        let stored = encode(&state);
        assert_eq!(decode(&stored), Some(state.clone()));
        let json = serde_json::to_vec(&state).unwrap().len();
        assert!(stored.len() * 2 < json, "{} bytes stored for {json} bytes of JSON", stored.len());
    }

    #[test]
    fn a_state_stored_as_plain_json_still_reads() {
        let state = learned();
        assert_eq!(decode(&serde_json::to_vec(&state).unwrap()), Some(state));
    }

    #[test]
    fn a_damaged_state_is_unreadable_not_a_panic_nor_a_huge_allocation() {
        let stored = encode(&learned());
        assert_eq!(decode(&stored[..stored.len() / 2]), None, "truncated");
        assert_eq!(decode(&stored[..LZ4_JSON.len() + 2]), None, "no size");
        let mut huge = stored.to_vec();
        huge[LZ4_JSON.len()..LZ4_JSON.len() + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None, "a size far above any state");
        let mut flipped = stored.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert_eq!(decode(&flipped), None, "a damaged block");
        assert_eq!(decode(b""), None);
    }
}
