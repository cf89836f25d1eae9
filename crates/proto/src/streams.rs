//! The Redis Streams layout (a contract: see DESIGN.md).
//!
//! Telemetry is sharded by equipment over `shards` stream keys, so one equipment's readings
//! stay in order in one stream and consumers scale by shard. The shard number is wrapped in
//! a hash tag (`{3}`) so that on a Redis Cluster the shards spread over slots while each key
//! stays whole on one node.

/// Field of a stream entry that carries the protobuf payload.
pub const PAYLOAD_FIELD: &str = "p";

/// Field of a telemetry shard entry that carries an `EquipmentStatus` instead of a reading
/// (docs/adr/0004-equipment-status-entries.md): readers of readings skip such entries.
pub const STATUS_FIELD: &str = "s";

/// Key of the alerts stream (entries: `AlertEvent`).
pub const ALERTS_STREAM: &str = "proact:alerts";
/// Key of the model-events stream (entries: `ModelEvent`).
pub const MODEL_EVENTS_STREAM: &str = "proact:model-events";
/// Key of the work-orders stream (entries: `WorkOrderEvent`), one per state change.
pub const WORK_ORDERS_STREAM: &str = "proact:workorders";
/// Key of the dead-letter stream (entries: `DeadLetter`).
pub const DEAD_LETTER_STREAM: &str = "proact:dlq";

/// Default number of telemetry shards.
pub const DEFAULT_SHARDS: u32 = 8;

/// The stream key of telemetry shard `shard`.
pub fn telemetry_stream(shard: u32) -> String {
    format!("proact:telemetry:{{{shard}}}")
}

/// Every telemetry stream key for `shards` shards, in shard order.
pub fn telemetry_streams(shards: u32) -> Vec<String> {
    (0..shards).map(telemetry_stream).collect()
}

/// The shard of an equipment: FNV-1a (64 bit) of its id, modulo the shard count.
///
/// Stable across processes, versions and platforms: it must never change, since the
/// detector keeps per-equipment state by shard. `shards` of 0 is treated as 1.
pub fn shard_for(equipement_id: &str, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in equipement_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    (h % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_function_is_pinned() {
        // These values are part of the contract: changing them re-homes every equipment.
        assert_eq!(shard_for("PUMP-01", 8), 5);
        assert_eq!(shard_for("PUMP-02", 8), 4);
        assert_eq!(shard_for("", 8), (0xcbf2_9ce4_8422_2325u64 % 8) as u32);
        assert_eq!(shard_for("anything", 1), 0);
        assert_eq!(shard_for("anything", 0), 0);
    }

    #[test]
    fn shards_spread_equipment() {
        let mut counts = [0u32; 8];
        for i in 0..800 {
            counts[shard_for(&format!("EQ-{i:04}"), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "uneven spread: {counts:?}");
    }

    #[test]
    fn stream_keys_use_hash_tags() {
        assert_eq!(telemetry_stream(3), "proact:telemetry:{3}");
        assert_eq!(telemetry_streams(2).len(), 2);
    }
}
