//! ProAct trainer: the batch side of the pipeline. It prepares the historical datasets
//! (cleaning, feature engineering, loading the reference tables), trains and evaluates the
//! models, and runs the model registry the detectors fetch versions from.
//! Upstream: archive (telemetry history), the reference data in `data/`. Downstream:
//! anomaly-detector (model events, artefacts).
#![forbid(unsafe_code)]

pub mod registry;

use std::net::SocketAddr;
use std::path::PathBuf;

use proact_server::config::{AdminArgs, PgArgs};
use proact_server::{ConfigError, Readiness};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Command line and environment of `proact-trainer`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "proact-trainer", version, about = "ProAct trainer: data preparation, training, model registry")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// gRPC listen address of the model registry.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50055")]
    pub grpc_addr: SocketAddr,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Load the clean reference datasets (AMDEC, GMAO history, workload) into PostgreSQL.
    LoadReference {
        /// Folder holding AMDEC_clean.csv, GMAO_integrator_clean.csv, Workload_clean.csv.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.pg.validate()
    }
}

pub async fn migrate(pg: &PgArgs) -> anyhow::Result<()> {
    let pool = proact_server::db::pool(&pg.database_url, 1)?;
    proact_server::db::migrate(&mut *pool.get().await?).await?;
    Ok(())
}

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    pool: deadpool_postgres::Pool,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9105)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        migrate(&config.pg).await?;
        let pool = proact_server::db::pool(&config.pg.database_url, config.pg.pool_size)?;
        Ok(Self { config, admin, grpc, pool })
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, pool } = self;
        let ready = Readiness::new();
        ready.set("postgres", pool.get().await.is_ok());
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<proact_proto::v1::model_registry_server::ModelRegistryServer<registry::RegistryService>>()
            .await;
        let gs = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(proact_proto::v1::model_registry_server::ModelRegistryServer::new(
                    registry::RegistryService { pool },
                ))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone()));
        tracing::info!(grpc = %config.grpc_addr, "trainer registry running");
        let _ = grpc_task.await;
        let _ = admin_task.await;
        Ok(())
    }
}
