//! Reclaimed entries older than the lateness tolerance: acked without scoring (see
//! `reclaimed_late` in the library for why), and counted, so an operator sees what a
//! takeover skipped. In its own test binary: it reads the process-wide metrics.

mod common;

use common::append_reading;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream, ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::Telemetry;
use prost::Message;

const SHARDS: u32 = 8;
const GROUP: &str = "anomaly-detector";

fn counter(name: &str) -> Option<u64> {
    let text = proact_server::telemetry::metrics_handle().render();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn pending_total(redis: &Client) -> u64 {
    let mut total = 0;
    for s in 0..SHARDS {
        let v: Value = redis.xpending(telemetry_stream(s), GROUP, ()).await.unwrap_or(Value::Null);
        if let Value::Array(a) = v {
            total += a.first().and_then(|x| x.as_u64()).unwrap_or(0);
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaimed_entries_too_late_to_score_are_counted_and_acked() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let key = telemetry_stream(shard_for("EQ-00", SHARDS));
    proact_server::redis::ensure_group(&redis, &key, GROUP).await.unwrap();
    // A replica that died after reading 40 s of EQ-00 and, last, a hot reading 30 s older
    // than the newest (a sensor's buffered backlog): all pending on it, none acked.
    let base = proact_proto::time::now_micros() - 3_600_000_000;
    for (i, s) in (0..40).chain([10]).enumerate() {
        let hot = i == 40;
        let t = Telemetry {
            equipement_id: "EQ-00".into(),
            ts_micros: base + s * 1_000_000 + i64::from(hot) * 500_000,
            temperature: if hot { 97.0 } else { 55.0 },
            vibration: 2.0,
            ..Default::default()
        };
        append_reading(&redis, &key, &t).await;
    }
    let got =
        proact_server::redis::read_group(&redis, GROUP, "dead", std::slice::from_ref(&key), 100, 10).await.unwrap();
    assert_eq!(got.len(), 41);

    let config = proact_anomaly_detector::Config::try_parse_from([
        "proact-anomaly-detector",
        "--redis-url",
        &server.url(),
        "--database-url",
        "postgres://proact@127.0.0.1:9/none",
        "--registry-url",
        "http://127.0.0.1:9",
        "--admin-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--consumer",
        "a",
        "--lease-ttl-ms",
        "1500",
        "--silence-after-secs",
        "0",
    ])
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = proact_anomaly_detector::App::build(config).await.unwrap();
    let service = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    for _ in 0..100 {
        if pending_total(&redis).await == 0 && counter("proact_detector_claimed_total").unwrap_or(0) >= 41 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending_total(&redis).await, 0, "every reclaimed entry is acked, the late one too");
    assert_eq!(counter("proact_detector_reclaimed_late_entries_total"), Some(1), "the late one is counted");
    let alerts: Vec<(String, HashMap<String, Bytes>)> = redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap();
    let alerts: Vec<proact_proto::v1::AlertEvent> = alerts
        .iter()
        .filter_map(|(_, f)| proact_proto::v1::AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
        .collect();
    assert!(alerts.is_empty(), "the late hot reading is not scored: {alerts:?}");
    shutdown.cancel();
    service.await.unwrap().unwrap();
}
