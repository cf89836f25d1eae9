//! What a shard's owner has seen of each equipment, kept in Redis so that a replica taking
//! the shard over can run the silence clock of equipment its warm-up does not reach.
//!
//! The warm-up re-reads only the shard's last 5,000 entries. An equipment that went silent
//! shortly before a takeover, its no-data alarm not raised yet, is in those entries only if
//! the shard is quiet enough; on a busy shard the new owner did not know it existed and never
//! raised the alarm. So the owner records, per shard, in `proact:detector:seen:{shard}`
//! (field: the equipment id), the event time of each equipment's newest reading (the alarm's
//! id is built on it) and the wall-clock time it got it (the silence clock starts there):
//! 16 bytes, both big-endian microseconds.
//!
//! Written at each lease heartbeat, not per reading: one script per owned shard with changes
//! (per [`CHUNK`] equipment), HSET of the equipment read since the last heartbeat and HDEL of
//! those silent for longer than the retention, queued in the heartbeat's own pipeline (no
//! extra round trip). The script checks the shard's lease first, as the publish script does,
//! so a replica that lost the shard writes nothing over its new owner's records.
//!
//! The hash holds the equipment of the shard read within the retention (default one day, far
//! above the silence time): one removed from the fleet is raised its alarm after the silence
//! time, then leaves the hash after the retention, by its owner's heartbeat or at the next
//! takeover. An absent hash (a version before this one) just means "nothing more than the
//! warm-up"; a value this version cannot read is skipped.

use std::collections::BTreeMap;

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::shard_for;

use crate::leases::{eval_command, KeyLayout};

/// What the shard's owner last knew of an equipment's readings, kept in Redis (see
/// [`crate::seen`]) so that a new owner runs its silence clock from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Event time of its newest reading (a no-data alarm's id is built on it).
    pub last_ts: i64,
    /// When the owner got a reading of it last (wall clock, µs): the silence clock's start.
    pub wall_micros: i64,
}

/// The seen records to write: equipment read since they were last written, and recorded
/// equipment silent past the retention (to delete).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenChanges {
    pub set: Vec<(String, Seen)>,
    pub pruned: Vec<String>,
}

/// HSET then HDEL under the shard's lease. KEYS: lease, seen hash. ARGV: holder, the number of
/// (field, value) pairs, the pairs, then the fields to delete.
const SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local n = tonumber(ARGV[2])
if n > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3, 2 + 2 * n))
end
if #ARGV > 2 + 2 * n then
  redis.call('HDEL', KEYS[2], unpack(ARGV, 3 + 2 * n))
end
return 1
"#;

/// Most equipment per script call: Lua's `unpack` refuses a few thousand values.
pub const CHUNK: usize = 1_000;

/// The hash of what the owner of `shard` has seen of each equipment on one Redis (same
/// `{shard}` hash tag as its lease, so the fencing script touches one slot; on a cluster see
/// [`KeyLayout`]).
pub fn seen_key(shard: u32) -> String {
    KeyLayout::Single.shard_key("seen", shard)
}

/// The stored form: the newest reading's event time, then when it was got, big-endian µs.
pub fn encode(seen: Seen) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&seen.last_ts.to_be_bytes());
    out[8..].copy_from_slice(&seen.wall_micros.to_be_bytes());
    out
}

/// Reads a stored value; a longer one (a later version appending a field) is read by its
/// first 16 bytes, a shorter one is refused.
pub fn decode(raw: &[u8]) -> Option<Seen> {
    let last_ts = i64::from_be_bytes(raw.get(..8)?.try_into().ok()?);
    let wall_micros = i64::from_be_bytes(raw.get(8..16)?.try_into().ok()?);
    Some(Seen { last_ts, wall_micros })
}

/// The pruning rule: a record whose equipment was last read more than `retention_micros`
/// ago (wall clock) leaves the hash. Its no-data alarm was due long before.
pub fn expired(seen: Seen, now_micros: i64, retention_micros: i64) -> bool {
    now_micros.saturating_sub(seen.wall_micros) > retention_micros
}

/// The EVAL calls (argument lists) that write `changes` under `replica`'s leases, one per
/// shard and [`CHUNK`] equipment, with the keys of `layout`.
pub fn write_calls(layout: KeyLayout, replica: &str, shards: u32, changes: &SeenChanges) -> Vec<Vec<Value>> {
    /// One shard's records to write, and to delete.
    type Writes<'a> = (Vec<(&'a str, Seen)>, Vec<&'a str>);
    let mut by_shard: BTreeMap<u32, Writes> = BTreeMap::new();
    for (id, seen) in &changes.set {
        by_shard.entry(shard_for(id, shards)).or_default().0.push((id, *seen));
    }
    for id in &changes.pruned {
        by_shard.entry(shard_for(id, shards)).or_default().1.push(id);
    }
    let mut calls = Vec::new();
    for (shard, (set, del)) in by_shard {
        shard_calls(&mut calls, layout, replica, shard, &set, &del);
    }
    calls
}

/// The calls writing `set` and deleting `del` in `shard`'s hash, whichever shard the
/// equipment belong to.
fn shard_calls(
    calls: &mut Vec<Vec<Value>>,
    layout: KeyLayout,
    replica: &str,
    shard: u32,
    set: &[(&str, Seen)],
    del: &[&str],
) {
    let set: Vec<(&str, Bytes)> = set.iter().map(|(id, seen)| (*id, Bytes::copy_from_slice(&encode(*seen)))).collect();
    fenced_hash_calls(calls, layout, replica, shard, &layout.shard_key("seen", shard), &set, del, CHUNK);
}

/// The calls setting the fields `set` and deleting `del` in the hash `hash` of `shard` (in the
/// slot of the shard's lease in `layout`), at most `chunk` fields a call, each under the
/// shard's lease: a replica that lost it changes nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fenced_hash_calls(
    calls: &mut Vec<Vec<Value>>,
    layout: KeyLayout,
    replica: &str,
    shard: u32,
    hash: &str,
    set: &[(&str, Bytes)],
    del: &[&str],
    chunk: usize,
) {
    let head = |n: usize| {
        vec![
            Value::from(SCRIPT),
            Value::Integer(2),
            Value::from(layout.shard_key("lease", shard)),
            Value::from(hash),
            Value::from(replica),
            Value::Integer(n as i64),
        ]
    };
    for chunk in set.chunks(chunk) {
        let mut args = head(chunk.len());
        for (id, value) in chunk {
            args.push(Value::from(*id));
            args.push(Value::Bytes(value.clone()));
        }
        calls.push(args);
    }
    for chunk in del.chunks(chunk) {
        let mut args = head(0);
        args.extend(chunk.iter().map(|id| Value::from(*id)));
        calls.push(args);
    }
}

/// Queues `calls` (from [`write_calls`]) on `pipeline`.
pub async fn queue(pipeline: &fred::clients::Pipeline<Client>, calls: Vec<Vec<Value>>) -> Result<(), Error> {
    for args in calls {
        let _: () = pipeline.custom(eval_command(), args).await?;
    }
    Ok(())
}

/// Writes `changes` in a round trip of their own (at shutdown, before the leases go); returns
/// how many calls were fenced off.
pub async fn write(client: &Client, replica: &str, shards: u32, changes: &SeenChanges) -> Result<usize, Error> {
    run(client, write_calls(KeyLayout::of(client), replica, shards, changes)).await
}

/// Runs `calls` in one pipeline; returns how many were fenced off.
pub(crate) async fn run(client: &Client, calls: Vec<Vec<Value>>) -> Result<usize, Error> {
    if calls.is_empty() {
        return Ok(0);
    }
    let pipeline = client.pipeline();
    queue(&pipeline, calls).await?;
    let replies: Vec<Value> = pipeline.all().await?;
    Ok(replies.iter().filter(|r| r.as_i64() == Some(-1)).count())
}

/// The records of `shard`'s equipment, for a replica that just took it (and so holds its
/// lease). Expired records, and those of equipment another shard holds now (the shard count
/// changed), are not returned and are deleted, under the lease; unreadable ones are skipped.
pub async fn load(
    client: &Client,
    replica: &str,
    shard: u32,
    shards: u32,
    now_micros: i64,
    retention_micros: i64,
) -> Result<Vec<(String, Seen)>, Error> {
    let layout = KeyLayout::of(client);
    let raw: std::collections::HashMap<String, Bytes> = client.hgetall(layout.shard_key("seen", shard)).await?;
    let mut out = Vec::with_capacity(raw.len());
    let mut gone = Vec::new();
    for (id, value) in raw {
        match decode(&value) {
            None => tracing::warn!(shard, equipement_id = %id, "unreadable seen record skipped"),
            Some(seen) if shard_for(&id, shards) != shard || expired(seen, now_micros, retention_micros) => {
                gone.push(id)
            }
            Some(seen) => out.push((id, seen)),
        }
    }
    if !gone.is_empty() {
        tracing::info!(shard, records = gone.len(), "expired or foreign seen records deleted");
        // From this shard's hash, where they are (a foreign one belongs to another shard now).
        let mut calls = Vec::new();
        shard_calls(&mut calls, layout, replica, shard, &[], &gone.iter().map(String::as_str).collect::<Vec<_>>());
        run(client, calls).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored form, byte by byte, so that a change of `encode` cannot hide a change of
    /// what other versions read.
    #[test]
    fn a_record_is_the_event_time_then_the_wall_time_big_endian() {
        let seen = Seen { last_ts: 0x0102_0304_0506_0708, wall_micros: -2 };
        let raw = encode(seen);
        assert_eq!(raw, [1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(decode(&raw), Some(seen));
    }

    #[test]
    fn a_longer_record_is_read_by_its_first_16_bytes_a_shorter_one_refused() {
        let seen = Seen { last_ts: 7, wall_micros: 9 };
        let mut longer = encode(seen).to_vec();
        longer.extend_from_slice(b"later");
        assert_eq!(decode(&longer), Some(seen));
        assert_eq!(decode(&longer[..15]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn a_record_expires_only_past_the_retention() {
        let seen = Seen { last_ts: 0, wall_micros: 1_000 };
        assert!(!expired(seen, 1_000 + 500, 500), "at the retention: kept");
        assert!(expired(seen, 1_000 + 501, 500));
        assert!(!expired(seen, 0, 500), "a wall time ahead of this replica's clock is kept");
        assert!(!expired(Seen { last_ts: 0, wall_micros: i64::MIN }, i64::MAX, i64::MAX), "no overflow");
    }

    #[test]
    fn writes_are_grouped_by_shard_and_chunked() {
        let shards = 4;
        let ids: Vec<String> = (0..2_500).map(|i| format!("EQ-{i}")).collect();
        let changes = SeenChanges {
            set: ids.iter().map(|id| (id.clone(), Seen { last_ts: 1, wall_micros: 2 })).collect(),
            pruned: vec!["GONE".into()],
        };
        let calls = write_calls(KeyLayout::Single, "a", shards, &changes);
        let mut written = 0;
        for args in &calls {
            let lease = args[2].as_string().unwrap();
            let key = args[3].as_string().unwrap();
            let shard = key.trim_start_matches("proact:detector:seen:{").trim_end_matches('}');
            assert_eq!(lease, format!("proact:detector:lease:{{{shard}}}"), "one hash tag per call");
            let n = args[5].as_i64().unwrap() as usize;
            assert!(n <= CHUNK);
            written += n;
            for pair in args[6..6 + 2 * n].chunks(2) {
                let id = pair[0].as_string().unwrap();
                assert_eq!(shard_for(&id, shards).to_string(), shard);
            }
            if n == 0 {
                assert_eq!(args[6].as_string().as_deref(), Some("GONE"));
            }
        }
        assert_eq!(written, 2_500);
        assert!(write_calls(KeyLayout::Single, "a", shards, &SeenChanges::default()).is_empty());
        for args in write_calls(KeyLayout::Cluster, "a", shards, &changes) {
            let slots: Vec<u16> =
                args[2..4].iter().map(|k| fred::util::redis_keyslot(k.as_string().unwrap().as_bytes())).collect();
            assert_eq!(slots[0], slots[1], "one cluster slot per call: {:?}", &args[2..4]);
        }
    }
}
