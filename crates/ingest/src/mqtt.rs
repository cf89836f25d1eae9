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
use proact_server::otel::{PipelineSpan, Tracing};
use proact_server::Readiness;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::security::Allowlist;
use crate::sink::{dead_letter, StreamSink};
use crate::validate::{parse_mqtt, reason_label, Limits};

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
    pub queue: usize,
    pub limits: Limits,
    pub allow: Allowlist,
    /// How long a drain may take on shutdown before unwritten messages are left to redelivery.
    pub grace: Duration,
    /// Starts a trace per sampled reading (see `proact_server::otel`).
    pub tracing: Tracing,
}

/// A message and the connection generation it arrived in.
struct Inbound {
    publish: Publish,
    epoch: u64,
    /// When it was read from the socket, if traced: its span starts there.
    at: Option<SystemTime>,
}

/// Capacity of rumqttc's request channel. Its only steady traffic is our PUBACKs, one per
/// message the broker has in flight to us, and MQTT packet ids (16 bit) bound those: with
/// room for all of them, queuing an ack never waits on the event loop (which may itself be
/// waiting for room in our queue).
const REQUEST_CHANNEL: usize = u16::MAX as usize + 1024;

/// Runs the intake until `shutdown`; on shutdown stops reading, writes and acks what it
/// holds, and returns.
pub async fn run(
    cfg: MqttIntake,
    sink: StreamSink,
    ready: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(cfg.limits.max_payload_bytes * 4 + 1024, 64 * 1024);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u.clone(), p.clone());
    } else if let Some(u) = &cfg.username {
        opts.set_credentials(u.clone(), "");
    }
    if let Some(tls) = &cfg.tls {
        opts.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.clone())));
    }
    let (client, eventloop) = AsyncClient::new(opts, REQUEST_CHANNEL);
    let (tx, rx) = mpsc::channel::<Inbound>(cfg.queue);
    let epoch = Arc::new(Mutex::new(0u64));
    let writer_done = CancellationToken::new();
    let reader = tokio::spawn(read_loop(ReadLoop {
        eventloop,
        client: client.clone(),
        topic: cfg.topic.clone(),
        tx,
        ready: ready.clone(),
        epoch: epoch.clone(),
        stop: shutdown.clone(),
        writer_done: writer_done.clone(),
        grace: cfg.grace,
        timestamps: cfg.tracing.enabled(),
    }));
    let mut writer = tokio::spawn(write_loop(cfg.clone(), client, rx, sink, ready, epoch));
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
    topic: String,
    tx: mpsc::Sender<Inbound>,
    ready: Readiness,
    epoch: Arc<Mutex<u64>>,
    stop: CancellationToken,
    writer_done: CancellationToken,
    grace: Duration,
    /// Note when each message arrived (only for tracing).
    timestamps: bool,
}

async fn read_loop(r: ReadLoop) {
    let ReadLoop { mut eventloop, client, topic, tx, ready, epoch, stop, writer_done, grace, timestamps } = r;
    let received = metrics::counter!("proact_ingest_received_total", "source" => "mqtt");
    let queue_depth = metrics::gauge!("proact_ingest_queue_depth");
    let reconnects = metrics::counter!("proact_ingest_mqtt_reconnects_total");
    let errors = metrics::counter!("proact_ingest_mqtt_connection_errors_total");
    let connected = metrics::gauge!("proact_ingest_mqtt_connected");
    let mut current = 0u64;
    let mut connected_once = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                received.increment(1);
                queue_depth.set((tx.max_capacity() - tx.capacity()) as f64);
                // Waiting here is the backpressure: the event loop is not polled, so the
                // socket is not read and the broker holds the messages.
                let at = timestamps.then(SystemTime::now);
                let send = tx.send(Inbound { publish, epoch: current, at });
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
                backoff = Duration::from_millis(100);
                connected.set(1.0);
                if connected_once {
                    reconnects.increment(1);
                }
                connected_once = true;
                tracing::info!(session_present = ack.session_present, epoch = current, "connected to the MQTT broker");
                // Subscribing again is harmless with a present session and needed without one.
                if let Err(e) = client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "subscribe request failed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                ready.set("mqtt", false);
                connected.set(0.0);
                errors.increment(1);
                {
                    // Under the writer's ack lock: no ack of the old connection can slip
                    // into the request channel after this purge.
                    let mut ep = epoch.lock().unwrap_or_else(|p| p.into_inner());
                    *ep += 1;
                    current = *ep;
                    eventloop.clean();
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
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
                    // Queued after every ack: once it is out, so are they.
                    let _ = client.try_disconnect();
                    disconnect_sent = true;
                }
                e = eventloop.poll() => match e {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    _ => {}
                }
            }
        }
    };
    let _ = tokio::time::timeout(grace + Duration::from_secs(1), flush).await;
    connected.set(0.0);
}

async fn write_loop(
    cfg: MqttIntake,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Inbound>,
    sink: StreamSink,
    ready: Readiness,
    epoch: Arc<Mutex<u64>>,
) {
    let queue_depth = metrics::gauge!("proact_ingest_queue_depth");
    let accepted_total = metrics::counter!("proact_ingest_accepted_total", "source" => "mqtt");
    let stale_total = metrics::counter!("proact_ingest_stale_acks_skipped_total");
    let mut batch: Vec<Inbound> = Vec::with_capacity(cfg.max_batch);
    let mut accepted: Vec<Telemetry> = Vec::with_capacity(cfg.max_batch);
    let mut dead: Vec<DeadLetter> = Vec::new();
    let mut spans: Vec<PipelineSpan> = Vec::new();
    loop {
        batch.clear();
        accepted.clear();
        dead.clear();
        let Some(first) = rx.recv().await else { break };
        batch.push(first);
        // Take what is already queued without waiting; wait (bounded) only if that is not a
        // full batch yet.
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if batch.len() < cfg.max_batch {
            let deadline = tokio::time::Instant::now() + cfg.max_wait;
            while batch.len() < cfg.max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
        }
        queue_depth.set(rx.len() as f64);
        let now = now_micros();
        let allow = cfg.allow.snapshot();
        for m in &batch {
            let p = &m.publish;
            match parse_mqtt(&p.topic, &p.payload, &cfg.limits, now)
                .and_then(|t| allow.check(&t.equipement_id).map(|()| t))
            {
                Ok(mut t) => {
                    t.received_micros = now;
                    if let Some(at) = m.at {
                        spans.extend(crate::trace_reading(&cfg.tracing, &mut t, at, &p.topic));
                    }
                    accepted.push(t);
                }
                Err(r) => {
                    metrics::counter!("proact_ingest_rejected_total", "reason" => reason_label(r.reason)).increment(1);
                    tracing::debug!(topic = %p.topic, reason = reason_label(r.reason), detail = %r.detail, "rejected");
                    dead.push(dead_letter("mqtt", &p.topic, &r, &p.payload, now));
                }
            }
        }
        write_with_retry(&sink, &accepted, &dead, &ready).await;
        spans.drain(..).for_each(PipelineSpan::end);
        accepted_total.increment(accepted.len() as u64);
        let ep = epoch.lock().unwrap_or_else(|p| p.into_inner());
        for m in &batch {
            if m.epoch != *ep {
                stale_total.increment(1);
                continue;
            }
            if let Err(e) = client.try_ack(&m.publish) {
                tracing::warn!(error = %e, "ack not queued; the broker will redeliver");
            }
        }
    }
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
    let mut backoff = Duration::from_millis(50);
    loop {
        match sink.write(accepted, dead).await {
            Ok(()) => {
                ready.set("redis", true);
                return;
            }
            Err(e) => {
                ready.set("redis", false);
                metrics::counter!("proact_ingest_stream_write_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "stream write failed; holding the batch");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
