//! Publishing alert events exactly once.
//!
//! The detector's input is at-least-once (a batch may be redelivered after a crash), so the
//! same transition can be computed twice. Each event is appended by a script that first
//! claims a dedupe key for (alert id, kind): a replayed transition finds the key taken and
//! adds nothing. Both steps run atomically inside Redis, after a third: the publishing
//! replica must still hold the lease of the equipment's shard (see [`crate::leases::Fence`]).

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::AlertEvent;
use prost::Message;

use crate::leases::{lease_key, Fence};

const SCRIPT: &str = r#"
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then
  return -1
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[1])
end
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

/// How long a dedupe key is kept: longer than any redelivery can take.
const DEDUPE_TTL_SECS: u64 = 7 * 24 * 3600;

/// Appends `event` to the alerts stream unless the same (alert, kind) was appended before or,
/// with a `fence`, this replica lost the lease of the equipment's shard.
pub async fn publish_once(client: &Client, event: &AlertEvent, fence: Option<&Fence>) -> Result<Published, Error> {
    let (alert_id, severity, equipment) = event
        .alert
        .as_ref()
        .map(|a| (a.alert_id.as_str(), a.severity, a.equipement_id.as_str()))
        .unwrap_or(("", 0, ""));
    // An episode escalates at most once per severity level, so the level is part of the key.
    let dedupe = format!("proact:alert-dedupe:{alert_id}:{}:{severity}", event.kind);
    let payload = Bytes::from(event.encode_to_vec());
    let (lease, holder) = match fence {
        Some(f) => (lease_key(f.shard_of(equipment)), f.replica.clone()),
        None => (String::new(), String::new()),
    };
    let r: Value = client
        .eval(
            SCRIPT,
            vec![dedupe, ALERTS_STREAM.to_string(), lease],
            vec![
                Value::Bytes(payload),
                Value::from(DEDUPE_TTL_SECS as i64),
                Value::from(PAYLOAD_FIELD),
                Value::from(holder),
            ],
        )
        .await?;
    Ok(match r {
        Value::Integer(-1) => Published::Fenced,
        Value::Null => Published::Duplicate,
        other => other.as_string().map(Published::Added).unwrap_or(Published::Duplicate),
    })
}
