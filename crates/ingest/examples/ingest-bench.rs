//! `just bench ingest`: sustained MQTT QoS 1 throughput into the streams, next to the raw
//! broker's own QoS 1 publish→subscribe rate measured in the same run on the same servers.
//!
//! Starts Mosquitto and Redis from the test kit on free loopback ports, then alternates:
//! - **raw**: `P` publisher connections send `N` seed-shaped (~100 byte) readings at QoS 1 to
//!   one plain QoS 1 subscriber (auto-acks, no ingest); rate = N / (first publish → N-th
//!   message received);
//! - **ingest**: the same publishers, with ingest (in this process, release build) as the
//!   subscriber; rate = N / (first publish → N entries in the telemetry streams, by XLEN),
//!   and afterwards count in = count out is checked (XLEN sum == N, dead letters == 0).
//!
//! An example rather than a binary because it uses the test kit (a dev-dependency).
//! Usage: `cargo run --release -p proact-ingest --example ingest-bench -- [N] [ROUNDS] [PUBLISHERS] [ACK_BATCHES]`.
//! `ACK_BATCHES`, a comma list (default `512`, ingest's default), runs one ingest round per
//! value of `PROACT_INGEST_MQTT_ACK_BATCH` after each raw round, side by side: `512,1` compares
//! the batched PUBACK flush with upstream rumqttc's one-per-turn (vendor/PATCHES.md).
//! `WAIT_REPLICAS`, a comma list (e.g. `0,1`), runs the ingest rounds on a Redis Cluster of
//! the test kit (3 masters, 3 replicas) instead of one Redis, one round per value of
//! `PROACT_INGEST_REDIS_WAIT_REPLICAS` for each ack batch: `0,1` is what waiting for a replica
//! before acknowledging costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fred::prelude::*;
use proact_proto::streams::{telemetry_streams, DEAD_LETTER_STREAM};
use proact_testkit::procstat::{clock_ticks, cpu_secs};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

const SHARDS: u32 = 8;
const EQUIPMENT: u64 = 200;

fn payloads(n: u64, base_micros: i64) -> Vec<(String, bytes::Bytes)> {
    (0..n)
        .map(|i| {
            let id = format!("PUMP-{:03}", i % EQUIPMENT);
            let ts = chrono::DateTime::from_timestamp_micros(base_micros + i as i64 * 1000)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ");
            let body = format!(
                r#"{{"equipement_id":"{id}","temperature":{:.1},"vibration":{:.1},"timestamp":"{ts}"}}"#,
                60.0 + (i % 300) as f64 / 10.0,
                1.0 + (i % 97) as f64 / 10.0
            );
            (format!("sensors/{id}/telemetry"), bytes::Bytes::from(body))
        })
        .collect()
}

/// Publishes `msgs` over `publishers` connections (message i on connection i % P) and
/// returns when the broker has acked every one.
async fn publish_all(port: u16, tag: &str, msgs: Arc<Vec<(String, bytes::Bytes)>>, publishers: usize) {
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let msgs = msgs.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut opts = MqttOptions::new(format!("bench-pub-{tag}-{p}"), "127.0.0.1", port);
            opts.set_inflight(1000).set_keep_alive(Duration::from_secs(30));
            let (client, mut ev) = AsyncClient::new(opts, 4096);
            let mine: Vec<usize> = (p..msgs.len()).step_by(publishers).collect();
            let want = mine.len() as u64;
            let acks = tokio::spawn(async move {
                let mut acked = 0u64;
                while acked < want {
                    match ev.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(e) => panic!("publisher connection failed: {e}"),
                    }
                }
                // Keep the connection serviced until the tail of acks is read.
                ev
            });
            for i in mine {
                let (topic, body) = &msgs[i];
                client.publish_bytes(topic.clone(), QoS::AtLeastOnce, false, body.clone()).await.expect("queued");
            }
            let _ev = acks.await.expect("acks");
            let _ = client.disconnect().await;
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
}

/// Raw broker: plain QoS 1 subscriber, no ingest. Returns messages/s.
async fn raw_round(port: u16, msgs: Arc<Vec<(String, bytes::Bytes)>>, publishers: usize, round: usize) -> f64 {
    let n = msgs.len() as u64;
    let mut opts = MqttOptions::new(format!("bench-raw-sub-{round}"), "127.0.0.1", port);
    opts.set_clean_session(true).set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(opts, 64);
    client.subscribe("sensors/+/telemetry", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = ev.poll().await.expect("raw subscriber") {
            break;
        }
    }
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let sub = tokio::spawn(async move {
        while r.load(Ordering::Relaxed) < n {
            if let Event::Incoming(Packet::Publish(_)) = ev.poll().await.expect("raw subscriber") {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        ev
    });
    let start = Instant::now();
    publish_all(port, &format!("raw{round}"), msgs, publishers).await;
    let _ev = sub.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let _ = client.disconnect().await;
    assert_eq!(received.load(Ordering::Relaxed), n, "raw: count in = count out");
    n as f64 / secs
}

async fn stream_len(r: &Client) -> u64 {
    let mut total = 0;
    for k in telemetry_streams(SHARDS) {
        let n: u64 = r.xlen(k.as_str()).await.unwrap();
        total += n;
    }
    total
}

/// What an ingest round measured.
struct IngestRound {
    rate: f64,
    /// CPU µs per message of this process (ingest and the publishers) and of the broker.
    own_us: f64,
    broker_us: f64,
}

/// Ingest in this process as the subscriber.
#[allow(clippy::too_many_arguments)]
async fn ingest_round(
    mqtt_url: &str,
    redis_url: &str,
    r: &Client,
    port: u16,
    msgs: Arc<Vec<(String, bytes::Bytes)>>,
    publishers: usize,
    round: usize,
    ack_batch: usize,
    wait_replicas: Option<u32>,
    broker_pid: u32,
) -> IngestRound {
    let n = msgs.len() as u64;
    // One key per DEL: the shards are on several slots of a cluster.
    for key in telemetry_streams(SHARDS) {
        let _: u64 = r.del(key.as_str()).await.unwrap();
    }
    let client_id = format!("bench-ingest-{round}-{ack_batch}-{}", wait_replicas.unwrap_or(0));
    let ack_batch = ack_batch.to_string();
    let wait = wait_replicas.map(|w| w.to_string());
    let shards = SHARDS.to_string();
    let mut args = vec![
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
        &client_id,
        "--group",
        &client_id,
        "--shards",
        &shards,
        "--mqtt-ack-batch",
        &ack_batch,
        // One entry per reading: the rate is read from the streams' lengths (XLEN).
        "--stream-entries",
        "single",
    ];
    if let Some(w) = &wait {
        args.extend(["--redis-wait-replicas", w.as_str()]);
    }
    let config = proact_ingest::Config::try_parse_from(args).unwrap();
    config.validate().unwrap();
    let app = proact_ingest::App::build(config).await.unwrap();
    let ready = app.readiness();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    while !ready.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ticks = clock_ticks();
    let own = std::process::id();
    let (own0, broker0) = (cpu_secs(own, ticks), cpu_secs(broker_pid, ticks));
    let start = Instant::now();
    publish_all(port, &format!("ing{round}-{ack_batch}"), msgs, publishers).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "ingest: only {got} of {n} in the streams");
        tokio::time::sleep(Duration::from_millis(5)).await;
        got = stream_len(r).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let (own1, broker1) = (cpu_secs(own, ticks), cpu_secs(broker_pid, ticks));
    stop.cancel();
    task.await.unwrap().unwrap();
    forget_session(port, &client_id).await;
    let out = stream_len(r).await;
    let dlq: u64 = r.xlen(DEAD_LETTER_STREAM).await.unwrap();
    assert_eq!(out, n, "ingest: count in = count out");
    assert_eq!(dlq, 0, "no dead letters for valid readings");
    IngestRound {
        rate: n as f64 / secs,
        own_us: (own1 - own0) * 1e6 / n as f64,
        broker_us: (broker1 - broker0) * 1e6 / n as f64,
    }
}

/// Removes ingest's persistent session (and its share of the subscription), or the broker
/// would keep queueing the next rounds' messages for it.
async fn forget_session(port: u16, client_id: &str) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(true);
    let (client, mut ev) = AsyncClient::new(opts, 8);
    while !matches!(ev.poll().await, Ok(Event::Incoming(Packet::ConnAck(_)))) {}
    let _ = client.disconnect().await;
    while ev.poll().await.is_ok() {}
}

/// How a variant is named in the output.
fn variant_name(ack_batch: usize, wait: Option<u32>) -> String {
    match wait {
        Some(w) => format!("ack batch {ack_batch:>3}, WAIT {w}"),
        None => format!("ack batch {ack_batch:>3}"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let publishers: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let batches: Vec<usize> = match args.get(4) {
        Some(list) => list.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?,
        None => vec![proact_ingest::mqtt::ACK_FLUSH_BATCH],
    };
    anyhow::ensure!(!batches.is_empty() && !batches.contains(&0), "ACK_BATCHES: values of at least 1");
    let waits: Option<Vec<u32>> =
        args.get(5).map(|list| list.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()).transpose()?;
    // Each ingest variant: (ack batch, replicas waited for; None: one Redis).
    let variants: Vec<(usize, Option<u32>)> = batches
        .iter()
        .flat_map(|&b| match &waits {
            Some(ws) => ws.iter().map(|&w| (b, Some(w))).collect::<Vec<_>>(),
            None => vec![(b, None)],
        })
        .collect();
    proact_server::telemetry::init("text");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let mqtt = proact_testkit::Mosquitto::start().await?;
        // Kept alive to the end: the servers stop when dropped.
        let (_single, _cluster, redis_url) = match waits {
            None => {
                let redis = proact_testkit::Redis::start().await?;
                let url = redis.url();
                (Some(redis), None, url)
            }
            Some(_) => {
                let cluster = proact_testkit::RedisCluster::start().await?;
                let url = cluster.url();
                (None, Some(cluster), url)
            }
        };
        let r = proact_server::redis::connect(&redis_url).await?;
        let base = (proact_proto::time::now_micros() / 1_000_000 - 7200) * 1_000_000;
        let msgs = Arc::new(payloads(n, base));
        let avg = msgs.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / n as f64;
        println!(
            "ingest bench: N={n} per round, {rounds} rounds, {publishers} publishers, payload {avg:.0} B avg, \
             {SHARDS} shards, ack batches {batches:?}, {}",
            match &waits {
                Some(w) => format!("Redis Cluster (3 masters, 3 replicas), replicas waited for {w:?}"),
                None => "one Redis".to_string(),
            }
        );
        let mut raw = Vec::new();
        let mut ing: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        let mut cpu: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            let a = raw_round(mqtt.port(), msgs.clone(), publishers, round).await;
            raw.push(a);
            for (k, &(batch, wait)) in variants.iter().enumerate() {
                let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                let load = load.split(' ').next().unwrap_or("?").to_string();
                let m = ingest_round(
                    &mqtt.url(),
                    &redis_url,
                    &r,
                    mqtt.port(),
                    msgs.clone(),
                    publishers,
                    round,
                    batch,
                    wait,
                    mqtt.pid(),
                )
                .await;
                let b = m.rate;
                println!(
                    "round {round}: raw broker {a:>9.0} msg/s   ingest ({}) {b:>9.0} msg/s   ratio {:.2}   \
                     CPU µs/msg: bench process {:.1}, broker {:.1}   load {load}",
                    variant_name(batch, wait),
                    b / a,
                    m.own_us,
                    m.broker_us
                );
                ing[k].push(b);
                cpu[k].push((m.own_us, m.broker_us));
            }
        }
        for (k, &(batch, wait)) in variants.iter().enumerate() {
            let name = variant_name(batch, wait);
            let mut ratios: Vec<f64> = raw.iter().zip(&ing[k]).map(|(a, b)| b / a).collect();
            let ratio = median(&mut ratios);
            let (a, b) = (median(&mut raw.clone()), median(&mut ing[k]));
            let mut own: Vec<f64> = cpu[k].iter().map(|c| c.0).collect();
            let mut broker: Vec<f64> = cpu[k].iter().map(|c| c.1).collect();
            println!(
                "median, {name}: raw broker {a:.0} msg/s, ingest {b:.0} msg/s, ratio (median of rounds) {ratio:.2}, \
                 CPU µs/msg: bench process {:.1}, broker {:.1}",
                median(&mut own),
                median(&mut broker)
            );
            println!(
                "targets, {name}: ingest >= 80% of raw: {} ; ingest >= 50000 msg/s: {}",
                if ratio >= 0.8 { "met" } else { "MISSED" },
                if b >= 50_000.0 { "met" } else { "MISSED" }
            );
        }
        anyhow::Ok(())
    })
}
