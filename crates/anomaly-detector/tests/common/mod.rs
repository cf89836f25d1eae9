//! What the detector's integration tests share.

use std::time::Duration;

/// Waits until `f` is true, trying every 100 ms; panics naming `what` after 30 s.
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
