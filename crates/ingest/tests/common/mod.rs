//! Shared helpers for ingest's integration tests: start ingest in-process against real
//! servers, publish seed-shaped readings over MQTT QoS 1, and read back what reached the
//! streams.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use fred::prelude::*;
use proact_ingest::{App, Config};
use proact_proto::streams::{
    decode_readings, telemetry_streams, BATCH_FIELD, DEAD_LETTER_STREAM, PAYLOAD_FIELD, STATUS_FIELD,
};
use proact_proto::v1::{DeadLetter, Telemetry};
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SHARDS: u32 = 4;

/// An ingest service running in this process.
pub struct Ingest {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
}

impl Ingest {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("ingest task").expect("ingest run");
    }
}

/// The flags every test passes, plus `extra`.
pub fn args(mqtt_url: &str, redis_url: &str, client_id: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "proact-ingest",
        "--mqtt-url",
        mqtt_url,
        "--redis-url",
        redis_url,
        "--admin-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--client-id",
        client_id,
        "--shards",
        &SHARDS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A test may set its own grace (the flag may be given once).
    if !extra.contains(&"--shutdown-grace-secs") {
        a.extend(["--shutdown-grace-secs".to_string(), "5".to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Starts ingest and waits until it is ready (subscribed, Redis up).
pub async fn start_ingest(mqtt_url: &str, redis_url: &str, client_id: &str, extra: &[&str]) -> Ingest {
    let config = Config::try_parse_from(args(mqtt_url, redis_url, client_id, extra)).expect("flags");
    config.validate().expect("valid config");
    let app = App::build(config).await.expect("ingest builds");
    let grpc = app.grpc_addr();
    let admin = app.admin_addr();
    let ready = app.readiness();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    wait_until(Duration::from_secs(20), || ready.is_ready()).await;
    Ingest { shutdown, task, grpc, admin }
}

pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met in {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event time of reading `i`: distinct per reading, an hour ago plus `i` ms.
pub fn ts_micros(base: i64, i: u64) -> i64 {
    base + i as i64 * 1000
}

pub fn base_micros() -> i64 {
    (proact_proto::time::now_micros() / 1_000_000 - 3600) * 1_000_000
}

/// A seed-shaped payload (~100 bytes).
pub fn payload(id: &str, ts: i64, i: u64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(ts).expect("ts").format("%Y-%m-%dT%H:%M:%S%.6fZ");
    format!(
        r#"{{"equipement_id":"{id}","temperature":{:.1},"vibration":{:.2},"timestamp":"{t}"}}"#,
        60.0 + (i % 300) as f64 / 10.0,
        1.0 + (i % 97) as f64 / 10.0
    )
}

pub fn equipment(i: u64, n_ids: u64) -> String {
    format!("EQ-{:03}", i % n_ids)
}

/// What a publisher did.
#[derive(Clone, Default)]
pub struct PubStats {
    /// PUBACKs received from the broker (a resent message may be acked twice).
    pub acked: Arc<AtomicU64>,
    /// Messages handed to the client.
    pub sent: Arc<AtomicU64>,
}

/// Publishes `n` readings (QoS 1) over `n_ids` equipment at up to `per_sec` per second,
/// surviving broker restarts (persistent session: rumqttc resends what was not acked).
/// Returns when every message was handed to the client and `acked >= n`.
pub async fn publish(port: u16, client_id: &str, n: u64, n_ids: u64, per_sec: u64, base: i64) -> PubStats {
    let stats = PubStats::default();
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(false).set_keep_alive(Duration::from_secs(5)).set_inflight(200);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let acked = stats.acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let start = tokio::time::Instant::now();
    for i in 0..n {
        let id = equipment(i, n_ids);
        let body = payload(&id, ts_micros(base, i), i);
        client.publish(format!("sensors/{id}/telemetry"), QoS::AtLeastOnce, false, body).await.expect("queued");
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if per_sec > 0 && i % 100 == 99 {
            let due = start + Duration::from_micros((i + 1) * 1_000_000 / per_sec);
            tokio::time::sleep_until(due).await;
        }
    }
    let acked = stats.acked.clone();
    wait_until(Duration::from_secs(60), move || acked.load(Ordering::Relaxed) >= n).await;
    poller.abort();
    stats
}

pub async fn redis(url: &str) -> Client {
    proact_server::redis::connect(url).await.expect("redis")
}

/// The readings of a telemetry entry read with `XRANGE`, whichever kind it is (none in an
/// equipment status entry).
pub fn readings_of(fields: &std::collections::HashMap<String, bytes::Bytes>) -> Vec<Telemetry> {
    if fields.contains_key(STATUS_FIELD) {
        return Vec::new();
    }
    let (field, payload) = fields
        .get_key_value(BATCH_FIELD)
        .or_else(|| fields.get_key_value(PAYLOAD_FIELD))
        .expect("a telemetry entry has a payload field");
    decode_readings(field, payload).expect("telemetry entry")
}

/// Every telemetry reading in the shards: (total readings, distinct (id, ts)).
pub async fn stream_contents(client: &Client) -> (u64, HashSet<(String, i64)>) {
    let mut total = 0;
    let mut distinct = HashSet::new();
    for key in telemetry_streams(SHARDS) {
        let mut start = "-".to_string();
        loop {
            let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
                client.xrange(key.as_str(), start.as_str(), "+", Some(5000)).await.expect("xrange");
            let Some((last, _)) = entries.last().cloned() else { break };
            for (_, fields) in &entries {
                for t in readings_of(fields) {
                    total += 1;
                    distinct.insert((t.equipement_id, t.ts_micros));
                }
            }
            start = format!("({last}");
        }
    }
    (total, distinct)
}

/// Every reading in the shards, decoded.
pub async fn stored_readings(client: &Client) -> Vec<Telemetry> {
    let mut out = Vec::new();
    for key in telemetry_streams(SHARDS) {
        let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
            client.xrange(key.as_str(), "-", "+", None).await.expect("xrange");
        out.extend(entries.iter().flat_map(|(_, f)| readings_of(f)));
    }
    out
}

/// Waits until `want` distinct readings are in the streams; returns (total, distinct).
pub async fn wait_for_distinct(client: &Client, want: usize, timeout: Duration) -> (u64, usize) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (total, distinct) = stream_contents(client).await;
        if distinct.len() >= want || tokio::time::Instant::now() > deadline {
            return (total, distinct.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every dead letter so far.
pub async fn dead_letters(client: &Client) -> Vec<DeadLetter> {
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
        client.xrange(DEAD_LETTER_STREAM, "-", "+", None).await.expect("xrange dlq");
    entries.iter().map(|(_, f)| DeadLetter::decode(f[PAYLOAD_FIELD].as_ref()).expect("dead letter")).collect()
}

/// `GET path` on the admin server, as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of the first sample of `metric` (with `labels` in its label set) in a
/// Prometheus text page.
pub fn metric(page: &str, metric: &str, labels: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        let matches = name == metric || (name.starts_with(&format!("{metric}{{")) && name.contains(labels));
        (matches && (labels.is_empty() || name.contains(labels))).then(|| value.parse().ok()).flatten()
    })
}

/// Publishes raw `(topic, payload)` messages at QoS 1 and waits for every PUBACK.
pub async fn publish_raw(port: u16, msgs: &[(String, Vec<u8>)]) {
    let mut opts = MqttOptions::new("sensor-raw", "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    publish_acked(opts, msgs).await;
}

/// Publishes `(topic, payload)` messages at QoS 1 on a connection made with `opts`, and waits
/// for every PUBACK (Mosquitto acks a QoS 1 message its ACL refused too, and drops it:
/// MQTT 3.1.1 has no way to say no).
pub async fn publish_acked(opts: MqttOptions, msgs: &[(String, Vec<u8>)]) {
    let who = opts.client_id();
    let (client, mut ev) = AsyncClient::new(opts, 100);
    for (t, p) in msgs {
        client.publish(t.clone(), QoS::AtLeastOnce, false, p.clone()).await.unwrap();
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked < msgs.len() {
        assert!(tokio::time::Instant::now() < deadline, "broker did not ack {who}'s messages");
        match tokio::time::timeout(Duration::from_secs(2), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Err(e)) => panic!("{who} could not publish: {e}"),
            _ => {}
        }
    }
}
