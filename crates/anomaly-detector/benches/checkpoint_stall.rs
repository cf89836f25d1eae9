//! `just bench checkpoint`: how long the scoring loop stalls for the online detectors'
//! checkpoint, and the readings/s it keeps, with 10,000 equipment on one replica; the
//! checkpoint written inline (all the states that learned, every interval, while scoring
//! waits) against spread over the interval and written in the background
//! ([`Checkpointer`]), side by side in one run against a real Redis.
//!
//! The loop is the scoring loop's skeleton on the service's runtime (two workers): a batch of
//! readings scored by the engine under its lock, one Redis round trip (the read and ack the
//! real loop makes; Redis serves the checkpoint writes too, one script at a time), and the
//! checkpoint. The stall is the longest time between two batches.
//! `PROACT_BENCH_EQUIPMENT` (10,000), `PROACT_BENCH_CHECKPOINT_SECS` (10) and
//! `PROACT_BENCH_SECS` per mode (three intervals and a second) size the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use proact_anomaly_detector::checkpoint::{self, Checkpointer};
use proact_anomaly_detector::engine::{Engine, EngineConfig};
use proact_anomaly_detector::leases::Leases;
use proact_proto::v1::Telemetry;
use tokio::sync::Mutex;

const SHARDS: u32 = 8;
const BATCH: usize = 500;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn reading(e: usize, i: i64) -> Telemetry {
    let x = (i as f64 * 0.05 + e as f64).sin();
    Telemetry {
        equipement_id: format!("EQ-{e:05}"),
        ts_micros: 1_700_000_000_000_000 + i * 1_000_000,
        temperature: 60.0 + 3.0 * x + (i % 7) as f64 * 0.2,
        vibration: 3.0 + 0.5 * x.abs(),
        ..Default::default()
    }
}

/// An engine whose equipment have each learned `history` readings (their states not
/// checkpointed yet).
fn learned(equipment: usize, history: i64) -> Engine {
    let mut engine = Engine::new(EngineConfig { max_future_micros: i64::MAX, ..Default::default() });
    for i in 0..history {
        for e in 0..equipment {
            let t = reading(e, i);
            engine.observe(&t, "", t.ts_micros);
        }
    }
    engine
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Inline,
    Spread,
}

struct Outcome {
    readings: u64,
    secs: f64,
    longest_stall: Duration,
    p99_gap: Duration,
    /// Longest the loop itself spent on the checkpoint at one tick.
    longest_step: Duration,
    checkpointed: usize,
}

async fn run(mode: Mode, url: &str, equipment: usize, every: Duration, secs: u64) -> Outcome {
    let redis = proact_server::redis::connect(url).await.unwrap();
    let _: () = redis.flushall(false).await.unwrap();
    let writer = proact_server::redis::connect(url).await.unwrap();
    let mut leases = Leases::new(redis.clone(), "bench", SHARDS, 600_000);
    leases.heartbeat(proact_proto::time::now_micros() / 1000).await.unwrap();
    let history = 200;
    let mut warmed = learned(equipment, history);
    warmed.take_online_changes();
    let engine = Arc::new(Mutex::new(warmed));
    let mut checkpoints = (mode == Mode::Spread).then(|| Checkpointer::start(writer, "bench".into(), SHARDS, every));
    let tick = checkpoints.as_ref().map_or(every, Checkpointer::tick_every);
    let mut next_checkpoint = Instant::now() + tick;
    let (mut k, mut readings, mut checkpointed) = (0usize, 0u64, 0usize);
    let mut gaps = Vec::new();
    let mut longest_step = Duration::ZERO;
    let started = Instant::now();
    let mut last = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        {
            let mut engine = engine.lock().await;
            for _ in 0..BATCH {
                let (e, i) = (k % equipment, history + (k / equipment) as i64);
                let t = reading(e, i);
                engine.observe(&t, "", t.ts_micros);
                k += 1;
            }
        }
        readings += BATCH as u64;
        let _: String = redis.ping(None).await.unwrap();
        if Instant::now() >= next_checkpoint {
            next_checkpoint = Instant::now() + tick;
            let step = Instant::now();
            match checkpoints.as_mut() {
                Some(c) => checkpointed += c.take_slice(&mut *engine.lock().await),
                None => {
                    let states = engine.lock().await.take_online_changes();
                    checkpoint::write(&redis, "bench", SHARDS, &states).await.unwrap();
                    checkpointed += states.len();
                }
            }
            longest_step = longest_step.max(step.elapsed());
        }
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(c) = checkpoints {
        c.finish(&engine).await;
    }
    gaps.sort();
    Outcome {
        readings,
        secs,
        longest_stall: *gaps.last().unwrap(),
        p99_gap: gaps[(gaps.len() - 1) * 99 / 100],
        longest_step,
        checkpointed,
    }
}

fn main() {
    let equipment = env("PROACT_BENCH_EQUIPMENT", 10_000) as usize;
    let every = Duration::from_secs(env("PROACT_BENCH_CHECKPOINT_SECS", 10));
    // Three intervals and a second: both modes write every equipment three times.
    let secs = env("PROACT_BENCH_SECS", 3 * every.as_secs() + 1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let server = proact_testkit::Redis::start().await.unwrap();
        let one = learned(1, 200).take_online_changes();
        let size = one.first().map_or(0, |(_, s)| checkpoint::encode(s).len());
        let t0 = Instant::now();
        let n = 200;
        for _ in 0..n {
            std::hint::black_box(checkpoint::encode(&one[0].1));
        }
        let encode_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "checkpoint: {equipment} equipment, {SHARDS} shards, interval {} s, {secs} s per mode; one state {size} B stored, encoded in {encode_us:.0} µs",
            every.as_secs()
        );
        println!(
            "{:<8} {:>12} {:>16} {:>12} {:>20} {:>14}",
            "mode", "readings/s", "longest stall", "p99 gap", "longest checkpoint", "states written"
        );
        for (name, mode) in [("inline", Mode::Inline), ("spread", Mode::Spread)] {
            let o = run(mode, &server.url(), equipment, every, secs).await;
            println!(
                "{name:<8} {:>12.0} {:>13.1} ms {:>9.2} ms {:>17.1} ms {:>14}",
                o.readings as f64 / o.secs,
                o.longest_stall.as_secs_f64() * 1e3,
                o.p99_gap.as_secs_f64() * 1e3,
                o.longest_step.as_secs_f64() * 1e3,
                o.checkpointed
            );
        }
    });
}
