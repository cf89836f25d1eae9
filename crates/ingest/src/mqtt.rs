//! MQTT intake: a persistent session with manual acknowledgements, a shared subscription so
//! replicas split the load, and a bounded queue between the broker connection and the
//! writer, so a slow or absent Redis stops reading instead of buffering without bound.
//!
//! A message is acked to the broker only after the batch that carries it is in the streams;
//! if the process dies before that, the broker redelivers it (persistent session, QoS 1).
//!
//! Acks and reconnects: a PUBACK names a packet id, and packet ids are per connection. A
//! message read on one connection must never be acked on the next one: the broker has
//! resent it there under the same id, and once that copy is acked the id is free for a new
//! message, which a second, late ack would then acknowledge unwritten. So every message
//! carries the *epoch* (connection generation) it arrived in, and is acked only while that
//! epoch is current. The epoch moves, under the same lock the writer holds while it queues
//! acks, when the connection fails; at that moment rumqttc's request channel is also purged
//! of PUBACKs (`EventLoop::clean`), so none queued for the old connection goes out on the
//! new one. Messages of an old epoch are written but not acked: their redelivered copies are
//! (the duplicates carry the same (equipement_id, ts), which downstream deduplicates).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use proact_proto::time::now_micros;
use proact_proto::v1::{DeadLetter, Telemetry};
use proact_server::backoff::Backoff;
use proact_server::otel::{PipelineSpan, Tracing};
use proact_server::Readiness;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::security::Allowlist;
use crate::sink::{dead_letter, StreamSink, DLQ_PAYLOAD_LIMIT};
use crate::sparkplug;
use crate::validate::{oversize, parse_mqtt_payload, reason_label, Limits, Rejection};

/// MQTT intake settings.
#[derive(Clone)]
pub struct MqttIntake {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `mqtts://`: the rustls client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Topic filter, e.g. `$share/proact-ingest/sensors/+/telemetry`.
    pub topic: String,
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Messages per second above which a batch waits up to `max_wait` to fill.
    pub wait_above: f64,
    pub queue: usize,
    pub keep_alive: Duration,
    /// Capacity of rumqttc's request channel (see [`REQUEST_CHANNEL`]).
    pub request_channel: usize,
    /// Most queued PUBACKs written before one flush ([`ACK_FLUSH_BATCH`] by default).
    pub ack_batch: usize,
    pub limits: Limits,
    pub allow: Allowlist,
    /// How long a drain may take on shutdown before unwritten messages are left to redelivery.
    pub grace: Duration,
    /// Starts a trace per sampled reading (see `proact_server::otel`).
    pub tracing: Tracing,
    /// Sparkplug B intake, when on: its filters are subscribed besides `topic`.
    pub sparkplug: Option<sparkplug::Settings>,
}

/// A message and the connection generation it arrived in.
struct Inbound {
    publish: Publish,
    epoch: u64,
    /// When it was read from the socket, if traced: its span starts there.
    at: Option<SystemTime>,
    /// The payload's size when it was over the limit: `publish` then holds only the head
    /// that its dead letter keeps.
    oversize: Option<usize>,
}

/// The largest packet MQTT can frame (a remaining length of 268,435,455 plus the fixed
/// header). The client reads any packet up to it: a packet it refused would fail the
/// connection, and the persistent session would redeliver it on every reconnect, so one
/// large message would stop the intake for good. A payload over the service's limit is cut
/// to the head its dead letter keeps as soon as it is read, so at most one such packet is
/// in memory at a time; the broker's `message_size_limit` keeps them small in the first
/// place (docs/deploy.md).
pub const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

/// Capacity of rumqttc's request channel. Its only steady traffic is our PUBACKs, one per
/// message the broker has in flight to us, and MQTT packet ids (16 bit) bound those for a
/// broker that keeps to its in-flight window. rumqttc 0.25 sends one request per turn of
/// its event loop but reads up to ten packets per turn, so under a flood (a broker that does
/// not hold its window: Mosquitto 2.0.11 lets a whole window out per PUBACK) acks fall
/// behind and this channel fills. Acks that do not fit wait in the writer ([`AckQueue`]):
/// the writer never blocks on the event loop (which may itself be waiting for room in our
/// queue), and no ack of a written message is ever dropped.
pub const REQUEST_CHANNEL: usize = u16::MAX as usize + 1024;

/// How often the writer retries its deferred acks while no message arrives.
const ACK_RETRY: Duration = Duration::from_millis(5);

/// The current connection epoch and the PUBACKs of written messages that did not fit in
/// rumqttc's request channel yet. One lock for both: the reader moves the epoch (and drops
/// the old epoch's acks: those messages are redelivered on the new connection and acked
/// there) under it, and acks are only put into the channel under it, so no ack of an old
/// connection can reach a new one.
#[derive(Default)]
struct Acks {
    epoch: u64,
    deferred: std::collections::VecDeque<u16>,
}

impl Acks {
    /// Queues the acks of `batch` that belong to the current epoch and moves as many as fit
    /// into the client's channel. Returns the stale acks skipped.
    fn push(&mut self, client: &AsyncClient, batch: &[Inbound]) -> u64 {
        let mut stale = 0;
        for m in batch {
            if m.epoch != self.epoch {
                stale += 1;
            } else if m.publish.qos != QoS::AtMostOnce {
                self.deferred.push_back(m.publish.pkid);
            }
        }
        self.flush(client);
        stale
    }

    /// The connection failed: a new epoch, and the old one's deferred acks dropped (counted
    /// as stale).
    fn next_epoch(&mut self) -> (u64, u64) {
        self.epoch += 1;
        let dropped = self.deferred.len() as u64;
        self.deferred.clear();
        (self.epoch, dropped)
    }

    /// Moves deferred acks into the client's channel until it is full.
    fn flush(&mut self, client: &AsyncClient) {
        while let Some(&pkid) = self.deferred.front() {
            let mut ack = Publish::new("", QoS::AtLeastOnce, Vec::new());
            ack.pkid = pkid;
            if client.try_ack(&ack).is_err() {
                break;
            }
            self.deferred.pop_front();
        }
    }
}

/// [`Acks`] behind its lock, with the number of deferred acks mirrored outside it: the
/// reader looks at that after every ack the event loop sends, and takes the lock only when
/// some wait (never, with a broker that keeps to its window), not once per message.
#[derive(Default)]
struct SharedAcks {
    acks: Mutex<Acks>,
    waiting: std::sync::atomic::AtomicUsize,
}

impl SharedAcks {
    /// Runs `f` under the lock, then mirrors the deferred count; returns that count.
    fn with<R>(&self, f: impl FnOnce(&mut Acks) -> R) -> (R, usize) {
        let mut a = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut a);
        let left = a.deferred.len();
        self.waiting.store(left, std::sync::atomic::Ordering::Relaxed);
        (r, left)
    }

    fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An ack left the request channel: moves deferred ones into the room, if any wait.
    fn top_up(&self, client: &AsyncClient) {
        if self.waiting() > 0 {
            self.with(|a| a.flush(client));
        }
    }
}

/// Most queued requests (in practice: PUBACKs) rumqttc's event loop writes before one flush.
/// Upstream writes one per turn of its loop while it reads up to ten packets a turn; the
/// vendored copy batches them (vendor/PATCHES.md). 512 acks are 2 KiB on the wire.
pub const ACK_FLUSH_BATCH: usize = 512;

/// Runs the intake until `shutdown`; on shutdown stops reading, writes and acks what it
/// holds, and returns.
pub async fn run(
    cfg: MqttIntake,
    sink: StreamSink,
    ready: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(cfg.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_request_batch(cfg.ack_batch)
        .set_max_packet_size(MQTT_MAX_PACKET, 64 * 1024);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u.clone(), p.clone());
    } else if let Some(u) = &cfg.username {
        opts.set_credentials(u.clone(), "");
    }
    if let Some(tls) = &cfg.tls {
        opts.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.clone())));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, cfg.request_channel);
    // Acknowledgements go out as soon as they are flushed: with Nagle's algorithm a small
    // PUBACK waits for the previous segment's ACK (delayed by up to 40 ms on Linux).
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (tx, rx) = mpsc::channel::<Inbound>(cfg.queue);
    let acks: Arc<SharedAcks> = Arc::default();
    let writer_done = CancellationToken::new();
    let reader = tokio::spawn(read_loop(ReadLoop {
        eventloop,
        client: client.clone(),
        topics: std::iter::once(cfg.topic.clone())
            .chain(cfg.sparkplug.iter().flat_map(|s| s.filters.iter().cloned()))
            .collect(),
        tx,
        ready: ready.clone(),
        acks: acks.clone(),
        stop: shutdown.clone(),
        writer_done: writer_done.clone(),
        grace: cfg.grace,
        timestamps: cfg.tracing.enabled(),
        max_payload: cfg.limits.max_payload_bytes,
    }));
    let mut writer = tokio::spawn(write_loop(cfg.clone(), client, rx, sink, ready, acks));
    shutdown.cancelled().await;
    // Drain: the reader stops reading and drops the queue's sender; the writer empties the
    // queue and acks; the reader flushes those acks to the broker, then disconnects.
    if tokio::time::timeout(cfg.grace, &mut writer).await.is_err() {
        writer.abort();
        tracing::warn!("drain did not finish in the grace period; unacked messages will be redelivered");
    }
    writer_done.cancel();
    let _ = reader.await;
    Ok(())
}

struct ReadLoop {
    eventloop: EventLoop,
    client: AsyncClient,
    /// Topic filters, subscribed in one SUBSCRIBE (so one SUBACK says they all hold).
    topics: Vec<String>,
    tx: mpsc::Sender<Inbound>,
    ready: Readiness,
    acks: Arc<SharedAcks>,
    stop: CancellationToken,
    writer_done: CancellationToken,
    grace: Duration,
    /// Note when each message arrived (only for tracing).
    timestamps: bool,
    /// Payloads over this many bytes are cut at once (see [`MQTT_MAX_PACKET`]).
    max_payload: usize,
}

async fn read_loop(r: ReadLoop) {
    let ReadLoop { mut eventloop, client, topics, tx, ready, acks, stop, writer_done, grace, timestamps, max_payload } =
        r;
    let stale_total = metrics::counter!("proact_ingest_stale_acks_skipped_total");
    let received = metrics::counter!("proact_ingest_received_total", "source" => "mqtt");
    let queue_depth = metrics::gauge!("proact_ingest_queue_depth");
    let reconnects = metrics::counter!("proact_ingest_mqtt_reconnects_total");
    let errors = metrics::counter!("proact_ingest_mqtt_connection_errors_total");
    let connected = metrics::gauge!("proact_ingest_mqtt_connected");
    let mut current = 0u64;
    let mut connected_once = false;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(mut publish))) => {
                received.increment(1);
                let oversize = (publish.payload.len() > max_payload).then(|| publish.payload.len());
                if oversize.is_some() {
                    // A copy, not a slice: a slice would keep the whole packet alive.
                    let head = publish.payload.len().min(DLQ_PAYLOAD_LIMIT + 1);
                    publish.payload = bytes::Bytes::copy_from_slice(&publish.payload[..head]);
                }
                queue_depth.set((tx.max_capacity() - tx.capacity()) as f64);
                // Waiting here is the backpressure: the event loop is not polled, so the
                // socket is not read and the broker holds the messages.
                let at = timestamps.then(SystemTime::now);
                let send = tx.send(Inbound { publish, epoch: current, at, oversize });
                tokio::select! {
                    _ = stop.cancelled() => break,
                    sent = send => if sent.is_err() { break },
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Ready only once the subscription is in place: before it, the broker
                // would drop what is published to the shared subscription.
                ready.set("mqtt", true);
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                connected.set(1.0);
                if connected_once {
                    reconnects.increment(1);
                }
                connected_once = true;
                tracing::info!(session_present = ack.session_present, epoch = current, "connected to the MQTT broker");
                // Subscribing again is harmless with a present session and needed without one.
                let filters = topics.iter().map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "subscribe request failed");
                }
            }
            Ok(Event::Outgoing(Outgoing::PubAck(_))) => acks.top_up(&client),
            Ok(_) => {}
            Err(e) => {
                ready.set("mqtt", false);
                connected.set(0.0);
                errors.increment(1);
                // Under the ack lock: no ack of the old connection can slip into the request
                // channel after this purge.
                let ((epoch, dropped), _) = acks.with(|a| {
                    let next = a.next_epoch();
                    eventloop.clean();
                    next
                });
                current = epoch;
                stale_total.increment(dropped);
                tracing::warn!(error = %e, retry_in_ms = backoff.peek().as_millis() as u64, "MQTT connection lost");
                if !backoff.wait(&stop).await {
                    break;
                }
            }
        }
    }
    drop(tx);
    // Keep the connection serviced while the writer drains, so its acks reach the broker;
    // what arrives meanwhile is not taken (it stays unacked and is redelivered later).
    let flush = async {
        let mut disconnect_sent = false;
        loop {
            tokio::select! {
                _ = writer_done.cancelled(), if !disconnect_sent => {
                    // Queued after every ack: once it is out, so are they. (A full request
                    // channel still holds acks: try again once some have gone out.)
                    disconnect_sent = client.try_disconnect().is_ok();
                    if !disconnect_sent {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                e = eventloop.poll() => match e {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(Event::Outgoing(Outgoing::PubAck(_))) => acks.top_up(&client),
                    _ => {}
                }
            }
        }
    };
    let _ = tokio::time::timeout(grace + Duration::from_secs(1), flush).await;
    connected.set(0.0);
}

/// Messages per second read from the broker, over the last complete window of
/// [`ArrivalRate::WINDOW`]: what decides whether a batch waits to fill.
#[derive(Debug)]
struct ArrivalRate {
    window_start: std::time::Instant,
    count: usize,
    rate: f64,
}

impl ArrivalRate {
    /// Long enough to hold many batches at the rates where waiting pays, short enough that a
    /// surge turns the wait on within a fraction of a second.
    const WINDOW: Duration = Duration::from_millis(100);

    fn new(now: std::time::Instant) -> Self {
        Self { window_start: now, count: 0, rate: 0.0 }
    }

    fn record(&mut self, messages: usize, now: std::time::Instant) {
        self.count += messages;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Self::WINDOW {
            self.rate = self.count as f64 / elapsed.as_secs_f64();
            self.window_start = now;
            self.count = 0;
        }
    }

    fn per_sec(&self) -> f64 {
        self.rate
    }
}

async fn write_loop(
    cfg: MqttIntake,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Inbound>,
    sink: StreamSink,
    ready: Readiness,
    acks: Arc<SharedAcks>,
) {
    let queue_depth = metrics::gauge!("proact_ingest_queue_depth");
    let accepted_total = metrics::counter!("proact_ingest_accepted_total", "source" => "mqtt");
    let stale_total = metrics::counter!("proact_ingest_stale_acks_skipped_total");
    let mut batch: Vec<Inbound> = Vec::with_capacity(cfg.max_batch);
    let mut out = sparkplug::Outputs { accepted: Vec::with_capacity(cfg.max_batch), ..Default::default() };
    let mut plant = cfg.sparkplug.as_ref().map(sparkplug::Intake::new);
    let sparkplug_accepted = metrics::counter!("proact_ingest_accepted_total", "source" => "sparkplug");
    let mut spans: Vec<PipelineSpan> = Vec::new();
    let deferred_gauge = metrics::gauge!("proact_ingest_acks_deferred");
    let mut arrivals = ArrivalRate::new(std::time::Instant::now());
    loop {
        batch.clear();
        out.clear();
        // Deferred acks also move on each ack the event loop sends (the reader tops the
        // channel up); this retry is the backstop while no message arrives.
        let first = if acks.waiting() == 0 {
            rx.recv().await
        } else {
            match tokio::time::timeout(ACK_RETRY, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    let ((), left) = acks.with(|a| a.flush(&client));
                    deferred_gauge.set(left as f64);
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        // Take what is already queued without waiting; wait (bounded) only if that is not a
        // full batch yet.
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        arrivals.record(batch.len(), std::time::Instant::now());
        if batch.len() < cfg.max_batch && arrivals.per_sec() >= cfg.wait_above {
            let before = batch.len();
            let deadline = tokio::time::Instant::now() + cfg.max_wait;
            while batch.len() < cfg.max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
            arrivals.record(batch.len() - before, std::time::Instant::now());
        }
        queue_depth.set(rx.len() as f64);
        let now = now_micros();
        let allow = cfg.allow.snapshot();
        let mut from_plant = 0;
        for m in &batch {
            let p = &m.publish;
            if let Some(plant) = plant.as_mut().filter(|_| proact_sparkplug::topic::is_sparkplug(&p.topic)) {
                let before = out.accepted.len();
                let rebirth = plant.take(&p.topic, &p.payload, m.oversize, &cfg.limits, &allow, now, &mut out);
                from_plant += out.accepted.len() - before;
                if let Some(r) = rebirth {
                    if let Err(e) = client.try_publish(r.topic, QoS::AtMostOnce, false, r.payload) {
                        tracing::warn!(error = %e, "rebirth request not sent");
                    }
                }
                continue;
            }
            let refuse = |dead: &mut Vec<DeadLetter>, r: Rejection, raw: &[u8]| {
                metrics::counter!("proact_ingest_rejected_total", "reason" => reason_label(r.reason)).increment(1);
                tracing::debug!(topic = %p.topic, reason = reason_label(r.reason), detail = %r.detail, "rejected");
                dead.push(dead_letter("mqtt", &p.topic, &r, raw, now));
            };
            // Each reading of the payload (one, or each element of an array) is kept or
            // dead-lettered on its own; the message is acked once all of them are written.
            let whole = match m.oversize {
                Some(len) => Err(oversize(len, &cfg.limits)),
                None => parse_mqtt_payload(&p.topic, &p.payload, &cfg.limits, now, |_, raw, parsed| {
                    match parsed.and_then(|t| allow.check(&t.equipement_id).map(|()| t)) {
                        Ok(mut t) => {
                            t.received_micros = now;
                            if let Some(at) = m.at {
                                spans.extend(crate::trace_reading(&cfg.tracing, &mut t, at, &p.topic));
                            }
                            out.accepted.push(t);
                        }
                        Err(r) => refuse(&mut out.dead, r, raw),
                    }
                }),
            };
            if let Err(r) = whole {
                refuse(&mut out.dead, r, &p.payload);
            }
        }
        write_in_order(&sink, &out, &ready).await;
        spans.drain(..).for_each(PipelineSpan::end);
        accepted_total.increment((out.accepted.len() - from_plant) as u64);
        sparkplug_accepted.increment(from_plant as u64);
        let (stale, left) = acks.with(|a| a.push(&client, &batch));
        stale_total.increment(stale);
        deferred_gauge.set(left as f64);
    }
    // The queue is closed (shutdown): the last acks go out while the reader still services
    // the connection (the caller bounds this by the grace period).
    loop {
        let ((), left) = acks.with(|a| a.flush(&client));
        deferred_gauge.set(left as f64);
        if left == 0 {
            break;
        }
        tokio::time::sleep(ACK_RETRY).await;
    }
}

/// Writes a batch's readings and equipment statuses in the order they came (a status after
/// the readings that preceded it, so per-equipment order holds across both kinds of
/// entries), then its dead letters: one round trip without statuses, one more per run of
/// statuses. Each part is retried until written.
async fn write_in_order(sink: &StreamSink, out: &sparkplug::Outputs, ready: &Readiness) {
    let mut from = 0;
    let mut statuses = out.statuses.as_slice();
    while let Some(&(at, _)) = statuses.first() {
        let run = statuses.iter().take_while(|(a, _)| *a == at).count();
        write_with_retry(sink, &out.accepted[from..at], &[], ready).await;
        let run_statuses: Vec<_> = statuses[..run].iter().map(|(_, s)| s.clone()).collect();
        retry(ready, || sink.write_statuses(&run_statuses)).await;
        from = at;
        statuses = &statuses[run..];
    }
    write_with_retry(sink, &out.accepted[from..], &out.dead, ready).await;
}

/// Retries until the write succeeds: nothing is acked, so nothing may be dropped. Holding
/// the batch here stops the writer, which fills the queue, which stops the reader: the
/// backpressure reaches the broker. (On shutdown the caller bounds this by the grace period.)
pub(crate) async fn write_with_retry(
    sink: &StreamSink,
    accepted: &[Telemetry],
    dead: &[DeadLetter],
    ready: &Readiness,
) {
    retry(ready, || sink.write(accepted, dead)).await;
}

async fn retry<F, Fut>(ready: &Readiness, write: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), fred::error::Error>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        match write().await {
            Ok(()) => {
                ready.set("redis", true);
                return;
            }
            Err(e) => {
                ready.set("redis", false);
                metrics::counter!("proact_ingest_stream_write_errors_total").increment(1);
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "stream write failed; holding the batch");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arrival_rate_is_known_once_a_window_is_complete_and_follows_the_last_one() {
        let t0 = std::time::Instant::now();
        let mut r = ArrivalRate::new(t0);
        r.record(500, t0 + Duration::from_millis(50));
        assert_eq!(r.per_sec(), 0.0, "no window complete yet: no wait on a first burst's guess");
        r.record(500, t0 + Duration::from_millis(100));
        assert!((r.per_sec() - 10_000.0).abs() < 1.0, "{}", r.per_sec());
        // A quiet spell: the next window's rate is what it saw, not an average with the last.
        r.record(1, t0 + Duration::from_millis(1_100));
        assert!((r.per_sec() - 1.0).abs() < 0.01, "{}", r.per_sec());
    }

    fn batch(epoch: u64, n: u16) -> Vec<Inbound> {
        (1..=n)
            .map(|pkid| {
                let mut publish = Publish::new("sensors/P/telemetry", QoS::AtLeastOnce, Vec::new());
                publish.pkid = pkid;
                Inbound { publish, epoch, at: None, oversize: None }
            })
            .collect()
    }

    /// Issue 21: a PUBACK names a packet id of one connection. Acks of messages read before a
    /// reconnect must never go out on the new connection, where the same ids name other
    /// messages: those would be acknowledged unwritten.
    #[test]
    fn acks_of_an_old_connection_never_reach_the_new_one() {
        // A request channel of one: the first ack fits, the others wait in the queue.
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 1);
        let mut acks = Acks::default();
        assert_eq!(acks.push(&client, &batch(0, 3)), 0);
        assert_eq!(acks.deferred.len(), 2);
        // The connection fails: the two waiting acks are dropped (their messages come again).
        assert_eq!(acks.next_epoch(), (1, 2));
        assert!(acks.deferred.is_empty());
        // A batch read on the old connection, written after the reconnect: not acked.
        assert_eq!(acks.push(&client, &batch(0, 3)), 3);
        assert!(acks.deferred.is_empty());
        // The new connection's own messages are.
        assert_eq!(acks.push(&client, &batch(1, 2)), 0);
        assert_eq!(acks.deferred.len(), 2, "queued behind the full channel, not lost");
    }
}
