//! Publishing alert events exactly once.
//!
//! The detector's input is at-least-once (a batch may be redelivered after a crash), so the
//! same transition can be computed twice. Each event is appended by a script that first
//! claims a dedupe key for (alert id, kind): a replayed transition finds the key taken and
//! adds nothing. Both steps run atomically inside Redis.

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::AlertEvent;
use prost::Message;

const SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[1])
end
return false
"#;

/// How long a dedupe key is kept: longer than any redelivery can take.
const DEDUPE_TTL_SECS: u64 = 7 * 24 * 3600;

/// Appends `event` to the alerts stream unless the same (alert, kind) was appended before.
/// Returns the new entry id, or `None` for a duplicate.
pub async fn publish_once(client: &Client, event: &AlertEvent) -> Result<Option<String>, Error> {
    let (alert_id, severity) = event.alert.as_ref().map(|a| (a.alert_id.as_str(), a.severity)).unwrap_or(("", 0));
    // An episode escalates at most once per severity level, so the level is part of the key.
    let dedupe = format!("proact:alert-dedupe:{alert_id}:{}:{severity}", event.kind);
    let payload = Bytes::from(event.encode_to_vec());
    let r: Value = client
        .eval(
            SCRIPT,
            vec![dedupe, ALERTS_STREAM.to_string()],
            vec![Value::Bytes(payload), Value::from(DEDUPE_TTL_SECS as i64), Value::from(PAYLOAD_FIELD)],
        )
        .await?;
    Ok(r.as_string())
}
