//! ProAct alert gateway: the maintenance team's window on the pipeline. It follows the
//! alerts stream and pushes every event to its WebSocket (`/ws/alerts`) and gRPC
//! (`Alerts.Subscribe`) clients, with resume from any past event id; it drives the alert
//! lifecycle (acknowledge, assign, clear) and serves the dashboard page with its JSON API.
//! Upstream: anomaly-detector (alerts stream), archive (history, gRPC), trainer (model
//! registry, gRPC), the reference tables (AMDEC, workload). It also serves the work orders,
//! the knowledge base and the technicians' plan (`/api/planning`, gRPC `Planning`), re-made
//! when a critical work order is created. Downstream: people.

pub mod access;
pub mod criticality;
pub mod feed;
pub mod grpc;
pub mod http;
pub mod json;
pub mod lifecycle;
pub mod notices;
pub mod reference;
pub mod serve;
pub mod state;
pub mod upstream;
pub mod ws;
pub mod wsframe;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proact_server::config::{AdminArgs, GrpcAuthArgs, PgArgs, RedisArgs};
use proact_server::otel::Tracing;
use proact_server::telemetry::Metric;
use proact_server::{ConfigError, Readiness};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Command line and environment of `proact-alert-gateway`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "proact-alert-gateway",
    version,
    about = "ProAct alert gateway: WebSocket/gRPC alerts and the dashboard"
)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub grpc_auth: GrpcAuthArgs,
    /// HTTP address of the dashboard, `/ws/alerts` and the JSON API.
    #[arg(long, env = "PROACT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50054")]
    pub grpc_addr: SocketAddr,
    /// Bearer token clients must present; unset: no authentication (local use only).
    #[arg(long, env = "PROACT_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Origins (`https://host[:port]`, comma-separated) whose pages may open the live feed;
    /// empty: the gateway's own only. When set, the `Host` of every upgrade must be one of them.
    #[arg(long, env = "PROACT_GATEWAY_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Seconds between heartbeats on idle WebSockets.
    #[arg(long, env = "PROACT_WS_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,
    /// How far back a WebSocket may ask to be replayed (`after=`), seconds: older events are
    /// skipped (the page loads older alerts from the JSON list), so `after=0` cannot make a
    /// replica read the whole alerts stream.
    #[arg(long, env = "PROACT_WS_MAX_REPLAY_SECS", default_value_t = 86_400)]
    pub max_replay_secs: u64,
    /// HTTP connections open at once (WebSockets included); more wait to be accepted.
    #[arg(long, env = "PROACT_GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "PROACT_GATEWAY_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Batches of alerts (one per read of the alerts stream, up to 512 alerts) a client may
    /// fall behind the live feed before it is disconnected (close 4008).
    #[arg(long, env = "PROACT_WS_CLIENT_QUEUE", default_value_t = feed::CLIENT_BUFFER)]
    pub client_queue: usize,
    /// Milliseconds the feed waits after each read of the alerts stream, so that under load
    /// one write to each client carries several alerts (0: none; a lone alert never waits).
    #[arg(long, env = "PROACT_WS_LINGER_MS", default_value_t = 2)]
    pub linger_ms: u64,
    /// Seconds a client's socket may accept nothing before it is disconnected (close 4008).
    #[arg(long, env = "PROACT_WS_WRITE_TIMEOUT_SECS", default_value_t = 10.0)]
    pub write_timeout_secs: f64,
    /// An equipment with no reading for this many seconds is shown as silent.
    #[arg(long, env = "PROACT_SILENT_AFTER_SECS", default_value_t = 120)]
    pub silent_after_secs: i64,
    /// The archive's gRPC endpoint (recent telemetry for the page's charts).
    #[arg(long, env = "PROACT_ARCHIVE_GRPC_URL", default_value = "http://127.0.0.1:50052")]
    pub archive_grpc_url: String,
    /// The trainer's model registry gRPC endpoint (the models in use).
    #[arg(long, env = "PROACT_REGISTRY_GRPC_URL", default_value = "http://127.0.0.1:50055")]
    pub registry_grpc_url: String,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
        self.grpc_auth.validate()?;
        self.redis.validate()?;
        self.pg.validate()?;
        if self.max_connections == 0 {
            return Err(ConfigError::new("PROACT_GATEWAY_MAX_CONNECTIONS", "0", "must be at least 1"));
        }
        if !(1..=300).contains(&self.header_timeout_secs) {
            return Err(ConfigError::new(
                "PROACT_GATEWAY_HEADER_TIMEOUT_SECS",
                self.header_timeout_secs.to_string(),
                "must be 1..=300",
            ));
        }
        if let Some(t) = &self.token {
            if t.len() < 16 {
                return Err(ConfigError::new("PROACT_GATEWAY_TOKEN", "***", "must be at least 16 characters"));
            }
        }
        if self.heartbeat_secs == 0 {
            return Err(ConfigError::new("PROACT_WS_HEARTBEAT_SECS", "0", "must be at least 1"));
        }
        if !(16..=1 << 20).contains(&self.client_queue) {
            return Err(ConfigError::new(
                "PROACT_WS_CLIENT_QUEUE",
                self.client_queue.to_string(),
                "must be between 16 and 1048576",
            ));
        }
        if !(self.write_timeout_secs >= 0.05 && self.write_timeout_secs <= 3600.0) {
            return Err(ConfigError::new(
                "PROACT_WS_WRITE_TIMEOUT_SECS",
                self.write_timeout_secs.to_string(),
                "must be between 0.05 and 3600",
            ));
        }
        if self.linger_ms > 1000 {
            return Err(ConfigError::new("PROACT_WS_LINGER_MS", self.linger_ms.to_string(), "must be at most 1000"));
        }
        if self.silent_after_secs < 1 {
            return Err(ConfigError::new(
                "PROACT_SILENT_AFTER_SECS",
                self.silent_after_secs.to_string(),
                "must be at least 1",
            ));
        }
        upstream::endpoint("PROACT_ARCHIVE_GRPC_URL", &self.archive_grpc_url)?;
        upstream::endpoint("PROACT_REGISTRY_GRPC_URL", &self.registry_grpc_url)?;
        Ok(())
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

/// Every metric the gateway exports (see `proact_server::telemetry::Metric`).
pub const METRICS: &[Metric] = &[
    Metric::gauge("proact_gateway_ws_clients", "WebSocket clients connected"),
    Metric::gauge("proact_gateway_http_connections", "HTTP connections open (WebSockets included)"),
    Metric::counter("proact_gateway_ws_messages_total", "Messages written to WebSocket clients"),
    Metric::counter(
        "proact_gateway_ws_evicted_total",
        "WebSocket clients disconnected for being too slow (close 4008)",
    ),
    Metric::counter("proact_gateway_grpc_evicted_total", "gRPC subscribers disconnected for being too slow"),
    Metric::counter("proact_gateway_feed_events_total", "Alert events read from the alerts stream and broadcast"),
    Metric::counter("proact_gateway_undecodable_events_total", "Alert stream entries that could not be decoded"),
    Metric::counter("proact_gateway_auth_refused_total", "Requests refused for a missing or wrong token, by API")
        .labelled(&[("api", "http"), ("api", "grpc")]),
    Metric::counter("proact_gateway_lifecycle_changes_total", "Operator actions on alerts, by action").labelled(&[
        ("action", "acknowledged"),
        ("action", "assigned"),
        ("action", "cleared"),
    ]),
];

/// The knowledge base over the database's AMDEC and interventions; empty (and said so) when
/// they cannot be read, so that the gateway still serves alerts.
async fn knowledge_base(pool: &deadpool_postgres::Pool) -> proact_knowledge::KnowledgeBase {
    let built = match proact_knowledge::db::load(pool).await {
        Ok(records) => proact_knowledge::KnowledgeBase::with_records(records),
        Err(e) => Err(e),
    };
    match built {
        Ok(kb) => {
            tracing::info!(rows = kb.len(), "knowledge base built");
            kb
        }
        Err(e) => {
            tracing::warn!(error = %e, "knowledge base not built; searches answer from an empty base");
            proact_knowledge::KnowledgeBase::new().expect("an empty index")
        }
    }
}

pub struct App {
    config: Config,
    admin: TcpListener,
    http: TcpListener,
    grpc: TcpListener,
    shared_redis: fred::prelude::Client,
    feed_redis: fred::prelude::Client,
    pool: deadpool_postgres::Pool,
    traces: Tracing,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        proact_server::telemetry::register(METRICS);
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9104)).await?;
        let http = TcpListener::bind(config.http_addr).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        {
            let pool = proact_server::db::pool(&config.pg.database_url, 1)?;
            proact_store::schema::migrate(&mut *pool.get().await?).await?;
        }
        let pool = proact_server::db::pool(&config.pg.database_url, config.pg.pool_size)?;
        let shared_redis = config.redis.connect().await?;
        let feed_redis = config.redis.connect().await?;
        let traces = Tracing::start("alert-gateway", &config.admin.trace)?;
        Ok(Self { config, admin, http, grpc, shared_redis, feed_redis, pool, traces })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, http, grpc, shared_redis, feed_redis, pool, traces } = self;
        let ready = Readiness::new();
        ready.set("postgres", true);
        let (tx, _) = broadcast::channel(config.client_queue);
        let recent = feed::SharedRecent::default();
        let crit = criticality::Criticality::default();
        if let Err(e) = crit.refresh(&pool).await {
            tracing::warn!(error = %e, "reading the AMDEC for alert priorities failed; retrying every minute");
        }
        let crit_task = AbortOnDropHandle::new(tokio::spawn(crit.clone().keep_fresh(pool.clone(), shutdown.clone())));
        let follow = AbortOnDropHandle::new(tokio::spawn(feed::follow(
            feed_redis,
            tx.clone(),
            Duration::from_millis(config.linger_ms),
            feed::Outlets { recent: recent.clone(), crit: crit.clone(), ready: ready.clone(), traces: traces.clone() },
            shutdown.clone(),
        )));
        let ingest_rate = upstream::IngestRate::new();
        let sampler = AbortOnDropHandle::new(tokio::spawn(upstream::sample_ingest_rate(
            shared_redis.clone(),
            config.redis.shards,
            Duration::from_secs(2),
            ingest_rate.clone(),
            shutdown.clone(),
        )));
        // Work orders (crate proact-maintenance): their API, and their transitions pushed to
        // the page. Events a crash left in the outbox go out now.
        let orders = proact_maintenance::WorkOrders::new(pool.clone(), Some(shared_redis.clone()));
        if let Err(e) = orders.publish_pending().await {
            tracing::warn!(error = %e, "work-order events still waiting in the outbox; they go out with the next change");
        }
        // The knowledge base (crate proact-knowledge): the AMDEC and the intervention history,
        // searchable and briefing each alert; a closed work order joins it at once.
        let knowledge = proact_knowledge::service::KnowledgeState {
            kb: Arc::new(knowledge_base(&pool).await),
            alerts: proact_knowledge::service::alerts_from_database(pool.clone()),
        };
        // The technicians' plan (crate proact-planning) from the reference tables and the open
        // work orders; a critical order created re-plans it.
        let desk = proact_planning::service::Desk::new(Some(proact_planning::db::loader(pool.clone())));
        let (notices, _) = broadcast::channel(notices::NOTICE_BUFFER);
        let notice_redis = config.redis.connect().await?;
        let work_order_feed = AbortOnDropHandle::new(tokio::spawn(notices::follow_work_orders(
            notice_redis,
            notices.clone(),
            Some((knowledge.kb.clone(), pool.clone())),
            Some((desk.clone(), pool.clone())),
            shutdown.clone(),
        )));
        let shared = Arc::new(state::GatewayState {
            pool,
            redis: shared_redis,
            feed: tx,
            recent,
            token: config.token.clone(),
            origins: access::Origins::parse(&config.allowed_origins)
                .map_err(|e| ConfigError::new("PROACT_GATEWAY_ALLOWED_ORIGINS", &config.allowed_origins, e))?,
            heartbeat: Duration::from_secs(config.heartbeat_secs),
            max_replay: Duration::from_secs(config.max_replay_secs),
            write_timeout: Duration::from_secs_f64(config.write_timeout_secs),
            silent_after_s: config.silent_after_secs,
            archive: upstream::channel(
                "PROACT_ARCHIVE_GRPC_URL",
                &config.archive_grpc_url,
                &traces,
                config.grpc_auth.grpc_token.as_deref(),
            )?,
            registry: upstream::channel(
                "PROACT_REGISTRY_GRPC_URL",
                &config.registry_grpc_url,
                &traces,
                config.grpc_auth.grpc_token.as_deref(),
            )?,
            ingest_rate,
            clients: Default::default(),
            notices,
            crit,
            shutdown: shutdown.clone(),
        });
        let hs = shutdown.clone();
        let apis = proact_maintenance::http::router(orders.clone())
            .merge(proact_knowledge::service::router(knowledge.clone()))
            .nest("/api/planning", proact_planning::http::router(desk.clone()));
        let router = http::router(shared.clone(), apis);
        let limits = serve::Limits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_secs(config.header_timeout_secs),
        };
        let http_task = AbortOnDropHandle::new(tokio::spawn(async move {
            serve::serve(http, router, limits, hs).await;
            Ok::<(), std::io::Error>(())
        }));
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::alerts_server::AlertsServer<grpc::AlertsService>>().await;
        let gs = shutdown.clone();
        let grpc_task = AbortOnDropHandle::new(tokio::spawn(
            tonic::transport::Server::builder()
                .layer(proact_server::grpc::ServerTraceLayer::new(traces.clone()))
                .add_service(health_service)
                .add_service(proact_proto::v1::alerts_server::AlertsServer::with_interceptor(
                    grpc::AlertsService { shared },
                    grpc::auth_interceptor(config.token.as_deref()),
                ))
                .add_service(proact_proto::v1::work_orders_server::WorkOrdersServer::with_interceptor(
                    proact_maintenance::grpc::WorkOrdersService::new(orders),
                    grpc::auth_interceptor(config.token.as_deref()),
                ))
                .add_service(proact_proto::v1::knowledge_server::KnowledgeServer::with_interceptor(
                    knowledge,
                    grpc::auth_interceptor(config.token.as_deref()),
                ))
                .add_service(proact_proto::v1::planning_server::PlanningServer::with_interceptor(
                    proact_planning::service::PlanningService { desk },
                    grpc::auth_interceptor(config.token.as_deref()),
                ))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        ));
        let admin_task =
            AbortOnDropHandle::new(tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone())));
        tracing::info!(http = %config.http_addr, grpc = %config.grpc_addr, "alert gateway running; dashboard at http://{}/", config.http_addr);
        // A WebSocket client that never reads must not hold the process past the grace period.
        let limit = Duration::from_secs(config.admin.shutdown_grace_secs) + proact_server::shutdown::DRAIN_MARGIN;
        proact_server::shutdown::join_within(&shutdown, limit, async move {
            let _ = follow.await;
            let _ = work_order_feed.await;
            let _ = crit_task.await;
            let _ = sampler.await;
            let _ = http_task.await;
            let _ = grpc_task.await;
            let _ = admin_task.await;
        })
        .await;
        traces.shutdown();
        tracing::info!("alert gateway stopped");
        Ok(())
    }
}
