//! ProAct trainer: the batch side of the pipeline. It turns archived telemetry and the GMAO
//! history (or a labelled CSV) into models, evaluates them on a held-out 20 %, keeps every
//! version in the registry (PostgreSQL), promotes a candidate only when it is not worse than the
//! active version on the same held-out data, and announces promotions and rollbacks on the
//! model-events stream, from which every detector replica hot-reloads.
//! Upstream: archive (telemetry history), the reference data in `data/` (GMAO interventions).
//! Downstream: anomaly-detector (model events, artefacts over gRPC `ModelRegistry`).
//!
//! - [`dataset`]: feature rows from the archive or a CSV, through the shared window.
//! - [`train`]: fit, evaluate, store, gate (`anomaly-rf`, `normal-behaviour/<id>`).
//! - [`registry`]: versions, statuses, the gate, rollback, events.
//! - [`grpc`]: the `ModelRegistry` service. [`schedule`]: the cron-driven retraining.
//! - [`backfill`]: a simulated past for the fleet (telemetry, alerts, closed work orders), so
//!   a fresh system has labels to learn from at once (the demo).

pub mod backfill;
pub mod dataset;
pub mod error;
pub mod grpc;
pub mod planning;
pub mod registry;
pub mod schedule;
pub mod train;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proact_server::config::{AdminArgs, GrpcAuthArgs, PgArgs, RedisArgs};
use proact_server::telemetry::Metric;
use proact_server::{ConfigError, Readiness};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use error::TrainerError;
pub use registry::Registry;
pub use train::{TrainOutcome, TrainSettings, Trainer};

/// Command line and environment of `proact-trainer`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "proact-trainer", version, about = "ProAct trainer: data preparation, training, model registry")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub grpc_auth: GrpcAuthArgs,
    /// gRPC listen address of the model registry.
    #[arg(long, env = "PROACT_GRPC_ADDR", default_value = "127.0.0.1:50055")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
}

/// The key the trainer signs model artefacts with (the detector verifies with its public half).
#[derive(Debug, Clone, clap::Args)]
pub struct SigningArgs {
    /// Ed25519 secret key (64 hex characters) every stored model artefact is signed with; a
    /// Secret in production. `proact-trainer keygen` makes a pair. Unset: artefacts are stored
    /// unsigned, and detectors given PROACT_MODEL_VERIFY_KEY refuse them.
    #[arg(long, env = "PROACT_MODEL_SIGNING_KEY", hide_env_values = true, global = true)]
    pub model_signing_key: Option<String>,
}

impl SigningArgs {
    pub fn signer(&self) -> Result<Option<proact_models::ArtefactSigner>, ConfigError> {
        // The value is a secret: the error names the setting, never echoes it.
        self.model_signing_key
            .as_deref()
            .map(|k| {
                proact_models::ArtefactSigner::from_hex(k)
                    .map_err(|e| ConfigError::new("PROACT_MODEL_SIGNING_KEY", "(hidden)", e.to_string()))
            })
            .transpose()
    }
}

/// How models are trained and gated (the service's schedule and the `train` command alike).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// When the service retrains every model: a cron expression in UTC (5 fields, or @weekly…),
    /// or `off`.
    #[arg(long, env = "PROACT_TRAIN_SCHEDULE", default_value = schedule::DEFAULT_SCHEDULE, global = true)]
    pub train_schedule: String,
    /// How much lower a candidate's held-out F1 may be than the active version's (on the same
    /// rows) and still be promoted.
    #[arg(long, env = "PROACT_PROMOTION_MARGIN", default_value_t = 0.0, global = true)]
    pub promotion_margin: f64,
    /// A window is labelled "precedes a failure" when a corrective intervention on the same
    /// equipment starts within this many hours after it.
    #[arg(long, env = "PROACT_TRAIN_LABEL_HORIZON_HOURS", default_value_t = 48.0, global = true)]
    pub label_horizon_hours: f64,
    /// Days of archived telemetry read, back from --train-to (or now).
    #[arg(long, env = "PROACT_TRAIN_HISTORY_DAYS", default_value_t = 90, global = true)]
    pub history_days: u32,
    /// Start of the telemetry read (RFC 3339); overrides --history-days.
    #[arg(long, env = "PROACT_TRAIN_FROM", global = true)]
    pub train_from: Option<DateTime<Utc>>,
    /// End (exclusive) of the telemetry read (RFC 3339); default now.
    #[arg(long, env = "PROACT_TRAIN_TO", global = true)]
    pub train_to: Option<DateTime<Utc>>,
    /// One training window per equipment every this many seconds of event time (600: a year of
    /// 12 machines is ~630k rows, whatever the sensors' rate).
    #[arg(long, env = "PROACT_TRAIN_SAMPLE_EVERY_SECS", default_value_t = 600.0, global = true)]
    pub sample_every_secs: f64,
    /// Windows labelled healthy (not a false alarm's) are kept at most once per this many
    /// seconds of event time per equipment; 0: like the others (--sample-every-secs).
    #[arg(long, env = "PROACT_TRAIN_NEGATIVE_EVERY_SECS", default_value_t = 0.0, global = true)]
    pub negative_every_secs: f64,
    /// Trees of the anomaly RandomForest.
    #[arg(long, env = "PROACT_TRAIN_RF_TREES", default_value_t = 100, global = true)]
    pub rf_trees: usize,
    /// Depth of its trees (12: smaller forests score faster in the detector, see docs/BENCHMARKS.md).
    #[arg(long, env = "PROACT_TRAIN_RF_MAX_DEPTH", default_value_t = 12, global = true)]
    pub rf_max_depth: usize,
    /// Failure probability at which the forest raises.
    #[arg(long, env = "PROACT_TRAIN_RF_THRESHOLD", default_value_t = 0.5, global = true)]
    pub rf_threshold: f64,
    /// Normal-behaviour threshold = 0.99 quantile of training distances × this (2: the
    /// smallest margin that kept false alarms under 10 % on SKAB's long healthy recording).
    #[arg(long, env = "PROACT_TRAIN_NB_MARGIN", default_value_t = 2.0, global = true)]
    pub nb_margin: f64,
    /// Fewest failure-free windows an equipment needs for a normal-behaviour model.
    #[arg(long, env = "PROACT_TRAIN_NB_MIN_ROWS", default_value_t = 32, global = true)]
    pub nb_min_rows: usize,
    /// Train from this labelled CSV (timestamp, temperature, vibration, label, optional
    /// equipement_id) instead of the archive and the GMAO history.
    #[arg(long, env = "PROACT_TRAIN_LABELLED_CSV", global = true)]
    pub labelled_csv: Option<PathBuf>,
    /// The label column of --labelled-csv (1/0, true/false).
    #[arg(long, env = "PROACT_TRAIN_LABEL_COLUMN", default_value = "label", global = true)]
    pub label_column: String,
    /// Accepted only to refuse it with the reason: a deployment that still sets it expects a
    /// `criticality-rf` model the trainer no longer makes.
    #[arg(long, env = "PROACT_TRAIN_CRITICALITY_TABLE", global = true, hide = true)]
    pub criticality_table: Option<PathBuf>,
}

impl TrainArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        schedule::parse(&self.train_schedule)
            .map_err(|e| ConfigError::new("PROACT_TRAIN_SCHEDULE", &self.train_schedule, e))?;
        let check = |ok: bool, setting: &'static str, v: String, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::new(setting, v, why))
            }
        };
        let m = self.promotion_margin;
        check(
            m.is_finite() && (0.0..=1.0).contains(&m),
            "PROACT_PROMOTION_MARGIN",
            m.to_string(),
            "must be in [0, 1]",
        )?;
        let h = self.label_horizon_hours;
        check(h.is_finite() && h > 0.0, "PROACT_TRAIN_LABEL_HORIZON_HOURS", h.to_string(), "must be > 0")?;
        let s = self.sample_every_secs;
        check(s.is_finite() && s >= 0.0, "PROACT_TRAIN_SAMPLE_EVERY_SECS", s.to_string(), "must be ≥ 0")?;
        let n = self.negative_every_secs;
        check(n.is_finite() && n >= 0.0, "PROACT_TRAIN_NEGATIVE_EVERY_SECS", n.to_string(), "must be ≥ 0")?;
        check(
            (1..=10_000).contains(&self.rf_trees),
            "PROACT_TRAIN_RF_TREES",
            self.rf_trees.to_string(),
            "must be 1..=10000",
        )?;
        check(
            (1..=64).contains(&self.rf_max_depth),
            "PROACT_TRAIN_RF_MAX_DEPTH",
            self.rf_max_depth.to_string(),
            "must be 1..=64",
        )?;
        let t = self.rf_threshold;
        check(t > 0.0 && t < 1.0, "PROACT_TRAIN_RF_THRESHOLD", t.to_string(), "must be in (0, 1)")?;
        let n = self.nb_margin;
        check(n.is_finite() && n > 0.0, "PROACT_TRAIN_NB_MARGIN", n.to_string(), "must be > 0")?;
        check(self.nb_min_rows >= 8, "PROACT_TRAIN_NB_MIN_ROWS", self.nb_min_rows.to_string(), "must be ≥ 8")?;
        if let (Some(f), Some(t)) = (self.train_from, self.train_to) {
            check(f < t, "PROACT_TRAIN_FROM", f.to_rfc3339(), "must be before PROACT_TRAIN_TO")?;
        }
        if let Some(p) = &self.labelled_csv {
            check(p.is_file(), "PROACT_TRAIN_LABELLED_CSV", p.display().to_string(), "is not a readable file")?;
        }
        if let Some(p) = &self.criticality_table {
            return Err(ConfigError::new(
                "PROACT_TRAIN_CRITICALITY_TABLE",
                p.display().to_string(),
                "the criticality-rf model is no longer trained (it predicted nothing the AMDEC's own scores do not \
                 give, docs/models.md \"Criticality\"): unset it",
            ));
        }
        Ok(())
    }

    pub fn settings(&self) -> TrainSettings {
        let d = TrainSettings::default();
        TrainSettings {
            sampling: dataset::Sampling {
                every_ms: (self.sample_every_secs * 1000.0) as i64,
                negative_every_ms: (self.negative_every_secs * 1000.0) as i64,
                ..d.sampling
            },
            horizon_ms: (self.label_horizon_hours * 3_600_000.0) as i64,
            history_days: self.history_days,
            from: self.train_from,
            to: self.train_to,
            rf: d.rf.clone().n_trees(self.rf_trees).max_depth(self.rf_max_depth),
            rf_threshold: self.rf_threshold,
            nb: proact_models::NormalBehaviourParams { margin: self.nb_margin, ..d.nb.clone() },
            nb_min_rows: self.nb_min_rows,
            labelled_csv: self.labelled_csv.clone(),
            label_column: self.label_column.clone(),
            ..d
        }
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Make an Ed25519 key pair for signing model artefacts and print it as two environment
    /// lines: PROACT_MODEL_SIGNING_KEY (secret: the trainer's) and PROACT_MODEL_VERIFY_KEY
    /// (public: the detectors').
    Keygen,
    /// Load the clean reference datasets (AMDEC, GMAO history, workload) into PostgreSQL.
    LoadReference {
        /// Folder holding AMDEC_clean.csv, GMAO_integrator_clean.csv, Workload_clean.csv.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Write a simulated past for the fleet: weeks of telemetry with failure episodes, the
    /// rules' alerts and their closed work orders (failures confirmed, false alarms), so the
    /// first training run has labels. Skipped when a back-fill is already on record.
    Backfill(backfill::BackfillArgs),
    /// Train now (every model, or one: anomaly-rf, normal-behaviour, normal-behaviour/<id>),
    /// store the versions as candidates and run the promotion gate.
    Train {
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Promote a version: only if it is not worse than the active one, unless --force.
    Promote {
        name: String,
        version: String,
        /// Skip the gate.
        #[arg(long)]
        force: bool,
    },
    /// Make a version active again (default: the previously active one).
    Rollback { name: String, version: Option<String> },
    /// List the stored versions.
    List {
        #[arg(long, default_value = "")]
        name: String,
    },
    /// The knowledge base: `knowledge search "QUESTION" [--amdec FILE] [--interventions FILE]
    /// --limit K --json` (files are read directly; without them, the database is searched).
    Knowledge {
        #[command(subcommand)]
        command: proact_knowledge::cli::KnowledgeCommand,
    },
    /// Plan the technicians' week: who does which open work order on which day.
    Plan {
        /// ISO week, e.g. 2026-W10.
        #[arg(long)]
        week: proact_planning::Week,
        /// Print the plan as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
        /// Folder holding Workload_clean.csv, AMDEC_clean.csv, GMAO_integrator_clean.csv.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Read the workload, AMDEC and history from the database (PROACT_DATABASE_URL) instead.
        #[arg(long)]
        from_db: bool,
        /// Open work orders to plan, JSON or CSV (fields of `proact_planning::Order`).
        #[arg(long)]
        orders: Option<PathBuf>,
        /// Leave out the preventive orders derived from the AMDEC actions and the history.
        #[arg(long)]
        no_preventive: bool,
    },
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
        self.grpc_auth.validate()?;
        self.pg.validate()?;
        self.redis.validate()?;
        self.signing.signer()?;
        self.train.validate()
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

pub async fn migrate(pg: &PgArgs) -> anyhow::Result<()> {
    let pool = proact_server::db::pool(&pg.database_url, 1)?;
    proact_store::schema::migrate(&mut *pool.get().await?).await?;
    Ok(())
}

/// The registry on the configured PostgreSQL and Redis (migrations applied).
pub async fn connect(config: &Config) -> anyhow::Result<Registry> {
    migrate(&config.pg).await?;
    let pool = proact_server::db::pool(&config.pg.database_url, config.pg.pool_size)?;
    let redis = config.redis.connect().await?;
    let registry = Registry::new(pool, redis, config.train.promotion_margin);
    Ok(match config.signing.signer()? {
        Some(signer) => registry.with_signer(signer),
        None => {
            tracing::warn!("PROACT_MODEL_SIGNING_KEY is not set: model artefacts are stored unsigned");
            registry
        }
    })
}

fn status_name(s: i32) -> &'static str {
    match proact_proto::v1::ModelStatus::try_from(s) {
        Ok(proact_proto::v1::ModelStatus::Candidate) => "candidate",
        Ok(proact_proto::v1::ModelStatus::Active) => "active",
        Ok(proact_proto::v1::ModelStatus::Retired) => "retired",
        _ => "?",
    }
}

fn event_line(ev: &proact_proto::v1::ModelEvent) -> String {
    let kind = proact_proto::v1::ModelEventKind::try_from(ev.kind)
        .map(|k| k.as_str_name().trim_start_matches("MODEL_EVENT_KIND_").to_string())
        .unwrap_or_default();
    let (name, version) = ev.model.as_ref().map(|m| (m.name.as_str(), m.version.as_str())).unwrap_or_default();
    format!("{kind} {name} {version}: {}", ev.detail)
}

/// The CLI commands that act on the registry. Returns the process exit code (1 when a
/// promotion was refused, so scripts can tell).
pub async fn run_command(config: &Config, command: &Command) -> anyhow::Result<u8> {
    match command {
        Command::Migrate => migrate(&config.pg).await.map(|_| 0),
        Command::Keygen => {
            let key = proact_models::ArtefactSigner::generate();
            println!("PROACT_MODEL_SIGNING_KEY={}", key.secret_key_hex());
            println!("PROACT_MODEL_VERIFY_KEY={}", key.public_key_hex());
            Ok(0)
        }
        Command::LoadReference { data } => {
            let mut client = proact_dataprep::load::connect(&config.pg.database_url).await?;
            for s in proact_dataprep::load::load_dir(&mut client, data).await? {
                println!("{s:?}");
            }
            Ok(0)
        }
        Command::Backfill(args) => {
            // Bad flags are reported before any connection is tried.
            if let Err(e) = args.plan(Utc::now()) {
                eprintln!("proact-trainer backfill: {e}");
                return Ok(proact_server::EXIT_CONFIG as u8);
            }
            let pool = proact_server::db::pool(&config.pg.database_url, backfill::POOL_SIZE)?;
            let redis = config.redis.connect().await?;
            let report = backfill::run(&pool, Some(redis), args, Utc::now()).await?;
            println!("{report}");
            Ok(0)
        }
        Command::Train { name } => {
            let trainer = Trainer::new(connect(config).await?, config.train.settings());
            let out = trainer.run(name).await?;
            for s in &out.skipped {
                println!("skipped: {s}");
            }
            for (mv, ev) in out.trained.iter().zip(&out.events) {
                let f1 = mv.metrics.as_ref().map_or(0.0, |m| m.f1);
                println!("trained {} {} (held-out F1 {f1:.4}) → {}", mv.name, mv.version, event_line(ev));
            }
            Ok(0)
        }
        Command::Promote { name, version, force } => {
            let ev = connect(config).await?.promote(name, version, *force).await?;
            println!("{}", event_line(&ev));
            Ok(u8::from(ev.kind == proact_proto::v1::ModelEventKind::Refused as i32))
        }
        Command::Rollback { name, version } => {
            let ev = connect(config).await?.rollback(name, version.as_deref().unwrap_or("")).await?;
            println!("{}", event_line(&ev));
            Ok(0)
        }
        Command::Plan { week, json, data, from_db, orders, no_preventive } => {
            let url = from_db.then_some(config.pg.database_url.as_str());
            let input = planning::input(*week, data, url, orders.as_deref(), !no_preventive).await?;
            let plan = proact_planning::plan(&input)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", proact_planning::text::render(&plan));
            }
            Ok(0)
        }
        Command::List { name } => {
            migrate(&config.pg).await?;
            let pool = proact_server::db::pool(&config.pg.database_url, 1)?;
            println!(
                "{:<32} {:<22} {:<9} {:>7} {:>7} {:>9} {:<12} team outcomes",
                "name", "version", "status", "F1", "AUC", "bytes", "sha256"
            );
            for m in registry::list_versions(&pool, name).await? {
                let (f1, auc) = m.metrics.as_ref().map_or((0.0, 0.0), |x| (x.f1, x.roc_auc));
                println!(
                    "{:<32} {:<22} {:<9} {f1:>7.4} {auc:>7.4} {:>9} {:<12} {}",
                    m.name,
                    m.version,
                    status_name(m.status),
                    m.size_bytes,
                    &m.sha256[..m.sha256.len().min(12)],
                    outcomes_line(m.outcomes.as_ref())
                );
            }
            Ok(0)
        }
        Command::Knowledge { command: proact_knowledge::cli::KnowledgeCommand::Search(args) } => {
            let records = if args.from_files() {
                args.load_files()?
            } else {
                let pool = proact_server::db::pool(&config.pg.database_url, 1)?;
                proact_knowledge::db::load(&pool).await?
            };
            // Building and searching the index is CPU work on tantivy's own threads, which
            // waits on them: keep it off the runtime's worker threads.
            let args = args.clone();
            tokio::task::spawn_blocking(move || {
                proact_knowledge::cli::print_search(&args, records, &mut std::io::stdout().lock())
            })
            .await?
        }
    }
}

/// The team's verdicts on a version's alerts, for `list`: `-` when no order made from them is
/// closed yet.
pub fn outcomes_line(o: Option<&proact_proto::v1::ModelOutcomes>) -> String {
    match o {
        None => "-".into(),
        Some(o) => format!(
            "precision {:.2} ({} confirmed, {} false alarms, {} no fault found)",
            o.precision, o.failure_confirmed, o.false_alarm, o.no_fault_found
        ),
    }
}

/// Every metric the trainer exports (see `proact_server::telemetry::Metric`).
pub const METRICS: &[Metric] = &[
    Metric::counter("proact_trainer_runs_total", "Training runs, by result")
        .labelled(&[("result", "ok"), ("result", "error")]),
    Metric::histogram("proact_trainer_run_duration_seconds", "Duration of one training run"),
    Metric::counter("proact_trainer_versions_stored_total", "Model versions stored in the registry"),
    Metric::counter("proact_trainer_promotions_total", "Promotion decisions of the gate, by result")
        .labelled(&[("result", "promoted"), ("result", "refused")]),
    Metric::counter("proact_trainer_rollbacks_total", "Rollbacks to an earlier version"),
    Metric::counter("proact_trainer_corrupt_artefacts_total", "Stored artefacts refused by their checksum"),
];

pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    trainer: Trainer,
    schedule: Option<croner::Cron>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let schedule = schedule::parse(&config.train.train_schedule).map_err(anyhow::Error::msg)?;
        proact_server::telemetry::register(METRICS);
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9105)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let trainer = Trainer::new(connect(&config).await?, config.train.settings());
        Ok(Self { config, admin, grpc, trainer, schedule })
    }

    /// Where the gRPC registry listens (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener has an address")
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let grpc_addr = self.grpc_addr();
        let App { config, admin, grpc, trainer, schedule } = self;
        let traces = proact_server::otel::Tracing::start("trainer", &config.admin.trace)?;
        let ready = Readiness::new();
        ready.set("postgres", trainer.registry().pool().get().await.is_ok());
        ready.set("redis", proact_server::redis::ping(trainer.registry().redis()).await);
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<proact_proto::v1::model_registry_server::ModelRegistryServer<grpc::RegistryService>>()
            .await;
        let service = grpc::RegistryService::new(trainer.clone(), config.redis.redis_url.clone(), shutdown.clone());
        let gs = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(proact_server::grpc::ServerTraceLayer::new(traces.clone()))
                .add_service(health_service)
                .add_service(proact_proto::v1::model_registry_server::ModelRegistryServer::with_interceptor(
                    service,
                    config.grpc_auth.interceptor(),
                ))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    gs.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready, shutdown.clone()));
        let schedule_task = schedule.map(|c| tokio::spawn(schedule::run(c, trainer, shutdown.clone())));
        tracing::info!(grpc = %grpc_addr, schedule = %config.train.train_schedule, "trainer registry running");
        let grpc_task = AbortOnDropHandle::new(grpc_task);
        let admin_task = AbortOnDropHandle::new(admin_task);
        let limit = Duration::from_secs(config.admin.shutdown_grace_secs) + proact_server::shutdown::DRAIN_MARGIN;
        proact_server::shutdown::join_within(&shutdown, limit, async move {
            let _ = grpc_task.await;
            let _ = admin_task.await;
        })
        .await;
        // A scheduled run still going is abandoned: what it stored is consistent (each version
        // is inserted and gated in its own transactions), and the next start reschedules.
        if let Some(t) = schedule_task {
            t.abort();
        }
        traces.shutdown();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Config;

    /// The signing key is a secret: `--help` never shows its value, and a malformed one is
    /// refused at start naming the setting, not echoing what was given.
    #[test]
    fn the_signing_key_is_checked_and_never_printed() {
        let cmd = Config::command();
        let arg = cmd.get_arguments().find(|a| a.get_id() == "model_signing_key").expect("the setting");
        assert!(arg.is_hide_env_values_set());
        let bad = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeX";
        let config = Config::try_parse_from(["proact-trainer", "--model-signing-key", bad]).unwrap();
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("PROACT_MODEL_SIGNING_KEY") && !e.contains(bad), "{e}");
        let good = proact_models::ArtefactSigner::generate().secret_key_hex();
        let config = Config::try_parse_from(["proact-trainer", "--model-signing-key", &good]).unwrap();
        assert!(config.validate().is_ok());
    }
}
