//! `just bench pipeline`: the whole pipeline under load, next to the original Python design,
//! in one run on the same servers.
//!
//! Starts Mosquitto, Redis and PostgreSQL from the test kit on free loopback ports, then the
//! five ProAct services from their release binaries as OS processes (`--bin-dir`), and steps
//! through fixed publish rates (QoS 1, seed-shaped readings over `--equipment` ids, a few of
//! them above 90 °C every `--hot-period-secs`, each a new episode). For each step it reports:
//! - the rate the publishers achieved, rows archived in `telemetry` against messages the broker
//!   acked (count in = count out), dead letters, and the end-to-end backlog (published −
//!   archived, sampled every 200 ms from the archive's consumer group) and how long it took to
//!   drain after the last publish;
//! - publish → `/ws/alerts` latency of every hot reading's `raised` alert (p50/p99/max);
//! - CPU seconds of each service and server process over the step, and each one's peak RSS;
//!   and, while publishing, the cores the measured system, the load driver and the whole machine
//!   (anyone's processes, from `/proc/stat`) were busy: whether the step was bound by the CPU.
//!
//! A step is *sustained* when the publishers offered ≥ 97 % of the rate, every acked message
//! became a row (no loss, no dead letter), the backlog did not grow (least-squares slope over
//! the publishing window < 2 % of the rate per second) and it drained within 3 s of the last
//! publish. After the fixed rates it steps up (`--search`) until a step is not sustained.
//!
//! The ProAct phase runs once per `--variants` entry, side by side in one run: what one MQTT
//! message carries (one JSON reading, a JSON array of N, or a Sparkplug B DDATA of N metrics)
//! and what one stream entry carries (`PROACT_INGEST_STREAM_ENTRIES`: one reading, or an
//! ingest batch's readings for a shard). Rates, counts and CPU per reading are in readings, whatever the messages carry;
//! what the archive and the detector have processed is read from their `/metrics` (rows
//! committed, readings scored), since an entry may hold many readings.
//!
//! Then the ProAct services stop and `bench/baselines/python_design.py` runs against the same
//! broker, Redis and PostgreSQL (its own database), stepped up the same way, and once more at
//! `--python-beyond` (10,000/s), stopped `--python-grace-secs` after the last publish, to count
//! what it loses beyond its rate.
//!
//! Writes `results.json` and `report.md` under `--out`. An example rather than a binary because
//! it uses the test kit (a dev-dependency), like `ingest-bench`.

mod load;
mod procs;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fred::prelude::*;
use proact_proto::streams::{telemetry_streams, DEAD_LETTER_STREAM};
use serde_json::{json, Value as Json};

use load::{AlertBook, Plan};
use procs::{cpu_secs, peak_rss_mib, Proc, Service};

#[derive(Debug, Parser)]
#[command(name = "pipeline-bench")]
struct Args {
    /// Where the release binaries of the services are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Results (`results.json`, `report.md`) and the processes' logs.
    #[arg(long, default_value = "target/bench-pipeline")]
    out: PathBuf,
    /// Seconds of publishing per step.
    #[arg(long, default_value_t = 30.0)]
    secs: f64,
    /// The ProAct variants, each `<payload>/<entries>`: payload `json` (one reading per
    /// message), `arrayN` (JSON arrays of N readings) or `sparkplugN` (Sparkplug B DDATA of N
    /// metrics, N/2 readings), entries `single` or `batch`.
    #[arg(long, value_delimiter = ',', default_value = "json/single,json/batch,array20/batch")]
    variants: Vec<Variant>,
    /// Fixed rates, readings/s, always run.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    rates: Vec<u64>,
    /// Rates tried next, in order, until one is not sustained.
    #[arg(long, value_delimiter = ',', default_value = "20000,30000,40000,50000,60000,80000,100000,150000,200000")]
    search: Vec<u64>,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 200)]
    equipment: usize,
    /// Equipment that send a hot reading every `hot_period_secs`.
    #[arg(long, default_value_t = 30)]
    hot: usize,
    #[arg(long, default_value_t = 3.0)]
    hot_period_secs: f64,
    /// Most seconds a step waits for the pipeline to drain after its last publish.
    #[arg(long, default_value_t = 120.0)]
    drain_secs: f64,
    /// Python interpreter with paho-mqtt, psycopg2, redis and websockets; empty: no baseline.
    #[arg(long, default_value = "")]
    python: String,
    #[arg(long, default_value = "bench/baselines/python_design.py")]
    python_script: PathBuf,
    /// Rates for the Python design, in order, until one is not sustained.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,1500,2000,3000,4000,6000,8000")]
    python_rates: Vec<u64>,
    /// The Python design's overload step: this rate for `secs`, then `python_grace_secs`
    /// to catch up, then it is stopped and what it did not store is counted as lost.
    #[arg(long, default_value_t = 10_000)]
    python_beyond: u64,
    #[arg(long, default_value_t = 10.0)]
    python_grace_secs: f64,
}

/// What MQTT messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// One JSON reading per message (the seed's contract).
    Json,
    /// A JSON array of this many readings of one equipment per message (ADR 0005).
    JsonArray(usize),
    /// Sparkplug B DDATA of this many metrics per message (`spBv1.0/Bench/DDATA/{node}/{id}`,
    /// ingest's `PROACT_INGEST_SPARKPLUG=all`): a temperature and a vibration metric per
    /// reading, each with the reading's timestamp, after an NBIRTH per publisher connection
    /// and a DBIRTH per device.
    Sparkplug(usize),
}

/// One ProAct configuration measured: the payload and `PROACT_INGEST_STREAM_ENTRIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    payload: Payload,
    /// Batch stream entries (`batch`) or one entry per reading (`single`).
    batch_entries: bool,
}

impl Variant {
    fn per_message(&self) -> usize {
        match self.payload {
            Payload::Json => 1,
            Payload::JsonArray(n) => n,
            Payload::Sparkplug(metrics) => metrics / 2,
        }
    }

    /// The name of the variant in the report, e.g. `json-single`, `array20-batch`.
    fn label(&self) -> String {
        let payload = match self.payload {
            Payload::Json => "json".to_string(),
            Payload::JsonArray(n) => format!("array{n}"),
            Payload::Sparkplug(n) => format!("sparkplug{n}"),
        };
        format!("{payload}-{}", if self.batch_entries { "batch" } else { "single" })
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (payload, entries) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected <payload>/<entries>"))?;
        let payload = match payload {
            "json" => Payload::Json,
            p => match (p.strip_prefix("array"), p.strip_prefix("sparkplug")) {
                (Some(n), _) => match n.parse::<usize>() {
                    Ok(n) if (2..=1000).contains(&n) => Payload::JsonArray(n),
                    _ => return Err(format!("{s:?}: arrayN takes N in 2..=1000")),
                },
                (_, Some(n)) => match n.parse::<usize>() {
                    Ok(n) if (2..=1000).contains(&n) && n % 2 == 0 => Payload::Sparkplug(n),
                    _ => return Err(format!("{s:?}: sparkplugN takes an even N (metrics) in 2..=1000")),
                },
                _ => return Err(format!("{s:?}: payload is json, arrayN or sparkplugN")),
            },
        };
        let batch_entries = match entries {
            "batch" => true,
            "single" => false,
            _ => return Err(format!("{s:?}: entries are single or batch")),
        };
        Ok(Self { payload, batch_entries })
    }
}

const SHARDS: u32 = 8;
const ARCHIVE_GROUP: &str = "archive";
const DETECTOR_GROUP: &str = "anomaly-detector";

/// One step's measurements.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Step {
    system: String,
    rate: u64,
    secs: f64,
    sent: u64,
    acked: u64,
    achieved_rate: f64,
    rows: u64,
    lost: i64,
    dead_letters: u64,
    backlog_p50: u64,
    backlog_max: u64,
    backlog_at_end: u64,
    backlog_slope_per_s: f64,
    drain_secs: f64,
    drained: bool,
    /// From the last publish until the detector's group had processed every acked message
    /// (or the drain limit), and how many it had.
    detector_drain_secs: f64,
    scored: u64,
    hot: u64,
    alerts: usize,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    /// Publish → the alert appended to the alerts stream (ProAct only): the rest of the
    /// latency is the gateway's read and the WebSocket.
    to_stream_p50_ms: Option<f64>,
    to_stream_p99_ms: Option<f64>,
    cpu_secs: BTreeMap<String, f64>,
    peak_rss_mib: BTreeMap<String, f64>,
    sustained: bool,
    why_not: Vec<String>,
    note: String,
    /// Event times of this step's readings start here.
    since_micros: i64,
    /// From the first publish to the end of the measurements.
    wall_secs: f64,
    /// 1-minute load average at the end of the step: how much of the two cores others took.
    load_1m: f64,
    /// While publishing (not the drain): cores the measured system used, the load driver,
    /// the whole machine (every process, anyone's), and what the hypervisor stole.
    publishing_system_cores: f64,
    publishing_driver_cores: f64,
    machine_busy_cores: f64,
    machine_steal_cores: f64,
    /// Times ingest lost its MQTT connection during the step (from its log).
    ingest_reconnects: usize,
    /// Where the messages were when rows were still missing at the drain limit.
    shortfall: Option<Shortfall>,
}

/// Counts along the path, at the step's start and end (ProAct only): the broker's acks to the
/// publishers against what reached ingest, what it wrote, what the archive took and stored.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Probe {
    /// MQTT messages ingest read (redeliveries included) / accepted / rejected.
    ingest_received: u64,
    ingest_accepted: u64,
    ingest_rejected: u64,
    /// Entries in the telemetry streams (not trimmed during the bench).
    stream_entries: u64,
    /// Entries the archive's group has read and acked.
    archived_entries: u64,
}

/// A step that ended with rows missing: the path's counts over the step, then what happened
/// once ingest's session was taken over and resumed (a broker that holds messages back from
/// a connected client sends them again on a new connection).
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Shortfall {
    missing: u64,
    delta: Probe,
    rows_after_resume: u64,
    resume_wait_secs: f64,
}

/// What is measured: the ProAct pipeline or the Python design.
enum System {
    ProAct {
        redis: Client,
        pg: tokio_postgres::Client,
        ingest_admin: std::net::SocketAddr,
        archive_admin: std::net::SocketAddr,
        detector_admin: std::net::SocketAddr,
        variant: Variant,
    },
    Python {
        redis: Client,
        pg: tokio_postgres::Client,
    },
}

impl System {
    fn name(&self) -> String {
        match self {
            System::ProAct { variant, .. } => format!("proact-{}", variant.label()),
            System::Python { .. } => "python".into(),
        }
    }

    /// Whether the load is Sparkplug B rather than JSON.
    fn sparkplug(&self) -> bool {
        matches!(self, System::ProAct { variant: Variant { payload: Payload::Sparkplug(_), .. }, .. })
    }

    /// Readings per MQTT message.
    fn per_message(&self) -> usize {
        match self {
            System::ProAct { variant, .. } => variant.per_message(),
            System::Python { .. } => 1,
        }
    }

    /// Readings processed to the end so far, cheap enough to sample often: rows the archive
    /// has committed (new or already there), or the Python design's XADDs (each after its
    /// INSERT's commit).
    async fn processed(&self) -> anyhow::Result<u64> {
        self.processed_by(ARCHIVE_GROUP).await
    }

    /// Like [`Self::processed`], for the detector (readings scored; the Python design has
    /// one path, so the same count).
    async fn processed_by(&self, group: &str) -> anyhow::Result<u64> {
        match self {
            System::ProAct { archive_admin, detector_admin, .. } => {
                let (admin, names): (_, &[&str]) = if group == ARCHIVE_GROUP {
                    (*archive_admin, &["proact_archive_rows_written_total", "proact_archive_rows_duplicate_total"])
                } else {
                    (*detector_admin, &["proact_detector_events_scored_total"])
                };
                let page = procs::http_body(admin, "/metrics")
                    .await
                    .ok_or_else(|| anyhow::anyhow!("{group}: /metrics on {admin} did not answer"))?;
                Ok(names.iter().map(|n| procs::metric_sum(&page, n, &[])).sum::<f64>() as u64)
            }
            System::Python { redis, .. } => Ok(redis.xlen("py:telemetry").await?),
        }
    }

    /// Entries a consumer group of the telemetry shards has read and acked (ProAct).
    async fn entries_done_by(&self, group: &str) -> anyhow::Result<u64> {
        match self {
            System::ProAct { redis, .. } => {
                let mut total = 0u64;
                for key in telemetry_streams(SHARDS) {
                    let exists: u64 = redis.exists(key.as_str()).await?;
                    if exists == 0 {
                        continue;
                    }
                    let groups: Value = redis.xinfo_groups(key.as_str()).await?;
                    let Value::Array(groups) = groups else { continue };
                    for g in groups {
                        let f = fields(&g);
                        if f.get("name").and_then(Value::as_string).as_deref() == Some(group) {
                            let read = f.get("entries-read").and_then(Value::as_u64).unwrap_or(0);
                            let pending = f.get("pending").and_then(Value::as_u64).unwrap_or(0);
                            total += read.saturating_sub(pending);
                        }
                    }
                }
                Ok(total)
            }
            System::Python { .. } => Ok(0),
        }
    }

    /// Rows stored with an event time at or after `since` (the step's start).
    async fn rows_since(&self, since_micros: i64) -> anyhow::Result<u64> {
        let since = chrono::DateTime::from_timestamp_micros(since_micros).expect("a valid time");
        let (pg, table) = match self {
            System::ProAct { pg, .. } => (pg, "telemetry"),
            System::Python { pg, .. } => (pg, "py_telemetry"),
        };
        let n: i64 = pg.query_one(&format!("SELECT count(*) FROM {table} WHERE ts >= $1"), &[&since]).await?.get(0);
        Ok(n as u64)
    }

    /// When ingest took each of `keys` in (its row's `received_at`, µs), for the readings archived.
    async fn ingested_at(&self, keys: &[load::Key]) -> anyhow::Result<HashMap<load::Key, i64>> {
        let System::ProAct { pg, .. } = self else { return Ok(HashMap::new()) };
        let mut out = HashMap::new();
        for (id, ts) in keys {
            let at = chrono::DateTime::from_timestamp_micros(*ts).expect("a valid time");
            let row = pg
                .query_opt("SELECT received_at FROM telemetry WHERE equipement_id = $1 AND ts = $2", &[id, &at])
                .await?;
            if let Some(row) = row {
                let received: chrono::DateTime<chrono::Utc> = row.get(0);
                out.insert((id.clone(), *ts), received.timestamp_micros());
            }
        }
        Ok(out)
    }

    /// Closes the Redis connection (before the servers stop, so it does not retry).
    async fn close(&self) {
        let (System::ProAct { redis, .. } | System::Python { redis, .. }) = self;
        let _ = redis.quit().await;
    }

    /// The path's counts now (ProAct only).
    async fn probe(&self) -> anyhow::Result<Option<Probe>> {
        let System::ProAct { redis, ingest_admin, .. } = self else { return Ok(None) };
        let metrics = procs::http_body(*ingest_admin, "/metrics").await.unwrap_or_default();
        let m = |name: &str| procs::metric_sum(&metrics, name, &[("source", "mqtt")]) as u64;
        let mut stream_entries = 0;
        for key in telemetry_streams(SHARDS) {
            stream_entries += redis.xlen::<u64, _>(key.as_str()).await?;
        }
        Ok(Some(Probe {
            ingest_received: m("proact_ingest_received_total"),
            ingest_accepted: m("proact_ingest_accepted_total"),
            ingest_rejected: procs::metric_sum(&metrics, "proact_ingest_rejected_total", &[]) as u64,
            stream_entries,
            archived_entries: self.entries_done_by(ARCHIVE_GROUP).await?,
        }))
    }

    async fn dead_letters(&self) -> anyhow::Result<u64> {
        match self {
            System::ProAct { redis, .. } => Ok(redis.xlen(DEAD_LETTER_STREAM).await?),
            System::Python { .. } => Ok(0),
        }
    }
}

/// The fields of one `XINFO GROUPS` item (a flat key/value array in RESP2, a map in RESP3).
fn fields(g: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    match g {
        Value::Array(kv) => {
            for pair in kv.chunks(2) {
                if let [k, v] = pair {
                    if let Some(k) = k.as_string() {
                        out.insert(k, v.clone());
                    }
                }
            }
        }
        Value::Map(m) => {
            for (k, v) in m.clone().inner() {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_string(), v);
                }
            }
        }
        _ => {}
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Least-squares slope of `(t, y)`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mt, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let num: f64 = points.iter().map(|(t, y)| (t - mt) * (y - my)).sum();
    let den: f64 = points.iter().map(|(t, _)| (t - mt).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// The processes whose CPU and memory a step reports: `name → pids`.
type Watched = Vec<(String, Vec<u32>)>;

fn watched(own: &[(&str, u32)]) -> Watched {
    let mut w: Watched = own.iter().map(|(n, p)| (n.to_string(), vec![*p])).collect();
    w.extend(procs::servers().into_iter().map(|(n, p)| (n.to_string(), p)));
    w.push(("load driver".into(), vec![std::process::id()]));
    w
}

fn cpu_snapshot(w: &Watched, ticks: f64) -> BTreeMap<(String, u32), f64> {
    w.iter().flat_map(|(n, pids)| pids.iter().map(move |&p| ((n.clone(), p), cpu_secs(p, ticks)))).collect()
}

struct Ctx {
    args: Args,
    mqtt_port: u16,
    /// The broker's log: its notices say when it drops messages for a client.
    mqtt_log: PathBuf,
    book: Arc<AlertBook>,
    ticks: f64,
}

async fn run_step(ctx: &Ctx, sys: &System, own: &[(&str, u32)], rate: u64, drain_limit: f64) -> anyhow::Result<Step> {
    let a = &ctx.args;
    let reconnects0 = ingest_reconnects(&a.out);
    let plan = Plan {
        rate,
        per_message: sys.per_message(),
        sparkplug: sys.sparkplug(),
        secs: a.secs,
        publishers: a.publishers,
        equipment: a.equipment,
        hot: a.hot,
        hot_period: Duration::from_secs_f64(a.hot_period_secs),
    };
    settle(sys, drain_limit).await?;
    ctx.book.reset();
    let w = watched(own);
    let cpu0 = cpu_snapshot(&w, ctx.ticks);
    let machine0 = procs::MachineTicks::now();
    let dlq0 = sys.dead_letters().await?;
    let done0 = sys.processed().await?;
    let scored0 = sys.processed_by(DETECTOR_GROUP).await?;
    let probe0 = sys.probe().await?;
    // On a millisecond: a Sparkplug birth sent within this one is stamped at its start.
    let since = proact_proto::time::now_micros() / 1000 * 1000;
    let progress = Arc::new(AtomicU64::new(0));
    let tag = format!("{}-{rate}", sys.name());
    let started = Instant::now();

    // Publish while sampling the backlog (sent − processed) every 200 ms.
    let publishing = load::publish(ctx.mqtt_port, &tag, &plan, ctx.book.clone(), progress.clone());
    tokio::pin!(publishing);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let published = loop {
        tokio::select! {
            p = &mut publishing => break p,
            _ = tick.tick() => {
                let done = sys.processed().await?.saturating_sub(done0);
                let backlog = progress.load(Ordering::Relaxed).saturating_sub(done);
                samples.push((started.elapsed().as_secs_f64(), backlog as f64));
            }
        }
    };
    let publish_end = Instant::now();
    let machine1 = procs::MachineTicks::now();
    // Listed again: a process started during the step (a PostgreSQL backend the archive's pool
    // opens under load) counts from zero, its whole life being inside the step.
    let cpu_published = cpu_snapshot(&watched(own), ctx.ticks);
    let publishing_secs = started.elapsed().as_secs_f64();
    let (machine_busy_cores, machine_steal_cores) = machine0.cores_until(&machine1, ctx.ticks, publishing_secs);
    let (mut publishing_system, mut publishing_driver) = (0.0, 0.0);
    for ((name, pid), t1) in &cpu_published {
        let used = t1 - cpu0.get(&(name.clone(), *pid)).copied().unwrap_or(0.0);
        if name == "load driver" {
            publishing_driver += used;
        } else {
            publishing_system += used;
        }
    }
    let done = sys.processed().await?.saturating_sub(done0);
    let backlog_at_end = published.sent.saturating_sub(done);

    // Drain: every acked message processed, or the limit.
    let mut drained = done >= published.acked;
    while !drained && publish_end.elapsed().as_secs_f64() < drain_limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drained = sys.processed().await?.saturating_sub(done0) >= published.acked;
    }
    // Redelivered duplicates (after a reconnect) count as processed too: the rows decide.
    let mut rows = sys.rows_since(since).await?;
    while rows < published.acked && publish_end.elapsed().as_secs_f64() < drain_limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rows = sys.rows_since(since).await?;
    }
    drained = drained && rows >= published.acked;
    let drain_secs = publish_end.elapsed().as_secs_f64();
    let shortfall = match (probe0, rows < published.acked) {
        (Some(p0), true) => Some(locate_shortfall(ctx, sys, p0, since, published.acked, rows).await?),
        _ => None,
    };
    // The last alerts: the detector reads the streams beside the archive and may be further
    // behind; wait (to the drain limit) until it has scored every acked message, then 5 s.
    let mut scored = sys.processed_by(DETECTOR_GROUP).await?.saturating_sub(scored0);
    while scored < published.acked && publish_end.elapsed().as_secs_f64() < drain_limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        scored = sys.processed_by(DETECTOR_GROUP).await?.saturating_sub(scored0);
    }
    let detector_drain_secs = publish_end.elapsed().as_secs_f64();
    let alert_deadline = Instant::now() + Duration::from_secs(5);
    while ctx.book.waiting() > 0 && Instant::now() < alert_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead_letters = sys.dead_letters().await?.saturating_sub(dlq0);

    // Listed again (as above); a process gone since the start (a closed connection) drops out
    // instead of counting its whole life negatively.
    let w = watched(own);
    let cpu1 = cpu_snapshot(&w, ctx.ticks);
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    for ((name, pid), t1) in &cpu1 {
        let t0 = cpu0.get(&(name.clone(), *pid)).copied().unwrap_or(0.0);
        *cpu.entry(name.clone()).or_default() += t1 - t0;
    }
    let mut rss: BTreeMap<String, f64> = BTreeMap::new();
    for (name, pids) in &w {
        // PostgreSQL's processes share its buffers: the largest one, not the sum.
        let peak = pids.iter().map(|&p| peak_rss_mib(p)).fold(0.0, f64::max);
        rss.insert(name.clone(), peak);
    }

    let ingested = sys.ingested_at(&ctx.book.timed_keys()).await?;
    std::fs::write(a.out.join(format!("alerts-{tag}.csv")), ctx.book.records_csv(&ingested))?;
    let mut lat = ctx.book.latencies_ms();
    lat.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let mut to_stream = ctx.book.to_stream_ms();
    to_stream.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let mut backlogs: Vec<f64> = samples.iter().map(|s| s.1).collect();
    backlogs.sort_by(|x, y| x.partial_cmp(y).unwrap());
    // The first second is the pipeline filling up, not a trend.
    let trend: Vec<(f64, f64)> = samples.iter().copied().filter(|s| s.0 >= 1.0).collect();
    let slope_per_s = slope(&trend);
    let achieved = published.sent as f64 / a.secs;

    let mut why_not = Vec::new();
    if achieved < 0.97 * rate as f64 {
        why_not.push(format!("publishers offered only {achieved:.0}/s"));
    }
    if published.acked < published.sent {
        why_not.push(format!("{} publishes not acked by the broker", published.sent - published.acked));
    }
    if rows != published.acked {
        why_not.push(format!("{} rows for {} acked readings", rows, published.acked));
    }
    if dead_letters > 0 {
        why_not.push(format!("{dead_letters} dead letters"));
    }
    if slope_per_s > 0.02 * rate as f64 {
        why_not.push(format!("backlog grew {slope_per_s:.0} readings/s"));
    }
    if !drained || drain_secs > 3.0 {
        why_not.push(format!("drain took {drain_secs:.1} s{}", if drained { "" } else { " (not drained)" }));
    }
    why_not.extend(published.errors.iter().cloned());

    let step = Step {
        system: sys.name(),
        rate,
        secs: a.secs,
        sent: published.sent,
        acked: published.acked,
        achieved_rate: achieved,
        rows,
        lost: published.acked as i64 - rows as i64,
        dead_letters,
        backlog_p50: percentile(&backlogs, 0.5).unwrap_or(0.0) as u64,
        backlog_max: backlogs.last().copied().unwrap_or(0.0) as u64,
        backlog_at_end,
        backlog_slope_per_s: slope_per_s,
        drain_secs,
        detector_drain_secs,
        scored,
        drained,
        hot: published.hot,
        alerts: lat.len(),
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        latency_max_ms: lat.last().copied(),
        to_stream_p50_ms: percentile(&to_stream, 0.5),
        to_stream_p99_ms: percentile(&to_stream, 0.99),
        cpu_secs: cpu,
        peak_rss_mib: rss,
        sustained: why_not.is_empty(),
        why_not,
        note: String::new(),
        since_micros: since,
        wall_secs: started.elapsed().as_secs_f64(),
        load_1m: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0),
        publishing_system_cores: publishing_system / publishing_secs.max(1e-9),
        publishing_driver_cores: publishing_driver / publishing_secs.max(1e-9),
        machine_busy_cores,
        machine_steal_cores,
        ingest_reconnects: ingest_reconnects(&a.out).saturating_sub(reconnects0),
        shortfall,
    };
    print_step(&step);
    Ok(step)
}

/// How often ingest has logged losing its MQTT connection so far.
fn ingest_reconnects(out: &std::path::Path) -> usize {
    std::fs::read_to_string(out.join("logs/ingest.log"))
        .map(|l| l.lines().filter(|l| l.contains("MQTT connection lost")).count())
        .unwrap_or(0)
}

/// Waits until nothing is being processed any more (what an earlier step left), at most
/// `limit` seconds.
async fn settle(sys: &System, limit: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(limit);
    let mut last = sys.processed().await?;
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sys.processed().await?;
        if now != last {
            (last, still_since) = (now, Instant::now());
        }
    }
    Ok(())
}

/// CPU seconds of the measured system: services and servers, not the load driver.
fn system_cpu(s: &Step) -> f64 {
    s.cpu_secs.iter().filter(|(n, _)| n.as_str() != "load driver").map(|(_, v)| v).sum()
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

/// One step as a row of the report's main table.
fn row(s: &Step) -> String {
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {} / {} | {:.2} | {}/{} | {} | {} | {} | {:.1} | {} |",
        s.system,
        s.rate,
        s.achieved_rate,
        s.acked,
        s.rows,
        s.lost,
        s.backlog_p50,
        s.backlog_max,
        s.drain_secs,
        s.alerts,
        s.hot,
        ms(s.latency_p50_ms),
        ms(s.latency_p99_ms),
        ms(s.latency_max_ms),
        s.load_1m,
        if s.sustained { "yes".to_string() } else { format!("no: {}", s.why_not.join("; ")) }
    )
}

fn print_step(s: &Step) {
    println!("{}", row(s));
    println!(
        "        sent {}, dead letters {}, backlog at the end {}, slope {:.0}/s; detector scored {} of {} acked, {:.2} s after the last publish",
        s.sent, s.dead_letters, s.backlog_at_end, s.backlog_slope_per_s, s.scored, s.acked, s.detector_drain_secs
    );
    if s.to_stream_p50_ms.is_some() {
        println!(
            "        publish → alert appended to its stream: p50 {} ms, p99 {} ms (the rest is the gateway and the WebSocket)",
            ms(s.to_stream_p50_ms),
            ms(s.to_stream_p99_ms)
        );
    }
    let cpu: Vec<String> = s.cpu_secs.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    let rss: Vec<String> = s.peak_rss_mib.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
    println!(
        "        CPU s: {} | system {:.1} s = {:.1} µs/reading, {:.2} cores; load {:.1}; ingest reconnects {}\n        peak RSS MiB: {}",
        cpu.join(", "),
        system_cpu(s),
        1e6 * system_cpu(s) / s.acked.max(1) as f64,
        system_cpu(s) / s.wall_secs.max(1e-9),
        s.load_1m,
        s.ingest_reconnects,
        rss.join(", ")
    );
    println!(
        "        while publishing: system {:.2} cores, load driver {:.2}, whole machine {:.2} busy of {} (others {:.2}), {:.2} stolen by the hypervisor",
        s.publishing_system_cores,
        s.publishing_driver_cores,
        s.machine_busy_cores,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        (s.machine_busy_cores - s.publishing_system_cores - s.publishing_driver_cores).max(0.0),
        s.machine_steal_cores
    );
}

/// Rows are missing at the drain limit: count where the messages got to, then take ingest's
/// MQTT session over for a moment (a client with its id connects and leaves at once, so
/// ingest reconnects and the broker resends what the session holds) and wait for the rows.
async fn locate_shortfall(
    ctx: &Ctx,
    sys: &System,
    p0: Probe,
    since: i64,
    acked: u64,
    rows: u64,
) -> anyhow::Result<Shortfall> {
    let p1 = sys.probe().await?.unwrap_or_default();
    let delta = Probe {
        ingest_received: p1.ingest_received.saturating_sub(p0.ingest_received),
        ingest_accepted: p1.ingest_accepted.saturating_sub(p0.ingest_accepted),
        ingest_rejected: p1.ingest_rejected.saturating_sub(p0.ingest_rejected),
        stream_entries: p1.stream_entries.saturating_sub(p0.stream_entries),
        archived_entries: p1.archived_entries.saturating_sub(p0.archived_entries),
    };
    println!(
        "    SHORTFALL: {} of {acked} acked messages not stored. Over the step: ingest read {} MQTT messages \
         (accepted {}, rejected {}), the streams grew by {}, the archive took {}, rows {rows}",
        acked - rows,
        delta.ingest_received,
        delta.ingest_accepted,
        delta.ingest_rejected,
        delta.stream_entries,
        delta.archived_entries
    );
    let broker_notes: Vec<String> = std::fs::read_to_string(&ctx.mqtt_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("dropped") || l.contains("bench-ingest"))
        .map(str::to_string)
        .collect();
    println!("    the broker's log about ingest's client or dropped messages ({} lines):", broker_notes.len());
    for l in broker_notes.iter().rev().take(10).rev() {
        println!("      {l}");
    }
    take_over_session(ctx.mqtt_port, "bench-ingest").await;
    let t = Instant::now();
    let mut after = sys.rows_since(since).await?;
    while after < acked && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = sys.rows_since(since).await?;
    }
    println!(
        "    after ingest's session was taken over and resumed: {after} rows of {acked} within {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(Shortfall {
        missing: acked - rows,
        delta,
        rows_after_resume: after,
        resume_wait_secs: t.elapsed().as_secs_f64(),
    })
}

/// Connects with `client_id` and its persistent session (closing the session's current
/// connection), acks nothing, and leaves: what the session held stays in it for the owner.
async fn take_over_session(port: u16, client_id: &str) {
    connect_and_leave(port, client_id, false).await;
}

/// Steps through `fixed`, then `search` until a step is not sustained, then once between the
/// last sustained and the first failed rate when they are far apart.
async fn ramp(
    ctx: &Ctx,
    sys: &System,
    own: &[(&str, u32)],
    fixed: &[u64],
    search: &[u64],
    drain_limit: f64,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &r in fixed {
        steps.push(run_step(ctx, sys, own, r, drain_limit).await?);
    }
    let mut last_ok = steps.iter().filter(|s| s.sustained).map(|s| s.rate).max().unwrap_or(0);
    let candidates: Vec<u64> = search.iter().copied().filter(|&r| r > last_ok).collect();
    for r in candidates {
        let s = run_step(ctx, sys, own, r, drain_limit).await?;
        let ok = s.sustained;
        steps.push(s);
        if ok {
            last_ok = r;
            continue;
        }
        let mid = (last_ok + r) / 2 / 250 * 250;
        if last_ok > 0 && mid > last_ok && (r - last_ok) as f64 / r as f64 > 0.15 {
            steps.push(run_step(ctx, sys, own, mid, drain_limit).await?);
        }
        break;
    }
    Ok(steps)
}

fn best(steps: &[Step]) -> u64 {
    steps.iter().filter(|s| s.sustained).map(|s| s.rate).max().unwrap_or(0)
}

async fn proact_phase(
    ctx: &Ctx,
    stack: &proact_testkit::Stack,
    logs: &std::path::Path,
    variant: Variant,
) -> anyhow::Result<Vec<Step>> {
    let a = &ctx.args;
    let entries = if variant.batch_entries { "batch" } else { "single" };
    let sparkplug = if matches!(variant.payload, Payload::Sparkplug(_)) { "all" } else { "off" };
    // The services log at `warn` unless PROACT_BENCH_SERVICES_LOG says otherwise (a diagnosis).
    let log = std::env::var("PROACT_BENCH_SERVICES_LOG").unwrap_or_else(|_| "warn".into());
    let base: Vec<(String, String)> =
        stack.env().into_iter().map(|(k, v)| (k.to_string(), v)).chain([("RUST_LOG".into(), log)]).collect();
    let status = std::process::Command::new(a.bin_dir.join("proact-trainer"))
        .arg("migrate")
        .envs(base.iter().cloned())
        .stdout(std::fs::File::create(logs.join("migrate.log"))?)
        .stderr(std::fs::File::create(logs.join("migrate.err.log"))?)
        .status()?;
    anyhow::ensure!(status.success(), "proact-trainer migrate failed (see {})", logs.display());

    let port = || proact_testkit::free_port().map(|p| format!("127.0.0.1:{p}"));
    let (archive_grpc, detector_grpc, gateway_grpc) = (port()?, port()?, port()?);
    let (trainer_grpc, ingest_grpc, http) = (port()?, port()?, port()?);
    let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut e = base.clone();
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e
    };
    let registry = format!("http://{trainer_grpc}");
    let archive_url = format!("http://{archive_grpc}");
    let specs: Vec<(&str, Vec<(String, String)>)> = vec![
        ("archive", with(&[("PROACT_GRPC_ADDR", archive_grpc.as_str()), ("PROACT_ARCHIVE_CONSUMER", "bench-archive")])),
        (
            "anomaly-detector",
            with(&[
                ("PROACT_GRPC_ADDR", detector_grpc.as_str()),
                ("PROACT_REGISTRY_GRPC_URL", registry.as_str()),
                ("PROACT_DETECTOR_CONSUMER", "bench-detector"),
                // Each hot reading is a new episode: the previous one cleared after 1 s of normal readings.
                ("PROACT_CLEAR_AFTER_SECS", "1"),
            ]),
        ),
        (
            "alert-gateway",
            with(&[
                ("PROACT_GRPC_ADDR", gateway_grpc.as_str()),
                ("PROACT_HTTP_ADDR", http.as_str()),
                ("PROACT_REGISTRY_GRPC_URL", registry.as_str()),
                ("PROACT_ARCHIVE_GRPC_URL", archive_url.as_str()),
            ]),
        ),
        ("trainer", with(&[("PROACT_GRPC_ADDR", trainer_grpc.as_str()), ("PROACT_TRAIN_SCHEDULE", "off")])),
        (
            "ingest",
            with(&[
                ("PROACT_GRPC_ADDR", ingest_grpc.as_str()),
                ("PROACT_INGEST_CLIENT_ID", "bench-ingest"),
                ("PROACT_INGEST_STREAM_ENTRIES", entries),
                ("PROACT_INGEST_SPARKPLUG", sparkplug),
            ]),
        ),
    ];
    let mut services = Vec::new();
    for (name, env) in &specs {
        services.push(Service::spawn(&a.bin_dir, name, env, logs)?);
    }
    for s in &mut services {
        s.wait_ready(Duration::from_secs(60)).await?;
    }
    println!("proact {}: five services ready ({})", variant.label(), a.bin_dir.display());
    let listener = load::listen_alerts(format!("ws://{http}/ws/alerts"), ctx.book.clone())?;

    let admin = |name: &str| services.iter().find(|s| s.proc.name == name).map(|s| s.admin).expect("spawned");
    let sys = System::ProAct {
        redis: proact_server::redis::connect(&stack.redis.url()).await?,
        pg: pg_connect(&stack.postgres.url()).await?,
        ingest_admin: admin("ingest"),
        archive_admin: admin("archive"),
        detector_admin: admin("anomaly-detector"),
        variant,
    };
    let own: Vec<(&str, u32)> = services.iter().map(|s| (s.proc.name.as_str(), s.proc.pid())).collect();
    let steps = ramp(ctx, &sys, &own, &a.rates, &a.search, a.drain_secs).await;
    sys.close().await;
    drop(listener);
    for s in services.iter_mut().rev() {
        if !s.proc.stop(Duration::from_secs(30)) {
            println!("proact: {} did not stop within 30 s of SIGTERM", s.proc.name);
        }
    }
    forget_session(ctx.mqtt_port, "bench-ingest").await;
    steps
}

/// Removes ingest's persistent session, or the broker would keep queueing messages for it
/// while the Python design runs.
async fn forget_session(port: u16, client_id: &str) {
    connect_and_leave(port, client_id, true).await;
}

/// Connects as `client_id` (a clean session ends the old one, a persistent one takes it over,
/// acking nothing), waits for the CONNACK, and disconnects.
async fn connect_and_leave(port: u16, client_id: &str, clean_session: bool) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(clean_session).set_manual_acks(true);
    let (client, mut ev) = AsyncClient::new(opts, 8);
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        while !matches!(ev.poll().await, Ok(Event::Incoming(Packet::ConnAck(_)))) {}
    });
    if connected.await.is_ok() {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while ev.poll().await.is_ok() {} }).await;
    }
}

async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

struct Python {
    proc: Proc,
    listener: load::Listener,
}

async fn start_python(
    ctx: &Ctx,
    stack: &proact_testkit::Stack,
    db: &str,
    logs: &std::path::Path,
) -> anyhow::Result<Python> {
    let a = &ctx.args;
    let ws_port = proact_testkit::free_port()?;
    let mut cmd = std::process::Command::new(&a.python);
    cmd.arg("-u").arg(&a.python_script).args(["--mqtt-url", &stack.mqtt.url(), "--redis-url", &stack.redis.url()]);
    cmd.args(["--database-url", db, "--ws-port", &ws_port.to_string()]);
    let mut proc = Proc::spawn("python-design", cmd, logs)?;
    let log = logs.join("python-design.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().lines().any(|l| l == "ready") {
        proc.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Python design did not subscribe within 30 s (see {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listener = load::listen_alerts(format!("ws://127.0.0.1:{ws_port}/"), ctx.book.clone())?;
    Ok(Python { proc, listener })
}

async fn python_phase(ctx: &Ctx, stack: &proact_testkit::Stack, logs: &std::path::Path) -> anyhow::Result<Vec<Step>> {
    let a = &ctx.args;
    let admin = pg_connect(&format!("postgres://proact@127.0.0.1:{}/postgres", stack.postgres.port())).await?;
    // Two statements: CREATE DATABASE cannot run in the implicit transaction of a batch.
    admin.batch_execute("DROP DATABASE IF EXISTS python_design").await?;
    admin.batch_execute("CREATE DATABASE python_design").await?;
    let db = format!("postgres://proact@127.0.0.1:{}/python_design", stack.postgres.port());
    let redis = proact_server::redis::connect(&stack.redis.url()).await?;
    let _: u64 = redis.del(vec!["py:telemetry", "py:alerts"]).await?;

    let mut py = start_python(ctx, stack, &db, logs).await?;
    println!("python: the original design ready ({})", a.python_script.display());
    let sys = System::Python { redis: redis.clone(), pg: pg_connect(&db).await? };
    let own = [("python-design", py.proc.pid())];
    let mut steps = ramp(ctx, &sys, &own, &[], &a.python_rates, 30.0).await?;
    drop(py.listener);
    py.proc.stop(Duration::from_secs(10));

    // Beyond its rate: a fresh process, the overload, a grace period, then a stop. What the
    // broker still held for its clean session is gone with it.
    let mut py = start_python(ctx, stack, &db, logs).await?;
    let own = [("python-design", py.proc.pid())];
    let mut s = run_step(ctx, &sys, &own, a.python_beyond, a.python_grace_secs).await?;
    drop(py.listener);
    py.proc.stop(Duration::from_secs(10));
    s.rows = sys.rows_since(s.since_micros).await?;
    s.lost = s.acked as i64 - s.rows as i64;
    s.note = format!(
        "overload: stopped {:.0} s after the last publish; {} of {} acked messages never stored ({:.1} %)",
        a.python_grace_secs,
        s.lost,
        s.acked,
        100.0 * s.lost as f64 / s.acked.max(1) as f64
    );
    println!("python  {}", s.note);
    s.sustained = false;
    s.why_not = vec!["overload step, stopped after the grace period".into()];
    steps.push(s);
    sys.close().await;
    Ok(steps)
}

fn report(machine: &Json, proact: &[Step], python: &[Step]) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "machine: {} cores, {}, {}; load average before the run {}\n\n",
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
        machine["loadavg_before"].as_str().unwrap_or("?")
    ));
    md.push_str(
        "| system | rate offered /s | achieved /s | acked | rows | lost | backlog p50 / max | drain s | alerts | p50 ms | p99 ms | max ms | load 1m | sustained |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for s in proact.iter().chain(python) {
        md.push_str(&row(s));
        md.push('\n');
    }
    let names: Vec<String> = {
        let mut n: Vec<String> = proact.iter().chain(python).flat_map(|s| s.cpu_secs.keys().cloned()).collect();
        n.sort();
        n.dedup();
        n
    };
    md.push_str(&format!(
        "\nCPU seconds per step (publishing + drain) and peak RSS MiB at its end; system = all but the load driver\n\n| system | rate | system CPU s | µs/reading | cores | {} |\n|---|---:|---:|---:|---:|{}\n",
        names.join(" | "),
        "---:|".repeat(names.len())
    ));
    for s in proact.iter().chain(python) {
        let cells: Vec<String> = names
            .iter()
            .map(|n| match (s.cpu_secs.get(n), s.peak_rss_mib.get(n)) {
                (Some(c), Some(r)) => format!("{c:.1} s / {r:.0} MiB"),
                _ => "–".into(),
            })
            .collect();
        let c = system_cpu(s);
        md.push_str(&format!(
            "| {} | {} | {c:.1} | {:.0} | {:.2} | {} |\n",
            s.system,
            s.rate,
            1e6 * c / s.acked.max(1) as f64,
            c / s.wall_secs.max(1e-9),
            cells.join(" | ")
        ));
    }
    // µs of CPU per reading by component, at each variant's highest sustained rate.
    let mut systems: Vec<&str> = proact.iter().map(|s| s.system.as_str()).collect();
    systems.dedup();
    let ours = ["ingest", "archive", "anomaly-detector", "alert-gateway", "trainer"];
    md.push_str(&format!(
        "\nCPU µs per reading by component, at each variant's highest sustained rate (ours = {})\n\n| variant | rate | {} | ours | system |\n|---|---:|{}---:|---:|\n",
        ours.join(" + "),
        names.iter().filter(|n| n.as_str() != "load driver").cloned().collect::<Vec<_>>().join(" | "),
        "---:|".repeat(names.iter().filter(|n| n.as_str() != "load driver").count())
    ));
    for sys in &systems {
        let steps: Vec<Step> = proact.iter().filter(|s| s.system == *sys).cloned().collect();
        let Some(s) = steps.iter().filter(|s| s.sustained).max_by_key(|s| s.rate) else { continue };
        let per = |c: f64| 1e6 * c / s.acked.max(1) as f64;
        let cells: Vec<String> = names
            .iter()
            .filter(|n| n.as_str() != "load driver")
            .map(|n| s.cpu_secs.get(n).map(|&c| format!("{:.1}", per(c))).unwrap_or_else(|| "–".into()))
            .collect();
        let own: f64 = ours.iter().filter_map(|n| s.cpu_secs.get(*n)).sum();
        md.push_str(&format!(
            "| {sys} | {} | {} | {:.1} | {:.1} |\n",
            s.rate,
            cells.join(" | "),
            per(own),
            per(system_cpu(s))
        ));
    }
    md.push('\n');
    for sys in &systems {
        let steps: Vec<Step> = proact.iter().filter(|s| s.system == *sys).cloned().collect();
        let at10k = steps.iter().find(|s| s.rate == 10_000).and_then(|s| s.latency_p99_ms);
        let b = best(&steps);
        let batched = !sys.ends_with("-single");
        let target = if batched { 200_000 } else { 35_000 };
        md.push_str(&format!(
            "{sys}: highest sustained {b} readings/s (target >= {target}: {}); p99 publish->alert at 10000/s: {}\n",
            if b >= target { "met" } else { "MISSED" },
            match at10k {
                Some(v) if v <= 20.0 => format!("{v:.1} ms (target <= 20 ms: met)"),
                Some(v) => format!("{v:.1} ms (target <= 20 ms: MISSED)"),
                None => "not measured".into(),
            }
        ));
    }
    let q = best(python);
    if q > 0 {
        let p = best(proact);
        md.push_str(&format!(
            "python design: highest sustained {q}/s; ProAct's best {p}/s is {:.1}×\n",
            p as f64 / q as f64
        ));
    }
    if let Some(s) = python.iter().find(|s| !s.note.is_empty()) {
        md.push_str(&format!("python at {}/s: {}\n", s.rate, s.note));
    }
    md
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    proact_server::telemetry::init("text");
    std::fs::create_dir_all(args.out.join("logs"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let machine = json!({
            "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
                .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)).map(|s| s.trim().to_string())),
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "loadavg_before": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        });
        let logs = args.out.join("logs");
        let stack = proact_testkit::Stack::start().await?;
        println!("stack: {}", stack.env().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
        let ctx = Ctx {
            mqtt_port: stack.mqtt.port(),
            mqtt_log: stack.mqtt.log_path(),
            book: Arc::new(AlertBook::default()), ticks: procs::clock_ticks(), args };
        let mut proact = Vec::new();
        for &variant in &ctx.args.variants {
            proact.extend(proact_phase(&ctx, &stack, &logs, variant).await?);
        }
        let python = if ctx.args.python.is_empty() { Vec::new() } else { python_phase(&ctx, &stack, &logs).await? };
        let mut machine = machine;
        machine["loadavg_after"] = json!(std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
        let md = report(&machine, &proact, &python);
        println!("\n{md}");
        let results = json!({
            "machine": machine,
            "settings": {
                "secs": ctx.args.secs, "publishers": ctx.args.publishers, "equipment": ctx.args.equipment,
                "hot": ctx.args.hot, "hot_period_secs": ctx.args.hot_period_secs,
            },
            "proact": proact, "python": python,
            "highest_sustained": {"proact": best(&proact), "python": best(&python)},
        });
        std::fs::write(ctx.args.out.join("results.json"), serde_json::to_string_pretty(&results)?)?;
        std::fs::write(ctx.args.out.join("report.md"), md)?;
        anyhow::Ok(())
    })
}
