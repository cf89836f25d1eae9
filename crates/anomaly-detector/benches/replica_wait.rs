//! `cargo bench -p proact-anomaly-detector --bench replica_wait` (or `cargo test` with the same
//! arguments, a debug build: what docs/BENCHMARKS.md reports): what a Redis `WAIT` for one
//! replica adds to an acknowledgement on the test kit's Redis Cluster (three masters, three
//! replicas, loopback), side by side with the same writes without it, interleaved so that the
//! machine's load hits both alike.
//!
//! - Detector: one alert event published (the publish script, fenced, one new event a time:
//!   what a batch raising one alert does), then, with the wait, `WAIT 1 timeout` on the
//!   publisher's connection, as the scoring loop does before acking the reading.
//! - Ingest's shape: one telemetry entry `XADD`ed, then, with the wait, `WAIT 1 timeout` in
//!   the same pipeline (ingest queues it after the batch's writes), the time until the sensor
//!   would get its acknowledgement.
//!
//! Knob: `PROACT_BENCH_ROUNDS` (default 2,000 of each kind). Prints percentiles in µs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use proact_anomaly_detector::engine::Episode;
use proact_anomaly_detector::leases::{Fence, Leases};
use proact_anomaly_detector::publish::{publish_batch, wait_for_replicas, Outgoing, Published, ReplicaWait};
use proact_proto::streams::{telemetry_stream, PAYLOAD_FIELD};
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind};

const SHARDS: u32 = 8;
const WAIT: ReplicaWait = ReplicaWait { replicas: 1, timeout_ms: 1000 };

fn percentiles(name: &str, mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    let mean = us.iter().sum::<f64>() / us.len() as f64;
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        us.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        mean
    );
    (at(0.5), mean)
}

fn event(i: usize) -> Outgoing {
    Outgoing {
        event: AlertEvent {
            kind: AlertEventKind::Raised as i32,
            alert: Some(Alert {
                alert_id: format!("BENCH-{i}"),
                equipement_id: "BENCH-PUMP".into(),
                severity: 2,
                state: 1,
                ..Default::default()
            }),
            ..Default::default()
        },
        at_micros: Some(i as i64),
        episode: Episode::Condition,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("PROACT_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let cluster = proact_testkit::RedisCluster::start().await?;
    let publisher = proact_server::redis::connect(&cluster.url()).await?;
    let ingest = proact_server::redis::connect(&cluster.url()).await?;
    let mut leases = Leases::new(proact_server::redis::connect(&cluster.url()).await?, "bench", SHARDS, 600_000);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    anyhow::ensure!(leases.heartbeat(now_ms).await?.gained.len() == SHARDS as usize, "every lease taken");
    let fence = Fence { replica: "bench".into(), shards: SHARDS };

    let stream = telemetry_stream(0);
    let slot = fred::util::redis_keyslot(stream.as_bytes());
    let entry = Bytes::from(vec![7u8; 96]);
    let (mut publish, mut publish_wait, mut xadd, mut xadd_wait) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut refused = 0;
    for i in 0..rounds {
        for wait in [false, true] {
            let started = Instant::now();
            let results = publish_batch(&publisher, &[event(2 * i + usize::from(wait))], &fence).await?;
            anyhow::ensure!(matches!(results[0], Published::Added(_)), "{results:?}");
            if wait && wait_for_replicas(&publisher, WAIT).await? < 1 {
                refused += 1;
            }
            let times = if wait { &mut publish_wait } else { &mut publish };
            times.push(started.elapsed().as_secs_f64() * 1e6);

            let started = Instant::now();
            let pipeline = ingest.pipeline();
            let _: () = pipeline.xadd(stream.as_str(), false, None::<()>, "*", (PAYLOAD_FIELD, entry.clone())).await?;
            if wait {
                let cmd = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
                let _: () = pipeline.custom(cmd, vec![Value::Integer(1), Value::Integer(1000)]).await?;
            }
            let replies: Vec<Value> = pipeline.all().await?;
            if wait && replies.last().and_then(Value::as_i64).unwrap_or(0) < 1 {
                refused += 1;
            }
            let times = if wait { &mut xadd_wait } else { &mut xadd };
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    println!("| path | n | p50 µs | p90 µs | p99 µs | max µs | mean µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let (p, pm) = percentiles("detector: publish one alert", publish);
    let (pw, pwm) = percentiles("detector: publish one alert + WAIT 1", publish_wait);
    let (x, xm) = percentiles("ingest shape: XADD one entry", xadd);
    let (xw, xwm) = percentiles("ingest shape: XADD one entry + WAIT 1 (same pipeline)", xadd_wait);
    println!(
        "\nWAIT adds: detector {:.0} µs at p50 (×{:.2}), {:.0} µs on the mean; ingest {:.0} µs at p50 (×{:.2}), {:.0} µs on the mean; waits refused: {refused}",
        pw - p,
        pw / p,
        pwm - pm,
        xw - x,
        xw / x,
        xwm - xm
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
