//! `just bench detector`: the detector's throughput and added latency with a 100-tree
//! RandomForest and a normal-behaviour model loaded.
//!
//! 1. Engine: readings of 100 equipment through windows, features, rules and both models
//!    on one thread: events/s per core and per-event latency percentiles.
//! 2. Loop: the real service (consumer group, leases, publish, ack) in this process on a
//!    one-thread runtime against a real Redis (the other core): a backlog of N entries
//!    drained, events/s; then paced streams (1,000 and 10,000 readings/s by default,
//!    `PROACT_BENCH_RATES`, `PROACT_BENCH_PACED_SECS` s each) with hot readings, and for
//!    them the latency end to end (XADD → alert event read back) and the latency the
//!    detector adds (entry ids on the Redis clock, and the service's own histogram), p50/p99.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use proact_anomaly_detector::engine::{Engine, EngineConfig};
use proact_features::{FeatureSchema, Window, WindowConfig};
use proact_models::{ArtefactInfo, NormalBehaviourParams, RandomForestParams, SchemaRef};
use proact_proto::streams::{shard_for, telemetry_stream, ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, Telemetry};
use prost::Message;

const EQUIPMENT: usize = 100;

fn signal(e: usize, i: i64) -> (f64, f64) {
    let x = (i as f64 * 0.05 + e as f64).sin();
    (60.0 + 3.0 * x + (i % 7) as f64 * 0.2, 3.0 + 0.5 * x.abs())
}

/// Trains the models on simulated windows (label: the last 10 % of a drift) so the forest
/// has realistic depth and the NB model a realistic threshold.
fn train(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let schema = FeatureSchema::base();
    let d = schema.len();
    let mut w = Window::new(&schema, WindowConfig::default());
    let (mut x, mut y, mut normal) = (Vec::new(), Vec::new(), Vec::new());
    let mut buf = vec![0.0; d];
    for i in 0..40_000i64 {
        let (mut t, mut v) = signal(3, i);
        let drift = (i % 4000) as f64 / 4000.0;
        let label = usize::from(drift > 0.9);
        t += 25.0 * drift * drift;
        v += 4.0 * drift * drift;
        let _ = w.push(i * 1000, &[t, v]);
        w.write_features(&mut buf).unwrap();
        x.extend_from_slice(&buf);
        y.push(label);
        if drift < 0.5 {
            normal.extend_from_slice(&buf);
        }
    }
    let xa = ndarray::Array2::from_shape_vec((y.len(), d), x).unwrap();
    let rf = RandomForestParams::default().n_trees(100).max_depth(12).seed(7).fit_arrays(&xa, &y).unwrap();
    let rf_art = rf.to_artefact(ArtefactInfo::new("anomaly-rf", "bench", SchemaRef::from(&schema)), 0.5);
    let nb = NormalBehaviourParams::default().fit(&normal, d).unwrap();
    let mut paths = vec![dir.join("rf.model")];
    rf_art.save(&paths[0]).unwrap();
    for e in 0..EQUIPMENT {
        let art = nb.to_artefact(ArtefactInfo::new(
            &format!("normal-behaviour/EQ-{e:03}"),
            "bench",
            SchemaRef::from(&schema),
        ));
        let p = dir.join(format!("nb-{e}.model"));
        art.save(&p).unwrap();
        paths.push(p);
    }
    paths
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn engine_bench(paths: &[std::path::PathBuf], n: usize) {
    let mut engine = Engine::new(EngineConfig::default());
    let schema_id = engine.schema_id().to_string();
    engine.set_models(proact_anomaly_detector::models::load_files(paths, &schema_id, None).unwrap());
    let readings: Vec<Telemetry> = (0..n)
        .map(|k| {
            let (e, i) = (k % EQUIPMENT, (k / EQUIPMENT) as i64);
            let (t, v) = signal(e, i);
            Telemetry {
                equipement_id: format!("EQ-{e:03}"),
                ts_micros: i * 1_000_000,
                temperature: t,
                vibration: v,
                ..Default::default()
            }
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    let mut transitions = 0usize;
    for t in &readings {
        let t0 = Instant::now();
        transitions += engine.observe(t, "", t.ts_micros).len();
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "engine: {n} events in {secs:.2} s = {:.0} events/s on one core; per event p50 {:.2} µs, p99 {:.2} µs ({transitions} transitions)",
        n as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

async fn loop_bench(paths: &[std::path::PathBuf], backlog: usize, samples: &Samples, rates: &[u64], seconds: u64) {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    // Backlog written before the detector starts.
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    // A fred pipeline keeps its commands after `all()`: one pipeline per chunk.
    let mut pipeline = redis.pipeline();
    for k in 0..backlog {
        let (e, i) = (k % EQUIPMENT, (k / EQUIPMENT) as i64);
        let (t, v) = signal(e, i);
        let t = Telemetry {
            equipement_id: format!("EQ-{e:03}"),
            ts_micros: base + i * 100_000,
            temperature: t,
            vibration: v,
            ..Default::default()
        };
        let key = telemetry_stream(shard_for(&t.equipement_id, 8));
        let _: () =
            pipeline.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await.unwrap();
        if k % 10_000 == 9_999 {
            let _: Vec<Value> = pipeline.all().await.unwrap();
            pipeline = redis.pipeline();
        }
    }
    let _: Vec<Value> = pipeline.all().await.unwrap();
    let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let config = proact_anomaly_detector::Config::try_parse_from([
        "proact-anomaly-detector",
        "--redis-url",
        &server.url(),
        "--database-url",
        "postgres://proact@127.0.0.1:9/none",
        "--registry-url",
        "http://127.0.0.1:9",
        "--admin-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--consumer",
        "bench",
        "--silence-after-secs",
        "0",
        "--model-file",
        &files.join(","),
    ])
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let s2 = shutdown.clone();
    // The service on its own one-thread runtime: "per core".
    let service = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            proact_anomaly_detector::App::build(config).await.unwrap().run_until_stopped(s2).await.unwrap()
        });
    });
    let start = Instant::now();
    // Wait for the groups to exist, then for every entry to be delivered and acked.
    tokio::time::sleep(Duration::from_millis(50)).await;
    while !drained(&redis).await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("loop: backlog of {backlog} entries drained in {secs:.2} s = {:.0} events/s (one runtime thread; includes start-up and lease acquisition)", backlog as f64 / secs);
    for &rate in rates {
        paced(&redis, &server.url(), samples, &format!("paced {rate}/s"), rate, seconds, 20).await;
    }
    // Many alerts per batch (one reading in ten hot, ten per 10 ms slice): what publishing a
    // batch's events in one round trip instead of one each is for.
    paced(&redis, &server.url(), samples, "burst 10000/s, 1 in 10 hot", 10_000, 2, 1_000).await;
    shutdown.cancel();
    let _ = service.join();
}

/// Paced: `rate` readings/s for `seconds`, written in 10 ms pipelined slices; `hot_per_s`
/// readings a second are hot, each on a fresh equipment id so that each raises an alert. Three
/// latencies per hot reading:
/// - end to end: the slice's XADD → the alert event read back from the alerts stream (this
///   process's clock; includes the producer's write and the reader's wake-up);
/// - added, Redis clock: the telemetry entry id's time → the alert entry id's time (both ids
///   stamped by Redis, whole milliseconds);
/// - added, service: `proact_detector_alert_latency_seconds`, from a batch's read reply to
///   its alert events appended, recorded by the detector itself (one sample per batch).
async fn paced(redis: &Client, url: &str, samples: &Samples, label: &str, rate: u64, seconds: u64, hot_per_s: u64) {
    let total = rate * seconds;
    let slice = (rate / 100).max(1);
    let hot_every = (rate / hot_per_s.max(1)).max(1);
    let tag: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
    let stop_reader = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel::<(String, Instant, String)>();
    let reader_url = url.to_string();
    let stop = stop_reader.clone();
    let reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let follower = proact_server::redis::connect(&reader_url).await.unwrap();
            let mut last_id = "$".to_string();
            while !stop.is_cancelled() {
                let v: Value =
                    follower.xread(Some(1000), Some(100), ALERTS_STREAM, last_id.as_str()).await.unwrap_or(Value::Null);
                let resp = proact_server::redis::xread_response(v).unwrap_or_default();
                for (id, f) in resp.get(ALERTS_STREAM).cloned().unwrap_or_default() {
                    last_id = id.clone();
                    if let Some(ev) = f.get(PAYLOAD_FIELD).and_then(|p| AlertEvent::decode(p.as_ref()).ok()) {
                        if ev.kind == 1 {
                            let _ = tx.send((ev.alert.unwrap().equipement_id, Instant::now(), id));
                        }
                    }
                }
            }
        });
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    samples.take("proact_detector_alert_latency_seconds");
    // Hot equipment id → (when its slice was flushed, its telemetry entry id).
    let mut sent: HashMap<String, (Instant, String)> = HashMap::new();
    let t0 = Instant::now();
    let now = proact_proto::time::now_micros();
    let mut k: u64 = 0;
    let mut tick = 0u32;
    while k < total {
        let due = t0 + Duration::from_millis(10) * tick;
        tick += 1;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let pipeline = redis.pipeline();
        let mut hot_ids = Vec::new();
        for j in 0..slice {
            let (e, i) = ((k as usize) % EQUIPMENT, k as i64);
            let hot = k % hot_every == 0;
            let id = if hot { format!("HOT-{tag}-{k}") } else { format!("EQ-{e:03}") };
            let (t, v) = signal(e, i);
            let t = Telemetry {
                equipement_id: id.clone(),
                ts_micros: now + i * 10,
                temperature: if hot { 97.0 } else { t },
                vibration: v,
                ..Default::default()
            };
            if hot {
                hot_ids.push((id, j as usize));
            }
            let key = telemetry_stream(shard_for(&t.equipement_id, 8));
            let _: () = pipeline
                .xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec())))
                .await
                .unwrap();
            k += 1;
        }
        // Stamped before the flush: the latency includes the write itself.
        let at = Instant::now();
        let ids: Vec<Value> = pipeline.all().await.unwrap();
        for (id, j) in hot_ids {
            sent.insert(id, (at, ids[j].as_string().unwrap_or_default()));
        }
    }
    let send_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_reader.cancel();
    let _ = reader.join();
    let (mut end_to_end, mut by_ids) = (Vec::new(), Vec::new());
    while let Ok((id, at, alert_entry)) = rx.try_recv() {
        if let Some((s, telemetry_entry)) = sent.get(&id) {
            end_to_end.push(at.saturating_duration_since(*s).as_secs_f64() * 1e3);
            by_ids.push((entry_ms(&alert_entry) - entry_ms(telemetry_entry)) as f64);
        }
    }
    let added: Vec<f64> = samples.take("proact_detector_alert_latency_seconds").into_iter().map(|s| s * 1e3).collect();
    println!(
        "{label}: {total} readings in {send_secs:.1} s ({:.0}/s); {} hot readings → {} alerts; all entries acked: {}",
        total as f64 / send_secs,
        sent.len(),
        end_to_end.len(),
        drained(redis).await
    );
    println!("{label}: end to end, XADD → alert event read back: {}", summary(end_to_end));
    println!("{label}: added, telemetry entry id → alert entry id (Redis clock, whole ms): {}", summary(by_ids));
    println!(
        "{label}: added, proact_detector_alert_latency_seconds (batch read → alerts appended): {}",
        summary(added)
    );
}

/// The millisecond part of a stream entry id (`1700000000000-3`).
fn entry_ms(id: &str) -> i64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

/// `n, p50, p99, max` of values in milliseconds.
fn summary(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "n {}, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1]
    )
}

/// The bench's metrics recorder, installed instead of the Prometheus one: it keeps every
/// value a histogram records (Prometheus' buckets, 1 ms then 2.5 ms, are too coarse to read
/// a p99 against a 2 ms target).
#[derive(Default, Clone)]
struct Samples(Arc<Mutex<BTreeMap<String, Series>>>);

#[derive(Clone)]
enum Series {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicU64>),
    Histogram(Arc<Values>),
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl Samples {
    fn series(&self, key: &metrics::Key, new: impl FnOnce() -> Series) -> Series {
        let mut name = key.name().to_string();
        for l in key.labels() {
            name.push_str(&format!("{{{}={}}}", l.key(), l.value()));
        }
        self.0.lock().unwrap().entry(name).or_insert_with(new).clone()
    }

    /// The values a histogram recorded since the last call.
    fn take(&self, name: &str) -> Vec<f64> {
        match self.0.lock().unwrap().get(name) {
            Some(Series::Histogram(v)) => std::mem::take(&mut *v.0.lock().unwrap()),
            _ => Vec::new(),
        }
    }

    fn print(&self) {
        for (name, series) in self.0.lock().unwrap().iter() {
            if !name.starts_with("proact_detector_") {
                continue;
            }
            match series {
                Series::Counter(c) => println!("metrics: {name} {}", c.load(Ordering::Relaxed)),
                Series::Gauge(g) => println!("metrics: {name} {}", f64::from_bits(g.load(Ordering::Relaxed))),
                Series::Histogram(v) => {
                    let v = v.0.lock().unwrap().clone();
                    let sum: f64 = v.iter().sum();
                    let unit = if name.ends_with("_seconds") { 1e3 } else { 1.0 };
                    let scaled: Vec<f64> = v.iter().map(|x| x * unit).collect();
                    println!(
                        "metrics: {name} sum {sum:.3}, {}",
                        summary(scaled).replace(" ms", if unit == 1.0 { "" } else { " ms" })
                    );
                }
            }
        }
    }
}

impl metrics::Recorder for Samples {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        match self.series(key, || Series::Counter(Default::default())) {
            Series::Counter(c) => metrics::Counter::from_arc(c),
            _ => metrics::Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        match self.series(key, || Series::Gauge(Default::default())) {
            Series::Gauge(g) => metrics::Gauge::from_arc(g),
            _ => metrics::Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        match self.series(key, || Series::Histogram(Default::default())) {
            Series::Histogram(v) => metrics::Histogram::from_arc(v),
            _ => metrics::Histogram::noop(),
        }
    }
}

/// (entries not yet delivered, entries delivered but not acked) over the groups of a stream.
fn lag_and_pending(v: &Value) -> (u64, u64) {
    let Value::Array(groups) = v else { return (u64::MAX, 0) };
    let (mut lag, mut pending) = (0, 0);
    for g in groups {
        let Value::Array(f) = g else { continue };
        for kv in f.chunks(2) {
            match (kv[0].as_str().as_deref(), kv.get(1)) {
                (Some("lag"), Some(v)) => lag += v.as_u64().unwrap_or(u64::MAX / 16),
                (Some("pending"), Some(v)) => pending += v.as_u64().unwrap_or(0),
                _ => {}
            }
        }
    }
    (lag, pending)
}

async fn drained(redis: &Client) -> bool {
    let mut total = (0u64, 0u64);
    for s in 0..8 {
        let v: Value = redis.xinfo_groups(telemetry_stream(s)).await.unwrap_or(Value::Null);
        let (l, p) = lag_and_pending(&v);
        total = (total.0.saturating_add(l), total.1 + p);
    }
    total == (0, 0)
}

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("detector_loop: run with `cargo bench` (just bench detector)");
        return;
    }
    let samples = Samples::default();
    metrics::set_global_recorder(samples.clone()).expect("the bench's recorder is the first");
    let env = |name: &str| std::env::var(name).ok();
    let n: usize = env("PROACT_BENCH_EVENTS").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rates: Vec<u64> = env("PROACT_BENCH_RATES")
        .unwrap_or_else(|| "1000,10000".into())
        .split(',')
        .map(|r| r.trim().parse().expect("PROACT_BENCH_RATES: readings/s, comma-separated"))
        .collect();
    let seconds: u64 = env("PROACT_BENCH_PACED_SECS").and_then(|v| v.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let paths = train(dir.path());
    println!(
        "models: 100-tree forest (depth 12) + {EQUIPMENT} normal-behaviour models trained in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    engine_bench(&paths, n);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(loop_bench(&paths, n / 5, &samples, &rates, seconds));
    samples.print();
}
