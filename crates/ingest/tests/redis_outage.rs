//! Redis frozen (SIGSTOP) for 10 s under load: nothing lost, and ingest stops reading
//! (bounded queue) rather than buffer. Its own test binary: it reads the process-wide
//! metrics, which another test in the same process would disturb.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use proact_testkit::{Mosquitto, Redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_ten_seconds_holds_backpressure_and_loses_nothing() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let (queue, batch) = (256usize, 64usize);
    let ingest = start_ingest(
        &mqtt.url(),
        &redis.url(),
        "ingest-redis-outage",
        &["--queue", &queue.to_string(), "--max-batch", &batch.to_string()],
    )
    .await;

    // Some traffic first, so that the metrics exist and the path is warm.
    let base = base_micros();
    publish(mqtt.port(), "sensor-warmup", 500, 10, 0, base).await;
    wait_for_distinct(&r, 500, Duration::from_secs(20)).await;

    redis.signal("STOP").expect("freeze redis");
    let frozen_at = tokio::time::Instant::now();
    let n = 8_000;
    let port = mqtt.port();
    // The broker acks the publisher whatever ingest does: it queues for ingest's session.
    let stats = publish(port, "sensor-outage", n, 20, 0, base - 10_000_000_000).await;
    assert!(stats.acked.load(Ordering::Relaxed) >= n);
    // While Redis is frozen, ingest may hold at most its queue, one batch in the writer, one
    // message in the reader's hand, and what the socket had buffered: it does not read on.
    let mut max_received = 0.0f64;
    let mut max_depth = 0.0f64;
    while frozen_at.elapsed() < Duration::from_secs(10) {
        let page = http_get(ingest.admin, "/metrics").await;
        let received = metric(&page, "proact_ingest_received_total", "source=\"mqtt\"").unwrap_or(0.0) - 500.0;
        max_received = max_received.max(received);
        max_depth = max_depth.max(metric(&page, "proact_ingest_queue_depth", "").unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    redis.signal("CONT").expect("thaw redis");
    eprintln!("while frozen: received at most {max_received} of {n}, queue depth at most {max_depth}");
    assert!(max_depth <= queue as f64, "queue depth {max_depth} stays within its bound {queue}");
    // Reading the socket ahead of the queue is bounded by what the broker sends unacked
    // (max_inflight_messages in the kit's broker: 1000).
    assert!(max_received <= (queue + batch + 1 + 1000) as f64, "received {max_received} of {n} while Redis was frozen");
    assert!(max_received < n as f64 / 2.0, "ingest stopped reading (received {max_received} of {n})");

    let (total, distinct) = wait_for_distinct(&r, n as usize + 500, Duration::from_secs(60)).await;
    assert_eq!(distinct, n as usize + 500, "nothing lost across the outage ({total} entries)");

    let page = http_get(ingest.admin, "/metrics").await;
    for name in [
        "proact_ingest_received_total",
        "proact_ingest_accepted_total",
        "proact_ingest_stream_write_seconds_bucket",
        "proact_ingest_batch_size_bucket",
        "proact_ingest_queue_depth",
    ] {
        assert!(page.contains(name), "{name} is exposed on /metrics");
    }
    let accepted = metric(&page, "proact_ingest_accepted_total", "source=\"mqtt\"").unwrap();
    assert!(accepted >= (n + 500) as f64, "accepted {accepted}");
    ingest.stop().await;
}
