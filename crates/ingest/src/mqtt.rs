//! MQTT intake: a persistent session with manual acknowledgements, a shared subscription so
//! replicas split the load, and a bounded queue between the broker connection and the
//! writer, so a slow or absent Redis stops reading instead of buffering without bound.
//!
//! A message is acked to the broker only after the batch that carries it is in the streams;
//! if the process dies before that, the broker redelivers it (persistent session, QoS 1).

use std::time::Duration;

use proact_proto::time::now_micros;
use proact_proto::v1::{DeadLetter, Telemetry};
use proact_server::Readiness;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sink::{dead_letter, StreamSink};
use crate::validate::{parse_mqtt, reason_label, Limits};

/// MQTT intake settings.
#[derive(Debug, Clone)]
pub struct MqttIntake {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Topic filter, e.g. `$share/proact-ingest/sensors/+/telemetry`.
    pub topic: String,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue: usize,
    pub limits: Limits,
}

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
    }
    // Every message in the queue or in a batch yields one ack request: the request channel
    // must hold them all while the event loop is blocked on a full queue, or the two tasks
    // would wait on each other.
    let (client, eventloop) = AsyncClient::new(opts, cfg.queue + cfg.max_batch + 64);
    let (tx, rx) = mpsc::channel::<Publish>(cfg.queue);
    let stop_reading = shutdown.child_token();
    let reader =
        tokio::spawn(read_loop(eventloop, client.clone(), cfg.topic.clone(), tx, ready.clone(), stop_reading.clone()));
    let writer = tokio::spawn(write_loop(cfg.clone(), client.clone(), rx, sink, ready));
    shutdown.cancelled().await;
    // Drain: the reader stops and drops the queue's sender; the writer empties the queue.
    let _ = reader.await;
    let _ = writer.await;
    let _ = client.disconnect().await;
    Ok(())
}

async fn read_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    topic: String,
    tx: mpsc::Sender<Publish>,
    ready: Readiness,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                metrics::counter!("proact_ingest_received_total").increment(1);
                metrics::gauge!("proact_ingest_queue_depth").set((tx.max_capacity() - tx.capacity()) as f64);
                if tx.send(p).await.is_err() {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Ready only once the subscription is in place: before it, the broker
                // would drop what is published to the shared subscription.
                ready.set("mqtt", true);
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                tracing::info!(session_present = ack.session_present, "connected to the MQTT broker");
                // Subscribing again is harmless with a present session and needed without one.
                if let Err(e) = client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "subscribe request failed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                ready.set("mqtt", false);
                metrics::counter!("proact_ingest_mqtt_reconnects_total").increment(1);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Keep polling briefly so the acks of the last batches reach the broker.
    let flush = async {
        loop {
            if eventloop.poll().await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), flush).await;
}

async fn write_loop(
    cfg: MqttIntake,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Publish>,
    sink: StreamSink,
    ready: Readiness,
) {
    let mut batch: Vec<Publish> = Vec::with_capacity(cfg.max_batch);
    loop {
        batch.clear();
        let Some(first) = rx.recv().await else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + cfg.max_wait;
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(p)) => batch.push(p),
                    _ => break,
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        let now = now_micros();
        let mut accepted: Vec<Telemetry> = Vec::with_capacity(batch.len());
        let mut dead: Vec<DeadLetter> = Vec::new();
        for p in &batch {
            match parse_mqtt(&p.topic, &p.payload, &cfg.limits, now) {
                Ok(mut t) => {
                    t.received_micros = now;
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
        metrics::counter!("proact_ingest_accepted_total").increment(accepted.len() as u64);
        for p in &batch {
            if let Err(e) = client.ack(p).await {
                tracing::warn!(error = %e, "ack not sent; the broker will redeliver");
            }
        }
    }
}

/// Retries until the write succeeds: nothing is acked, so nothing may be dropped.
pub(crate) async fn write_with_retry(
    sink: &StreamSink,
    accepted: &[Telemetry],
    dead: &[DeadLetter],
    ready: &Readiness,
) {
    let mut backoff = std::time::Duration::from_millis(50);
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
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}
