//! ProAct alert gateway: the maintenance team's window on the pipeline. It follows the
//! alerts stream and pushes every event to its WebSocket (`/ws/alerts`) and gRPC
//! (`Alerts.Subscribe`) clients, with resume from any past event id; it drives the alert
//! lifecycle (acknowledge, assign, clear) and serves the dashboard page.
//! Upstream: anomaly-detector (alerts stream), archive (history). Downstream: people.
#![forbid(unsafe_code)]

pub mod feed;
pub mod grpc;
pub mod http;
pub mod json;
pub mod lifecycle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proact_server::config::{AdminArgs, PgArgs, RedisArgs};
use proact_server::{ConfigError, Readiness};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

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
    /// HTTP address of the dashboard, `/ws/alerts` and the JSON API.
    #[arg(long, env = "PROACT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50054")]
    pub grpc_addr: SocketAddr,
    /// Bearer token clients must present; unset: no authentication (local use only).
    #[arg(long, env = "PROACT_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds between heartbeats on idle WebSockets.
    #[arg(long, env = "PROACT_WS_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.redis.validate()?;
        self.pg.validate()?;
        if let Some(t) = &self.token {
            if t.len() < 16 {
                return Err(ConfigError::new("PROACT_GATEWAY_TOKEN", "***", "must be at least 16 characters"));
            }
        }
        if self.heartbeat_secs == 0 {
            return Err(ConfigError::new("PROACT_WS_HEARTBEAT_SECS", "0", "must be at least 1"));
        }
        Ok(())
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
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9104)).await?;
        let http = TcpListener::bind(config.http_addr).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        {
            let pool = proact_server::db::pool(&config.pg.database_url, 1)?;
            proact_server::db::migrate(&mut *pool.get().await?).await?;
        }
        let pool = proact_server::db::pool(&config.pg.database_url, config.pg.pool_size)?;
        let shared_redis = proact_server::redis::connect(&config.redis.redis_url).await?;
        let feed_redis = proact_server::redis::connect(&config.redis.redis_url).await?;
        Ok(Self { config, admin, http, grpc, shared_redis, feed_redis, pool })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, http, grpc, shared_redis, feed_redis, pool } = self;
        let ready = Readiness::new();
        ready.set("postgres", true);
        let (tx, _) = broadcast::channel(feed::CLIENT_BUFFER);
        let follow = tokio::spawn(feed::follow(feed_redis, tx.clone(), ready.clone(), shutdown.clone()));
        let shared = Arc::new(http::Shared {
            pool,
            redis: shared_redis,
            feed: tx,
            token: config.token.clone(),
            heartbeat: Duration::from_secs(config.heartbeat_secs),
            shutdown: shutdown.clone(),
        });
        let hs = shutdown.clone();
        let router = http::router(shared.clone());
        let http_task = tokio::spawn(async move {
            axum::serve(http, router).with_graceful_shutdown(async move { hs.cancelled().await }).await
        });
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::alerts_server::AlertsServer<grpc::AlertsService>>().await;
        let gs = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(proact_proto::v1::alerts_server::AlertsServer::new(grpc::AlertsService { shared }))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone()));
        tracing::info!(http = %config.http_addr, grpc = %config.grpc_addr, "alert gateway running; dashboard at http://{}/", config.http_addr);
        let _ = follow.await;
        let _ = http_task.await;
        let _ = grpc_task.await;
        let _ = admin_task.await;
        tracing::info!("alert gateway stopped");
        Ok(())
    }
}
