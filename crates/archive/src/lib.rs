//! ProAct archive: stores what flows through the pipeline in PostgreSQL, exactly once.
//! It reads every telemetry shard and the alerts stream with a consumer group, writes
//! telemetry in batches by binary COPY ([`pipeline`]) into a time-partitioned table
//! ([`partitions`]), upserts alert states, and acks the entries only after the commit.
//! Redelivery is harmless: rows are unique on (`equipement_id`, `ts`). It also answers
//! history queries over gRPC (`Archive`, [`query`]).
//! Upstream: ingest, anomaly-detector, alert-gateway. Downstream: trainer, dashboard.

pub mod pipeline;
pub mod query;

/// The partition maintenance lives with the table's other queries in the domain crate.
pub use proact_store::partitions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use proact_proto::streams::{telemetry_streams, ALERTS_STREAM};
use proact_proto::time::now_micros;
use proact_proto::v1::{Alert, AlertEvent, DeadLetter, RejectReason};
use proact_server::config::{AdminArgs, GrpcAuthArgs, PgArgs, RedisArgs};
use proact_server::consumer::{self, ConsumerConfig};
use proact_server::otel::Tracing;
use proact_server::redis::StreamEntry;
use proact_server::telemetry::Metric;
use proact_server::{ConfigError, Readiness};
use proact_store::telemetry::{classify, Failure, WriteMethod};
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::partitions::Partitions;
use crate::pipeline::{dead_letter, send_dead_letters, PipelineConfig, Stats, Writer};

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
    #[command(flatten)]
    pub grpc_auth: GrpcAuthArgs,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub grpc_addr: SocketAddr,
    /// Consumer group shared by archive replicas.
    #[arg(long, env = "PROACT_ARCHIVE_GROUP", default_value = "archive")]
    pub group: String,
    /// Consumer name, unique per replica (default: hostname).
    #[arg(long, env = "PROACT_ARCHIVE_CONSUMER")]
    pub consumer: Option<String>,
    /// Most entries read per shard per read (`XREADGROUP … COUNT`).
    #[arg(long, env = "PROACT_ARCHIVE_BATCH", default_value_t = 2000)]
    pub batch: u64,
    /// A telemetry batch is written once it holds this many entries (across shards)…
    #[arg(long, env = "PROACT_ARCHIVE_BATCH_ROWS", default_value_t = 10_000)]
    pub batch_rows: usize,
    /// …or once its oldest entry waited this long, milliseconds.
    #[arg(long, env = "PROACT_ARCHIVE_LINGER_MS", default_value_t = 100)]
    pub linger_ms: u64,
    /// Batches written at the same time (each on its own connection).
    #[arg(long, env = "PROACT_ARCHIVE_WRITERS", default_value_t = 2)]
    pub writers: usize,
    /// PostgreSQL connections of the gRPC queries, apart from the writers' pool: streaming
    /// readers, however slow, never take a connection the writers need.
    #[arg(long, env = "PROACT_ARCHIVE_QUERY_CONNECTIONS", default_value_t = 4)]
    pub query_connections: usize,
    /// How telemetry is written: `copy-first`, `staging` or `unnest` (docs/BENCHMARKS.md).
    #[arg(long, env = "PROACT_ARCHIVE_WRITE_METHOD", default_value = "copy-first")]
    pub write_method: WriteMethod,
    /// Tries of a row PostgreSQL refuses before it goes to the dead-letter stream.
    #[arg(long, env = "PROACT_ARCHIVE_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// An entry delivered more times than this (restarts while it was pending) is
    /// dead-lettered without another try.
    #[arg(long, env = "PROACT_ARCHIVE_MAX_DELIVERIES", default_value_t = 16)]
    pub max_deliveries: u64,
    /// Longest wait for one database write before the connection is dropped and the batch
    /// retried, milliseconds.
    #[arg(long, env = "PROACT_ARCHIVE_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,
    /// Longest wait for new entries, milliseconds.
    #[arg(long, env = "PROACT_ARCHIVE_BLOCK_MS", default_value_t = 500)]
    pub block_ms: u64,
    /// Entries another consumer held unacked this long are taken over, milliseconds.
    #[arg(long, env = "PROACT_ARCHIVE_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    /// Width of a telemetry partition in days (1: daily, 7: weekly, aligned on Mondays).
    #[arg(long, env = "PROACT_ARCHIVE_PARTITION_DAYS", default_value_t = 1)]
    pub partition_days: u32,
    /// Partitions created ahead of the current one.
    #[arg(long, env = "PROACT_ARCHIVE_PARTITIONS_AHEAD", default_value_t = 3)]
    pub partitions_ahead: u32,
    /// Telemetry older than this many days is dropped, a whole partition at a time; 0 keeps all.
    #[arg(long, env = "PROACT_ARCHIVE_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,
    /// How often partitions are created ahead and expired ones dropped, seconds.
    #[arg(long, env = "PROACT_ARCHIVE_MAINTENANCE_SECS", default_value_t = 600)]
    pub maintenance_secs: u64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
        self.grpc_auth.validate()?;
        self.redis.validate()?;
        self.pg.validate()?;
        if self.batch == 0 || self.batch > 100_000 {
            return Err(ConfigError::new("PROACT_ARCHIVE_BATCH", self.batch.to_string(), "must be 1..=100000"));
        }
        if self.batch_rows == 0 || self.batch_rows > 1_000_000 {
            return Err(ConfigError::new(
                "PROACT_ARCHIVE_BATCH_ROWS",
                self.batch_rows.to_string(),
                "must be 1..=1000000",
            ));
        }
        if self.writers == 0 || self.writers > 64 {
            return Err(ConfigError::new("PROACT_ARCHIVE_WRITERS", self.writers.to_string(), "must be 1..=64"));
        }
        if self.query_connections == 0 || self.query_connections > 64 {
            return Err(ConfigError::new(
                "PROACT_ARCHIVE_QUERY_CONNECTIONS",
                self.query_connections.to_string(),
                "must be 1..=64",
            ));
        }
        if self.writers > self.pg.pool_size {
            return Err(ConfigError::new(
                "PROACT_ARCHIVE_WRITERS",
                self.writers.to_string(),
                format!("must not exceed PROACT_DATABASE_POOL_SIZE ({})", self.pg.pool_size),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::new("PROACT_ARCHIVE_MAX_ATTEMPTS", "0", "must be at least 1"));
        }
        if self.partition_days == 0 || self.partition_days > 366 {
            return Err(ConfigError::new(
                "PROACT_ARCHIVE_PARTITION_DAYS",
                self.partition_days.to_string(),
                "must be 1..=366",
            ));
        }
        if self.retention_days != 0 && self.retention_days < self.partition_days {
            return Err(ConfigError::new(
                "PROACT_ARCHIVE_RETENTION_DAYS",
                self.retention_days.to_string(),
                "must be 0 (keep everything) or at least PROACT_ARCHIVE_PARTITION_DAYS",
            ));
        }
        if self.write_timeout_ms < 100 {
            return Err(ConfigError::new(
                "PROACT_ARCHIVE_WRITE_TIMEOUT_MS",
                self.write_timeout_ms.to_string(),
                "must be at least 100",
            ));
        }
        if self.group.is_empty() {
            return Err(ConfigError::new("PROACT_ARCHIVE_GROUP", "", "must not be empty"));
        }
        Ok(())
    }

    pub fn consumer_name(&self) -> String {
        self.consumer.clone().or_else(proact_server::config::hostname).unwrap_or_else(|| "archive".to_string())
    }
}

impl proact_server::service::ServiceConfig for Config {
    fn log_format(&self) -> &str {
        &self.admin.log_format
    }
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

/// Connects, migrates. Used by `migrate` and at start.
pub async fn migrate(pg: &PgArgs) -> anyhow::Result<()> {
    let pool = proact_server::db::pool(&pg.database_url, 1)?;
    let mut client = pool.get().await?;
    proact_store::schema::migrate(&mut client).await?;
    Ok(())
}

/// How often the consumer group's lag is sampled for `/metrics`.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Every metric the archive exports (see `proact_server::telemetry::Metric`).
pub const METRICS: &[Metric] = &[
    Metric::counter("proact_archive_rows_written_total", "Telemetry rows inserted"),
    Metric::counter("proact_archive_rows_duplicate_total", "Redelivered rows already stored (not inserted again)"),
    Metric::counter(
        "proact_archive_status_entries_total",
        "Equipment status entries (field s: online/offline) acknowledged without a row",
    ),
    Metric::counter("proact_archive_dead_letters_total", "Stream entries sent to the dead-letter stream"),
    Metric::counter(
        "proact_archive_queries_refused_total",
        "gRPC queries refused because every query connection was busy",
    ),
    Metric::counter("proact_archive_claimed_total", "Pending entries claimed from dead consumers"),
    Metric::counter("proact_archive_write_retries_total", "Batch writes retried after a database error"),
    Metric::counter("proact_archive_bisections_total", "Batches split to isolate a row PostgreSQL refuses"),
    Metric::counter("proact_archive_alert_events_total", "Alert events stored"),
    Metric::counter("proact_archive_partitions_created_total", "Telemetry partitions created"),
    Metric::counter("proact_archive_partitions_dropped_total", "Telemetry partitions dropped by retention"),
    Metric::counter(
        "proact_archive_partition_detach_waits_total",
        "Expired partitions whose concurrent detach outlasted the lock timeout behind a long query on telemetry (finished at a later maintenance pass)",
    ),
    Metric::gauge("proact_archive_lag_seconds", "Age of the newest committed entry when it was committed"),
    Metric::histogram("proact_archive_batch_seconds", "Time to store, dead-letter and ack one batch"),
    Metric::histogram("proact_archive_batch_entries", "Stream entries per batch"),
    Metric::gauge("proact_archive_stream_lag_entries", "Entries not yet delivered to the archive's group, by stream"),
    Metric::gauge("proact_archive_stream_pending_entries", "Entries delivered and not yet acknowledged, by stream"),
];

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    pool: deadpool_postgres::Pool,
    query_pool: deadpool_postgres::Pool,
    read_telemetry: Client,
    read_alerts: Client,
    write: Client,
    ready: Readiness,
    parts: Arc<Partitions>,
    stats: Arc<Stats>,
    skip_ack: bool,
    traces: Tracing,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        proact_server::telemetry::register(METRICS);
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9102)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        migrate(&config.pg).await?;
        let pool = proact_server::db::pool(&config.pg.database_url, config.pg.pool_size)?;
        let query_pool = proact_server::db::pool(&config.pg.database_url, config.query_connections)?;
        let parts = Arc::new(Partitions::new(config.partition_days));
        {
            let client = pool.get().await?;
            parts.refresh(&client).await?;
        }
        parts.create_ahead(&pool, now_micros(), config.partitions_ahead).await?;
        let read_telemetry = config.redis.connect().await?;
        let read_alerts = config.redis.connect().await?;
        let write = config.redis.connect().await?;
        let ready = Readiness::new();
        ready.set("postgres", true);
        let traces = Tracing::start("archive", &config.admin.trace)?;
        Ok(Self {
            traces,
            config,
            admin,
            grpc,
            pool,
            query_pool,
            read_telemetry,
            read_alerts,
            write,
            ready,
            parts,
            stats: Arc::default(),
            skip_ack: false,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound")
    }

    /// The readiness checks (`redis`, `redis_alerts`, `postgres`) as `/readyz` reports them.
    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }

    /// Counters of the telemetry path, for tests and benchmarks.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Fault injection for tests (feature `fault-injection`): telemetry batches are committed
    /// but never acked, as if the process died between the commit and the ack.
    #[cfg(feature = "fault-injection")]
    pub fn skip_acks(mut self) -> Self {
        self.skip_ack = true;
        self
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            config,
            admin,
            grpc,
            pool,
            query_pool,
            read_telemetry,
            read_alerts,
            write,
            ready,
            parts,
            stats,
            skip_ack,
            traces,
        } = self;
        let consumer = config.consumer_name();
        let grace = Duration::from_secs(config.admin.shutdown_grace_secs);
        // Writers keep retrying a batch for the grace period after shutdown starts, then leave
        // it pending: a database that stays down must not hold the process forever.
        let abort = CancellationToken::new();
        {
            let (s, a) = (shutdown.clone(), abort.clone());
            tokio::spawn(async move {
                s.cancelled().await;
                tokio::time::sleep(grace).await;
                a.cancel();
            });
        }
        let writer = Arc::new(Writer {
            cfg: PipelineConfig {
                group: config.group.clone(),
                consumer: consumer.clone(),
                keys: telemetry_streams(config.redis.shards),
                read_count: config.batch,
                block_ms: config.block_ms,
                claim_idle_ms: config.claim_idle_ms,
                batch_rows: config.batch_rows,
                linger: Duration::from_millis(config.linger_ms),
                writers: config.writers,
                method: config.write_method,
                max_attempts: config.max_attempts,
                max_deliveries: config.max_deliveries,
                write_timeout: Duration::from_millis(config.write_timeout_ms),
                grace,
                skip_ack,
                retention_days: config.retention_days,
            },
            pool: pool.clone(),
            redis: write.clone(),
            ready: ready.clone(),
            parts: parts.clone(),
            stats,
            abort: abort.clone(),
            traces: traces.clone(),
        });
        let t = AbortOnDropHandle::new(tokio::spawn(pipeline::run(writer.clone(), read_telemetry, shutdown.clone())));
        let mut watched = telemetry_streams(config.redis.shards);
        watched.push(ALERTS_STREAM.to_string());
        let lag = AbortOnDropHandle::new(tokio::spawn(proact_server::redis::watch_lag(
            write.clone(),
            "proact_archive",
            config.group.clone(),
            watched,
            LAG_EVERY,
            shutdown.clone(),
        )));

        let alerts_cfg = ConsumerConfig {
            group: config.group.clone(),
            consumer: consumer.clone(),
            keys: vec![ALERTS_STREAM.to_string()],
            count: 500,
            block_ms: config.block_ms,
            claim_idle_ms: config.claim_idle_ms,
            readiness_name: "redis_alerts",
        };
        let a = {
            let w = writer.clone();
            AbortOnDropHandle::new(tokio::spawn(consumer::run(
                alerts_cfg,
                read_alerts,
                write.clone(),
                ready.clone(),
                shutdown.clone(),
                move |e| handle_alerts(w.clone(), e),
            )))
        };
        let probe = AbortOnDropHandle::new(tokio::spawn(probe_postgres(
            config.pg.database_url.clone(),
            ready.clone(),
            shutdown.clone(),
        )));
        let maintenance = AbortOnDropHandle::new(tokio::spawn(maintain_partitions(
            pool.clone(),
            parts,
            config.partitions_ahead,
            config.retention_days,
            Duration::from_secs(config.maintenance_secs.max(1)),
            shutdown.clone(),
        )));

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::archive_server::ArchiveServer<query::ArchiveService>>().await;
        let gs = shutdown.clone();
        let grpc_task = AbortOnDropHandle::new(tokio::spawn(
            tonic::transport::Server::builder()
                .layer(proact_server::grpc::ServerTraceLayer::new(traces.clone()))
                .add_service(health_service)
                .add_service(proact_proto::v1::archive_server::ArchiveServer::with_interceptor(
                    query::ArchiveService { pool: query_pool },
                    config.grpc_auth.interceptor(),
                ))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        ));
        let admin_task =
            AbortOnDropHandle::new(tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone())));
        tracing::info!(grpc = %config.grpc_addr, consumer = %consumer, method = %config.write_method, "archive running");
        let limit = grace + proact_server::shutdown::DRAIN_MARGIN;
        proact_server::shutdown::join_within(&shutdown, limit, async move {
            let _ = t.await;
            let _ = a.await;
            let _ = lag.await;
            let _ = probe.await;
            let _ = maintenance.await;
            let _ = grpc_task.await;
            let _ = admin_task.await;
        })
        .await;
        abort.cancel();
        traces.shutdown();
        tracing::info!("archive stopped");
        Ok(())
    }
}

/// Keeps the `postgres` readiness check true only while the database answers, even when no
/// batch is being written (a frozen server accepts connections but never answers).
async fn probe_postgres(url: String, ready: Readiness, shutdown: CancellationToken) {
    let timeout = Duration::from_secs(2);
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tokio::time::timeout(timeout, proact_server::db::connect(&url)).await {
                Ok(Ok(c)) => Some(c),
                _ => None,
            };
        }
        let up = match &client {
            Some(c) => matches!(tokio::time::timeout(timeout, c.simple_query("SELECT 1")).await, Ok(Ok(_))),
            None => false,
        };
        if !up {
            client = None; // a query stuck on a frozen server: start afresh next time
        }
        ready.set("postgres", up);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Creates partitions ahead and drops expired ones, at start and every `every`.
async fn maintain_partitions(
    pool: deadpool_postgres::Pool,
    parts: Arc<Partitions>,
    ahead: u32,
    retention_days: u32,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = parts.create_ahead(&pool, now_micros(), ahead).await {
            tracing::warn!(error = %e, "creating partitions ahead failed; retrying at the next round");
        }
        if let Err(e) = parts.drop_expired(&pool, now_micros(), retention_days).await {
            tracing::warn!(error = %e, "dropping expired partitions failed; retrying at the next round");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Alert events: upserted with their lifecycle state. An event PostgreSQL refuses is tried
/// alone `max_attempts` times and then dead-lettered, so one bad event never blocks the
/// stream; any other failure fails the batch (retried by the consumer loop, not acked).
async fn handle_alerts(w: Arc<Writer>, entries: Vec<StreamEntry>) -> anyhow::Result<()> {
    let mut alerts: Vec<(usize, Alert)> = Vec::with_capacity(entries.len());
    let mut dead: Vec<DeadLetter> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e.payload.as_ref().map(|p| AlertEvent::decode(p.as_ref())) {
            Some(Ok(ev)) => {
                if let Some(a) = ev.alert {
                    alerts.push((i, a));
                }
            }
            Some(Err(err)) => {
                dead.push(dead_letter(e, RejectReason::UndecodableEntry, format!("not an AlertEvent message: {err}")))
            }
            None => dead.push(dead_letter(e, RejectReason::UndecodableEntry, "entry has no payload field".into())),
        }
    }
    let all: Vec<Alert> = alerts.iter().map(|(_, a)| a.clone()).collect();
    match proact_store::store_alerts(&w.pool, &all).await {
        Ok(()) => {}
        Err(e) if classify(&e) == Failure::Data => {
            for (i, a) in &alerts {
                let mut tries = 0;
                loop {
                    tries += 1;
                    match proact_store::store_alerts(&w.pool, std::slice::from_ref(a)).await {
                        Ok(()) => break,
                        Err(e) if classify(&e) == Failure::Data && tries >= w.cfg.max_attempts => {
                            tracing::warn!(error = %e, alert_id = %a.alert_id, "PostgreSQL refuses an alert event; dead-lettering it");
                            dead.push(dead_letter(
                                &entries[*i],
                                RejectReason::Unspecified,
                                format!("PostgreSQL refused the alert event {tries} times: {e}"),
                            ));
                            break;
                        }
                        Err(e) if classify(&e) == Failure::Data => {
                            tokio::time::sleep(Duration::from_millis(100 << tries.min(5))).await
                        }
                        Err(e) => {
                            w.ready.set("postgres", false);
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        Err(e) => {
            w.ready.set("postgres", false);
            return Err(e.into());
        }
    }
    metrics::counter!("proact_archive_alert_events_total").increment(alerts.len() as u64);
    send_dead_letters(&w.redis, &dead).await?;
    Ok(())
}
