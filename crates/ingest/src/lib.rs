//! ProAct ingest: the pipeline's front door. Sensors publish JSON readings over MQTT
//! (`sensors/{equipement_id}/telemetry`, QoS 1; one reading, or a JSON array of them) or
//! send batches over gRPC; ingest validates them against the contract, writes accepted
//! readings as protobuf entries to the telemetry stream of their shard (a batch's readings
//! for one shard in one entry), and every rejection, with its reason, to the dead-letter
//! stream.
//! Downstream: archive, anomaly-detector.
//!
//! Guarantees and where they live: ack-after-write and the reconnect/ack epochs in
//! [`mqtt`]; all-or-retry batch writes in [`sink`]; group-safe trimming in [`trim`]; TLS,
//! the gRPC token/mTLS and the equipment allow-list in [`security`]; the contract and its
//! fuzz entry point in [`validate`]. Operational notes: a replica's MQTT client id must be
//! stable (its persistent session holds its share of the subscription while it is down, and
//! keeps receiving that share until the broker expires the session); the broker's in-flight
//! window per client (`max_inflight_messages`) bounds ingest's batches, since nothing is
//! acked before it is written.

pub mod grpc;
pub mod mqtt;
pub mod provision;
pub mod security;
pub mod sink;
pub mod sparkplug;
pub mod trim;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proact_proto::v1::Telemetry;
use proact_server::config::{AdminArgs, MqttArgs, RedisArgs};
use proact_server::otel::{KeyValue, PipelineSpan, Tracing};
use proact_server::telemetry::Metric;
use proact_server::{ConfigError, Readiness};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Model events kept: a detector needs only the newest, the rest is an audit trail that the
/// `models` table keeps in full.
pub const MODEL_EVENTS_KEPT: u64 = 1_000;

fn secs(s: u64) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s))
}

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
    /// Subscribe through the shared subscription (`$share/<group>/…`) so replicas split the
    /// load. `false`: a plain subscription, for a single replica on a broker that does not
    /// restore shared subscriptions after its own restart (Mosquitto 2.0.11 does not: what is
    /// published between the broker's restart and ingest's resubscribe is dropped by it).
    #[arg(long, env = "PROACT_INGEST_SHARED_SUBSCRIPTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub shared_subscription: bool,
    /// MQTT client id; must be stable per replica for its persistent session (default: hostname).
    #[arg(long, env = "PROACT_INGEST_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Most messages written in one pipelined batch.
    #[arg(long, env = "PROACT_INGEST_MAX_BATCH", default_value_t = 512)]
    pub max_batch: usize,
    /// Longest wait to fill a batch, in milliseconds, once messages arrive faster than
    /// `PROACT_INGEST_BATCH_WAIT_ABOVE`.
    #[arg(long, env = "PROACT_INGEST_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,
    /// MQTT messages per second above which ingest waits (up to `PROACT_INGEST_MAX_WAIT_MS`)
    /// to fill a batch; below it a batch is what has arrived, written at once. 0 (default):
    /// always wait, the least CPU per reading. Waiting makes stream entries of many readings
    /// when messages carry one each; at lower rates, or when each message already carries
    /// many readings (arrays, Sparkplug), it adds its wait to every alert: a threshold (e.g.
    /// 30000) trades that wait for CPU at moderate rates (docs/BENCHMARKS.md).
    #[arg(long, env = "PROACT_INGEST_BATCH_WAIT_ABOVE", default_value_t = 0)]
    pub batch_wait_above: u64,
    /// Messages held between the broker and the writer before reading stops.
    #[arg(long, env = "PROACT_INGEST_QUEUE", default_value_t = 8192)]
    pub queue: usize,
    /// MQTT keep-alive, seconds: a PINGREQ goes out this often and the connection is dropped
    /// when the previous one is still unanswered. Under a backlog the broker's PINGRESP
    /// queues behind the messages it has already sent, so this must exceed the time ingest
    /// takes to read what the broker sends ahead of it (see docs/deploy.md, "MQTT broker").
    #[arg(long, env = "PROACT_MQTT_KEEP_ALIVE_SECS", default_value_t = 30)]
    pub mqtt_keep_alive_secs: u64,
    /// Capacity of the MQTT client's request channel (PUBACKs on their way to the socket).
    /// Acks that do not fit wait in ingest (`proact_ingest_acks_deferred`), they are never
    /// dropped; a smaller channel bounds the client's memory under a flood.
    #[arg(long, env = "PROACT_INGEST_MQTT_REQUEST_CHANNEL", default_value_t = mqtt::REQUEST_CHANNEL)]
    pub mqtt_request_channel: usize,
    /// Most queued PUBACKs the MQTT client writes before one flush (1: one per turn of its
    /// event loop, upstream rumqttc's behaviour; vendor/PATCHES.md). Larger batches send acks
    /// as fast as a backlogged broker delivers messages.
    #[arg(long, env = "PROACT_INGEST_MQTT_ACK_BATCH", default_value_t = mqtt::ACK_FLUSH_BATCH)]
    pub mqtt_ack_batch: usize,
    /// How single-reading entries are appended: `script` (one server-side loop per shard and
    /// batch) or `xadd` (one pipelined XADD per reading). Batch entries are one XADD each.
    #[arg(long, env = "PROACT_INGEST_WRITE_MODE", value_enum, default_value_t = sink::WriteMode::Script)]
    pub write_mode: sink::WriteMode,
    /// What one telemetry stream entry carries: `batch` (a batch's readings for one shard,
    /// field `b`) or `single` (one reading, field `p`, the only kind consumers before batch
    /// entries read: upgrade the consumers first, docs/deploy.md).
    #[arg(long, env = "PROACT_INGEST_STREAM_ENTRIES", value_enum, default_value_t = sink::EntryKind::Batch)]
    pub stream_entries: sink::EntryKind,
    /// Replicas of each Redis master written that must hold a batch before ingest
    /// acknowledges it to the sensor (Redis `WAIT`), so that a master's failover loses no
    /// acknowledged reading. Unset: 1 on a Redis Cluster, 0 (no wait) on one Redis. While a
    /// master has fewer replicas (after a failover, until the old master is back as its
    /// replica), batches for its shards are refused and redelivered: intake on them stops.
    #[arg(long, env = "PROACT_INGEST_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// How long a batch waits for those replicas, in milliseconds.
    #[arg(long, env = "PROACT_INGEST_REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_wait_timeout_ms: u64,
    /// Largest accepted payload, bytes (an array of readings included).
    #[arg(long, env = "PROACT_INGEST_MAX_PAYLOAD", default_value_t = 16384)]
    pub max_payload: usize,
    /// Most readings in a payload that is a JSON array; a longer array is refused whole.
    #[arg(long, env = "PROACT_INGEST_MAX_ARRAY", default_value_t = validate::DEFAULT_MAX_ARRAY)]
    pub max_array: usize,
    /// How far after its reception a reading's timestamp may be, seconds (sensor clocks
    /// ahead by more are dead-lettered).
    #[arg(long, env = "PROACT_INGEST_MAX_FUTURE_SECS", default_value_t = validate::DEFAULT_MAX_FUTURE_SECS)]
    pub max_future_secs: u64,
    /// How far before its reception a reading's timestamp may be, days (the back-fill window).
    #[arg(long, env = "PROACT_INGEST_BACKFILL_DAYS", default_value_t = validate::DEFAULT_BACKFILL_DAYS)]
    pub backfill_days: u64,
    /// Entries kept per telemetry stream (0: no length cap). Entries a consumer group has
    /// not acknowledged are kept whatever this says.
    #[arg(long, env = "PROACT_STREAM_MAXLEN", default_value_t = 0)]
    pub stream_maxlen: i64,
    /// Age, in seconds, past which telemetry entries are trimmed (0: no age cap); same
    /// guarantee for unacknowledged entries.
    #[arg(long, env = "PROACT_STREAM_MAX_AGE_SECS", default_value_t = 86_400)]
    pub stream_max_age_secs: u64,
    /// Age, in seconds, past which alert events are trimmed from the alerts stream (0: never);
    /// entries the archive has not stored are kept. Also the oldest a dashboard can resume from.
    #[arg(long, env = "PROACT_ALERTS_STREAM_MAX_AGE_SECS", default_value_t = 30 * 86_400)]
    pub alerts_stream_max_age_secs: u64,
    /// Entries kept in the dead-letter stream (0: no length cap).
    #[arg(long, env = "PROACT_DLQ_MAXLEN", default_value_t = 100_000)]
    pub dlq_maxlen: u64,
    /// Age, in seconds, past which dead letters are trimmed (0: no age cap).
    #[arg(long, env = "PROACT_DLQ_MAX_AGE_SECS", default_value_t = 14 * 86_400)]
    pub dlq_max_age_secs: u64,
    /// How often the trimmer runs, in seconds.
    #[arg(long, env = "PROACT_STREAM_TRIM_INTERVAL_SECS", default_value_t = 10)]
    pub trim_interval_secs: u64,
    /// CA certificate (PEM) the broker's certificate must chain to; required for `mqtts://`.
    #[arg(long, env = "PROACT_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with the broker.
    #[arg(long, env = "PROACT_MQTT_CERT_FILE", requires = "mqtt_key_file")]
    pub mqtt_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS with the broker.
    #[arg(long, env = "PROACT_MQTT_KEY_FILE", requires = "mqtt_cert_file")]
    pub mqtt_key_file: Option<PathBuf>,
    /// Bearer token gRPC callers must send (`authorization: Bearer <token>`); unset: none.
    #[arg(long, env = "PROACT_INGEST_GRPC_TOKEN", hide_env_values = true)]
    pub grpc_token: Option<String>,
    /// gRPC server certificate (PEM): serve gRPC over TLS.
    #[arg(long, env = "PROACT_INGEST_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// gRPC server private key (PEM).
    #[arg(long, env = "PROACT_INGEST_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// CA (PEM) gRPC clients' certificates must chain to (mutual TLS); needs the TLS cert.
    #[arg(long, env = "PROACT_INGEST_GRPC_CLIENT_CA", requires = "grpc_tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Allow-list of known equipment: `db` (the reference `amdec` table, via
    /// PROACT_DATABASE_URL) or a file with one id per line. Unset: any valid id is accepted.
    #[arg(long, env = "PROACT_INGEST_ALLOWLIST")]
    pub allowlist: Option<String>,
    /// How often the allow-list is reloaded, in seconds.
    #[arg(long, env = "PROACT_INGEST_ALLOWLIST_REFRESH_SECS", default_value_t = 300)]
    pub allowlist_refresh_secs: u64,
    /// Sparkplug B intake (docs/sparkplug.md): `off`, `all` (`spBv1.0/#`), or a comma list of
    /// Sparkplug group ids. Sessions are kept in memory per edge node, so these are plain
    /// subscriptions: turn it on in one replica (or give replicas disjoint groups).
    #[arg(long, env = "PROACT_INGEST_SPARKPLUG", default_value = "off")]
    pub sparkplug: String,
    /// How a Sparkplug device becomes an equipment id: `device`, `node.device` or
    /// `group.node.device` (the edge node's own metrics: the node id, or `group.node`).
    #[arg(long, env = "PROACT_INGEST_SPARKPLUG_ID", default_value = "device")]
    pub sparkplug_id: String,
    /// Sparkplug metric names mapped to reading fields, `metric=field,…` (`temperature`,
    /// `vibration` or an extra field). Unlisted: the name's last `/` segment if it is
    /// temperature or vibration, else an extra field under the full name.
    #[arg(long, env = "PROACT_INGEST_SPARKPLUG_METRICS", default_value = "")]
    pub sparkplug_metrics: String,
    /// Publish an NCMD `Node Control/Rebirth` to an edge node whose session is unknown here
    /// or lost messages (at most every 30 s per node); needs publish rights on `spBv1.0/+/NCMD/+`.
    #[arg(long, env = "PROACT_INGEST_SPARKPLUG_REBIRTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub sparkplug_rebirth: bool,
    /// PostgreSQL URL, read only for `--allowlist db`.
    #[arg(
        long = "database-url",
        env = "PROACT_DATABASE_URL",
        default_value = "postgres://proact@127.0.0.1:5432/proact",
        hide_env_values = true
    )]
    pub database_url: String,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
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
        if !(5..=3600).contains(&self.mqtt_keep_alive_secs) {
            return Err(ConfigError::new(
                "PROACT_MQTT_KEEP_ALIVE_SECS",
                self.mqtt_keep_alive_secs.to_string(),
                "must be 5..=3600 seconds",
            ));
        }
        if !(1..=60_000).contains(&self.redis_wait_timeout_ms) {
            return Err(ConfigError::new(
                "PROACT_INGEST_REDIS_WAIT_TIMEOUT_MS",
                self.redis_wait_timeout_ms.to_string(),
                "must be 1..=60000 milliseconds",
            ));
        }
        if !(1..=100_000).contains(&self.max_array) {
            return Err(ConfigError::new("PROACT_INGEST_MAX_ARRAY", self.max_array.to_string(), "must be 1..=100000"));
        }
        if self.mqtt_request_channel == 0 {
            return Err(ConfigError::new("PROACT_INGEST_MQTT_REQUEST_CHANNEL", "0", "must be at least 1"));
        }
        if self.mqtt_ack_batch == 0 {
            return Err(ConfigError::new("PROACT_INGEST_MQTT_ACK_BATCH", "0", "must be at least 1"));
        }
        if self.group.is_empty() || self.group.contains('/') || self.group.contains('+') || self.group.contains('#') {
            return Err(ConfigError::new("PROACT_INGEST_GROUP", &self.group, "must be non-empty with no / + #"));
        }
        if !(1..=86_400).contains(&self.max_future_secs) {
            return Err(ConfigError::new(
                "PROACT_INGEST_MAX_FUTURE_SECS",
                self.max_future_secs.to_string(),
                "must be 1..=86400 seconds",
            ));
        }
        if !(1..=36_500).contains(&self.backfill_days) {
            return Err(ConfigError::new(
                "PROACT_INGEST_BACKFILL_DAYS",
                self.backfill_days.to_string(),
                "must be 1..=36500 days",
            ));
        }
        if self.stream_maxlen < 0 {
            return Err(ConfigError::new("PROACT_STREAM_MAXLEN", self.stream_maxlen.to_string(), "must be >= 0"));
        }
        if self.trim_interval_secs == 0 {
            return Err(ConfigError::new("PROACT_STREAM_TRIM_INTERVAL_SECS", "0", "must be at least 1"));
        }
        let (_, _, tls) = self.mqtt.endpoint()?;
        if tls && self.mqtt_ca_file.is_none() {
            return Err(ConfigError::new(
                "PROACT_MQTT_CA_FILE",
                "",
                "is required with an mqtts:// PROACT_MQTT_URL (the CA the broker's certificate chains to)",
            ));
        }
        if !tls && (self.mqtt_ca_file.is_some() || self.mqtt_cert_file.is_some()) {
            return Err(ConfigError::new(
                "PROACT_MQTT_URL",
                &self.mqtt.mqtt_url,
                "must be mqtts:// when TLS files are set",
            ));
        }
        if matches!(&self.grpc_token, Some(t) if t.is_empty()) {
            return Err(ConfigError::new("PROACT_INGEST_GRPC_TOKEN", "", "must not be empty when set"));
        }
        if let Some(a) = &self.allowlist {
            if a.is_empty() {
                return Err(ConfigError::new("PROACT_INGEST_ALLOWLIST", "", "must be `db` or a file path when set"));
            }
        }
        self.sparkplug_settings()?;
        if self.allowlist_refresh_secs == 0 {
            return Err(ConfigError::new("PROACT_INGEST_ALLOWLIST_REFRESH_SECS", "0", "must be at least 1"));
        }
        Ok(())
    }

    /// The trimming policy of the telemetry shards from the stream settings.
    pub fn trim_policy(&self) -> trim::TrimPolicy {
        trim::TrimPolicy {
            max_len: (self.stream_maxlen > 0).then_some(self.stream_maxlen as u64),
            max_age: secs(self.stream_max_age_secs),
            no_groups: false,
        }
    }

    /// Every stream ingest keeps bounded, with its policy: the telemetry shards and the
    /// alerts stream behind their consumer groups, the dead letters and model events by
    /// length and age alone (nobody reads them through a group).
    pub fn trimmed_streams(&self) -> Vec<(String, trim::TrimPolicy)> {
        use proact_proto::streams::{ALERTS_STREAM, DEAD_LETTER_STREAM, MODEL_EVENTS_STREAM};
        let telemetry = self.trim_policy();
        let mut streams: Vec<_> =
            proact_proto::streams::telemetry_streams(self.redis.shards).into_iter().map(|k| (k, telemetry)).collect();
        let alerts = trim::TrimPolicy { max_age: secs(self.alerts_stream_max_age_secs), ..Default::default() };
        let dead = trim::TrimPolicy {
            max_len: (self.dlq_maxlen > 0).then_some(self.dlq_maxlen),
            max_age: secs(self.dlq_max_age_secs),
            no_groups: true,
        };
        let models = trim::TrimPolicy { max_len: Some(MODEL_EVENTS_KEPT), max_age: None, no_groups: true };
        streams.push((ALERTS_STREAM.to_string(), alerts));
        streams.push((DEAD_LETTER_STREAM.to_string(), dead));
        streams.push((MODEL_EVENTS_STREAM.to_string(), models));
        streams.retain(|(_, p)| !p.is_off());
        streams
    }

    /// The Sparkplug intake's settings (`None`: off).
    pub fn sparkplug_settings(&self) -> Result<Option<sparkplug::Settings>, ConfigError> {
        sparkplug::Settings::parse(&self.sparkplug, &self.sparkplug_id, &self.sparkplug_metrics, self.sparkplug_rebirth)
    }

    fn allow_source(&self) -> Option<security::AllowSource> {
        self.allowlist.as_deref().map(|a| match a {
            "db" => security::AllowSource::Database(self.database_url.clone()),
            path => security::AllowSource::File(PathBuf::from(path)),
        })
    }

    fn client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(|| {
            let host = proact_server::config::hostname();
            format!("proact-ingest-{}", host.as_deref().unwrap_or("local"))
        })
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

/// Starts the span of an accepted reading and writes its context into the reading, so every
/// service downstream continues the same trace (see `proact_server::otel`).
pub(crate) fn trace_reading(
    tracing: &Tracing,
    t: &mut Telemetry,
    at: std::time::SystemTime,
    topic: &str,
) -> Option<PipelineSpan> {
    // Attributes only once sampled: an unsampled reading allocates nothing here.
    let mut span = tracing.begin("ingest.accept", &t.trace_context, at, Vec::new())?;
    span.set_attribute(KeyValue::new("equipement_id", t.equipement_id.clone()));
    span.set_attribute(KeyValue::new("messaging.destination.name", topic.to_string()));
    span.inject(&mut t.trace_context);
    Some(span)
}

/// Every metric ingest exports (see `proact_server::telemetry::Metric`).
pub const METRICS: &[Metric] = &[
    Metric::counter("proact_ingest_received_total", "Messages received, by source (mqtt, grpc)")
        .labelled(&[("source", "mqtt"), ("source", "grpc")]),
    Metric::counter(
        "proact_ingest_accepted_total",
        "Readings validated and written to the telemetry streams, by source",
    )
    .labelled(&[("source", "mqtt"), ("source", "grpc"), ("source", "sparkplug")]),
    Metric::counter("proact_ingest_rejected_total", "Inputs refused and sent to the dead-letter stream, by reason")
        .labelled(&[
            ("reason", "invalid_json"),
            ("reason", "not_an_object"),
            ("reason", "missing_field"),
            ("reason", "invalid_id"),
            ("reason", "id_mismatch"),
            ("reason", "non_finite"),
            ("reason", "not_numeric"),
            ("reason", "bad_timestamp"),
            ("reason", "absurd_timestamp"),
            ("reason", "oversize"),
            ("reason", "bad_topic"),
            ("reason", "unknown_equipment"),
            ("reason", "invalid_field_name"),
            ("reason", "undecodable_payload"),
            ("reason", "no_session"),
            ("reason", "unknown_alias"),
            ("reason", "wrong_type"),
        ]),
    Metric::gauge("proact_ingest_sparkplug_sessions", "Sparkplug edge nodes with a session (born, not dead)"),
    Metric::counter(
        "proact_ingest_sparkplug_skipped_total",
        "Sparkplug metrics (or readings) left out, by reason: null, non_finite, not_numeric, transient, incomplete",
    )
    .labelled(&[
        ("reason", "null"),
        ("reason", "non_finite"),
        ("reason", "not_numeric"),
        ("reason", "transient"),
        ("reason", "incomplete"),
    ]),
    Metric::counter(
        "proact_ingest_sparkplug_ignored_total",
        "Sparkplug messages with nothing for ProAct (commands, host state, stale or unknown deaths)",
    ),
    Metric::counter("proact_ingest_sparkplug_seq_gaps_total", "Sparkplug seq gaps: an edge node's messages were lost"),
    Metric::counter(
        "proact_ingest_sparkplug_status_total",
        "Equipment online/offline events from Sparkplug births and deaths written to the shards",
    )
    .labelled(&[("online", "true"), ("online", "false")]),
    Metric::counter(
        "proact_ingest_sparkplug_rebirths_total",
        "Sparkplug rebirths wanted (unknown session, unknown alias, seq gap): requested, or not_configured",
    )
    .labelled(&[("outcome", "requested"), ("outcome", "not_configured")]),
    Metric::histogram("proact_ingest_stream_write_seconds", "Time to write one batch to the streams"),
    Metric::histogram("proact_ingest_batch_size", "Messages (accepted and rejected) per stream write"),
    Metric::gauge("proact_ingest_queue_depth", "Messages read from the broker and not yet written"),
    Metric::gauge("proact_ingest_mqtt_connected", "1 while connected to the MQTT broker"),
    Metric::gauge(
        "proact_ingest_acks_deferred",
        "PUBACKs of written messages waiting for room in the MQTT client's request channel",
    ),
    Metric::counter("proact_ingest_mqtt_reconnects_total", "Reconnections to the MQTT broker"),
    Metric::counter("proact_ingest_mqtt_connection_errors_total", "MQTT connection errors"),
    Metric::counter("proact_ingest_stream_write_errors_total", "Failed stream writes (the batch is held and retried)"),
    Metric::counter(
        "proact_ingest_stale_acks_skipped_total",
        "Acks not sent because the connection changed (redelivered)",
    ),
    Metric::counter("proact_ingest_trimmed_entries_total", "Stream entries trimmed by length or age"),
    Metric::gauge("proact_ingest_redis_used_memory_bytes", "Redis' used_memory, read at each trimming round"),
    Metric::gauge("proact_ingest_redis_maxmemory_bytes", "Redis' maxmemory (0: no limit), read at each trimming round"),
    Metric::counter("proact_ingest_grpc_unauthenticated_total", "gRPC calls refused for a missing or wrong token"),
    Metric::gauge("proact_ingest_allowlist_size", "Equipment ids in the allow-list"),
];

/// A built ingest service: listeners bound, Redis connected.
pub struct App {
    config: Config,
    admin: TcpListener,
    grpc: TcpListener,
    redis: fred::prelude::Client,
    ready: Readiness,
    mqtt_tls: Option<Arc<rustls::ClientConfig>>,
    grpc_tls: Option<tonic::transport::ServerTlsConfig>,
    allow: security::Allowlist,
    traces: Tracing,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Metric handles taken before a recorder exists would be no-ops: make sure it does
        // (main installs it with the logger; in-process tests may not).
        proact_server::telemetry::metrics_handle();
        let mqtt_tls = match &config.mqtt_ca_file {
            Some(ca) => {
                let client = config.mqtt_cert_file.as_deref().zip(config.mqtt_key_file.as_deref());
                Some(Arc::new(security::mqtt_tls(ca, client)?))
            }
            None => None,
        };
        let grpc_tls = match (&config.grpc_tls_cert, &config.grpc_tls_key) {
            (Some(c), Some(k)) => Some(security::grpc_tls(c, k, config.grpc_client_ca.as_deref())?),
            _ => None,
        };
        let allow = match config.allow_source() {
            Some(src) => security::Allowlist::load(&src).await?,
            None => security::Allowlist::default(),
        };
        proact_server::telemetry::register(METRICS);
        let admin = proact_server::admin::bind(config.admin.admin_addr_or(9101)).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        let redis = config.redis.connect().await?;
        let ready = Readiness::new();
        ready.set("redis", true);
        ready.set("mqtt", false);
        let traces = Tracing::start("ingest", &config.admin.trace)?;
        Ok(Self { config, admin, grpc, redis, ready, mqtt_tls, grpc_tls, allow, traces })
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
    /// what it holds, finishes gRPC calls in flight (each bounded by the grace period).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { config, admin, grpc, redis, ready, mqtt_tls, grpc_tls, allow, traces } = self;
        let grace = Duration::from_secs(config.admin.shutdown_grace_secs);
        let replicas = config.redis_wait_replicas.unwrap_or(u32::from(fred::prelude::ClientLike::is_clustered(&redis)));
        let wait = sink::ReplicaWait { replicas, timeout_ms: config.redis_wait_timeout_ms };
        let sink = sink::StreamSink::with_mode(redis.clone(), config.redis.shards, config.write_mode)
            .with_entries(config.stream_entries)
            .with_replica_wait(wait);
        let limits = validate::Limits {
            max_payload_bytes: config.max_payload,
            max_array: config.max_array,
            max_future_micros: config.max_future_secs as i64 * 1_000_000,
            max_past_micros: config.backfill_days as i64 * 86_400 * 1_000_000,
            ..Default::default()
        };
        let (host, port, _tls) = config.mqtt.endpoint()?;
        let intake = mqtt::MqttIntake {
            host,
            port,
            client_id: config.client_id(),
            username: config.mqtt.mqtt_username.clone(),
            password: config.mqtt.mqtt_password.clone(),
            tls: mqtt_tls,
            topic: if config.shared_subscription {
                format!("$share/{}/sensors/+/telemetry", config.group)
            } else {
                "sensors/+/telemetry".to_string()
            },
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_wait_ms),
            wait_above: config.batch_wait_above as f64,
            queue: config.queue,
            keep_alive: Duration::from_secs(config.mqtt_keep_alive_secs),
            request_channel: config.mqtt_request_channel,
            ack_batch: config.mqtt_ack_batch,
            limits: limits.clone(),
            allow: allow.clone(),
            grace,
            tracing: traces.clone(),
            sparkplug: config.sparkplug_settings()?,
        };
        let mut background = tokio::task::JoinSet::new();
        if let Some(src) = config.allow_source() {
            let every = Duration::from_secs(config.allowlist_refresh_secs);
            background.spawn(allow.clone().refresh(src, every, shutdown.clone()));
        }
        let every = Duration::from_secs(config.trim_interval_secs);
        background.spawn(trim::run(redis, config.trimmed_streams(), every, shutdown.clone()));
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<proact_proto::v1::ingest_server::IngestServer<grpc::IngestService>>().await;
        let service =
            grpc::IngestService { sink: sink.clone(), limits, ready: ready.clone(), allow, tracing: traces.clone() };
        let auth = security::bearer_auth(config.grpc_token.as_deref());
        let grpc_shutdown = shutdown.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = grpc_tls {
            builder = builder.tls_config(tls)?;
        }
        let grpc_task = tokio::spawn(
            builder
                .layer(proact_server::grpc::ServerTraceLayer::new(traces.clone()))
                .add_service(health_service)
                .add_service(proact_proto::v1::ingest_server::IngestServer::with_interceptor(service, auth))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc), async move {
                    grpc_shutdown.cancelled().await
                }),
        );
        let admin_task = tokio::spawn(proact_server::admin::serve(admin, ready.clone(), shutdown.clone()));
        let sparkplug = intake.sparkplug.as_ref().map(|s| s.filters.join(","));
        tracing::info!(grpc = %config.grpc_addr, topic = %intake.topic, sparkplug, "ingest running");
        mqtt::run(intake, sink, ready, shutdown.clone()).await?;
        if tokio::time::timeout(grace, grpc_task).await.is_err() {
            tracing::warn!("gRPC calls still in flight after the grace period");
        }
        let _ = admin_task.await;
        background.shutdown().await;
        traces.shutdown();
        tracing::info!("ingest stopped");
        Ok(())
    }
}
