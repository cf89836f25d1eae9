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
use proact_server::backoff::Backoff;
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

/// A knowledge base and where to read a closed work order's intervention from.
pub type KnowledgeSink = (std::sync::Arc<proact_knowledge::KnowledgeBase>, deadpool_postgres::Pool);

/// The technicians' plan and where to read a new work order from.
pub type PlanningSink = (std::sync::Arc<proact_planning::service::Desk>, deadpool_postgres::Pool);

/// A critical work order just created re-plans the days it affects (off the feed's task: a
/// plan takes milliseconds, its inputs a database read). The plan names the order's alert.
fn replan_on_critical(planning: &PlanningSink, event: &WorkOrderEvent) {
    let Some(order) = &event.work_order else { return };
    let created = event.from_state == proact_proto::v1::WorkOrderState::Unspecified as i32;
    if !created || proact_planning::db::priority_class(order.priority) != proact_planning::Priority::Critical {
        return;
    }
    let (desk, pool) = planning.clone();
    let id = order.work_order_id.clone();
    tokio::spawn(async move {
        let result = match proact_planning::db::work_order(&pool, &id).await {
            Ok(Some(order)) => desk.urgent(order).await.map(|plan| plan.moves.len()),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match result {
            Ok(moves) => tracing::info!(work_order = %id, moves, "critical work order: plan re-made"),
            Err(e) => tracing::warn!(error = %e, work_order = %id, "critical work order not planned"),
        }
    });
}

/// Follows the work-order stream from now on and broadcasts each new transition once; a
/// closed order's intervention is made searchable in `knowledge` at once, and a critical
/// order just created re-plans the technicians' week in `planning`.
pub async fn follow_work_orders(
    redis: Client,
    tx: broadcast::Sender<Bytes>,
    knowledge: Option<KnowledgeSink>,
    planning: Option<PlanningSink>,
    shutdown: CancellationToken,
) {
    let mut seen = Seen { set: HashSet::new(), order: VecDeque::new() };
    let mut last = "$".to_string();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = redis.xread::<Value, _, _>(Some(64), Some(1000), WORK_ORDERS_STREAM, last.as_str()) => {
                r.and_then(proact_server::redis::xread_response)
            }
        };
        let resp = match read {
            Ok(r) => {
                backoff.reset();
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the work-order stream failed; retrying");
                if !backoff.wait(&shutdown).await {
                    return;
                }
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
            if let (Some((kb, pool)), Some(order)) = (&knowledge, &event.work_order) {
                if event.to_state == proact_proto::v1::WorkOrderState::Done as i32 {
                    if let Err(e) = proact_knowledge::db::refresh_intervention(kb, pool, &order.work_order_id).await {
                        tracing::warn!(error = %e, work_order = %order.work_order_id, "closed work order not indexed");
                    }
                }
            }
            if let Some(planning) = &planning {
                replan_on_critical(planning, &event);
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
