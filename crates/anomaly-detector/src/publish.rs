//! Publishing alert events exactly once, and recording what they leave of each episode.
//!
//! The detector's input is at-least-once (a batch may be redelivered after a crash), so the
//! same transition can be computed twice. Each event is appended by a script that first
//! claims a dedupe key for (alert id, kind): a replayed transition finds the key taken and
//! adds nothing. Both steps run atomically inside Redis, after a third: the publishing
//! replica must still hold the lease of the equipment's shard (see [`crate::leases::Fence`]).
//!
//! The same script records the equipment's last episode transition in its shard's episode
//! hash (`proact:detector:episodes:{shard}`: the event time of the reading, then the alert).
//! A replica taking the shard over reads it back ([`load_episodes`]): its warm-up re-reads
//! only the stream's tail, which can start after an episode was raised, and would otherwise
//! raise it again on its next abnormal reading. The field is the equipment id for its
//! condition episodes, as from the start, and the id followed by [`NO_DATA_SUFFIX`] for its
//! no-data alarm (added later: a no-data alarm open at a takeover was never cleared).
//!
//! On a Redis Cluster the script's four keys share the alerts stream's slot ([`KeyLayout`]).
//!
//! A batch's events go out in one pipeline ([`publish_batch`]): one round trip, however many
//! alerts a batch raises.
//!
//! Redis replicates asynchronously: an event on the alerts stream's master alone dies with it.
//! [`wait_for_replicas`] asks that master (Redis `WAIT`) whether its replicas hold everything
//! the connection wrote. A duplicate writes too (it renews its dedupe key's expiry), so a
//! `WAIT` after publishing an event again also covers the original append, whichever earlier
//! connection or master made it: replication is in order, and the master holds the dedupe key
//! only with the event.

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{Alert, AlertEvent};
use prost::Message;

use crate::engine::{Episode, EpisodeRecord};
use crate::leases::{eval_command, Fence, KeyLayout};

const SCRIPT: &str = r#"
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then
  return -1
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
  end
  return redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return false
"#;

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Appended under this stream id.
    Added(String),
    /// The same (alert, kind, severity) was appended before.
    Duplicate,
    /// This replica no longer holds the shard's lease: nothing was appended.
    Fenced,
}

/// One event to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub event: AlertEvent,
    /// Event time of the reading that moved the episode: when set (and published under a
    /// fence), the equipment's record of that episode is updated with the event.
    pub at_micros: Option<i64>,
    /// Which of the equipment's records that is.
    pub episode: Episode,
}

/// How long a dedupe key is kept: longer than any redelivery can take.
const DEDUPE_TTL_SECS: u64 = 7 * 24 * 3600;

/// The hash of the last episode transition of each equipment of `shard`.
pub fn episodes_key(layout: KeyLayout, shard: u32) -> String {
    layout.shard_key("episodes", shard)
}

/// Ends the episode hash field of an equipment's no-data alarm. `:` is outside the alphabet
/// of equipment ids (DESIGN, MQTT contract; ingest refuses others), so no id collides with it.
/// A version that predates it reads the field as the condition record of an equipment that
/// never reports, which is harmless.
pub const NO_DATA_SUFFIX: &str = ":nodata";

/// The hash field of an equipment's record of `episode`.
fn record_field(equipment: &str, episode: Episode) -> String {
    match episode {
        Episode::Condition => equipment.to_string(),
        Episode::NoData => format!("{equipment}{NO_DATA_SUFFIX}"),
    }
}

/// An episode record as stored: the event time (8 bytes, big-endian), then the alert. Both
/// kinds of record have this form; the field name says which one it is.
fn encode_record(alert: &Alert, at_micros: i64) -> Bytes {
    let mut buf = at_micros.to_be_bytes().to_vec();
    alert.encode(&mut buf).expect("a Vec grows");
    Bytes::from(buf)
}

fn decode_record(field: &str, raw: &[u8]) -> Option<(String, EpisodeRecord)> {
    let (equipment, episode) = match field.strip_suffix(NO_DATA_SUFFIX) {
        Some(id) => (id, Episode::NoData),
        None => (field, Episode::Condition),
    };
    let (at, alert) = raw.split_at_checked(8)?;
    let at_micros = i64::from_be_bytes(at.try_into().ok()?);
    Some((equipment.to_string(), EpisodeRecord { alert: Alert::decode(alert).ok()?, at_micros, episode }))
}

/// The episode records of `shard`'s equipment (zero to two per equipment: its condition
/// episodes, its no-data alarm); unreadable ones (written by a future version) are skipped
/// with a warning: the equipment then starts from its warm-up alone.
pub async fn load_episodes(client: &Client, shard: u32) -> Result<Vec<(String, EpisodeRecord)>, Error> {
    let raw: std::collections::HashMap<String, Bytes> =
        client.hgetall(episodes_key(KeyLayout::of(client), shard)).await?;
    let mut out = Vec::with_capacity(raw.len());
    for (field, value) in raw {
        match decode_record(&field, &value) {
            Some(r) => out.push(r),
            None => tracing::warn!(shard, field = %field, "unreadable episode record skipped"),
        }
    }
    Ok(out)
}

/// The EVAL arguments of one event: numkeys, keys, then the script's arguments.
fn script_args(layout: KeyLayout, out: &Outgoing, fence: Option<&Fence>) -> Vec<Value> {
    let event = &out.event;
    let (alert_id, severity, equipment) = event
        .alert
        .as_ref()
        .map(|a| (a.alert_id.as_str(), a.severity, a.equipement_id.as_str()))
        .unwrap_or(("", 0, ""));
    // An episode escalates at most once per severity level, so the level is part of the key.
    let dedupe = layout.key(&format!("alert-dedupe:{alert_id}:{}:{severity}", event.kind));
    let payload = Bytes::from(event.encode_to_vec());
    let (lease, holder, episodes) = match fence {
        Some(f) => {
            let shard = f.shard_of(equipment);
            (layout.shard_key("lease", shard), f.replica.clone(), episodes_key(layout, shard))
        }
        // Unfenced: the unused keys must still hash to the dedupe key's slot on a cluster.
        None => (dedupe.clone(), String::new(), dedupe.clone()),
    };
    let (field, record) = match (fence, out.at_micros, event.alert.as_ref()) {
        (Some(_), Some(at), Some(alert)) => (record_field(equipment, out.episode), encode_record(alert, at)),
        _ => (String::new(), Bytes::new()),
    };
    vec![
        Value::from(SCRIPT),
        Value::Integer(4),
        Value::from(dedupe),
        Value::from(ALERTS_STREAM),
        Value::from(lease),
        Value::from(episodes),
        Value::Bytes(payload),
        Value::from(DEDUPE_TTL_SECS as i64),
        Value::from(PAYLOAD_FIELD),
        Value::from(holder),
        Value::from(field),
        Value::Bytes(record),
    ]
}

fn outcome(reply: Value) -> Published {
    match reply {
        Value::Integer(-1) => Published::Fenced,
        Value::Null => Published::Duplicate,
        other => other.as_string().map(Published::Added).unwrap_or(Published::Duplicate),
    }
}

/// Appends `event` to the alerts stream unless the same (alert, kind) was appended before or,
/// with a `fence`, this replica lost the lease of the equipment's shard.
pub async fn publish_once(client: &Client, event: &AlertEvent, fence: Option<&Fence>) -> Result<Published, Error> {
    let out = Outgoing { event: event.clone(), at_micros: None, episode: Episode::Condition };
    let r: Value = client.custom(eval_command(), script_args(KeyLayout::of(client), &out, fence)).await?;
    Ok(outcome(r))
}

/// How many replicas of the alerts stream's master must hold an event before the readings
/// that raised it are acknowledged, and how long one `WAIT` may block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaWait {
    /// 0: no wait.
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// Sends `WAIT` to the alerts stream's master on `client`'s connection to it and returns how
/// many of its replicas hold everything that connection wrote, within `wait.timeout_ms`. The
/// connection blocks meanwhile: it must carry nothing else (the scoring loop's leases and acks
/// go through another client).
pub async fn wait_for_replicas(client: &Client, wait: ReplicaWait) -> Result<i64, Error> {
    let slot = fred::util::redis_keyslot(ALERTS_STREAM.as_bytes());
    let cmd = fred::types::CustomCommand::new_static("WAIT", fred::types::ClusterHash::Custom(slot), false);
    let args = vec![Value::Integer(i64::from(wait.replicas)), Value::Integer(wait.timeout_ms as i64)];
    let reached: Value = client.custom(cmd, args).await?;
    reached.as_i64().ok_or_else(|| Error::new(ErrorKind::Protocol, format!("WAIT replied {reached:?}")))
}

/// Publishes `events` in order, each as [`publish_once`] does, in one round trip; the result
/// has one entry per event. The first failed command fails the whole call: what did go out
/// is deduplicated when the caller retries.
pub async fn publish_batch(client: &Client, events: &[Outgoing], fence: &Fence) -> Result<Vec<Published>, Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let layout = KeyLayout::of(client);
    let pipeline = client.pipeline();
    for out in events {
        let _: () = pipeline.custom(eval_command(), script_args(layout, out, Some(fence))).await?;
    }
    pipeline.try_all::<Value>().await.into_iter().map(|r| r.map(outcome)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proact_proto::v1::AlertState;

    fn alert(id: &str, rule: &str) -> Alert {
        Alert {
            alert_id: id.into(),
            equipement_id: "PUMP-01".into(),
            rule: rule.into(),
            severity: 2,
            state: AlertState::Open as i32,
            ..Default::default()
        }
    }

    /// A record as the version before the no-data record wrote it, spelled out byte by byte
    /// so that a change of `encode_record` cannot hide a change of the stored form: field
    /// `PUMP-01`, value the event time then the alert.
    #[test]
    fn a_record_of_the_previous_version_loads_as_a_condition_record() {
        let a = alert("PUMP-01-30", "temperature_warning");
        let mut old = vec![0, 0, 0, 0, 0, 0, 0, 30];
        old.extend_from_slice(&a.encode_to_vec());
        let (equipment, record) = decode_record("PUMP-01", &old).unwrap();
        assert_eq!(equipment, "PUMP-01");
        assert_eq!(record, EpisodeRecord { alert: a, at_micros: 30, episode: Episode::Condition });
    }

    #[test]
    fn a_no_data_record_loads_under_its_equipment() {
        let a = alert("PUMP-01-nodata-30", "no_data");
        let field = record_field("PUMP-01", Episode::NoData);
        assert_eq!(field, "PUMP-01:nodata");
        let (equipment, record) = decode_record(&field, &encode_record(&a, -7)).unwrap();
        assert_eq!(equipment, "PUMP-01");
        assert_eq!(record, EpisodeRecord { alert: a, at_micros: -7, episode: Episode::NoData });
    }

    /// On a cluster the script's keys, and the alerts stream it appends to, share one slot;
    /// on one Redis the keys are those every earlier version used.
    #[test]
    fn the_script_touches_one_cluster_slot() {
        use fred::util::redis_keyslot;
        let fence = Fence { replica: "r".into(), shards: 8 };
        let mut event = AlertEvent { alert: Some(alert("PUMP-01-30", "temperature_warning")), ..Default::default() };
        event.kind = 1;
        let out = Outgoing { event, at_micros: Some(30), episode: Episode::Condition };
        for fence in [Some(&fence), None] {
            let args = script_args(KeyLayout::Cluster, &out, fence);
            let keys: Vec<String> = args[2..6].iter().map(|k| k.as_string().unwrap()).collect();
            assert_eq!(keys[1], ALERTS_STREAM);
            let slot = redis_keyslot(ALERTS_STREAM.as_bytes());
            for k in &keys {
                assert_eq!(redis_keyslot(k.as_bytes()), slot, "{k} is not in the alerts stream's slot");
            }
        }
        let single: Vec<String> =
            script_args(KeyLayout::Single, &out, Some(&fence))[2..6].iter().map(|k| k.as_string().unwrap()).collect();
        assert_eq!(
            single,
            [
                "proact:alert-dedupe:PUMP-01-30:1:2",
                "proact:alerts",
                "proact:detector:lease:{5}",
                "proact:detector:episodes:{5}"
            ]
        );
    }

    #[test]
    fn a_truncated_record_is_refused() {
        assert!(decode_record("PUMP-01", &[0, 0, 1]).is_none());
    }
}
