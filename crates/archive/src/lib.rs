//! ProAct archive: stores what flows through the pipeline in PostgreSQL, exactly once.
//! It reads every telemetry shard and the alerts stream with a consumer group, writes each
//! batch in one transaction (binary COPY for telemetry, upserts for alert states), and acks
//! the entries only after the commit. Redelivery is harmless: rows are unique on
//! (`equipement_id`, `ts`). It also answers history queries over gRPC (`Archive`).
//! Upstream: ingest, anomaly-detector, alert-gateway. Downstream: trainer, dashboard.
#![forbid(unsafe_code)]

pub mod query;

use std::net::SocketAddr;

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{telemetry_streams, ALERTS_STREAM, DEAD_LETTER_STREAM, PAYLOAD_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{AlertEvent, DeadLetter, RejectReason, Telemetry};
use proact_server::config::{AdminArgs, PgArgs, RedisArgs};
use proact_server::consumer::{self, ConsumerConfig};
use proact_server::redis::StreamEntry;
use proact_server::{ConfigError, Readiness};
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Command line and environment of `proact-archive`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "proact-archive", version, about = "ProAct archive: streams into PostgreSQL, history queries")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub grpc_addr: SocketAddr,
    /// Consumer group shared by archive replicas.
    #[arg(long, env = "PROACT_ARCHIVE_GROUP", default_value = "archive")]
    pub group: String,
    /// Consumer name, unique per replica (default: hostname).
    #[arg(long, env = "PROACT_ARCHIVE_CONSUMER")]
    pub consumer: Option<String>,
    /// Most entries read per shard per batch.
    #[arg(long, env = "PROACT_ARCHIVE_BATCH", default_value_t = 2000)]
    pub batch: u64,
    /// Longest wait for new entries, milliseconds.
    #[arg(long, env = "PROACT_ARCHIVE_BLOCK_MS", default_value_t = 500)]
    pub block_ms: u64,
    /// Entries another consumer held unacked this long are taken over, milliseconds.
    #[arg(long, env = "PROACT_ARCHIVE_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.redis.validate()?;
        self.pg.validate()?;
        if self.batch == 0 || self.batch > 100_000 {
            return Err(ConfigError::new("PROACT_ARCHIVE_BATCH", self.batch.to_string(), "must be 1..=100000"));
        }
        if self.group.is_empty() {
            return Err(ConfigError::new("PROACT_ARCHIVE_GROUP", "", "must not be empty"));
        }
        Ok(())
    }

    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(|| hostname_or("archive"))
    }
}

fn hostname_or(default: &str) -> String {
    let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
    if h.is_empty() {
        default.to_string()
    } else {
        h
    }
}

/// Connects, migrates. Used by `migrate` and at start.
pub async fn migrate(pg: &PgArgs) -> anyhow::Result<()> {
    let pool = proact_server::db::pool(&pg.database_url, 1)?;
    let mut client = pool.get().await?;
    proact_server::db::migrate(&mut client).await?;
    Ok(())
}

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    pool: deadpool_postgres::Pool,
    read_telemetry: Client,
    read_alerts: Client,
    write: Client,
    ready: Readiness,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9102)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        migrate(&config.pg).await?;
        let pool = proact_server::db::pool(&config.pg.database_url, config.pg.pool_size)?;
        let read_telemetry = proact_server::redis::connect(&config.redis.redis_url).await?;
        let read_alerts = proact_server::redis::connect(&config.redis.redis_url).await?;
        let write = proact_server::redis::connect(&config.redis.redis_url).await?;
        let ready = Readiness::new();
        ready.set("postgres", true);
        Ok(Self { config, admin, grpc, pool, read_telemetry, read_alerts, write, ready })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, pool, read_telemetry, read_alerts, write, ready } = self;
        let consumer = config.consumer_name();
        let telemetry_cfg = ConsumerConfig {
            group: config.group.clone(),
            consumer: consumer.clone(),
            keys: telemetry_streams(config.redis.shards),
            count: config.batch,
            block_ms: config.block_ms,
            claim_idle_ms: config.claim_idle_ms,
            readiness_name: "redis",
        };
        let alerts_cfg = ConsumerConfig {
            keys: vec![ALERTS_STREAM.to_string()],
            count: 500,
            readiness_name: "redis_alerts",
            ..telemetry_cfg.clone()
        };
        let t = {
            let (pool, write, ready) = (pool.clone(), write.clone(), ready.clone());
            let r2 = ready.clone();
            tokio::spawn(consumer::run(
                telemetry_cfg,
                read_telemetry,
                write.clone(),
                ready,
                shutdown.clone(),
                move |entries| handle_telemetry(pool.clone(), write.clone(), r2.clone(), entries),
            ))
        };
        let a = {
            let (pool, write, ready) = (pool.clone(), write.clone(), ready.clone());
            let r2 = ready.clone();
            tokio::spawn(consumer::run(
                alerts_cfg,
                read_alerts,
                write.clone(),
                ready,
                shutdown.clone(),
                move |entries| handle_alerts(pool.clone(), write.clone(), r2.clone(), entries),
            ))
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::archive_server::ArchiveServer<query::ArchiveService>>().await;
        let gs = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(proact_proto::v1::archive_server::ArchiveServer::new(query::ArchiveService { pool }))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone()));
        tracing::info!(grpc = %config.grpc_addr, consumer = %consumer, "archive running");
        let _ = t.await;
        let _ = a.await;
        let _ = grpc_task.await;
        let _ = admin_task.await;
        tracing::info!("archive stopped");
        Ok(())
    }
}

fn undecodable(e: &StreamEntry, detail: String) -> DeadLetter {
    DeadLetter {
        source: "archive".into(),
        topic: format!("{} {}", e.key, e.id),
        reason: RejectReason::UndecodableEntry as i32,
        detail,
        payload: e.payload.as_ref().map(|p| p[..p.len().min(4096)].to_vec()).unwrap_or_default(),
        payload_truncated: e.payload.as_ref().is_some_and(|p| p.len() > 4096),
        at_micros: now_micros(),
    }
}

async fn dead_letters(write: &Client, dead: &[DeadLetter]) -> anyhow::Result<()> {
    for d in dead {
        let _: () = write
            .xadd(DEAD_LETTER_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(d.encode_to_vec())))
            .await?;
        metrics::counter!("proact_archive_dead_letters_total").increment(1);
    }
    Ok(())
}

async fn handle_telemetry(
    pool: deadpool_postgres::Pool,
    write: Client,
    ready: Readiness,
    entries: Vec<StreamEntry>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut rows = Vec::with_capacity(entries.len());
    let mut dead = Vec::new();
    for e in &entries {
        match e.payload.as_ref().map(|p| Telemetry::decode(p.as_ref())) {
            Some(Ok(t)) => rows.push(t),
            Some(Err(err)) => dead.push(undecodable(e, format!("not a Telemetry message: {err}"))),
            None => dead.push(undecodable(e, "entry has no payload field".into())),
        }
    }
    match proact_store::store_telemetry(&pool, &rows).await {
        Ok(inserted) => {
            ready.set("postgres", true);
            metrics::counter!("proact_archive_rows_written_total").increment(inserted);
            metrics::counter!("proact_archive_rows_duplicate_total").increment(rows.len() as u64 - inserted);
        }
        Err(e) => {
            ready.set("postgres", false);
            return Err(e.into());
        }
    }
    dead_letters(&write, &dead).await?;
    metrics::histogram!("proact_archive_batch_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("proact_archive_batch_size").record(entries.len() as f64);
    Ok(())
}

async fn handle_alerts(
    pool: deadpool_postgres::Pool,
    write: Client,
    ready: Readiness,
    entries: Vec<StreamEntry>,
) -> anyhow::Result<()> {
    let mut alerts = Vec::with_capacity(entries.len());
    let mut dead = Vec::new();
    for e in &entries {
        match e.payload.as_ref().map(|p| AlertEvent::decode(p.as_ref())) {
            Some(Ok(ev)) => {
                if let Some(a) = ev.alert {
                    alerts.push(a);
                }
            }
            Some(Err(err)) => dead.push(undecodable(e, format!("not an AlertEvent message: {err}"))),
            None => dead.push(undecodable(e, "entry has no payload field".into())),
        }
    }
    if let Err(e) = proact_store::store_alerts(&pool, &alerts).await {
        ready.set("postgres", false);
        return Err(e.into());
    }
    ready.set("postgres", true);
    metrics::counter!("proact_archive_alert_events_total").increment(alerts.len() as u64);
    dead_letters(&write, &dead).await
}
