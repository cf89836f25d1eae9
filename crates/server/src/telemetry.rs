//! Logging and metrics set-up, once per process.
//!
//! Logs are `tracing` events with structured fields: text on a terminal, JSON lines in
//! containers. Metrics go through the `metrics` facade into a Prometheus recorder whose
//! text the admin server serves on `/metrics`; names follow `proact_<service>_<what>_<unit>`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Batch-size buckets.
const SIZE_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0];

/// Installs the log subscriber (`RUST_LOG` filters, default `info`) and the metrics recorder.
/// Safe to call more than once (tests start several services in one process).
pub fn init(log_format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,tantivy=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if log_format == "json" {
        registry.with(fmt::layer().json().flatten_event(true).with_current_span(true)).try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    metrics_handle();
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), SIZE_BUCKETS))
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests); ours still renders what we record
        // through it only if installed, so report the failure once.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was already installed");
        }
        handle
    })
}

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One entry of a service's metric catalogue: every metric a service exports is listed in
/// its `METRICS`, with the help text Prometheus shows (the end-to-end tests check that what
/// the services render and what the Grafana dashboard and the alert rules use is listed).
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// For counters: label sets created at 0 when the service starts, so that `rate()` and
    /// `increase()` see the first event (a series born at 1 has no increase).
    pub zero: &'static [(&'static str, &'static str)],
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self { name, kind: Kind::Counter, help, zero: &[] }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self { name, kind: Kind::Gauge, help, zero: &[] }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Self {
        Self { name, kind: Kind::Histogram, help, zero: &[] }
    }

    /// A counter whose series `label=value` for each pair start at 0.
    pub const fn labelled(mut self, zero: &'static [(&'static str, &'static str)]) -> Self {
        self.zero = zero;
        self
    }
}

/// Describes a service's metrics (help text) and creates its counters at 0.
pub fn register(catalogue: &[Metric]) {
    metrics_handle();
    for m in catalogue {
        match m.kind {
            Kind::Counter => {
                metrics::describe_counter!(m.name, m.help);
                if m.zero.is_empty() {
                    metrics::counter!(m.name).increment(0);
                }
                for (k, v) in m.zero {
                    metrics::counter!(m.name, *k => *v).increment(0);
                }
            }
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// What a caller is told of an internal failure (a database error names tables, columns,
/// hosts and sometimes values): `what` and a reference to the log line that holds the
/// detail, which is logged here at error level.
pub fn logged_error(what: &str, detail: &dyn std::fmt::Display) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reference = format!("{:x}-{n}", std::process::id());
    tracing::error!(reference = %reference, error = %detail, "{what}");
    format!("{what} (reference {reference} in the service's log)")
}

#[cfg(test)]
mod logged_error_tests {
    #[test]
    fn the_caller_gets_a_reference_not_the_detail() {
        let e = super::logged_error("database unavailable", &"relation \"secret_table\" does not exist");
        assert!(e.starts_with("database unavailable (reference "), "{e}");
        assert!(!e.contains("secret_table"));
        assert_ne!(e, super::logged_error("database unavailable", &"x"), "each failure its own reference");
    }
}
