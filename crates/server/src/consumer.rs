//! A Redis consumer-group loop with at-least-once semantics: entries are handed to the
//! handler in batches and acknowledged only after the handler returned `Ok`. A failing
//! handler gets the same batch again after a backoff (nothing is skipped), pending entries
//! of this consumer are finished first after a restart, and entries a dead consumer held
//! for too long are claimed.

use std::future::Future;
use std::time::{Duration, Instant};

use fred::prelude::Client;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::redis::{ack, claim_stale, ensure_group, read_group, read_own_pending, StreamEntry};
use crate::shutdown::bounded_after;
use crate::Readiness;

/// How long a Redis call made after shutdown began may take: a live Redis answers well within
/// it; a gone one would hold the drain until the forced stop.
const PATIENCE: Duration = Duration::from_secs(1);

/// Where and how a consumer reads.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub group: String,
    pub consumer: String,
    pub keys: Vec<String>,
    /// Most entries read per key per call.
    pub count: u64,
    /// Longest block waiting for new entries, milliseconds.
    pub block_ms: u64,
    /// Entries unacked this long by another consumer are claimed, milliseconds.
    pub claim_idle_ms: u64,
    /// Name of the readiness check for Redis.
    pub readiness_name: &'static str,
}

/// Runs until `shutdown`; the batch in hand is finished (handled and acked) before returning.
pub async fn run<H, Fut>(
    cfg: ConsumerConfig,
    read: Client,
    write: Client,
    ready: Readiness,
    shutdown: CancellationToken,
    mut handle: H,
) -> anyhow::Result<()>
where
    H: FnMut(Vec<StreamEntry>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for key in &cfg.keys {
        retry(&shutdown, "create consumer group", || ensure_group(&write, key, &cfg.group)).await;
    }
    let mut own_pending_done = false;
    let mut last_claim = Instant::now();
    let mut backoff = Backoff::server_call();
    while !shutdown.is_cancelled() {
        let batch = if !own_pending_done {
            let own = read_own_pending(&read, &cfg.group, &cfg.consumer, &cfg.keys, cfg.count);
            let Some(r) = bounded_after(&shutdown, PATIENCE, own).await else { break };
            r
        } else if last_claim.elapsed() > Duration::from_millis(cfg.claim_idle_ms.max(1000) / 2) {
            last_claim = Instant::now();
            let claim = claim_stale(&write, &cfg.group, &cfg.consumer, &cfg.keys, cfg.claim_idle_ms, cfg.count);
            let Some(r) = bounded_after(&shutdown, PATIENCE, claim).await else { break };
            r
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = read_group(&read, &cfg.group, &cfg.consumer, &cfg.keys, cfg.count, cfg.block_ms) => r,
            }
        };
        let entries = match batch {
            Ok(e) => {
                ready.set(cfg.readiness_name, true);
                backoff.reset();
                e
            }
            Err(e) => {
                ready.set(cfg.readiness_name, false);
                tracing::warn!(error = %e, group = %cfg.group, "stream read failed");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        if entries.is_empty() {
            own_pending_done = true;
            continue;
        }
        // The handler must succeed before the ack: retry the same batch, even past shutdown's
        // start, for the grace period the caller allows.
        let mut handler_backoff = Backoff::server_call();
        loop {
            match handle(entries.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), group = %cfg.group, entries = entries.len(), "batch failed; retrying");
                    tokio::time::sleep(handler_backoff.next_delay()).await;
                }
            }
        }
        retry(&shutdown, "ack", || ack(&write, &cfg.group, &entries)).await;
    }
    Ok(())
}

/// Retries `f` with backoff until it succeeds or (between tries) shutdown began; after shutdown,
/// a try that gets no answer at all is given up too.
async fn retry<F, Fut, T>(shutdown: &CancellationToken, what: &str, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, fred::error::Error>>,
{
    let mut backoff = Backoff::server_call();
    loop {
        match bounded_after(shutdown, 2 * PATIENCE, f()).await? {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, what, "Redis call failed; retrying");
                if shutdown.is_cancelled() && backoff.peek() >= Duration::from_secs(2) {
                    return None;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
