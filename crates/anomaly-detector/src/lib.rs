//! ProAct anomaly detector: scores every reading of the telemetry shards this replica owns,
//! keeps per-equipment alert episodes, and appends alert events (raised, escalated,
//! cleared) to the alerts stream, each exactly once, before acknowledging the readings.
//!
//! Replicas split the shards with leases ([`leases`]) so each equipment's rolling state lives
//! in one replica; a dead replica's shards and unacked entries are taken over. Models are
//! hot-reloaded from the registry on model events ([`models`]) and swapped between batches.
//! What an owner has seen of each equipment is recorded per shard at each heartbeat
//! ([`seen`]), so a new owner still raises the no-data alarm of one silent at the takeover.
//! Upstream: ingest (telemetry streams), trainer (models). Downstream: archive, gateway.

pub mod engine;
pub mod grpc;
pub mod leases;
pub mod models;
pub mod publish;
pub mod replay;
pub mod seen;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream};
use proact_proto::time::now_micros;
use proact_proto::v1::{AlertEvent, AlertEventKind, Telemetry};
use proact_server::config::{AdminArgs, GrpcAuthArgs, PgArgs, RedisArgs};
use proact_server::otel::{trace_id_of, KeyValue, PipelineSpan, Tracing};
use proact_server::redis::{ack, ensure_group, read_group, StreamEntry};
use proact_server::telemetry::Metric;
use proact_server::{ConfigError, Readiness};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use engine::{Engine, EngineConfig, EquipmentInfo, Models, Thresholds};
use leases::Fence;

pub use engine::RULES_VERSION;

/// Command line and environment of `proact-anomaly-detector`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "proact-anomaly-detector",
    version,
    about = "ProAct anomaly detector: real-time scoring and alert episodes"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub grpc_auth: GrpcAuthArgs,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50053")]
    pub grpc_addr: SocketAddr,
    /// Model registry (trainer) gRPC URL; models are fetched from it on model events.
    #[arg(long, env = "PROACT_REGISTRY_GRPC_URL", default_value = "http://127.0.0.1:50055")]
    pub registry_url: String,
    /// Model artefact files loaded at start (for sites without a registry); models the
    /// registry promotes later replace them.
    #[arg(long = "model-file", env = "PROACT_DETECTOR_MODEL_FILES", value_delimiter = ',')]
    pub model_files: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub signatures: models::VerifyArgs,
    /// Consumer group of the detector replicas.
    #[arg(long, env = "PROACT_DETECTOR_GROUP", default_value = "anomaly-detector")]
    pub group: String,
    /// Replica id, unique per replica (default: hostname); also its consumer name.
    #[arg(long, env = "PROACT_DETECTOR_CONSUMER")]
    pub consumer: Option<String>,
    /// Shard lease time-to-live, milliseconds: a dead replica's shards move after this.
    #[arg(long, env = "PROACT_DETECTOR_LEASE_TTL_MS", default_value_t = 10_000)]
    pub lease_ttl_ms: u64,
    /// Most entries read per shard per batch.
    #[arg(long, env = "PROACT_DETECTOR_BATCH", default_value_t = 1000)]
    pub batch: u64,
    /// Seconds an equipment not read stays in its shard's seen record (what a replica taking
    /// the shard over runs the silence clock from); must exceed the silence time.
    #[arg(long, env = "PROACT_DETECTOR_SEEN_RETENTION_SECS", default_value_t = 86_400)]
    pub seen_retention_secs: u64,
}

/// Rules and episode timing.
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// Critical temperature, °C (the seed's rule).
    #[arg(long, env = "PROACT_TEMPERATURE_CRITICAL", default_value_t = 90.0)]
    pub temperature_critical: f64,
    /// Warning temperature, °C.
    #[arg(long, env = "PROACT_TEMPERATURE_WARNING", default_value_t = 80.0)]
    pub temperature_warning: f64,
    /// Vibration warning and critical levels, mm/s RMS.
    #[arg(long, env = "PROACT_VIBRATION_WARNING", default_value_t = 11.0)]
    pub vibration_warning: f64,
    #[arg(long, env = "PROACT_VIBRATION_CRITICAL", default_value_t = 18.0)]
    pub vibration_critical: f64,
    /// Per equipment-type thresholds: a CSV `equipment_type,temperature_warning,temperature_critical,vibration_warning,vibration_critical`.
    #[arg(long, env = "PROACT_THRESHOLDS_FILE")]
    pub thresholds_file: Option<std::path::PathBuf>,
    /// Margin below a threshold before a reading counts as normal again.
    #[arg(long, env = "PROACT_HYSTERESIS", default_value_t = 2.0)]
    pub hysteresis: f64,
    /// Seconds of normal readings before an episode is cleared.
    #[arg(long, env = "PROACT_CLEAR_AFTER_SECS", default_value_t = 60)]
    pub clear_after_secs: u64,
    /// Seconds without data before a no-data alarm (0: off).
    #[arg(long, env = "PROACT_SILENCE_AFTER_SECS", default_value_t = 120)]
    pub silence_after_secs: u64,
    /// AMDEC RPN from which a model warning is raised as critical (default: where the AMDEC
    /// classes a mode `high`).
    #[arg(long, env = "PROACT_RPN_CRITICAL", default_value_t = f64::from(proact_store::reference::RPN_HIGH))]
    pub rpn_critical: f64,
    /// Out-of-order tolerance, milliseconds: older readings are counted and skipped.
    #[arg(long, env = "PROACT_LATENESS_MS", default_value_t = 5_000)]
    pub lateness_ms: i64,
    /// Readings dated more than this many seconds ahead of the clock are counted and not
    /// scored (ingest's `PROACT_INGEST_MAX_FUTURE_SECS`, again for every other writer).
    #[arg(long, env = "PROACT_DETECTOR_MAX_FUTURE_SECS", default_value_t = 300)]
    pub max_future_secs: u64,
    /// Equipment tracked at most per replica; beyond it, only ids the AMDEC reference knows
    /// are scored (each tracked equipment holds a window of readings).
    #[arg(long, env = "PROACT_DETECTOR_MAX_EQUIPMENT", default_value_t = 100_000)]
    pub max_equipment: usize,
}

impl RuleArgs {
    pub fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        let default_thresholds = Thresholds {
            temperature_warning: self.temperature_warning,
            temperature_critical: self.temperature_critical,
            vibration_warning: self.vibration_warning,
            vibration_critical: self.vibration_critical,
        };
        for (name, v) in [
            ("PROACT_TEMPERATURE_CRITICAL", self.temperature_critical),
            ("PROACT_TEMPERATURE_WARNING", self.temperature_warning),
            ("PROACT_VIBRATION_WARNING", self.vibration_warning),
            ("PROACT_VIBRATION_CRITICAL", self.vibration_critical),
        ] {
            if !v.is_finite() {
                return Err(ConfigError::new(name, v.to_string(), "must be a finite number"));
            }
        }
        if self.temperature_warning > self.temperature_critical {
            return Err(ConfigError::new(
                "PROACT_TEMPERATURE_WARNING",
                self.temperature_warning.to_string(),
                "must not exceed PROACT_TEMPERATURE_CRITICAL",
            ));
        }
        if !(0.0..=50.0).contains(&self.hysteresis) {
            return Err(ConfigError::new("PROACT_HYSTERESIS", self.hysteresis.to_string(), "must be between 0 and 50"));
        }
        if self.max_future_secs > 86_400 {
            return Err(ConfigError::new(
                "PROACT_DETECTOR_MAX_FUTURE_SECS",
                self.max_future_secs.to_string(),
                "must be at most 86400",
            ));
        }
        if self.max_equipment == 0 {
            return Err(ConfigError::new("PROACT_DETECTOR_MAX_EQUIPMENT", "0", "must be at least 1"));
        }
        if self.lateness_ms < 0 {
            return Err(ConfigError::new("PROACT_LATENESS_MS", self.lateness_ms.to_string(), "must be >= 0"));
        }
        let type_thresholds = match &self.thresholds_file {
            Some(p) => read_thresholds(p)?,
            None => HashMap::new(),
        };
        let window = proact_features::WindowConfig { tolerance_ms: self.lateness_ms, ..Default::default() };
        Ok(EngineConfig {
            default_thresholds,
            type_thresholds,
            hysteresis: self.hysteresis,
            clear_after_micros: self.clear_after_secs as i64 * 1_000_000,
            silence_after_micros: self.silence_after_secs as i64 * 1_000_000,
            rpn_critical: self.rpn_critical,
            window,
            max_future_micros: self.max_future_secs as i64 * 1_000_000,
            max_tracked: self.max_equipment,
        })
    }
}

fn read_thresholds(path: &std::path::Path) -> Result<HashMap<String, Thresholds>, ConfigError> {
    let bad = |reason: String| ConfigError::new("PROACT_THRESHOLDS_FILE", path.display().to_string(), reason);
    let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let num = |j: usize| -> Result<f64, ConfigError> {
            rec.get(j)
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("line {}: column {} is not a number", i + 2, j + 1)))
        };
        let t = Thresholds {
            temperature_warning: num(1)?,
            temperature_critical: num(2)?,
            vibration_warning: num(3)?,
            vibration_critical: num(4)?,
        };
        out.insert(rec.get(0).unwrap_or("").trim().to_string(), t);
    }
    Ok(out)
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Score a historical CSV through the live code path (backtests, `just eval`).
    Replay(replay::ReplayArgs),
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
        self.redis.validate()?;
        self.pg.validate()?;
        self.grpc_auth.validate()?;
        self.rules.engine_config()?;
        self.signatures.verifier()?;
        if self.lease_ttl_ms < 1000 {
            return Err(ConfigError::new(
                "PROACT_DETECTOR_LEASE_TTL_MS",
                self.lease_ttl_ms.to_string(),
                "must be at least 1000",
            ));
        }
        if self.batch == 0 {
            return Err(ConfigError::new("PROACT_DETECTOR_BATCH", "0", "must be at least 1"));
        }
        // A record must outlive the silence it is kept for, with a takeover's delay on top.
        let floor = self.rules.silence_after_secs.saturating_mul(2).max(60);
        if self.seen_retention_secs < floor {
            return Err(ConfigError::new(
                "PROACT_DETECTOR_SEEN_RETENTION_SECS",
                self.seen_retention_secs.to_string(),
                format!("must be at least {floor} (twice PROACT_SILENCE_AFTER_SECS, and 60)"),
            ));
        }
        Ok(())
    }

    fn replica(&self) -> String {
        self.consumer
            .clone()
            .or_else(proact_server::config::hostname)
            .unwrap_or_else(|| format!("detector-{}", std::process::id()))
    }
}

/// Equipment type and highest RPN per equipment, from the AMDEC reference table.
pub async fn load_equipment_info(database_url: &str) -> anyhow::Result<HashMap<String, EquipmentInfo>> {
    let client = proact_server::db::connect(database_url).await?;
    Ok(proact_store::reference::amdec_summary(&client)
        .await?
        .into_iter()
        .map(|r| (r.equipement_id, EquipmentInfo { equipment_type: r.equipment_type, max_rpn: f64::from(r.max_rpn) }))
        .collect())
}

/// Every metric the detector exports (see `proact_server::telemetry::Metric`).
pub const METRICS: &[Metric] = &[
    Metric::counter("proact_detector_events_scored_total", "Readings scored"),
    Metric::counter(
        "proact_detector_alert_events_total",
        "Alert events published (raised, escalated, cleared, no data)",
    ),
    Metric::counter(
        "proact_detector_late_events_total",
        "Readings older than the lateness tolerance (counted, skipped)",
    ),
    Metric::counter("proact_detector_reordered_events_total", "Out-of-order readings placed within the tolerance"),
    Metric::counter("proact_detector_warmup_entries_total", "Entries re-read to rebuild state on a shard takeover"),
    Metric::counter("proact_detector_claimed_total", "Unacked entries of other replicas claimed and scored"),
    Metric::counter(
        "proact_detector_reclaimed_late_entries_total",
        "Reclaimed entries (claimed, or never received) older than the lateness tolerance: acked unscored",
    ),
    Metric::counter(
        "proact_detector_orphaned_entries_total",
        "Entries delivered to this replica whose read reply it never got, scored at the next heartbeat",
    ),
    Metric::counter("proact_detector_fenced_events_total", "Alert events not published: the shard's lease was lost"),
    Metric::counter("proact_detector_model_reloads_total", "Models fetched and swapped in"),
    Metric::counter(
        "proact_detector_model_reload_failures_total",
        "Models refused (checksum, schema, fetch); the old one serves",
    ),
    Metric::counter(
        "proact_detector_model_signature_refusals_total",
        "Models refused for a missing or wrong signature (PROACT_MODEL_VERIFY_KEY)",
    ),
    Metric::gauge("proact_detector_model_info", "1 for each model version serving, 0 once replaced"),
    Metric::gauge("proact_detector_shards_owned", "Telemetry shards this replica leases"),
    Metric::histogram("proact_detector_read_seconds", "Time waiting for one batch of the streams"),
    Metric::histogram("proact_detector_process_seconds", "Time to score one batch and publish its alert events"),
    Metric::histogram("proact_detector_ack_seconds", "Time to acknowledge one batch"),
    Metric::histogram(
        "proact_detector_alert_latency_seconds",
        "Time the detector adds to an alert: from a batch's read reply to its alert events appended",
    ),
    Metric::histogram("proact_detector_batch_size", "Readings per batch"),
    Metric::gauge("proact_detector_stream_lag_entries", "Entries not yet delivered to the detectors' group, by stream"),
    Metric::gauge("proact_detector_stream_pending_entries", "Entries delivered and not yet acknowledged, by stream"),
];

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    read: Client,
    write: Client,
    events: Client,
    traces: Tracing,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        proact_server::telemetry::register(METRICS);
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9103)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let read = proact_server::redis::connect(&config.redis.redis_url).await?;
        let write = proact_server::redis::connect(&config.redis.redis_url).await?;
        let events = proact_server::redis::connect(&config.redis.redis_url).await?;
        let traces = Tracing::start("anomaly-detector", &config.admin.trace)?;
        Ok(Self { config, admin, grpc, read, write, events, traces })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, read, write, events, traces } = self;
        let ready = Readiness::new();
        let mut engine = Engine::new(config.rules.engine_config()?);
        match load_equipment_info(&config.pg.database_url).await {
            Ok(info) => {
                tracing::info!(equipment = info.len(), "AMDEC criticality loaded");
                engine.set_equipment_info(info);
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "no AMDEC reference data; scoring without criticality"),
        }
        let schema_id = engine.schema_id().to_string();
        let verify = config.signatures.verifier()?;
        if verify.is_none() {
            tracing::warn!(
                "PROACT_MODEL_VERIFY_KEY is not set: model artefacts are loaded without checking who signed them"
            );
        }
        let mut initial = models::load_files(&config.model_files, &schema_id, verify.as_deref())?;
        let registry = models::Registry {
            url: config.registry_url.clone(),
            traces: traces.clone(),
            token: config.grpc_auth.grpc_token.clone(),
            verify,
        };
        match models::load_active(&registry, &schema_id).await {
            Ok(m) => {
                if m.forest.is_some() {
                    initial.forest = m.forest;
                }
                initial.normal.extend(m.normal);
            }
            Err(e) => {
                tracing::warn!(error = %e, "no models from the registry yet; scoring with the rules and model files")
            }
        }
        engine.set_models(initial.clone());
        let (models_tx, models_rx) = watch::channel(initial);
        let follower = AbortOnDropHandle::new(tokio::spawn(models::follow(
            events,
            registry,
            schema_id,
            models_tx,
            shutdown.clone(),
        )));
        let engine = Arc::new(Mutex::new(engine));
        // Every replica reports the group's lag on every shard (one group, shared).
        let lag = AbortOnDropHandle::new(tokio::spawn(proact_server::redis::watch_lag(
            write.clone(),
            "proact_detector",
            config.group.clone(),
            proact_proto::streams::telemetry_streams(config.redis.shards),
            Duration::from_secs(5),
            shutdown.clone(),
        )));
        let status = Arc::new(std::sync::RwLock::new(grpc::LoopStatus::default()));
        let replica = config.replica();
        let scoring = AbortOnDropHandle::new(tokio::spawn(scoring_loop(
            LoopCtx {
                group: config.group.clone(),
                replica: replica.clone(),
                shards: config.redis.shards,
                lease_ttl_ms: config.lease_ttl_ms,
                batch: config.batch,
                seen_retention_micros: config.seen_retention_secs.saturating_mul(1_000_000) as i64,
                record_seen: config.rules.silence_after_secs > 0,
                traces: traces.clone(),
                fence: Fence { replica: replica.clone(), shards: config.redis.shards },
            },
            read,
            write,
            engine.clone(),
            models_rx,
            status.clone(),
            ready.clone(),
            shutdown.clone(),
        )));
        let service = grpc::DetectorService::new(engine, replica, status);
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::detector_server::DetectorServer<grpc::DetectorService>>().await;
        let gs = shutdown.clone();
        let grpc_task = AbortOnDropHandle::new(tokio::spawn(
            tonic::transport::Server::builder()
                .layer(proact_server::grpc::ServerTraceLayer::new(traces.clone()))
                .add_service(health_service)
                .add_service(proact_proto::v1::detector_server::DetectorServer::with_interceptor(
                    service,
                    config.grpc_auth.interceptor(),
                ))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        ));
        let admin_task =
            AbortOnDropHandle::new(tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone())));
        tracing::info!(grpc = %config.grpc_addr, "anomaly detector running");
        let limit = Duration::from_secs(config.admin.shutdown_grace_secs) + proact_server::shutdown::DRAIN_MARGIN;
        let r = proact_server::shutdown::join_within(&shutdown, limit, async move {
            let r = scoring.await;
            let _ = follower.await;
            let _ = lag.await;
            let _ = grpc_task.await;
            let _ = admin_task.await;
            r
        })
        .await;
        traces.shutdown();
        tracing::info!("anomaly detector stopped");
        match r {
            Some(r) => r?,
            None => Ok(()),
        }
    }
}

struct LoopCtx {
    group: String,
    replica: String,
    shards: u32,
    lease_ttl_ms: u64,
    batch: u64,
    /// How long a seen record outlives its equipment's last reading (see [`seen`]).
    seen_retention_micros: i64,
    /// Whether seen records are written and loaded: only for the no-data alarm, so not when
    /// it is off.
    record_seen: bool,
    traces: Tracing,
    fence: Fence,
}

#[allow(clippy::too_many_arguments)]
async fn scoring_loop(
    ctx: LoopCtx,
    read: Client,
    write: Client,
    engine: Arc<Mutex<Engine>>,
    mut models_rx: watch::Receiver<Models>,
    status: Arc<std::sync::RwLock<grpc::LoopStatus>>,
    ready: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut leases = leases::Leases::new(write.clone(), ctx.replica.clone(), ctx.shards, ctx.lease_ttl_ms);
    let heartbeat_every = Duration::from_millis(ctx.lease_ttl_ms / 3);
    let mut next_heartbeat = Instant::now();
    let mut next_silence = Instant::now() + Duration::from_secs(1);
    let mut keys: Vec<String> = Vec::new();
    let mut groups_ready: BTreeSet<u32> = BTreeSet::new();
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_heartbeat {
            next_heartbeat = Instant::now() + heartbeat_every;
            // What this replica saw since the last heartbeat, written under the leases in the
            // renewals' pipeline (see `seen`): one script per shard with changes, no round trip.
            let now = now_micros();
            let seen_changes = seen_to_write(&ctx, &engine, now).await;
            let calls = seen::write_calls(&ctx.replica, ctx.shards, &seen_changes);
            match leases.heartbeat_with(now / 1000, calls).await {
                Ok((change, seen_replies)) => {
                    ready.set("redis", true);
                    seen_written(&engine, &seen_changes, seen_replies).await;
                    if !change.lost.is_empty() {
                        let lost: BTreeSet<u32> = change.lost.iter().copied().collect();
                        let shards = ctx.shards;
                        engine.lock().await.retain(|id| !lost.contains(&shard_for(id, shards)));
                        tracing::info!(shards = ?change.lost, "shards released");
                    }
                    for shard in &change.gained {
                        let key = telemetry_stream(*shard);
                        if !groups_ready.contains(shard) {
                            ensure_group(&write, &key, &ctx.group).await?;
                            groups_ready.insert(*shard);
                        }
                        take_over(&ctx, &read, &write, &engine, *shard).await?;
                        tracing::info!(shard, "shard taken");
                    }
                    keys = leases.owned().into_iter().map(telemetry_stream).collect();
                    if let Err(e) = score_orphans(&ctx, &write, &engine, &keys).await {
                        tracing::warn!(error = %format!("{e:#}"), "own pending entries not re-read; next heartbeat");
                    }
                    // Entries read by another replica and never acked (one fenced off after
                    // reading, or one that died while its lease was still ours) once idle.
                    let min_idle_ms = 2 * ctx.lease_ttl_ms;
                    let pending = shard_pending(&write, &ctx.group, &leases.owned(), min_idle_ms).await?;
                    for p in pending.iter().filter(|p| p.stale) {
                        let key = telemetry_stream(p.shard);
                        claim_pending(&ctx, &write, &engine, &key, min_idle_ms, &HashSet::new()).await?;
                    }
                    let lag = pending.iter().map(|p| (p.shard, p.pending)).collect();
                    let mut st = status.write().unwrap_or_else(|p| p.into_inner());
                    st.shards = leases.owned();
                    st.lag = lag;
                    metrics::gauge!("proact_detector_shards_owned").set(st.shards.len() as f64);
                }
                Err(e) => {
                    // Without renewals our leases lapse: stop scoring until Redis is back.
                    ready.set("redis", false);
                    tracing::warn!(error = %e, "lease heartbeat failed");
                    keys.clear();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        if models_rx.has_changed().unwrap_or(false) {
            let m = models_rx.borrow_and_update().clone();
            // Between two batches: every reading is scored by exactly one model set.
            engine.lock().await.set_models(m);
        }
        if Instant::now() >= next_silence {
            next_silence = Instant::now() + Duration::from_secs(1);
            let transitions = engine.lock().await.check_silence(now_micros());
            let outgoing = transitions.into_iter().map(|tr| outgoing(tr, HashMap::new())).collect();
            let (fenced, _) = publish_all(&write, &ctx.fence, outgoing).await?;
            if !fenced.is_empty() {
                lose_fenced(&engine, &ctx, &fenced).await;
                next_heartbeat = Instant::now();
            }
        }
        if keys.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let read_started = Instant::now();
        let entries = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = read_group(&read, &ctx.group, &ctx.replica, &keys, ctx.batch, 200) => r,
        };
        match entries {
            Ok(entries) if !entries.is_empty() => {
                let t0 = Instant::now();
                metrics::histogram!("proact_detector_read_seconds").record((t0 - read_started).as_secs_f64());
                let batch = process(&engine, &write, &ctx, &ctx.traces, &entries).await?;
                if let Some(appended) = batch.appended_at {
                    metrics::histogram!("proact_detector_alert_latency_seconds").record((appended - t0).as_secs_f64());
                }
                let t1 = Instant::now();
                let fenced = batch.fenced;
                if fenced.is_empty() {
                    ack(&write, &ctx.group, &entries).await?;
                } else {
                    // Another replica owns these shards now: their entries stay pending for
                    // it (it reclaims idle ones), and what we knew of them is stale.
                    let keep: Vec<StreamEntry> = entries
                        .iter()
                        .filter(|e| !fenced.iter().any(|s| telemetry_stream(*s) == e.key))
                        .cloned()
                        .collect();
                    ack(&write, &ctx.group, &keep).await?;
                    lose_fenced(&engine, &ctx, &fenced).await;
                    keys.retain(|k| !fenced.iter().any(|s| telemetry_stream(*s) == *k));
                    next_heartbeat = Instant::now();
                }
                metrics::histogram!("proact_detector_process_seconds").record((t1 - t0).as_secs_f64());
                metrics::histogram!("proact_detector_ack_seconds").record(t1.elapsed().as_secs_f64());
                metrics::histogram!("proact_detector_batch_size").record(entries.len() as f64);
            }
            Ok(_) => {}
            Err(e) => {
                ready.set("redis", false);
                tracing::warn!(error = %e, "stream read failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // What was read since the last heartbeat, for the replicas taking the shards over now.
    let changes = seen_to_write(&ctx, &engine, now_micros()).await;
    if let Err(e) = seen::write(&write, &ctx.replica, ctx.shards, &changes).await {
        tracing::warn!(error = %e, "seen records not written before releasing the shards");
    }
    if let Err(e) = leases.release_all().await {
        tracing::warn!(error = %e, "leases not released; they expire on their own");
    }
    Ok(())
}

/// The seen records to write now (none when the no-data alarm is off).
async fn seen_to_write(ctx: &LoopCtx, engine: &Arc<Mutex<Engine>>, now: i64) -> engine::SeenChanges {
    if ctx.record_seen {
        engine.lock().await.seen_changes(now, ctx.seen_retention_micros)
    } else {
        engine::SeenChanges::default()
    }
}

/// Marks the seen records the heartbeat wrote as written. A failed script leaves them to
/// write at the next heartbeat; a fenced one means the shard is lost (the renewal said so too,
/// and its equipment are dropped).
async fn seen_written(engine: &Arc<Mutex<Engine>>, changes: &engine::SeenChanges, replies: Vec<Result<Value, Error>>) {
    if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
        tracing::warn!(error = %e, "seen records not written; next heartbeat");
        return;
    }
    engine.lock().await.seen_written(changes);
}

/// Taking a shard over: first rebuild its equipment's windows and episodes from the entries
/// the previous owner already processed (the stream tail up to the group's last delivered
/// id), then finish the entries it left unacked.
///
/// Only the entries left unacked publish what they cause (deduplicated): the events of an
/// acked entry were published before its ack, and replaying them from a tail that starts in
/// the middle of an episode would raise that episode again under another id (the id is its
/// first abnormal reading, which the tail does not have). Found by `just chaos` at 1,500
/// readings/s, where 5,000 entries are half a minute of a shard.
///
/// Before the warm-up, each equipment's last published episode transition is restored from
/// the shard's episode hash (see [`publish`]): an episode raised before the tail starts stays
/// open, under its id, so an unacked abnormal reading inside it does not raise it again; and
/// an open no-data alarm stays open until the equipment's data comes back, then clears. After
/// the warm-up, the previous owner's seen records (see [`seen`]) seed the silence clock of
/// the equipment the tail did not reach, so one silent since shortly before the takeover is
/// still alarmed, once, after the silence time.
async fn take_over(
    ctx: &LoopCtx,
    read: &Client,
    write: &Client,
    engine: &Arc<Mutex<Engine>>,
    shard: u32,
) -> anyhow::Result<()> {
    let key = telemetry_stream(shard);
    let mut warmed = HashSet::new();
    let records = publish::load_episodes(write, shard).await?;
    let seen = if ctx.record_seen {
        seen::load(write, &ctx.replica, shard, ctx.shards, now_micros(), ctx.seen_retention_micros).await?
    } else {
        Vec::new()
    };
    {
        let mut engine = engine.lock().await;
        for (equipment, record) in records {
            // Only equipment this shard still holds (the shard count may have changed).
            if shard_for(&equipment, ctx.shards) == shard {
                engine.restore(&equipment, record);
            }
        }
    }
    if let Some(last) = last_delivered(write, &key, &ctx.group).await? {
        if last != "0-0" {
            let tail: Vec<(String, HashMap<String, bytes::Bytes>)> =
                write.xrevrange(key.as_str(), last.as_str(), "-", Some(WARM_UP_ENTRIES)).await?;
            let entries: Vec<StreamEntry> = tail
                .into_iter()
                .rev()
                .map(|(id, mut f)| StreamEntry {
                    key: key.clone(),
                    id,
                    payload: f.remove(proact_server::redis::PAYLOAD_FIELD),
                })
                .collect();
            metrics::counter!("proact_detector_warmup_entries_total").increment(entries.len() as u64);
            // Already scored by the previous owner (and traced there): rebuild state, and
            // publish only what the entries it left unacked cause (see above).
            let unacked = pending_ids(write, &key, &ctx.group).await?;
            let batch = score(engine, write, ctx, &Tracing::disabled(), &entries, |e| unacked.contains(&e.id)).await?;
            reclaimed_late(&batch, &entries, "left unacked by the shard's previous owner");
            warmed = entries.into_iter().map(|e| e.id).collect();
        }
    }
    {
        let mut engine = engine.lock().await;
        for (equipment, record) in seen {
            engine.seed_seen(&equipment, record);
        }
    }
    // The unacked entries the warm-up just scored are only claimed and acked; older ones are
    // scored now.
    claim_pending(ctx, write, engine, &key, 0, &warmed).await?;
    let _ = read;
    Ok(())
}

/// Scores and acks the group's entries of `key` that other consumers read and left unacked
/// for at least `min_idle_ms` (all of them with 0); those in `scored` are only acked.
async fn claim_pending(
    ctx: &LoopCtx,
    write: &Client,
    engine: &Arc<Mutex<Engine>>,
    key: &str,
    min_idle_ms: u64,
    scored: &HashSet<String>,
) -> anyhow::Result<()> {
    let keys = [key.to_string()];
    let mut cursor = "0-0".to_string();
    loop {
        let claimed =
            proact_server::redis::claim_stale(write, &ctx.group, &ctx.replica, &keys, min_idle_ms, ctx.batch).await?;
        if claimed.is_empty() {
            break;
        }
        metrics::counter!("proact_detector_claimed_total").increment(claimed.len() as u64);
        let fresh: Vec<StreamEntry> = claimed.iter().filter(|e| !scored.contains(&e.id)).cloned().collect();
        let batch = process(engine, write, ctx, &ctx.traces, &fresh).await?;
        if !batch.fenced.is_empty() {
            // Lost this shard meanwhile: its new owner takes the entries.
            break;
        }
        reclaimed_late(&batch, &fresh, "claimed from another consumer");
        ack(write, &ctx.group, &claimed).await?;
        let last = claimed.last().map(|e| e.id.clone()).unwrap_or_default();
        if last == cursor {
            break;
        }
        cursor = last;
    }
    Ok(())
}

/// Scores and acks the entries of `keys` delivered to this replica that it never received:
/// Redis records a delivery when it sends the reply, so a read whose reply is lost (the
/// connection cut mid-read, Redis restarting) leaves them in this consumer's pending list,
/// where no one else looks while the shard stays ours. Called between batches, when every
/// pending entry of ours is such an orphan (a batch is scored and acked before the next read).
async fn score_orphans(
    ctx: &LoopCtx,
    write: &Client,
    engine: &Arc<Mutex<Engine>>,
    keys: &[String],
) -> anyhow::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    loop {
        let orphans = proact_server::redis::read_own_pending(write, &ctx.group, &ctx.replica, keys, ctx.batch).await?;
        if orphans.is_empty() {
            return Ok(());
        }
        tracing::info!(entries = orphans.len(), "scoring entries delivered to this replica but never received");
        metrics::counter!("proact_detector_orphaned_entries_total").increment(orphans.len() as u64);
        let batch = process(engine, write, ctx, &ctx.traces, &orphans).await?;
        if !batch.fenced.is_empty() {
            // Lost a shard meanwhile: its new owner takes the entries.
            return Ok(());
        }
        reclaimed_late(&batch, &orphans, "delivered to this replica but never received");
        ack(write, &ctx.group, &orphans).await?;
    }
}

/// Counts and logs (once per batch) the reclaimed entries that were too late to score.
///
/// A reclaimed entry (another consumer's, idle for two lease TTLs; or one of ours whose read
/// reply was lost) can be older than the lateness tolerance behind its equipment's newest
/// reading, when live reads went on past it meanwhile. It is acked without being scored, by
/// choice: the window is ordered by event time and has already dropped what it would need to
/// place the reading, and an episode only moves forward in event time, so scoring it in its
/// own equipment order would raise, escalate or clear an episode in the past, after the
/// events already published for later readings (a second, contradicting history on the
/// dashboard). Keeping it pending would only have it reclaimed again. What is lost is at most
/// the readings of one batch read by a replica that lost its lease; the count says when.
fn reclaimed_late(batch: &Batch, entries: &[StreamEntry], how: &'static str) {
    if batch.too_late == 0 {
        return;
    }
    metrics::counter!("proact_detector_reclaimed_late_entries_total").increment(batch.too_late);
    let first = entries.first().map_or("", |e| e.id.as_str());
    let last = entries.last().map_or("", |e| e.id.as_str());
    tracing::warn!(
        entries = batch.too_late,
        of = entries.len(),
        how,
        first_id = first,
        last_id = last,
        "reclaimed entries older than the lateness tolerance: acked without scoring"
    );
}

/// How many already-processed entries rebuild a shard's state on takeover.
const WARM_UP_ENTRIES: u64 = 5_000;

async fn last_delivered(client: &Client, key: &str, group: &str) -> Result<Option<String>, Error> {
    let groups = proact_server::redis::groups(client, key).await?;
    Ok(groups.into_iter().find(|g| g.name == group).map(|g| g.last_delivered))
}

/// What a heartbeat asks of each owned shard's pending list.
struct ShardPending {
    shard: u32,
    /// Entries delivered and not acked (for status).
    pending: u64,
    /// Whether some were idle for at least the reclaim time (then worth an XAUTOCLAIM).
    stale: bool,
}

/// The pending count of every shard in `shards` and whether each holds entries idle for
/// `min_idle_ms`, in one round trip. The heartbeat runs on the scoring task, so each round trip
/// it waits is time no reading is read. Asking shard by shard (an XAUTOCLAIM and an XPENDING
/// each), with the lease renewals one by one too, a heartbeat over 8 shards was 28 round trips;
/// it is 3 now (renewals, own pending, this), and `just bench detector` measured the
/// heartbeat at p50 1.1-1.7 ms, max 3.0-4.5 ms before, p50 0.55-0.83 ms, max 1.8-2.2 ms after
/// (2026-12-01, 2 cores, load 2-3.7). XAUTOCLAIM still runs for a shard that has stale entries.
async fn shard_pending(
    client: &Client,
    group: &str,
    shards: &[u32],
    min_idle_ms: u64,
) -> Result<Vec<ShardPending>, Error> {
    if shards.is_empty() {
        return Ok(Vec::new());
    }
    let pipeline = client.pipeline();
    for &s in shards {
        let _: () = pipeline.xpending(telemetry_stream(s), group, ()).await?;
        let _: () = pipeline.xpending(telemetry_stream(s), group, (min_idle_ms, "-", "+", 1)).await?;
    }
    let replies = pipeline.try_all::<Value>().await;
    let mut replies = replies.into_iter();
    let mut out = Vec::with_capacity(shards.len());
    for &shard in shards {
        let (summary, idle) = (replies.next(), replies.next());
        let pending = match summary {
            Some(Ok(Value::Array(a))) => a.first().and_then(|x| x.as_u64()).unwrap_or(0),
            _ => 0,
        };
        let stale = match idle {
            Some(Ok(Value::Array(rows))) => !rows.is_empty(),
            Some(Ok(_)) | None => false,
            Some(Err(e)) => return Err(e),
        };
        out.push(ShardPending { shard, pending, stale });
    }
    Ok(out)
}

/// Ids of the entries of `key` delivered to a consumer of `group` and not acked (up to as
/// many as a warm-up reads).
async fn pending_ids(client: &Client, key: &str, group: &str) -> Result<HashSet<String>, Error> {
    let reply: Value = client.xpending(key, group, ("-", "+", WARM_UP_ENTRIES)).await?;
    let Value::Array(rows) = reply else { return Ok(HashSet::new()) };
    Ok(rows
        .into_iter()
        .filter_map(|r| match r {
            Value::Array(f) => f.first().and_then(|id| id.as_string()),
            _ => None,
        })
        .collect())
}

/// What scoring a batch did.
#[derive(Debug, Default)]
struct Batch {
    /// Shards whose events were fenced off (this replica lost their leases).
    fenced: BTreeSet<u32>,
    /// When the batch's alert events were appended, if it appended any.
    appended_at: Option<Instant>,
    /// Readings (of those whose events it publishes) older than the lateness tolerance, not
    /// scored.
    too_late: u64,
}

/// Scores `entries` and publishes the alert events.
async fn process(
    engine: &Arc<Mutex<Engine>>,
    write: &Client,
    ctx: &LoopCtx,
    traces: &Tracing,
    entries: &[StreamEntry],
) -> anyhow::Result<Batch> {
    score(engine, write, ctx, traces, entries, |_| true).await
}

/// Scores `entries` in order and publishes the alert events of those `publish` selects (the
/// others only move the state on).
async fn score(
    engine: &Arc<Mutex<Engine>>,
    write: &Client,
    ctx: &LoopCtx,
    traces: &Tracing,
    entries: &[StreamEntry],
    publish: impl Fn(&StreamEntry) -> bool,
) -> anyhow::Result<Batch> {
    let now = now_micros();
    let started = std::time::SystemTime::now();
    let mut outgoing = Vec::new();
    let mut spans: Vec<PipelineSpan> = Vec::new();
    let mut too_late = 0;
    {
        let mut engine = engine.lock().await;
        for e in entries {
            // Ingest wrote these; an undecodable one is archive's to dead-letter, not ours.
            let Some(Ok(t)) = e.payload.as_ref().map(|p| Telemetry::decode(p.as_ref())) else { continue };
            // Only readings ingest sampled carry a trace; the rest cost this one lookup.
            let span = traces.follow("detector.score", &t.trace_context, started, Vec::new());
            let trace_id = match trace_id_of(&t.trace_context) {
                Some(id) => id.to_string(),
                // The shard function over u32::MAX "shards" is a stable 32-bit hash of the id.
                None => {
                    format!("{:032x}", u128::from(shard_for(&t.equipement_id, u32::MAX)) << 64 | t.ts_micros as u128)
                }
            };
            let late_before = engine.too_late;
            let produced = engine.observe(&t, &trace_id, now);
            let produced = if publish(e) {
                too_late += engine.too_late - late_before;
                produced
            } else {
                Vec::new()
            };
            // The alert events carry the scoring span's context, so what the gateway does
            // with them hangs below the scoring that raised them.
            let context = match &span {
                Some(s) if !produced.is_empty() => {
                    let mut c = HashMap::new();
                    s.inject(&mut c);
                    c
                }
                _ => t.trace_context.clone(),
            };
            if let Some(mut s) = span {
                s.set_attribute(KeyValue::new("equipement_id", t.equipement_id.clone()));
                s.set_attribute(KeyValue::new("alert.transitions", produced.len() as i64));
                spans.push(s);
            }
            outgoing.extend(produced.into_iter().map(|tr| self::outgoing(tr, context.clone())));
        }
    }
    metrics::counter!("proact_detector_events_scored_total").increment(entries.len() as u64);
    let (fenced, appended_at) = publish_all(write, &ctx.fence, outgoing).await?;
    spans.into_iter().for_each(PipelineSpan::end);
    Ok(Batch { fenced, appended_at, too_late })
}

fn outgoing(tr: engine::Transition, trace_context: HashMap<String, String>) -> publish::Outgoing {
    let event = AlertEvent { kind: tr.kind as i32, alert: Some(tr.alert), event_id: String::new(), trace_context };
    publish::Outgoing { event, at_micros: Some(tr.at_micros), episode: tr.episode }
}

/// Publishes each event once, under the lease of its equipment's shard, all in one round
/// trip; returns the shards it was fenced off, and when the events were appended (if any was).
async fn publish_all(
    write: &Client,
    fence: &Fence,
    outgoing: Vec<publish::Outgoing>,
) -> anyhow::Result<(BTreeSet<u32>, Option<Instant>)> {
    let mut fenced = BTreeSet::new();
    if outgoing.is_empty() {
        return Ok((fenced, None));
    }
    let results = publish::publish_batch(write, &outgoing, fence).await?;
    let appended_at = Instant::now();
    let mut added = 0;
    for (out, result) in outgoing.iter().zip(results) {
        // Logged once published, not before: a log write is not on the alert's path.
        if let Some(alert) = &out.event.alert {
            let kind = AlertEventKind::try_from(out.event.kind).unwrap_or_default();
            tracing::info!(equipement_id = %alert.equipement_id, trace_id = %alert.trace_id, ?kind, outcome = ?result, "alert transition");
        }
        match result {
            publish::Published::Added(_) => added += 1,
            publish::Published::Duplicate => {}
            publish::Published::Fenced => {
                metrics::counter!("proact_detector_fenced_events_total").increment(1);
                let equipment = out.event.alert.as_ref().map_or("", |a| a.equipement_id.as_str());
                fenced.insert(fence.shard_of(equipment));
            }
        }
    }
    metrics::counter!("proact_detector_alert_events_total").increment(added);
    Ok((fenced, (added > 0).then_some(appended_at)))
}

/// Forgets the equipment of shards this replica was fenced off.
async fn lose_fenced(engine: &Arc<Mutex<Engine>>, ctx: &LoopCtx, fenced: &BTreeSet<u32>) {
    tracing::warn!(shards = ?fenced, replica = %ctx.replica, "lease lost while scoring (fenced); dropping those shards");
    let shards = ctx.shards;
    engine.lock().await.retain(|id| !fenced.contains(&shard_for(id, shards)));
}
