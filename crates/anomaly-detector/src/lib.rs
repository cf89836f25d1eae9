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

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod grpc;
pub mod leases;
pub mod models;
pub mod publish;
pub mod replay;
mod scoring;
pub mod seen;
mod takeover;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use proact_server::otel::Tracing;
use proact_server::telemetry::Metric;
use proact_server::Readiness;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use engine::{Engine, EquipmentInfo};
use leases::Fence;

pub use config::{Command, Config, RuleArgs};
pub use engine::RULES_VERSION;

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
    Metric::counter(
        "proact_detector_replica_wait_failures_total",
        "Replica waits (PROACT_DETECTOR_REDIS_WAIT_REPLICAS) not met in time: the readings that raised those alert events stay unacked",
    ),
    Metric::histogram(
        "proact_detector_replica_wait_seconds",
        "How long a WAIT for the alerts stream's replicas blocked scoring",
    ),
    Metric::counter(
        "proact_detector_publish_failures_total",
        "Publishes of a batch's alert events that failed: the events are held and published again, their readings unacked",
    ),
    Metric::counter(
        "proact_detector_alert_events_republished_total",
        "Unconfirmed alert events a failover lost, appended again",
    ),
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
    Metric::counter("proact_detector_checkpointed_states_total", "Online states written to the checkpoint"),
    Metric::counter(
        "proact_detector_checkpoint_slices_deferred_total",
        "Checkpoint slices not taken because the writer was behind: their states wait for the next round",
    ),
    Metric::histogram(
        "proact_detector_checkpoint_slice_seconds",
        "Time the background writer takes to serialise and write one checkpoint slice",
    ),
    Metric::gauge("proact_detector_stream_lag_entries", "Entries not yet delivered to the detectors' group, by stream"),
    Metric::gauge("proact_detector_stream_pending_entries", "Entries delivered and not yet acknowledged, by stream"),
];

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    /// The scoring loop's blocking stream reads.
    stream_reader: Client,
    /// Every other command of the scoring loop, and the lag gauges.
    redis: Client,
    /// The scoring loop's alert publishes and their replica waits.
    publisher: Client,
    /// The model-event subscription.
    events: Client,
    /// The online states' checkpoint writes.
    checkpoint_writer: Client,
    traces: Tracing,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        proact_server::telemetry::register(METRICS);
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9103)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let stream_reader = config.redis.connect().await?;
        let redis = config.redis.connect().await?;
        let publisher = config.redis.connect().await?;
        let events = config.redis.connect().await?;
        let checkpoint_writer = config.redis.connect().await?;
        let traces = Tracing::start("anomaly-detector", &config.admin.trace)?;
        Ok(Self { config, admin, grpc, stream_reader, redis, publisher, events, checkpoint_writer, traces })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, stream_reader, redis, publisher, events, checkpoint_writer, traces } = self;
        let ready = Readiness::new();
        let mut engine = Engine::new(config.rules.engine_config()?);
        if config.online == replay::Switch::Off {
            engine.set_online(None);
        }
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
            redis.clone(),
            "proact_detector",
            config.group.clone(),
            proact_proto::streams::telemetry_streams(config.redis.shards),
            Duration::from_secs(5),
            shutdown.clone(),
        )));
        let status = Arc::new(std::sync::RwLock::new(grpc::LoopStatus::default()));
        let replica = config.replica();
        let scoring = scoring::Scoring {
            settings: scoring::LoopSettings {
                group: config.group.clone(),
                replica: replica.clone(),
                shards: config.redis.shards,
                lease_ttl_ms: config.lease_ttl_ms,
                batch: config.batch,
                seen_retention_micros: config.seen_retention_secs.saturating_mul(1_000_000) as i64,
                record_seen: config.rules.silence_after_secs > 0,
                checkpoint_every: (config.checkpoint_secs > 0)
                    .then(|| std::time::Duration::from_secs(config.checkpoint_secs)),
                alert_wait: config.alert_wait(publisher.is_clustered()),
            },
            stream_reader,
            redis: redis.clone(),
            publisher,
            checkpoint_writer,
            unconfirmed: Default::default(),
            engine: engine.clone(),
            traces: traces.clone(),
            fence: Fence { replica: replica.clone(), shards: config.redis.shards },
            status: status.clone(),
            ready: ready.clone(),
        };
        let scoring = AbortOnDropHandle::new(tokio::spawn(scoring.run(models_rx, shutdown.clone())));
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
