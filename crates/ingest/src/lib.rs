//! ProAct ingest: the pipeline's front door. Sensors publish JSON readings over MQTT
//! (`sensors/{equipement_id}/telemetry`, QoS 1) or send batches over gRPC; ingest validates
//! them against the contract, writes accepted readings as protobuf entries to the telemetry
//! stream of their shard, and every rejection, with its reason, to the dead-letter stream.
//! Downstream: archive, anomaly-detector.
#![forbid(unsafe_code)]

pub mod grpc;
pub mod mqtt;
pub mod sink;
pub mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use proact_server::config::{AdminArgs, MqttArgs, RedisArgs};
use proact_server::{ConfigError, Readiness};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Command line and environment of `proact-ingest`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "proact-ingest", version, about = "ProAct ingest: MQTT and gRPC intake into Redis streams")]
pub struct Config {
    #[command(flatten)]
    pub mqtt: MqttArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// MQTT shared-subscription group: replicas in one group split the messages.
    #[arg(long, env = "PROACT_INGEST_GROUP", default_value = "proact-ingest")]
    pub group: String,
    /// MQTT client id; must be stable per replica for its persistent session (default: hostname).
    #[arg(long, env = "PROACT_INGEST_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Most messages written in one pipelined batch.
    #[arg(long, env = "PROACT_INGEST_MAX_BATCH", default_value_t = 512)]
    pub max_batch: usize,
    /// Longest wait to fill a batch, in milliseconds.
    #[arg(long, env = "PROACT_INGEST_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Messages held between the broker and the writer before reading stops.
    #[arg(long, env = "PROACT_INGEST_QUEUE", default_value_t = 8192)]
    pub queue: usize,
    /// Largest accepted payload, bytes.
    #[arg(long, env = "PROACT_INGEST_MAX_PAYLOAD", default_value_t = 16384)]
    pub max_payload: usize,
    /// Approximate length kept per telemetry stream (0: no trimming by ingest).
    #[arg(long, env = "PROACT_STREAM_MAXLEN", default_value_t = 0)]
    pub stream_maxlen: i64,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
        self.redis.validate()?;
        if self.max_batch == 0 || self.max_batch > 10_000 {
            return Err(ConfigError::new("PROACT_INGEST_MAX_BATCH", self.max_batch.to_string(), "must be 1..=10000"));
        }
        if self.queue < self.max_batch {
            return Err(ConfigError::new(
                "PROACT_INGEST_QUEUE",
                self.queue.to_string(),
                "must be at least PROACT_INGEST_MAX_BATCH",
            ));
        }
        if self.group.is_empty() || self.group.contains('/') || self.group.contains('+') || self.group.contains('#') {
            return Err(ConfigError::new("PROACT_INGEST_GROUP", &self.group, "must be non-empty with no / + #"));
        }
        if self.stream_maxlen < 0 {
            return Err(ConfigError::new("PROACT_STREAM_MAXLEN", self.stream_maxlen.to_string(), "must be >= 0"));
        }
        Ok(())
    }

    fn client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
            format!("proact-ingest-{}", if host.is_empty() { "local" } else { &host })
        })
    }
}

/// A built ingest service: listeners bound, Redis connected.
pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    redis: fred::prelude::Client,
    ready: Readiness,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9101)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let redis = proact_server::redis::connect(&config.redis.redis_url).await?;
        let ready = Readiness::new();
        ready.set("redis", true);
        ready.set("mqtt", false);
        Ok(Self { config, admin, grpc, redis, ready })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound")
    }

    /// The readiness checks (`mqtt` turns true once the subscription is acknowledged).
    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains: stops reading MQTT, writes and acks
    /// what it holds, finishes gRPC calls in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, redis, ready } = self;
        let sink = StreamSinkBuilder::build(&config, redis);
        let limits = validate::Limits { max_payload_bytes: config.max_payload, ..Default::default() };
        let (host, port, _tls) = config.mqtt.endpoint()?;
        let intake = mqtt::MqttIntake {
            host,
            port,
            client_id: config.client_id(),
            username: config.mqtt.mqtt_username.clone(),
            password: config.mqtt.mqtt_password.clone(),
            topic: format!("$share/{}/sensors/+/telemetry", config.group),
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_wait_ms),
            queue: config.queue,
            limits: limits.clone(),
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::ingest_server::IngestServer<grpc::IngestService>>().await;
        let service = grpc::IngestService { sink: sink.clone(), limits, ready: ready.clone() };
        let grpc_shutdown = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(proact_proto::v1::ingest_server::IngestServer::new(service))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    grpc_shutdown.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready.clone(), shutdown.clone()));
        tracing::info!(grpc = %config.grpc_addr, topic = %intake.topic, "ingest running");
        mqtt::run(intake, sink, ready, shutdown.clone()).await?;
        let _ = grpc_task.await;
        let _ = admin_task.await;
        tracing::info!("ingest stopped");
        Ok(())
    }
}

struct StreamSinkBuilder;

impl StreamSinkBuilder {
    fn build(config: &Config, redis: fred::prelude::Client) -> sink::StreamSink {
        let maxlen = (config.stream_maxlen > 0).then_some(config.stream_maxlen);
        sink::StreamSink::new(redis, config.redis.shards, maxlen)
    }
}
