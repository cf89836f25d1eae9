//! The admin HTTP server every service runs: `/healthz` (the process is alive: always 200),
//! `/readyz` (every dependency reachable: 200, else 503 with which one is not), and
//! `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Named readiness checks; the service is ready when there is at least one and all are up.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the state of one dependency (e.g. `"redis"`, `"postgres"`, `"mqtt"`).
    pub fn set(&self, name: &'static str, up: bool) {
        let mut c = self.checks.write().unwrap_or_else(|p| p.into_inner());
        let prev = c.insert(name, up);
        if prev != Some(up) {
            tracing::info!(dependency = name, up, "readiness changed");
        }
    }

    pub fn is_ready(&self) -> bool {
        let c = self.checks.read().unwrap_or_else(|p| p.into_inner());
        !c.is_empty() && c.values().all(|v| *v)
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        self.checks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The admin routes, to serve alone or merge into a service's own HTTP router.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    let code = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(r.snapshot()))
}

async fn metrics() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::metrics_handle().render())
}

/// Binds the admin server; fails at start (a config error) if the address is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, readiness: Readiness, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router(readiness)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_check() {
        let r = Readiness::new();
        assert!(!r.is_ready(), "no checks yet is not ready");
        r.set("redis", true);
        assert!(r.is_ready());
        r.set("postgres", false);
        assert!(!r.is_ready());
        r.set("postgres", true);
        assert!(r.is_ready());
    }
}
