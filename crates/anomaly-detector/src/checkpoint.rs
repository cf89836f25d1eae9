//! The online detectors' state, checkpointed in Redis, so that a restarted replica or one
//! taking a shard over continues each equipment's learning instead of starting cold.
//!
//! Per shard, a hash `proact:detector:online:{shard}` on one Redis, in the lease's slot on a
//! cluster (see [`crate::leases::KeyLayout`]) (field: the equipment id, value: its
//! [`EquipmentDetector`] as JSON, a few tens of kilobytes at most, see docs/BENCHMARKS.md).
//! One hash per shard rather than one key per equipment: it shares the `{shard}` hash tag
//! (one Redis Cluster slot) with the shard's lease, so the write is fenced by the same script
//! as the seen records ([`crate::seen`]) and a replica that lost the shard never overwrites
//! its new owner's states; and a takeover loads it in one HGETALL, without knowing the ids.
//!
//! Written at a bounded rate (every `PROACT_DETECTOR_CHECKPOINT_SECS`, the equipment that
//! learned since the last write) and at shutdown before the leases are released; loaded when
//! a shard is taken over, before its warm-up (which then learns only what is newer than the
//! checkpoint). Readings scored between the last write and a crash are learned again from
//! the stream's tail by the warm-up, as far as it reaches. A state this version cannot read
//! is skipped (the equipment starts cold); states of equipment another shard holds now (the
//! shard count changed) are ignored.

use bytes::Bytes;
use fred::prelude::*;
use proact_online::EquipmentDetector;
use proact_proto::streams::shard_for;

use crate::leases::KeyLayout;

/// The hash of the online states of `shard`'s equipment, in the slot of the shard's lease.
pub fn online_key(layout: KeyLayout, shard: u32) -> String {
    layout.shard_key("online", shard)
}

/// The stored form of a state.
pub fn encode(state: &EquipmentDetector) -> Bytes {
    Bytes::from(serde_json::to_vec(state).expect("an online state always serialises"))
}

/// A stored state, if this version can read it.
pub fn decode(raw: &[u8]) -> Option<EquipmentDetector> {
    serde_json::from_slice(raw).ok()
}

/// Writes `states` under `replica`'s leases, one fenced script per shard and
/// [`crate::seen::CHUNK`] equipment, in one round trip; returns how many calls were fenced off
/// (shards lost meanwhile).
pub async fn write(
    client: &Client,
    replica: &str,
    shards: u32,
    states: &[(String, EquipmentDetector)],
) -> Result<usize, Error> {
    let mut by_shard: std::collections::BTreeMap<u32, Vec<(&str, Bytes)>> = Default::default();
    for (id, state) in states {
        by_shard.entry(shard_for(id, shards)).or_default().push((id, encode(state)));
    }
    let layout = KeyLayout::of(client);
    let mut calls = Vec::new();
    for (shard, set) in by_shard {
        crate::seen::fenced_hash_calls(&mut calls, layout, replica, shard, &online_key(layout, shard), &set, &[]);
    }
    crate::seen::run(client, calls).await
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
