//! Redis connections and the stream helpers every service uses.
//!
//! A blocking `XREADGROUP` holds its connection, so a consumer reads with one client and
//! writes (acks, adds) with another: [`connect`] is cheap to call twice.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{Config as FredConfig, ReconnectPolicy};

pub use fred::prelude::Client as RedisClient;

/// Connects to `url`, retrying forever with exponential backoff (100 ms to 5 s) on loss.
/// Returns once the first connection is up, or the first connection error.
pub async fn connect(url: &str) -> Result<Client, Error> {
    let config = FredConfig::from_url(url)?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            c.internal_command_timeout = Duration::from_secs(5);
            // Commands in flight when a connection drops are retried on the new one.
            c.max_command_attempts = 6;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build()?;
    client.init().await?;
    Ok(client)
}

/// Creates consumer group `group` on stream `key` (and the stream) if missing, starting
/// from the beginning of the stream so nothing already written is skipped.
pub async fn ensure_group(client: &Client, key: &str, group: &str) -> Result<(), Error> {
    let r: Result<(), Error> = client.xgroup_create(key, group, "0", true).await;
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.details().contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// `PING`, for readiness checks.
pub async fn ping(client: &Client) -> bool {
    let r: Result<String, Error> = client.ping(None).await;
    r.is_ok()
}
