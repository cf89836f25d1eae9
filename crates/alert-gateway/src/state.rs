//! What the gateway's HTTP handlers, WebSocket clients and gRPC service share: connections,
//! the alerts feed, the token and the limits.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::feed::{FeedBatch, SharedRecent};
use crate::lifecycle::Lifecycle;
use crate::upstream::IngestRate;

/// State shared by the HTTP handlers, the WebSocket clients and the gRPC service.
pub struct GatewayState {
    pub pool: deadpool_postgres::Pool,
    pub redis: fred::prelude::Client,
    pub feed: broadcast::Sender<Arc<FeedBatch>>,
    pub recent: SharedRecent,
    pub token: Option<String>,
    pub origins: crate::access::Origins,
    pub heartbeat: Duration,
    /// Oldest event a WebSocket's `after=` replays, counted back from now.
    pub max_replay: Duration,
    pub write_timeout: Duration,
    pub silent_after_s: i64,
    pub archive: crate::upstream::Upstream,
    pub registry: crate::upstream::Upstream,
    pub ingest_rate: Arc<IngestRate>,
    /// WebSocket clients connected to this replica.
    pub clients: AtomicUsize,
    /// Ready frames of notices that are not alerts (work-order transitions), for every socket.
    pub notices: broadcast::Sender<bytes::Bytes>,
    /// Each alert's priority, from the AMDEC.
    pub crit: crate::criticality::Criticality,
    pub shutdown: CancellationToken,
}

impl GatewayState {
    pub fn lifecycle(&self) -> Lifecycle<'_> {
        Lifecycle { pool: &self.pool, redis: &self.redis, recent: &self.recent }
    }

    /// Whether a presented token (the `Authorization` header's value without `Bearer `) is accepted.
    pub fn accepts(&self, presented: Option<&str>) -> bool {
        match self.token.as_deref() {
            None => true,
            Some(want) => {
                presented.is_some_and(|got| proact_server::auth::token_matches(got.as_bytes(), want.as_bytes()))
            }
        }
    }
}
