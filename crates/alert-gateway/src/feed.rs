//! The alert feed: one reader of the alerts stream per gateway replica, fanned out to every
//! client of this replica, plus replay from any past stream id for clients that resume.
//!
//! Fan-out is a `tokio::sync::broadcast` ring of batches (one per read of the stream), each
//! encoded once as the WebSocket frames every client receives, laid end to end: the reader
//! never waits for a client (a send overwrites the oldest slot), each client has its own
//! position in the ring, so the ring's capacity is every client's queue bound. A client that falls more than that behind gets `Lagged` and
//! is cut off by its own task (see `ws`), without any other client noticing.
//!
//! Batches are what make thousands of clients affordable: each client wakes once per batch
//! and writes the batch's shared bytes with one syscall, without encoding or copying them. Under load the reader lingers a moment after each read
//! (`linger`) so that a batch gathers the alerts of that moment instead of one each; when
//! alerts are rare, an alert still goes out as soon as it is read.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::streams::XReadResponse;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{Alert, AlertEvent, AlertState};
use proact_server::backoff::Backoff;
use proact_server::otel::{KeyValue, PipelineSpan, Tracing};
use prost::Message;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::criticality::Criticality;

/// Default bound of each client's queue (the broadcast ring), in batches (one per read of the stream).
pub const CLIENT_BUFFER: usize = 1024;
/// Entries read per replay page.
const REPLAY_PAGE: u64 = 500;
/// Alerts remembered by [`Recent`].
const RECENT_ALERTS: usize = 20_000;

/// A position in the alerts stream (`ms-seq`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// Parses `ms-seq` (or a bare `ms`, as Redis accepts); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(Self { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One alert event as every client receives it: decoded once, serialised once, framed once.
#[derive(Debug)]
pub struct FeedEvent {
    pub id: StreamId,
    pub event: AlertEvent,
    /// The WebSocket text frame carrying the event's JSON (server frames are not masked, so
    /// these bytes are the same for every client; cheap to clone: shared).
    pub frame: Bytes,
    json_at: usize,
}

pub type Frame = Arc<FeedEvent>;

impl FeedEvent {
    pub fn new(id: StreamId, event: AlertEvent, crit: &Criticality) -> Frame {
        let json = crate::json::event(&event, crit).to_string();
        let frame = crate::wsframe::text(&json);
        let json_at = frame.len() - json.len();
        Arc::new(Self { id, event, frame, json_at })
    }

    /// The JSON text of the WebSocket message.
    pub fn json(&self) -> &[u8] {
        &self.frame[self.json_at..]
    }
}

/// What the feed broadcasts: the events of one read of the stream, in order, and their
/// frames end to end, so that a client that is up to date gets the whole batch in one write.
#[derive(Debug)]
pub struct FeedBatch {
    pub events: Vec<Frame>,
    /// The frames of `events`, concatenated (copied once per batch, not once per client).
    wire: Bytes,
    /// Where each event's frame ends in `wire`.
    ends: Vec<usize>,
}

impl FeedBatch {
    pub fn new(events: Vec<Frame>) -> Self {
        let mut wire = bytes::BytesMut::with_capacity(events.iter().map(|e| e.frame.len()).sum());
        let mut ends = Vec::with_capacity(events.len());
        for e in &events {
            wire.extend_from_slice(&e.frame);
            ends.push(wire.len());
        }
        Self { events, wire: wire.freeze(), ends }
    }

    /// The frames of `events[from..]`, without a copy.
    pub fn wire_from(&self, from: usize) -> Bytes {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        self.wire.slice(start..)
    }
}

/// Latest known state of recently seen alerts, by id: lets an operator act on an alert the
/// archive has not written yet, and keeps operator fields on later detector events.
#[derive(Debug, Default)]
pub struct Recent {
    by_id: HashMap<String, Alert>,
    order: VecDeque<String>,
}

pub type SharedRecent = Arc<Mutex<Recent>>;

impl Recent {
    pub fn get(&self, alert_id: &str) -> Option<Alert> {
        self.by_id.get(alert_id).cloned()
    }

    /// Records `alert` as the latest state of its id (after [`merge_operator_fields`]).
    pub fn put(&mut self, alert: Alert) {
        if !self.by_id.contains_key(&alert.alert_id) {
            self.order.push_back(alert.alert_id.clone());
            if self.order.len() > RECENT_ALERTS {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
        self.by_id.insert(alert.alert_id.clone(), alert);
    }
}

/// The detector knows nothing of operators: its later events for an episode (escalated,
/// cleared) carry empty operator fields. They keep what an operator already set, and an
/// acknowledged alert does not go back to open.
pub fn merge_operator_fields(known: &Alert, next: &mut Alert) {
    if next.acknowledged_by.is_empty() {
        next.acknowledged_by.clone_from(&known.acknowledged_by);
    }
    if next.comment.is_empty() {
        next.comment.clone_from(&known.comment);
    }
    if next.assigned_to.is_empty() {
        next.assigned_to.clone_from(&known.assigned_to);
    }
    if next.state == AlertState::Open as i32 && known.state == AlertState::Acknowledged as i32 {
        next.state = AlertState::Acknowledged as i32;
    }
}

/// Follows the alerts stream from its current end and broadcasts its events to `tx`, one
/// batch per read, waiting `linger` after each non-empty read.
/// What the feed hands its events to, besides the broadcast channel.
pub struct Outlets {
    /// The latest state of recent alerts (the JSON API's view).
    pub recent: SharedRecent,
    /// Each alert's priority, rendered into its frame.
    pub crit: Criticality,
    pub ready: proact_server::Readiness,
    pub traces: Tracing,
}

pub async fn follow(
    client: Client,
    tx: broadcast::Sender<Arc<FeedBatch>>,
    linger: Duration,
    outlets: Outlets,
    shutdown: CancellationToken,
) {
    let Outlets { recent, crit, ready, traces } = outlets;
    // Start at the stream's current end, pinned to an id so that nothing added between two
    // reads is skipped (as reading from `$` each time would).
    let mut last = loop {
        match last_id(&client).await {
            Ok(id) => break id.unwrap_or_default(),
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
    ready.set("redis", true);
    let mut backoff = Backoff::server_call();
    while !shutdown.is_cancelled() {
        let from = last.to_string();
        let r: Result<XReadResponse<String, String, String, Bytes>, Error> = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = client.xread::<Value, _, _>(Some(512), Some(1000), ALERTS_STREAM, from.as_str()) => r.and_then(proact_server::redis::xread_response),
        };
        match r {
            Ok(resp) => {
                ready.set("redis", true);
                backoff.reset();
                let read_at = std::time::SystemTime::now();
                let mut batch = Vec::new();
                let mut spans: Vec<PipelineSpan> = Vec::new();
                for (id, fields) in resp.get(ALERTS_STREAM).cloned().unwrap_or_default() {
                    let Some(sid) = StreamId::parse(&id) else { continue };
                    last = sid;
                    let Some(mut ev) = decode(&id, fields.get(PAYLOAD_FIELD)) else {
                        metrics::counter!("proact_gateway_undecodable_events_total").increment(1);
                        continue;
                    };
                    if let Some(a) = ev.alert.as_mut() {
                        let mut r = recent.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(known) = r.get(&a.alert_id) {
                            merge_operator_fields(&known, a);
                        }
                        r.put(a.clone());
                    }
                    if let Some(mut span) = traces.follow("gateway.broadcast", &ev.trace_context, read_at, Vec::new()) {
                        if let Some(a) = &ev.alert {
                            span.set_attribute(KeyValue::new("alert_id", a.alert_id.clone()));
                            span.set_attribute(KeyValue::new("equipement_id", a.equipement_id.clone()));
                        }
                        span.set_attribute(KeyValue::new("alert.event_id", id.clone()));
                        spans.push(span);
                    }
                    batch.push(FeedEvent::new(sid, ev, &crit));
                }
                if batch.is_empty() {
                    continue;
                }
                metrics::counter!("proact_gateway_feed_events_total").increment(batch.len() as u64);
                // No receiver is not an error: the events are in the stream for later resumes.
                let clients = tx.receiver_count() as i64;
                let _ = tx.send(Arc::new(FeedBatch::new(batch)));
                for mut span in spans {
                    span.set_attribute(KeyValue::new("ws.clients", clients));
                    span.end();
                }
                if !linger.is_zero() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(linger) => {}
                    }
                }
            }
            Err(e) => {
                ready.set("redis", false);
                tracing::warn!(error = %e, "alerts stream read failed");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}

async fn last_id(client: &Client) -> Result<Option<StreamId>, Error> {
    let v: Value = client.xrevrange(ALERTS_STREAM, "+", "-", Some(1)).await?;
    Ok(match v {
        Value::Array(entries) => entries.first().and_then(|e| match e {
            Value::Array(p) => p.first().and_then(|id| id.as_string()).and_then(|s| StreamId::parse(&s)),
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

/// One fuzzing step, shared by the libFuzzer target (`crates/alert-gateway/fuzz`) and the
/// stable corpus-replay test: the bytes are an alerts-stream entry's payload (an empty input:
/// an entry without one). Panics if decoding panics, or if an event it accepts does not
/// become the WebSocket message the page reads (JSON, its stream id as `event_id`), or
/// breaks the merge of operator fields.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    const ID: &str = "1700000000000-7";
    let payload = (!data.is_empty()).then(|| Bytes::copy_from_slice(data));
    let Some(event) = decode(ID, payload.as_ref()) else { return };
    assert_eq!(event.event_id, ID);
    let frame = FeedEvent::new(StreamId::parse(ID).expect("a stream id"), event, &Criticality::default());
    let v: serde_json::Value = serde_json::from_slice(frame.json()).expect("the message is JSON");
    assert_eq!((v["type"].as_str(), v["event_id"].as_str()), (Some("alert"), Some(ID)));
    assert!(v["kind"].is_string());
    if let Some(known) = &frame.event.alert {
        assert_eq!(v["alert"]["alert_id"].as_str(), Some(known.alert_id.as_str()));
        let mut next = Alert { alert_id: known.alert_id.clone(), state: AlertState::Open as i32, ..Default::default() };
        merge_operator_fields(known, &mut next);
        assert_eq!(next.acknowledged_by, known.acknowledged_by);
        let mut recent = Recent::default();
        recent.put(next);
        assert!(recent.get(&known.alert_id).is_some());
    }
}

/// Up to `count` events after stream id `after`, in order.
pub async fn replay_page(
    client: &Client,
    after: StreamId,
    count: u64,
    crit: &Criticality,
) -> Result<Vec<Frame>, Error> {
    let start = format!("({after}");
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        client.xrange(ALERTS_STREAM, start.as_str(), "+", Some(count)).await?;
    Ok(entries
        .into_iter()
        .filter_map(|(id, f)| {
            let sid = StreamId::parse(&id)?;
            Some(FeedEvent::new(sid, decode(&id, f.get(PAYLOAD_FIELD))?, crit))
        })
        .collect())
}

/// The most recent state of `alert_id` in the last `scan` entries of the alerts stream.
pub async fn find_in_stream(client: &Client, alert_id: &str, scan: u64) -> Result<Option<Alert>, Error> {
    let entries: Vec<(String, HashMap<String, Bytes>)> = client.xrevrange(ALERTS_STREAM, "+", "-", Some(scan)).await?;
    Ok(entries
        .into_iter()
        .filter_map(|(id, f)| decode(&id, f.get(PAYLOAD_FIELD)).and_then(|e| e.alert))
        .find(|a| a.alert_id == alert_id))
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The client fell more than its queue behind the live feed (that many batches lost).
    #[error("too slow: {0} batches of alerts behind")]
    Lagged(u64),
    #[error("replay from the alerts stream failed: {0}")]
    Replay(#[from] Error),
}

/// One client's view of the feed: what it missed after its resume point (replayed from the
/// stream, in pages), then the live feed, each event exactly once and in stream order.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<FeedBatch>>,
    redis: Client,
    /// Renders the priority of replayed alerts.
    crit: Criticality,
    /// The last id queued: anything at or before it is a duplicate.
    last: StreamId,
    replaying: bool,
    backlog: VecDeque<Pending>,
}

/// Events queued for a client, in order.
enum Pending {
    /// A replayed event.
    One(Frame),
    /// A live batch from this event on (the ones before it were delivered already).
    Run(Arc<FeedBatch>, usize),
}

/// Consecutive events as their WebSocket frames, ready to write.
#[derive(Debug, Clone)]
pub struct Wire {
    pub bytes: Bytes,
    pub events: usize,
}

impl Subscription {
    /// `rx` must be subscribed before the replay starts, so nothing falls in between.
    pub fn new(
        rx: broadcast::Receiver<Arc<FeedBatch>>,
        redis: Client,
        after: Option<StreamId>,
        crit: Criticality,
    ) -> Self {
        Self { rx, redis, crit, last: after.unwrap_or_default(), replaying: after.is_some(), backlog: VecDeque::new() }
    }

    /// The next event; `Ok(None)` once the feed is closed. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Frame>, SubscriptionError> {
        Ok(if self.fill().await? { self.pop_event() } else { None })
    }

    /// The next event if one is ready now (to batch writes), else `None`.
    pub fn try_next(&mut self) -> Option<Result<Frame, SubscriptionError>> {
        match self.try_fill()? {
            Ok(()) => self.pop_event().map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    /// The next events as frames: a whole live batch (shared bytes), or one replayed
    /// event; `Ok(None)` once the feed is closed. Cancel-safe.
    pub async fn next_wire(&mut self) -> Result<Option<Wire>, SubscriptionError> {
        Ok(if self.fill().await? { self.pop_wire() } else { None })
    }

    /// [`Self::next_wire`] if something is ready now, else `None`.
    pub fn try_next_wire(&mut self) -> Option<Result<Wire, SubscriptionError>> {
        match self.try_fill()? {
            Ok(()) => self.pop_wire().map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    /// Waits until something is queued; `false` once the feed is closed. Cancel-safe: state
    /// only changes after an await completes.
    async fn fill(&mut self) -> Result<bool, SubscriptionError> {
        loop {
            if !self.backlog.is_empty() {
                return Ok(true);
            }
            if self.replaying {
                let page = replay_page(&self.redis, self.last, REPLAY_PAGE, &self.crit).await?;
                self.replaying = page.len() as u64 == REPLAY_PAGE;
                if let Some(f) = page.last() {
                    self.last = f.id;
                }
                self.backlog.extend(page.into_iter().map(Pending::One));
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) => self.take(batch),
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(SubscriptionError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Ok(false),
            }
        }
    }

    /// Queues what is ready now; `None` if nothing is.
    fn try_fill(&mut self) -> Option<Result<(), SubscriptionError>> {
        loop {
            if !self.backlog.is_empty() {
                return Some(Ok(()));
            }
            if self.replaying {
                return None;
            }
            match self.rx.try_recv() {
                Ok(batch) => self.take(batch),
                Err(broadcast::error::TryRecvError::Lagged(n)) => return Some(Err(SubscriptionError::Lagged(n))),
                Err(_) => return None,
            }
        }
    }

    fn pop_event(&mut self) -> Option<Frame> {
        match self.backlog.pop_front()? {
            Pending::One(f) => Some(f),
            Pending::Run(batch, i) => {
                let f = batch.events[i].clone();
                if i + 1 < batch.events.len() {
                    self.backlog.push_front(Pending::Run(batch, i + 1));
                }
                Some(f)
            }
        }
    }

    fn pop_wire(&mut self) -> Option<Wire> {
        Some(match self.backlog.pop_front()? {
            Pending::One(f) => Wire { bytes: f.frame.clone(), events: 1 },
            Pending::Run(batch, i) => Wire { bytes: batch.wire_from(i), events: batch.events.len() - i },
        })
    }

    /// Queues the events of `batch` not delivered yet (the replay, or before the resume
    /// point, may have covered some: always a prefix, since a batch is in stream order).
    fn take(&mut self, batch: Arc<FeedBatch>) {
        if let Some(i) = batch.events.iter().position(|f| f.id > self.last) {
            self.last = batch.events[batch.events.len() - 1].id;
            self.backlog.push_back(Pending::Run(batch, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_numerically() {
        let p = |s| StreamId::parse(s).unwrap();
        assert!(p("10-0") > p("9-5"));
        assert!(p("10-10") > p("10-9"));
        assert_eq!(p("10"), p("10-0"));
        assert_eq!(p("1700000000000-3").to_string(), "1700000000000-3");
        assert!(StreamId::parse("abc").is_none());
        assert!(StreamId::parse("1-x").is_none());
    }

    #[test]
    fn detector_events_keep_operator_fields() {
        let known = Alert {
            alert_id: "A".into(),
            state: AlertState::Acknowledged as i32,
            acknowledged_by: "léa".into(),
            comment: "on y va".into(),
            assigned_to: "T03".into(),
            ..Default::default()
        };
        let mut escalated = Alert { alert_id: "A".into(), state: AlertState::Open as i32, ..Default::default() };
        merge_operator_fields(&known, &mut escalated);
        assert_eq!(escalated.state, AlertState::Acknowledged as i32);
        assert_eq!((escalated.acknowledged_by.as_str(), escalated.assigned_to.as_str()), ("léa", "T03"));
        let mut cleared = Alert { alert_id: "A".into(), state: AlertState::Cleared as i32, ..Default::default() };
        merge_operator_fields(&known, &mut cleared);
        assert_eq!(cleared.state, AlertState::Cleared as i32);
        assert_eq!(cleared.comment, "on y va");
    }

    fn event(id: &str, alert_id: &str) -> Frame {
        let alert = Alert { alert_id: alert_id.into(), ..Default::default() };
        FeedEvent::new(
            StreamId::parse(id).unwrap(),
            AlertEvent { event_id: id.into(), alert: Some(alert), ..Default::default() },
            &Criticality::default(),
        )
    }

    #[test]
    fn a_batch_is_its_events_frames_end_to_end() {
        let events: Vec<Frame> = (1..=3).map(|i| event(&format!("5-{i}"), &format!("A{i}"))).collect();
        let batch = FeedBatch::new(events.clone());
        let concat = |from: usize| events[from..].iter().flat_map(|e| e.frame.to_vec()).collect::<Vec<u8>>();
        for from in 0..=3 {
            assert_eq!(&batch.wire_from(from)[..], &concat(from)[..], "from {from}");
        }
        // Each frame is the text frame of the event's JSON.
        let e = &events[1];
        assert_eq!(&e.frame[..], &crate::wsframe::text(std::str::from_utf8(e.json()).unwrap())[..]);
        let v: serde_json::Value = serde_json::from_slice(e.json()).unwrap();
        assert_eq!(v["event_id"], "5-2");
    }

    #[tokio::test]
    async fn live_batches_skip_what_was_delivered_and_keep_order() {
        let (tx, rx) = broadcast::channel(16);
        // Resumed after 5-2 and caught up: the live batch overlaps the resume point.
        let mut sub = Subscription {
            replaying: false,
            ..Subscription::new(rx, Client::default(), StreamId::parse("5-2"), Criticality::default())
        };
        let events: Vec<Frame> = (1..=4).map(|i| event(&format!("5-{i}"), &format!("A{i}"))).collect();
        tx.send(Arc::new(FeedBatch::new(events.clone()))).unwrap();
        tx.send(Arc::new(FeedBatch::new(events[..2].to_vec()))).unwrap(); // all old: skipped
        tx.send(Arc::new(FeedBatch::new(vec![event("6-0", "A5")]))).unwrap();
        let w = sub.next_wire().await.unwrap().unwrap();
        assert_eq!(w.events, 2);
        assert_eq!(&w.bytes[..], &[&events[2].frame[..], &events[3].frame[..]].concat()[..]);
        let w = sub.try_next_wire().unwrap().unwrap();
        assert_eq!(w.events, 1);
        assert!(sub.try_next_wire().is_none());
        // The per-event view (gRPC) sees the same order.
        tx.send(Arc::new(FeedBatch::new((7..=9).map(|i| event(&format!("{i}-0"), "B")).collect()))).unwrap();
        let ids: Vec<String> = std::iter::from_fn(|| sub.try_next().map(|f| f.unwrap().id.to_string())).collect();
        assert_eq!(ids, ["7-0", "8-0", "9-0"]);
        drop(tx);
        assert!(sub.next_wire().await.unwrap().is_none());
    }

    #[test]
    fn recent_is_bounded() {
        let mut r = Recent::default();
        for i in 0..RECENT_ALERTS + 10 {
            r.put(Alert { alert_id: format!("A{i}"), ..Default::default() });
        }
        assert!(r.get("A0").is_none());
        assert!(r.get(&format!("A{}", RECENT_ALERTS + 9)).is_some());
        assert_eq!(r.by_id.len(), RECENT_ALERTS);
    }
}
