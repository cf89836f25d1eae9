//! When ingest waits to fill a batch: with `PROACT_INGEST_BATCH_WAIT_ABOVE` set, only once
//! messages arrive faster than that (0, the default: always). Below it a message is written as
//! soon as it is read, so a plant sending few messages (or arrays of readings, few messages for
//! many readings) does not add the batch wait to every alert; above it, batches fill up to
//! `PROACT_INGEST_MAX_WAIT_MS` and make stream entries of many readings.

mod common;

use std::time::Duration;

use common::*;
use fred::prelude::*;
use proact_proto::streams::telemetry_streams;
use proact_testkit::{Mosquitto, Redis};

async fn entries(client: &Client) -> u64 {
    let mut n = 0;
    for key in telemetry_streams(SHARDS) {
        let len: u64 = client.xlen(key.as_str()).await.expect("xlen");
        n += len;
    }
    n
}

fn messages(n: u64) -> Vec<(String, Vec<u8>)> {
    let base = base_micros();
    (0..n)
        .map(|i| {
            let id = equipment(i, 8);
            (format!("sensors/{id}/telemetry"), payload(&id, ts_micros(base, i), i).into_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_slowly_is_written_without_waiting_for_a_batch() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    // A minute's wait, were the batch to wait: the reading must be in its stream long before.
    let ingest = start_ingest(
        &mqtt.url(),
        &redis.url(),
        "ingest-slow",
        &["--batch-wait-above", "30000", "--max-wait-ms", "60000"],
    )
    .await;

    publish_raw(mqtt.port(), &messages(1)).await;
    let (_, distinct) = wait_for_distinct(&r, 1, Duration::from_secs(30)).await;
    assert_eq!(distinct, 1, "the lone reading was held back waiting for a batch");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_rate_a_batch_waits_to_fill_and_makes_one_entry_per_shard() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    // Always wait (0, the default, given anyway), as long as it takes for a full batch of 100.
    let ingest = start_ingest(
        &mqtt.url(),
        &redis.url(),
        "ingest-fill",
        &["--batch-wait-above", "0", "--max-wait-ms", "60000", "--max-batch", "100"],
    )
    .await;

    publish_raw(mqtt.port(), &messages(100)).await;
    let (_, distinct) = wait_for_distinct(&r, 100, Duration::from_secs(30)).await;
    assert_eq!(distinct, 100, "every reading written once the batch was full");
    let written = entries(&r).await;
    assert!(
        written <= u64::from(SHARDS),
        "100 readings in one batch are one entry per shard at most, got {written} entries"
    );
    ingest.stop().await;
}
