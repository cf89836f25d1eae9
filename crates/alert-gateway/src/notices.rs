//! Notices that are not alerts, pushed to every dashboard socket of this replica: the work
//! orders' transitions, read from `proact:workorders` (written by whichever replica served the
//! change, so every dashboard sees it). A notice is a ready WebSocket text frame
//! `{"type":"work_order","event":{…}}`. Unlike alerts they have no resume: a page that
//! connects, or falls behind (`{"type":"work_orders_resync"}`), reloads the list over JSON.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{PAYLOAD_FIELD, WORK_ORDERS_STREAM};
use proact_proto::v1::WorkOrderEvent;
use prost::Message;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::wsframe;

/// Notices a socket may fall behind before it is told to resync.
pub const NOTICE_BUFFER: usize = 256;

/// The frame sent to a socket that missed notices.
pub fn resync_frame() -> Bytes {
    wsframe::text(r#"{"type":"work_orders_resync"}"#)
}

/// Transition ids already broadcast: an event published twice (two replicas draining the
/// same outbox row) reaches the page once.
struct Seen {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Seen {
    const KEEP: usize = 4096;

    fn first_time(&mut self, id: i64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Follows the work-order stream from now on and broadcasts each new transition once.
pub async fn follow_work_orders(redis: Client, tx: broadcast::Sender<Bytes>, shutdown: CancellationToken) {
    let mut seen = Seen { set: HashSet::new(), order: VecDeque::new() };
    let mut last = "$".to_string();
    let mut backoff = Duration::from_millis(100);
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = redis.xread::<Value, _, _>(Some(64), Some(1000), WORK_ORDERS_STREAM, last.as_str()) => {
                r.and_then(proact_server::redis::xread_response)
            }
        };
        let resp = match read {
            Ok(r) => {
                backoff = Duration::from_millis(100);
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the work-order stream failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for (id, fields) in resp.get(WORK_ORDERS_STREAM).cloned().unwrap_or_default() {
            last = id;
            let Some(event) = fields.get(PAYLOAD_FIELD).and_then(|p| WorkOrderEvent::decode(p.as_ref()).ok()) else {
                metrics::counter!("proact_gateway_undecodable_events_total").increment(1);
                continue;
            };
            if !seen.first_time(event.transition_id) {
                continue;
            }
            let json = serde_json::json!({ "type": "work_order", "event": proact_maintenance::http::event(&event) });
            // No receiver (no page open) is not an error.
            let _ = tx.send(wsframe::text(&json.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_is_broadcast_once_and_memory_is_bounded() {
        let mut s = Seen { set: HashSet::new(), order: VecDeque::new() };
        assert!(s.first_time(-1));
        assert!(!s.first_time(-1));
        for i in 0..Seen::KEEP as i64 + 10 {
            s.first_time(i);
        }
        assert_eq!(s.set.len(), Seen::KEEP);
        assert!(s.first_time(-1), "forgotten after KEEP newer ones");
    }
}
