//! Exponential backoff between retries of a call that failed (a lost connection, a refused
//! write): the delay doubles after each failure up to a ceiling, and a success resets it, so
//! a service neither hammers a server that is down nor waits long once it is back.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The delays of one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, current: initial }
    }

    /// 50 ms doubling up to 5 s: Redis and PostgreSQL calls.
    pub const fn server_call() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// The delay to wait now; the next one is twice as long (up to the ceiling).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }

    /// The delay the next failure would wait, without moving on.
    pub fn peek(&self) -> Duration {
        self.current
    }

    /// After a success: the next failure waits the initial delay again.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// Sleeps the next delay; returns false, at once, if `shutdown` is cancelled meanwhile.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(50));
        assert_eq!(b.peek(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_cancelled_wait_returns_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        assert!(!b.wait(&token).await);
    }
}
