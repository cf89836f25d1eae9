//! The Redis Streams layout (a contract: see DESIGN.md).
//!
//! Telemetry is sharded by equipment over `shards` stream keys, so one equipment's readings
//! stay in order in one stream and consumers scale by shard. The shard number is wrapped in
//! a hash tag (`{3}`) so that on a Redis Cluster the shards spread over slots while each key
//! stays whole on one node.
//!
//! A telemetry entry carries either one reading (field [`PAYLOAD_FIELD`], a `Telemetry`) or
//! the readings of one ingest batch for one shard, in order (field [`BATCH_FIELD`], a
//! `TelemetryBatch`), so that `XADD`, `XREADGROUP` and `XACK` are paid per batch. Consumers
//! read both kinds (docs/adr/0004-batched-stream-entries.md). A shard also carries an
//! equipment's status entries (field [`STATUS_FIELD`], an `EquipmentStatus`) in order with its
//! readings (docs/adr/0006-equipment-status-entries.md).

use prost::Message;

use crate::v1::{Telemetry, TelemetryBatch};

/// Field of a stream entry that carries the protobuf payload.
pub const PAYLOAD_FIELD: &str = "p";
/// Field of a telemetry entry that carries a `TelemetryBatch` (several readings of one shard).
pub const BATCH_FIELD: &str = "b";

/// Field of a telemetry shard entry that carries an `EquipmentStatus` instead of a reading
/// (docs/adr/0006-equipment-status-entries.md): readers of readings skip such entries.
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

/// The readings of a telemetry entry whose payload sits in field `field` ([`PAYLOAD_FIELD`]
/// or [`BATCH_FIELD`]), in the order they were written.
pub fn decode_readings(field: &str, payload: &[u8]) -> Result<Vec<Telemetry>, EntryError> {
    match field {
        PAYLOAD_FIELD => Telemetry::decode(payload).map(|t| vec![t]).map_err(EntryError::NotTelemetry),
        BATCH_FIELD => TelemetryBatch::decode(payload).map(|b| b.items).map_err(EntryError::NotABatch),
        other => Err(EntryError::UnknownField(other.to_string())),
    }
}

/// How many readings a `TelemetryBatch` payload holds, counted from its framing without
/// decoding them (a reader sizes its batches with it); `None` if the framing is broken.
pub fn batch_len(payload: &[u8]) -> Option<usize> {
    let mut rest = payload;
    let mut n = 0;
    while !rest.is_empty() {
        // Field 1, length-delimited (tag 0x0a): anything else is not a batch ingest wrote.
        if prost::encoding::decode_varint(&mut rest).ok()? != 0x0a {
            return None;
        }
        let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
        rest = rest.get(len..)?;
        n += 1;
    }
    Some(n)
}

/// Why a telemetry entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("field p is not a Telemetry message: {0}")]
    NotTelemetry(prost::DecodeError),
    #[error("field b is not a TelemetryBatch message: {0}")]
    NotABatch(prost::DecodeError),
    #[error("unknown payload field {0:?} (expected p or b)")]
    UnknownField(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str, ts: i64) -> Telemetry {
        Telemetry { equipement_id: id.into(), ts_micros: ts, temperature: 20.0, ..Default::default() }
    }

    #[test]
    fn both_entry_kinds_decode_in_order() {
        let one = reading("PUMP-01", 1);
        assert_eq!(decode_readings(PAYLOAD_FIELD, &one.encode_to_vec()).unwrap(), vec![one.clone()]);
        let items = vec![one, reading("PUMP-02", 2), reading("PUMP-01", 3)];
        let batch = TelemetryBatch { items: items.clone() }.encode_to_vec();
        assert_eq!(decode_readings(BATCH_FIELD, &batch).unwrap(), items);
        assert_eq!(batch_len(&batch), Some(3));
        assert_eq!(batch_len(&[]), Some(0));
        assert!(matches!(decode_readings("s", &batch), Err(EntryError::UnknownField(_))));
        assert!(decode_readings(BATCH_FIELD, &[0x0a, 0x05, 1]).is_err());
        assert_eq!(batch_len(&[0x0a, 0x05, 1]), None, "a length past the end");
        assert_eq!(batch_len(&reading("X", 1).encode_to_vec()), None, "a single reading is not a batch");
    }

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
