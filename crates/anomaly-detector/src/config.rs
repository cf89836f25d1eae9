//! Command line, environment and rule settings of `proact-anomaly-detector`, checked at start.

use std::collections::HashMap;
use std::net::SocketAddr;

use proact_server::config::{AdminArgs, GrpcAuthArgs, PgArgs, RedisArgs};
use proact_server::ConfigError;

use crate::engine::{EngineConfig, Thresholds};
use crate::replay;

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
    pub signatures: crate::models::VerifyArgs,
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
    /// Seconds between two checkpoints of the online detectors' states in Redis (those that
    /// learned since the last one; also at shutdown); 0: never checkpointed, a restart or a
    /// takeover starts them cold.
    #[arg(long, env = "PROACT_DETECTOR_CHECKPOINT_SECS", default_value_t = 30)]
    pub checkpoint_secs: u64,
    /// Replicas of the alerts stream's Redis master that must hold an alert event before the
    /// readings that raised it are acknowledged (Redis `WAIT`), so that a failover of that
    /// master loses no alert. Unset: 1 on a Redis Cluster, 0 (no wait) on one Redis. While the
    /// master has fewer, scoring goes on and those readings stay pending: docs/RELIABILITY.md.
    #[arg(long, env = "PROACT_DETECTOR_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// Longest one `WAIT` for those replicas blocks scoring, in milliseconds; at most a third
    /// of the lease TTL, so that the leases are renewed in time whatever Redis does.
    #[arg(long, env = "PROACT_DETECTOR_REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_wait_timeout_ms: u64,
    /// `off`: the online detectors (`proact_online`) neither judge nor learn; the rules and
    /// the trained models alone raise alerts.
    #[arg(long, env = "PROACT_DETECTOR_ONLINE", value_enum, default_value = "on")]
    pub online: crate::replay::Switch,
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
        // Scoring, and so the heartbeat renewing the leases every third of their TTL, waits
        // for up to two `WAIT`s between renewals (a batch's, then the held events'). Without a
        // wait (one Redis, by default) the timeout is unused and a short TTL is fine.
        let cluster = proact_server::redis_url::parse(&self.redis.redis_url).is_ok_and(|t| t.cluster);
        let max_wait = match self.alert_wait(cluster).replicas {
            0 => 60_000,
            _ => (self.lease_ttl_ms / 3).min(60_000),
        };
        if self.redis_wait_timeout_ms == 0 || self.redis_wait_timeout_ms > max_wait {
            return Err(ConfigError::new(
                "PROACT_DETECTOR_REDIS_WAIT_TIMEOUT_MS",
                self.redis_wait_timeout_ms.to_string(),
                format!(
                    "must be 1..={max_wait} milliseconds (with PROACT_DETECTOR_REDIS_WAIT_REPLICAS above 0, \
                     at most a third of PROACT_DETECTOR_LEASE_TTL_MS)"
                ),
            ));
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

    /// The [`ReplicaWait`](crate::publish::ReplicaWait) asked for, `clustered` saying whether
    /// Redis is a cluster (the default differs).
    pub(crate) fn alert_wait(&self, clustered: bool) -> crate::publish::ReplicaWait {
        crate::publish::ReplicaWait {
            replicas: self.redis_wait_replicas.unwrap_or(u32::from(clustered)),
            timeout_ms: self.redis_wait_timeout_ms,
        }
    }

    pub(crate) fn replica(&self) -> String {
        self.consumer
            .clone()
            .or_else(proact_server::config::hostname)
            .unwrap_or_else(|| format!("detector-{}", std::process::id()))
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

#[cfg(test)]
mod tests {
    use super::Config;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("proact-anomaly-detector").chain(args.iter().copied())).unwrap()
    }

    /// A replica wait of 0, or, when the wait is on, longer than a third of the lease TTL (a
    /// renewal could lapse behind it), stops the service at start, naming the setting.
    #[test]
    fn a_replica_wait_timeout_out_of_range_is_refused_naming_it() {
        let cluster = ["--redis-url", "redis-cluster://127.0.0.1:7000,127.0.0.1:7001"];
        let on = ["--redis-wait-replicas", "1"];
        for bad in [
            vec!["--redis-wait-timeout-ms", "0"],
            vec!["--redis-wait-timeout-ms", "60001"],
            [&on[..], &["--redis-wait-timeout-ms", "3334"]].concat(),
            [&on[..], &["--lease-ttl-ms", "2000"]].concat(),
            [&cluster[..], &["--lease-ttl-ms", "2000"]].concat(),
        ] {
            let err = parse(&bad).validate().expect_err("out of range").to_string();
            assert!(err.contains("PROACT_DETECTOR_REDIS_WAIT_TIMEOUT_MS"), "{bad:?}: {err}");
        }
        parse(&[&on[..], &["--redis-wait-timeout-ms", "3333"]].concat()).validate().expect("a third of the TTL");
        // One Redis, no wait asked for: the timeout is unused, a short lease TTL is fine.
        parse(&["--lease-ttl-ms", "1500"]).validate().expect("no wait, any TTL");
    }

    #[test]
    fn the_replica_wait_defaults_to_one_on_a_cluster_only() {
        assert_eq!(parse(&[]).alert_wait(true).replicas, 1);
        assert_eq!(parse(&[]).alert_wait(false).replicas, 0);
        let two = parse(&["--redis-wait-replicas", "2", "--redis-wait-timeout-ms", "250"]).alert_wait(false);
        assert_eq!((two.replicas, two.timeout_ms), (2, 250));
        assert_eq!(parse(&["--redis-wait-replicas", "0"]).alert_wait(true).replicas, 0);
    }
}
