//! What the page shows from the rest of the pipeline: recent telemetry of one equipment
//! (the archive's gRPC `QueryRange`), the models in use (the trainer's registry, and the
//! versions stamped on recent alerts), and the ingest rate (growth of the telemetry streams).
//! Each is optional for the page: an upstream that is down gives a clear error, not a hang.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use proact_proto::v1::archive_client::ArchiveClient;
use proact_proto::v1::model_registry_client::ModelRegistryClient;
use proact_proto::v1::{ListModelsRequest, ModelStatus, TelemetryRangeRequest};
use proact_server::grpc::ClientTrace;
use proact_server::otel::Tracing;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// Longest wait for the archive or the registry on behalf of the page.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Points sent to the page for one chart at most.
const MAX_POINTS: usize = 600;

/// The endpoint at `url`, or a configuration error naming `setting`.
pub fn endpoint(setting: &'static str, url: &str) -> Result<Endpoint, proact_server::ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(proact_server::ConfigError::new(setting, url, "must start with http:// or https://"));
    }
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| proact_server::ConfigError::new(setting, url, e.to_string()))?
        .connect_timeout(UPSTREAM_TIMEOUT)
        .timeout(UPSTREAM_TIMEOUT))
}

/// A traced gRPC channel to an upstream service.
pub type Upstream = ClientTrace<Channel>;

/// A lazily connected gRPC channel to `url` (the service may start after the gateway) that
/// carries the current trace and the internal gRPC token. Needs a running Tokio runtime.
pub fn channel(
    setting: &'static str,
    url: &str,
    traces: &Tracing,
    token: Option<&str>,
) -> Result<Upstream, proact_server::ConfigError> {
    ClientTrace::new(endpoint(setting, url)?.connect_lazy(), traces.clone())
        .with_token(token)
        .map_err(|e| proact_server::ConfigError::new("PROACT_GRPC_TOKEN", "***", e.to_string()))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Milliseconds since the epoch (what JavaScript dates take).
    pub t: i64,
    pub temperature: f64,
    pub vibration: f64,
}

/// Readings of `equipement_id` in `[from, to)`, thinned to at most [`MAX_POINTS`].
pub async fn telemetry(
    archive: Upstream,
    equipement_id: &str,
    from_micros: i64,
    to_micros: i64,
) -> Result<Vec<Point>, tonic::Status> {
    let mut client = ArchiveClient::new(archive);
    let req = TelemetryRangeRequest { equipement_id: equipement_id.to_string(), from_micros, to_micros, limit: 20_000 };
    let mut stream = client.query_range(req).await?.into_inner();
    let mut points = Vec::new();
    while let Some(p) = stream.message().await? {
        points.push(Point { t: p.ts_micros / 1000, temperature: p.temperature, vibration: p.vibration });
    }
    Ok(thin(points, MAX_POINTS))
}

/// Keeps at most `max` points: per time slice the reading with the highest temperature, so
/// a short hot spike (what raised the alert) is never averaged away.
pub fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max || max == 0 {
        return points;
    }
    let (first, last) = (points[0].t, points[points.len() - 1].t);
    // Rounded up, so there are at most `max` slices.
    let width = (last - first) / max as i64 + 1;
    let mut out: Vec<Point> = Vec::with_capacity(max + 1);
    let mut slice = i64::MIN;
    for p in points {
        let s = (p.t - first) / width;
        match out.last_mut() {
            Some(cur) if s == slice => {
                if p.temperature > cur.temperature {
                    *cur = p;
                }
            }
            _ => {
                slice = s;
                out.push(p);
            }
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveModel {
    pub name: String,
    pub version: String,
    pub f1: Option<f64>,
    pub created_micros: i64,
}

/// The active versions in the registry.
pub async fn active_models(registry: Upstream) -> Result<Vec<ActiveModel>, tonic::Status> {
    let mut client = ModelRegistryClient::new(registry);
    let models = client.list(ListModelsRequest::default()).await?.into_inner().models;
    Ok(models
        .into_iter()
        .filter(|m| m.status == ModelStatus::Active as i32)
        .map(|m| ActiveModel {
            name: m.name,
            version: m.version,
            f1: m.metrics.map(|x| x.f1),
            created_micros: m.created_micros,
        })
        .collect())
}

/// Readings per second entering the telemetry streams, sampled in the background.
#[derive(Debug, Default)]
pub struct IngestRate {
    /// f64 bits of the last rate; `u64::MAX` until the first two samples.
    bits: AtomicU64,
}

impl IngestRate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { bits: AtomicU64::new(u64::MAX) })
    }

    /// Readings per second over the last sampling period, once known.
    pub fn get(&self) -> Option<f64> {
        match self.bits.load(Ordering::Relaxed) {
            u64::MAX => None,
            b => Some(f64::from_bits(b)),
        }
    }

    fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// Total entries ever added to the telemetry streams: `entries-added` of `XINFO STREAM`
/// (Redis 7), which trimming does not decrease; `XLEN` on older servers.
async fn entries_added(redis: &Client, shards: u32) -> Result<u64, Error> {
    let mut total = 0;
    for key in proact_proto::streams::telemetry_streams(shards) {
        let exists: u64 = redis.exists(key.as_str()).await?;
        if exists == 0 {
            continue;
        }
        let info: std::collections::HashMap<String, Value> = redis.xinfo_stream(key.as_str(), false, None).await?;
        let added = info.get("entries-added").and_then(Value::as_u64);
        total += match added {
            Some(n) => n,
            None => redis.xlen::<u64, _>(key.as_str()).await?,
        };
    }
    Ok(total)
}

/// Samples the streams' growth every `period` until shutdown.
pub async fn sample_ingest_rate(
    redis: Client,
    shards: u32,
    period: Duration,
    rate: Arc<IngestRate>,
    shutdown: CancellationToken,
) {
    let mut prev: Option<(Instant, u64)> = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match entries_added(&redis, shards).await {
            Ok(n) => {
                let now = Instant::now();
                if let Some((t, before)) = prev {
                    let dt = now.duration_since(t).as_secs_f64();
                    if dt > 0.0 {
                        rate.set(n.saturating_sub(before) as f64 / dt);
                    }
                }
                prev = Some((now, n));
            }
            Err(e) => tracing::debug!(error = %e, "ingest rate sample failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_spike() {
        let points: Vec<Point> = (0..10_000)
            .map(|i| Point { t: i, temperature: if i == 4321 { 95.0 } else { 60.0 }, vibration: 1.0 })
            .collect();
        let thin = thin(points, 100);
        assert!(thin.len() <= 100, "{}", thin.len());
        assert!(thin.iter().any(|p| p.temperature == 95.0));
        assert!(thin.windows(2).all(|w| w[0].t < w[1].t));
    }

    #[test]
    fn rate_unknown_until_measured() {
        let r = IngestRate::new();
        assert_eq!(r.get(), None);
        r.set(12.5);
        assert_eq!(r.get(), Some(12.5));
    }
}
