//! The alert feed: one reader of the alerts stream per gateway replica, fanned out to every
//! client of this replica, plus replay from any past stream id for clients that resume.

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::streams::XReadResponse;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::AlertEvent;
use prost::Message;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events buffered per client before a slow client is cut off.
pub const CLIENT_BUFFER: usize = 1024;

/// Follows the alerts stream from its current end and broadcasts each event.
pub async fn follow(
    client: Client,
    tx: broadcast::Sender<AlertEvent>,
    ready: proact_server::Readiness,
    shutdown: CancellationToken,
) {
    // Start at the stream's current end, pinned to an id so that nothing added between two
    // reads is skipped (as reading from `$` each time would).
    let mut last = loop {
        match last_id(&client).await {
            Ok(id) => break id.unwrap_or_else(|| "0-0".into()),
            Err(e) => {
                ready.set("redis", false);
                tracing::warn!(error = %e, "alerts stream not reachable");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let mut backoff = Duration::from_millis(50);
    while !shutdown.is_cancelled() {
        let r: Result<XReadResponse<String, String, String, Bytes>, Error> = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = client.xread::<Value, _, _>(Some(512), Some(1000), ALERTS_STREAM, last.as_str()) => r.and_then(proact_server::redis::xread_response),
        };
        match r {
            Ok(resp) => {
                ready.set("redis", true);
                backoff = Duration::from_millis(50);
                for (id, fields) in resp.get(ALERTS_STREAM).cloned().unwrap_or_default() {
                    if let Some(ev) = decode(&id, fields.get(PAYLOAD_FIELD)) {
                        let _ = tx.send(ev);
                    }
                    last = id;
                }
            }
            Err(e) => {
                ready.set("redis", false);
                tracing::warn!(error = %e, "alerts stream read failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn last_id(client: &Client) -> Result<Option<String>, Error> {
    let v: Value = client.xrevrange(ALERTS_STREAM, "+", "-", Some(1)).await?;
    Ok(match v {
        Value::Array(entries) => entries.first().and_then(|e| match e {
            Value::Array(p) => p.first().and_then(|id| id.as_string()),
            _ => None,
        }),
        _ => None,
    })
}

/// Decodes one stream entry; the stream id becomes the event's resume point.
pub fn decode(id: &str, payload: Option<&Bytes>) -> Option<AlertEvent> {
    let mut ev = AlertEvent::decode(payload?.as_ref()).ok()?;
    ev.event_id = id.to_string();
    Some(ev)
}

/// Every event after stream id `after`, in order (what a resuming client missed).
pub async fn replay_after(client: &Client, after: &str, limit: u64) -> Result<Vec<AlertEvent>, Error> {
    let start = format!("({after}");
    let entries: Vec<(String, std::collections::HashMap<String, Bytes>)> =
        client.xrange(ALERTS_STREAM, start.as_str(), "+", Some(limit)).await?;
    Ok(entries.into_iter().filter_map(|(id, f)| decode(&id, f.get(PAYLOAD_FIELD))).collect())
}

/// Compares two stream ids (`ms-seq`).
pub fn id_after(a: &str, b: &str) -> bool {
    fn parse(s: &str) -> (u64, u64) {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    }
    parse(a) > parse(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids_compare_numerically() {
        assert!(super::id_after("10-0", "9-5"));
        assert!(super::id_after("10-10", "10-9"));
        assert!(!super::id_after("10-1", "10-1"));
    }
}
