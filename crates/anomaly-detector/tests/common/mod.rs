//! What the detector's integration tests share (each test file uses part of it).
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::PAYLOAD_FIELD;
use proact_proto::v1::Telemetry;
use prost::Message;

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

/// Appends `t` to the telemetry stream `key` as ingest does, one reading an entry.
pub async fn append_reading(redis: &Client, key: &str, t: &Telemetry) {
    let _: String =
        redis.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await.unwrap();
}
