//! One signal handler for the process: SIGTERM or SIGINT cancels a token every task
//! watches, so the service drains (stop intake, flush, ack, exit) within its grace period.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Awaits `call`, but once `shutdown` is cancelled for at most `patience` more: `None` then.
/// A Redis or PostgreSQL call made while the server is gone waits for a reconnection that may
/// never come, and a drain must end by itself rather than at the forced stop of
/// [`join_within`]. `patience` is what the call needs when the server is up (a blocking
/// read's block time plus a round trip), so a live server's answer is never abandoned.
pub async fn bounded_after<T>(
    shutdown: &CancellationToken,
    patience: std::time::Duration,
    call: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        r = call => Some(r),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(patience).await;
        } => None,
    }
}

/// Time a service's tasks get after the grace period (in which writers still retry) to
/// finish what they were doing before they are stopped.
pub const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Awaits `join` (a service's tasks, held as [`tokio_util::task::AbortOnDropHandle`]s) and
/// returns its output; but once `shutdown` has been cancelled for `limit`, drops it, which
/// aborts the tasks it still holds, and returns `None`. What an aborted task held
/// unacked stays pending in its stream and is redelivered, so nothing is lost; a Redis or
/// PostgreSQL that went away together with the process (a stack stopped as a whole) must
/// not hold it forever.
pub async fn join_within<F: std::future::Future>(
    shutdown: &CancellationToken,
    limit: std::time::Duration,
    join: F,
) -> Option<F::Output> {
    tokio::pin!(join);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        out = &mut join => Some(out),
        _ = deadline => {
            tracing::warn!(limit_secs = limit.as_secs_f64(), "tasks still draining after the grace period; stopping them (unacked entries will be redelivered)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_call_is_abandoned_only_past_its_patience_after_shutdown() {
        let shutdown = CancellationToken::new();
        let patience = Duration::from_millis(200);
        // Before shutdown, a call takes the time it takes.
        let slow = bounded_after(&shutdown, patience, tokio::time::sleep(Duration::from_millis(400)));
        assert_eq!(slow.await, Some(()));
        shutdown.cancel();
        let answered = bounded_after(&shutdown, patience, tokio::time::sleep(Duration::from_millis(20)));
        assert_eq!(answered.await, Some(()), "within its patience: kept");
        let gone = bounded_after(&shutdown, patience, std::future::pending::<()>());
        assert_eq!(gone.await, None, "past it: abandoned");
    }

    #[tokio::test]
    async fn a_task_stuck_after_shutdown_is_stopped_at_the_limit() {
        let shutdown = CancellationToken::new();
        let stuck = tokio::spawn(std::future::pending::<()>());
        let handles = [stuck.abort_handle()];
        shutdown.cancel();
        let stuck = tokio_util::task::AbortOnDropHandle::new(stuck);
        let out = join_within(&shutdown, Duration::from_millis(20), stuck).await;
        assert!(out.is_none(), "the stuck task is given up on");
        // Aborting takes effect when the runtime next looks at the task.
        for _ in 0..100 {
            if handles[0].is_finished() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(handles[0].is_finished(), "and aborted");
    }

    #[tokio::test]
    async fn tasks_that_finish_return_their_output() {
        let shutdown = CancellationToken::new();
        let done = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async { 7 }));
        let out = join_within(&shutdown, Duration::from_millis(20), done).await;
        assert_eq!(out.map(|r| r.unwrap()), Some(7));
    }
}
