//! Configuration pieces the services flatten into their own `clap` parsers: every setting
//! is a flag with an environment fallback and a default that works against the local stack.
//! Values are checked at start; a bad one stops the service with a message naming the
//! setting and why (exit code [`crate::EXIT_CONFIG`]).

use std::net::SocketAddr;

/// A setting that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting} = {value:?}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { setting, value: value.into(), reason: reason.into() }
    }
}

/// Redis connection.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL: `redis://[user:pass@]host:port[/db]`, or a Redis Cluster as
    /// `redis-cluster://[user:pass@]host:port[,host:port…]` (any nodes: the rest is
    /// discovered); `rediss://` and `rediss-cluster://` for TLS.
    #[arg(
        long = "redis-url",
        env = "PROACT_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Number of telemetry stream shards; must be the same in every service.
    #[arg(long, env = "PROACT_SHARDS", default_value_t = 8)]
    pub shards: u32,
    /// How long, in seconds, a service starting keeps trying a Redis that does not answer yet
    /// (down, or a cluster in the middle of a failover) before it gives up.
    #[arg(long = "redis-connect-timeout-secs", env = "PROACT_REDIS_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    pub connect_timeout_secs: u64,
}

impl RedisArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::redis_url::parse(&self.redis_url)
            .map_err(|e| ConfigError::new("PROACT_REDIS_URL", redact(&self.redis_url), e.to_string()))?;
        if self.shards == 0 || self.shards > 1024 {
            return Err(ConfigError::new("PROACT_SHARDS", self.shards.to_string(), "must be between 1 and 1024"));
        }
        if self.connect_timeout_secs == 0 || self.connect_timeout_secs > 3600 {
            return Err(ConfigError::new(
                "PROACT_REDIS_CONNECT_TIMEOUT_SECS",
                self.connect_timeout_secs.to_string(),
                "must be between 1 and 3600 seconds",
            ));
        }
        Ok(())
    }

    /// A client of the configured Redis, waiting up to `PROACT_REDIS_CONNECT_TIMEOUT_SECS` for
    /// it to answer ([`crate::redis::connect_within`]).
    pub async fn connect(&self) -> Result<crate::redis::RedisClient, fred::error::Error> {
        crate::redis::connect_within(&self.redis_url, std::time::Duration::from_secs(self.connect_timeout_secs)).await
    }
}

/// PostgreSQL connection.
#[derive(Debug, Clone, clap::Args)]
pub struct PgArgs {
    /// PostgreSQL URL (`postgres://user[:pass]@host:port/proact`).
    #[arg(
        long = "database-url",
        env = "PROACT_DATABASE_URL",
        default_value = "postgres://proact@127.0.0.1:5432/proact",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long = "database-pool-size", env = "PROACT_DATABASE_POOL_SIZE", default_value_t = 8)]
    pub pool_size: usize,
}

impl PgArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("PROACT_DATABASE_URL", &self.database_url, &["postgres", "postgresql"])?;
        self.database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::new("PROACT_DATABASE_URL", redact(&self.database_url), e.to_string()))?;
        if self.pool_size == 0 {
            return Err(ConfigError::new("PROACT_DATABASE_POOL_SIZE", "0", "must be at least 1"));
        }
        Ok(())
    }
}

/// MQTT broker connection.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// Broker URL (`mqtt://host:port`, `mqtts://host:port` for TLS).
    #[arg(long = "mqtt-url", env = "PROACT_MQTT_URL", default_value = "mqtt://127.0.0.1:1883", hide_env_values = true)]
    pub mqtt_url: String,
    #[arg(long = "mqtt-username", env = "PROACT_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    #[arg(long = "mqtt-password", env = "PROACT_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
}

impl MqttArgs {
    /// Host, port and whether TLS is asked for.
    pub fn endpoint(&self) -> Result<(String, u16, bool), ConfigError> {
        let u = check_url("PROACT_MQTT_URL", &self.mqtt_url, &["mqtt", "mqtts", "tcp", "ssl"])?;
        let tls = matches!(u.scheme(), "mqtts" | "ssl");
        let host =
            u.host_str().ok_or_else(|| ConfigError::new("PROACT_MQTT_URL", &self.mqtt_url, "has no host"))?.to_string();
        Ok((host, u.port().unwrap_or(if tls { 8883 } else { 1883 }), tls))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.endpoint()?;
        if self.mqtt_password.is_some() && self.mqtt_username.is_none() {
            return Err(ConfigError::new("PROACT_MQTT_PASSWORD", "***", "is set but PROACT_MQTT_USERNAME is not"));
        }
        Ok(())
    }
}

/// The bearer token of the internal gRPC APIs: the archive, the detector and the trainer's
/// registry require it when set, and their callers (the gateway, the detector) send it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GrpcAuthArgs {
    /// Token the internal gRPC APIs require (`authorization: Bearer <token>`) and their callers
    /// send; unset: none (local use only). At least 16 characters.
    #[arg(long = "grpc-token", env = "PROACT_GRPC_TOKEN", hide_env_values = true)]
    pub grpc_token: Option<String>,
}

impl GrpcAuthArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.grpc_token {
            Some(t) if t.len() < 16 => {
                Err(ConfigError::new("PROACT_GRPC_TOKEN", "***", "must be at least 16 characters"))
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => Err(ConfigError::new(
                "PROACT_GRPC_TOKEN",
                "***",
                "must be printable ASCII without spaces (it travels in a header)",
            )),
            _ => Ok(()),
        }
    }

    /// The interceptor a server of an internal API puts in front of its service.
    pub fn interceptor(&self) -> crate::auth::BearerAuth {
        crate::auth::BearerAuth::new(self.grpc_token.as_deref(), crate::auth::count_internal_refusal)
    }
}

/// Admin HTTP server (health, readiness, metrics) and log format.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Address of the admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long = "admin-addr", env = "PROACT_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Log format: `text` for a terminal, `json` in containers.
    #[arg(long = "log-format", env = "PROACT_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Grace period for draining on SIGTERM, in seconds.
    #[arg(long = "shutdown-grace-secs", env = "PROACT_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub trace: TraceArgs,
}

impl AdminArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.trace.validate()
    }

    /// The admin address, or the service's default port on all interfaces of loopback.
    pub fn admin_addr_or(&self, default_port: u16) -> SocketAddr {
        self.admin_addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
    }
}

fn check_url(setting: &'static str, value: &str, schemes: &[&str]) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(value).map_err(|e| ConfigError::new(setting, redact(value), format!("not a URL: {e}")))?;
    if !schemes.contains(&u.scheme()) {
        return Err(ConfigError::new(setting, redact(value), format!("scheme must be one of {}", schemes.join(", "))));
    }
    Ok(u)
}

/// A URL with its password replaced, for error messages and logs (also a cluster URL, whose
/// host list is no URL to the `url` crate).
pub fn redact(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => value.to_string(),
        Err(_) => redact_userinfo(value),
    }
}

fn redact_userinfo(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return value.to_string() };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => value.to_string(),
    }
}

/// The host's name (`/etc/hostname`, as a container sees it), if it has one: a stable
/// default for consumer names and client ids, so a restarted replica finds its own pending
/// entries or session again.
pub fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
    (!h.is_empty()).then_some(h)
}

/// Tracing settings, part of every service's admin settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// OTLP/gRPC endpoint of a collector (`http://otel-collector:4317`); unset: no tracing.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of readings (0 to 1) whose trace is recorded; ingest decides, every other
    /// service follows the decision carried with the reading.
    #[arg(long = "trace-sample-ratio", env = "PROACT_TRACE_SAMPLE_RATIO", default_value_t = 0.01)]
    pub trace_sample_ratio: f64,
}

impl TraceArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.otlp_endpoint {
            let u = url::Url::parse(e)
                .map_err(|err| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e, format!("not a URL: {err}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(ConfigError::new(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    e,
                    "must be http://host:port or https://host:port (OTLP over gRPC, usually port 4317)",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            return Err(ConfigError::new(
                "PROACT_TRACE_SAMPLE_RATIO",
                self.trace_sample_ratio.to_string(),
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_name_the_setting() {
        let r = RedisArgs { redis_url: "http://x".into(), shards: 8, connect_timeout_secs: 30 };
        let e = r.validate().unwrap_err();
        assert_eq!(e.setting, "PROACT_REDIS_URL");
        let m = MqttArgs { mqtt_url: "mqtt//nohost".into(), mqtt_username: None, mqtt_password: None };
        assert_eq!(m.validate().unwrap_err().setting, "PROACT_MQTT_URL");
        let p = PgArgs { database_url: "postgres://u:secret@h/db".into(), pool_size: 0 };
        let e = p.validate().unwrap_err();
        assert_eq!(e.setting, "PROACT_DATABASE_POOL_SIZE");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn a_cluster_url_is_accepted_and_its_password_redacted() {
        let ok = RedisArgs { redis_url: "redis-cluster://a:7000,b:7001".into(), shards: 8, connect_timeout_secs: 30 };
        ok.validate().unwrap();
        let bad =
            RedisArgs { redis_url: "redis-cluster://u:secret@a:7000,b".into(), shards: 8, connect_timeout_secs: 30 };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.setting, "PROACT_REDIS_URL");
        assert_eq!(e.value, "redis-cluster://u:***@a:7000,b");
        assert!(e.reason.contains("\"b\" is not host:port"), "{e}");
    }

    #[test]
    fn mqtt_endpoint_defaults_ports() {
        let m = MqttArgs { mqtt_url: "mqtts://broker".into(), mqtt_username: None, mqtt_password: None };
        assert_eq!(m.endpoint().unwrap(), ("broker".to_string(), 8883, true));
        let m = MqttArgs { mqtt_url: "mqtt://127.0.0.1:1999".into(), mqtt_username: None, mqtt_password: None };
        assert_eq!(m.endpoint().unwrap(), ("127.0.0.1".to_string(), 1999, false));
    }

    #[test]
    fn zero_shards_refused() {
        let r = RedisArgs { redis_url: "redis://127.0.0.1:6379".into(), shards: 0, connect_timeout_secs: 30 };
        assert_eq!(r.validate().unwrap_err().setting, "PROACT_SHARDS");
    }

    #[test]
    fn a_zero_connect_timeout_is_refused() {
        let r = RedisArgs { redis_url: "redis://127.0.0.1:6379".into(), shards: 8, connect_timeout_secs: 0 };
        assert_eq!(r.validate().unwrap_err().setting, "PROACT_REDIS_CONNECT_TIMEOUT_SECS");
    }
}
