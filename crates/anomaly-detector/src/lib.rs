//! ProAct anomaly detector: scores every reading of the telemetry shards it consumes, keeps
//! per-equipment alert episodes, and appends alert events (raised, cleared) to the alerts
//! stream, each exactly once, before acknowledging the readings.
//! Upstream: ingest (telemetry streams), trainer (models). Downstream: archive, alert-gateway.
#![forbid(unsafe_code)]

pub mod episodes;
pub mod grpc;
pub mod publish;

use std::net::SocketAddr;
use std::sync::Arc;

use fred::prelude::Client;
use proact_proto::streams::telemetry_streams;
use proact_proto::time::now_micros;
use proact_proto::v1::{AlertEvent, Telemetry};
use proact_server::config::{AdminArgs, RedisArgs};
use proact_server::consumer::{self, ConsumerConfig};
use proact_server::redis::StreamEntry;
use proact_server::{ConfigError, Readiness};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use episodes::{Episodes, RuleConfig};

/// The version stamped on alerts raised by the rules alone.
pub const RULES_VERSION: &str = "rules-v1";

/// Command line and environment of `proact-anomaly-detector`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "proact-anomaly-detector",
    version,
    about = "ProAct anomaly detector: real-time scoring and alert episodes"
)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50053")]
    pub grpc_addr: SocketAddr,
    /// Consumer group of the detector replicas.
    #[arg(long, env = "PROACT_DETECTOR_GROUP", default_value = "anomaly-detector")]
    pub group: String,
    /// Consumer name, unique per replica (default: hostname).
    #[arg(long, env = "PROACT_DETECTOR_CONSUMER")]
    pub consumer: Option<String>,
    /// Critical temperature, °C.
    #[arg(long, env = "PROACT_TEMPERATURE_CRITICAL", default_value_t = 90.0)]
    pub temperature_critical: f64,
    /// Hysteresis below the threshold before a reading counts as normal again, °C.
    #[arg(long, env = "PROACT_HYSTERESIS", default_value_t = 2.0)]
    pub hysteresis: f64,
    /// Seconds of normal readings before an episode is cleared.
    #[arg(long, env = "PROACT_CLEAR_AFTER_SECS", default_value_t = 60)]
    pub clear_after_secs: u64,
    /// Most entries read per shard per batch.
    #[arg(long, env = "PROACT_DETECTOR_BATCH", default_value_t = 1000)]
    pub batch: u64,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.redis.validate()?;
        if !self.temperature_critical.is_finite() {
            return Err(ConfigError::new(
                "PROACT_TEMPERATURE_CRITICAL",
                self.temperature_critical.to_string(),
                "must be finite",
            ));
        }
        if !(0.0..=50.0).contains(&self.hysteresis) {
            return Err(ConfigError::new("PROACT_HYSTERESIS", self.hysteresis.to_string(), "must be between 0 and 50"));
        }
        Ok(())
    }
}

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    read: Client,
    write: Client,
    ready: Readiness,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9103)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let read = proact_server::redis::connect(&config.redis.redis_url).await?;
        let write = proact_server::redis::connect(&config.redis.redis_url).await?;
        Ok(Self { config, admin, grpc, read, write, ready: Readiness::new() })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, read, write, ready } = self;
        let rule = RuleConfig {
            temperature_critical: config.temperature_critical,
            hysteresis: config.hysteresis,
            clear_after_micros: config.clear_after_secs as i64 * 1_000_000,
        };
        let episodes = Arc::new(Mutex::new(Episodes::new(rule, RULES_VERSION)));
        let consumer_name = config.consumer.clone().unwrap_or_else(|| {
            let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
            if h.is_empty() {
                "detector".into()
            } else {
                h
            }
        });
        let cfg = ConsumerConfig {
            group: config.group.clone(),
            consumer: consumer_name.clone(),
            keys: telemetry_streams(config.redis.shards),
            count: config.batch,
            block_ms: 500,
            claim_idle_ms: 30_000,
            readiness_name: "redis",
        };
        let loop_task = {
            let (episodes, write) = (episodes.clone(), write.clone());
            tokio::spawn(consumer::run(cfg, read, write.clone(), ready.clone(), shutdown.clone(), move |entries| {
                handle(episodes.clone(), write.clone(), entries)
            }))
        };
        let service = grpc::DetectorService {
            episodes,
            replica_id: consumer_name,
            shards: (0..config.redis.shards).collect(),
            model_version: RULES_VERSION.into(),
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::detector_server::DetectorServer<grpc::DetectorService>>().await;
        let gs = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(proact_proto::v1::detector_server::DetectorServer::new(service))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone()));
        tracing::info!(grpc = %config.grpc_addr, "anomaly detector running");
        let _ = loop_task.await;
        let _ = grpc_task.await;
        let _ = admin_task.await;
        tracing::info!("anomaly detector stopped");
        Ok(())
    }
}

async fn handle(episodes: Arc<Mutex<Episodes>>, write: Client, entries: Vec<StreamEntry>) -> anyhow::Result<()> {
    let now = now_micros();
    let mut events = Vec::new();
    {
        let mut ep = episodes.lock().await;
        for e in &entries {
            // Ingest wrote these; an undecodable one is archive's to dead-letter, not ours.
            let Some(Ok(t)) = e.payload.as_ref().map(|p| Telemetry::decode(p.as_ref())) else { continue };
            let trace_id = t
                .trace_context
                .get("traceparent")
                .and_then(|tp| tp.split('-').nth(1))
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            if let Some(tr) = ep.observe(&t, &trace_id, now) {
                events.push(AlertEvent {
                    kind: tr.kind as i32,
                    alert: Some(tr.alert),
                    event_id: String::new(),
                    trace_context: t.trace_context.clone(),
                });
            }
        }
    }
    metrics::counter!("proact_detector_events_scored_total").increment(entries.len() as u64);
    for ev in &events {
        if publish::publish_once(&write, ev).await?.is_some() {
            metrics::counter!("proact_detector_alert_events_total").increment(1);
        }
    }
    Ok(())
}
