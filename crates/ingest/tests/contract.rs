//! The contract at ingest's edges with real servers: a malformed-input corpus over MQTT
//! (each ends in the dead-letter stream with its reason), gRPC publish with mixed
//! valid/invalid items, the gRPC bearer token, the equipment allow-list (file and the
//! reference `amdec` table), and stream trimming that spares unacknowledged entries.

mod common;

use std::time::Duration;

use common::*;
use fred::prelude::*;
use proact_ingest::trim::{trim_once, EntryId, TrimPolicy};
use proact_proto::v1::ingest_client::IngestClient;
use proact_proto::v1::{PublishRequest, RejectReason, Telemetry};
use proact_testkit::{Mosquitto, Postgres, Redis};

/// The metrics registry is the process's, shared by every ingest these tests start: they run
/// one at a time, and a test that checks a counter compares it with its value before it acted.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn reading(id: &str, ts: i64) -> Telemetry {
    Telemetry { equipement_id: id.into(), ts_micros: ts, temperature: 70.0, vibration: 2.0, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_corpus_ends_in_the_dead_letter_stream_with_its_reason() {
    let _alone = METRICS.lock().await;
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-corpus", &["--max-payload", "2048"]).await;
    let ts = chrono::DateTime::from_timestamp_micros(base_micros())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let at_offset = |secs: i64| {
        let t = chrono::DateTime::from_timestamp_micros(proact_proto::time::now_micros() + secs * 1_000_000).unwrap();
        let t = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!(r#"{{"equipement_id":"P-1","temperature":1,"vibration":2,"timestamp":"{t}"}}"#)
    };
    let ok = |id: &str| format!(r#"{{"equipement_id":"{id}","temperature":1,"vibration":2,"timestamp":"{ts}"}}"#);
    let cases: Vec<(&str, String, RejectReason)> = vec![
        ("P-1", "not json".into(), RejectReason::InvalidJson),
        ("P-1", "".into(), RejectReason::InvalidJson),
        ("P-1", r#"{"equipement_id":"P-1","temperature":1"#.into(), RejectReason::InvalidJson),
        ("P-1", "[]".into(), RejectReason::NotAnObject),
        ("P-1", r#""a string""#.into(), RejectReason::NotAnObject),
        ("P-1", format!(r#"{{"temperature":1,"vibration":2,"timestamp":"{ts}"}}"#), RejectReason::MissingField),
        ("P-1", format!(r#"{{"equipement_id":"P-1","vibration":2,"timestamp":"{ts}"}}"#), RejectReason::MissingField),
        ("P-1", r#"{"equipement_id":"P-1","temperature":1,"vibration":2}"#.into(), RejectReason::MissingField),
        ("P-1", ok("P-2"), RejectReason::IdMismatch),
        ("a b", ok("a b"), RejectReason::InvalidId),
        (
            "P-1",
            format!(r#"{{"equipement_id":"P-1","temperature":NaN,"vibration":2,"timestamp":"{ts}"}}"#),
            RejectReason::NonFinite,
        ),
        (
            "P-1",
            format!(r#"{{"equipement_id":"P-1","temperature":1e400,"vibration":2,"timestamp":"{ts}"}}"#),
            RejectReason::NonFinite,
        ),
        (
            "P-1",
            format!(r#"{{"equipement_id":"P-1","temperature":"hot","vibration":2,"timestamp":"{ts}"}}"#),
            RejectReason::NotNumeric,
        ),
        (
            "P-1",
            format!(r#"{{"equipement_id":"P-1","temperature":1,"vibration":[2],"timestamp":"{ts}"}}"#),
            RejectReason::NotNumeric,
        ),
        (
            "P-1",
            r#"{"equipement_id":"P-1","temperature":1,"vibration":2,"timestamp":"yesterday"}"#.into(),
            RejectReason::BadTimestamp,
        ),
        (
            "P-1",
            r#"{"equipement_id":"P-1","temperature":1,"vibration":2,"timestamp":"1999-12-31T23:59:59Z"}"#.into(),
            RejectReason::AbsurdTimestamp,
        ),
        (
            "P-1",
            r#"{"equipement_id":"P-1","temperature":1,"vibration":2,"timestamp":"2999-01-01T00:00:00Z"}"#.into(),
            RejectReason::AbsurdTimestamp,
        ),
        ("P-1", format!(r#"{{"equipement_id":"P-1","pad":"{}"}}"#, "x".repeat(3000)), RejectReason::Oversize),
        // A sensor clock an hour ahead: it would push the detector's event time past every real reading.
        ("P-1", at_offset(3600), RejectReason::AbsurdTimestamp),
        // Older than the back-fill window: it would create a partition of its own.
        ("P-1", at_offset(-120 * 86_400), RejectReason::AbsurdTimestamp),
        (
            "P-1",
            format!(r#"{{"equipement_id":"P-1","temperature":1,"vibration":2,"a\u0000b":3,"timestamp":"{ts}"}}"#),
            RejectReason::InvalidFieldName,
        ),
    ];
    let mut msgs: Vec<(String, Vec<u8>)> =
        cases.iter().map(|(id, p, _)| (format!("sensors/{id}/telemetry"), p.clone().into_bytes())).collect();
    // Invalid UTF-8 is invalid JSON, not a panic.
    msgs.push(("sensors/P-1/telemetry".into(), vec![b'{', 0xff, 0xfe, b'}']));
    // One good reading, so the test knows when the batch is through.
    msgs.push(("sensors/P-1/telemetry".into(), ok("P-1").into_bytes()));
    publish_raw(mqtt.port(), &msgs).await;

    wait_for_distinct(&r, 1, Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = dead_letters(&r).await;
        if dead.len() > cases.len() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), cases.len() + 1, "one dead letter per malformed input");
    // Order is kept (one subscriber, one batch writer), so dead letters line up with cases.
    for ((id, payload, want), d) in cases.iter().zip(&dead) {
        assert_eq!(d.reason, *want as i32, "{payload:.80} → {}: {}", d.reason, d.detail);
        assert_eq!(d.topic, format!("sensors/{id}/telemetry"));
        assert_eq!(d.source, "mqtt");
        assert!(!d.detail.is_empty());
        assert!(d.at_micros > 0);
        let kept = payload.len().min(proact_ingest::sink::DLQ_PAYLOAD_LIMIT);
        assert_eq!(d.payload, payload.as_bytes()[..kept], "raw payload kept (bounded)");
        assert_eq!(d.payload_truncated, payload.len() > kept);
    }
    assert_eq!(dead.last().unwrap().reason, RejectReason::InvalidJson as i32);
    let page = http_get(ingest.admin, "/metrics").await;
    assert!(metric(&page, "proact_ingest_rejected_total", "reason=\"non_finite\"").unwrap_or(0.0) >= 2.0, "{page}");
    ingest.stop().await;
}

/// JSON arrays on the reading topic (ADR 0005): the good elements of an array are kept, in
/// order, in batch entries; a bad element is dead-lettered alone with its index and its own
/// JSON; an array over `--max-array` is refused whole, and so is one over the payload limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_arrays_keep_their_good_readings_and_dead_letter_bad_ones_alone() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let _alone = METRICS.lock().await;
    let ingest =
        start_ingest(&mqtt.url(), &redis.url(), "ingest-arrays", &["--max-array", "5", "--max-payload", "2048"]).await;
    let accepted = |page: &str| metric(page, "proact_ingest_accepted_total", "source=\"mqtt\"").unwrap_or(0.0);
    let accepted_before = accepted(&http_get(ingest.admin, "/metrics").await);
    let base = base_micros();
    let array = |items: &[String]| format!("[{}]", items.join(",")).into_bytes();
    let good: Vec<String> = (0..4).map(|i| payload("P-1", ts_micros(base, i), i)).collect();
    let stranger = payload("P-2", ts_micros(base, 9), 9);
    let mixed = vec![good[0].clone(), good[1].clone(), stranger.clone(), good[2].clone()];
    let six: Vec<String> = (10..16).map(|i| payload("P-1", ts_micros(base, i), i)).collect();
    let heavy: Vec<String> = (20..25).map(|i| format!("{:<500}", payload("P-1", ts_micros(base, i), i))).collect();
    let topic = "sensors/P-1/telemetry".to_string();
    let msgs = vec![
        (topic.clone(), array(&mixed)),
        (topic.clone(), array(&six)),
        (topic.clone(), array(&heavy)),
        (topic.clone(), good[3].clone().into_bytes()),
    ];
    publish_raw(mqtt.port(), &msgs).await;

    wait_for_distinct(&r, 4, Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = dead_letters(&r).await;
        if dead.len() >= 3 || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let readings = stored_readings(&r).await;
    let ts: Vec<i64> = readings.iter().map(|t| t.ts_micros).collect();
    assert_eq!(ts, (0..4).map(|i| ts_micros(base, i)).collect::<Vec<_>>(), "the good readings, once each, in order");
    assert!(readings.iter().all(|t| t.equipement_id == "P-1" && t.source == "mqtt"));

    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(dead[0].reason, RejectReason::IdMismatch as i32);
    assert!(dead[0].detail.starts_with("array element 2: "), "{}", dead[0].detail);
    assert_eq!(dead[0].payload, stranger.as_bytes(), "the bad element alone, as sent");
    assert_eq!(dead[1].reason, RejectReason::Oversize as i32);
    assert!(dead[1].detail.contains("array of 6 readings, at most 5"), "{}", dead[1].detail);
    assert_eq!(dead[1].payload, array(&six), "an array refused whole keeps its payload");
    assert_eq!(dead[2].reason, RejectReason::Oversize as i32, "the payload limit is on the whole array");
    assert!(dead.iter().all(|d| d.topic == topic && d.source == "mqtt"));

    // The readings of one MQTT batch for one shard share one entry.
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> = r
        .xrange(
            proact_proto::streams::telemetry_stream(proact_proto::streams::shard_for("P-1", SHARDS)),
            "-",
            "+",
            None,
        )
        .await
        .unwrap();
    assert!(entries.iter().all(|(_, f)| f.contains_key(proact_proto::streams::BATCH_FIELD)));
    assert!(entries.len() < readings.len(), "{} entries for {} readings", entries.len(), readings.len());
    let page = http_get(ingest.admin, "/metrics").await;
    assert_eq!(accepted(&page) - accepted_before, 4.0, "{page}");
    ingest.stop().await;
}

/// A sensor publishes one 400 KB message (under the broker's 1 MiB limit, far over ingest's
/// 16 KiB) and then valid readings: the large one is dead-lettered once, with its reason and
/// its head, and every reading after it is stored. A replica that refused the packet would
/// fail its connection, have it redelivered on every reconnect and store nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_oversized_message_is_dead_lettered_once_and_the_intake_goes_on() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let _alone = METRICS.lock().await;
    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-oversize", &[]).await;
    let errors = |page: &str| metric(page, "proact_ingest_mqtt_connection_errors_total", "").unwrap_or(0.0);
    let errors_before = errors(&http_get(ingest.admin, "/metrics").await);
    let base = base_micros();
    let big = format!(r#"{{"equipement_id":"P-1","pad":"{}"}}"#, "x".repeat(400 * 1024));
    let mut msgs = vec![("sensors/P-1/telemetry".to_string(), big.clone().into_bytes())];
    msgs.extend(
        (0..50).map(|i| ("sensors/P-1/telemetry".to_string(), payload("P-1", ts_micros(base, i), i).into_bytes())),
    );
    publish_raw(mqtt.port(), &msgs).await;

    let (_, distinct) = wait_for_distinct(&r, 50, Duration::from_secs(20)).await;
    assert_eq!(distinct, 50, "every reading after the large message is stored");
    let dead = dead_letters(&r).await;
    assert_eq!(dead.len(), 1, "the large message is dead-lettered once");
    assert_eq!(dead[0].reason, RejectReason::Oversize as i32);
    assert!(dead[0].detail.contains(&big.len().to_string()), "the detail gives the real size: {}", dead[0].detail);
    assert_eq!(dead[0].payload, big.as_bytes()[..proact_ingest::sink::DLQ_PAYLOAD_LIMIT]);
    assert!(dead[0].payload_truncated);
    let page = http_get(ingest.admin, "/metrics").await;
    assert_eq!(errors(&page) - errors_before, 0.0, "{page}");
    ingest.stop().await;

    // The same session again: had the large message not been acked, the broker would
    // redeliver it now, before the new reading.
    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-oversize", &[]).await;
    publish_raw(mqtt.port(), &[("sensors/P-1/telemetry".into(), payload("P-1", ts_micros(base, 50), 50).into_bytes())])
        .await;
    let (_, distinct) = wait_for_distinct(&r, 51, Duration::from_secs(20)).await;
    assert_eq!(distinct, 51);
    assert_eq!(dead_letters(&r).await.len(), 1, "not redelivered to the new connection");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_publish_mixed_items_and_bearer_token() {
    let _alone = METRICS.lock().await;
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-grpc", &["--grpc-token", "t0ken"]).await;
    let mut client = IngestClient::connect(format!("http://{}", ingest.grpc)).await.unwrap();
    let base = base_micros();
    let items = vec![
        reading("G-1", base),
        reading("bad id!", base),
        Telemetry { temperature: f64::NAN, ..reading("G-1", base + 1) },
        reading("G-2", 0),
        reading("G-2", base + 2),
    ];
    let req = || PublishRequest { items: items.clone() };

    // No token, then a wrong one: refused before anything is written.
    let e = client.publish(req()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(req());
    wrong.metadata_mut().insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(client.publish(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(stream_contents(&r).await.0, 0);

    let mut ok = tonic::Request::new(req());
    ok.metadata_mut().insert("authorization", "Bearer t0ken".parse().unwrap());
    let resp = client.publish(ok).await.unwrap().into_inner();
    assert_eq!(resp.accepted, 2);
    let got: Vec<(u32, i32)> = resp.rejections.iter().map(|x| (x.index, x.reason)).collect();
    assert_eq!(
        got,
        vec![
            (1, RejectReason::InvalidId as i32),
            (2, RejectReason::NonFinite as i32),
            (3, RejectReason::AbsurdTimestamp as i32)
        ]
    );
    // Returned only after the write: the accepted items are already in the streams.
    let (_, distinct) = stream_contents(&r).await;
    assert!(distinct.contains(&("G-1".to_string(), base)) && distinct.contains(&("G-2".to_string(), base + 2)));
    assert_eq!(dead_letters(&r).await.len(), 3);

    // Client stream: indexes count across batches.
    let batches = vec![
        PublishRequest { items: vec![reading("S-1", base + 10), reading("", base)] },
        PublishRequest { items: vec![reading("S-1", base + 11), reading("S-1", -5)] },
    ];
    let mut stream_req = tonic::Request::new(tokio_stream::iter(batches));
    stream_req.metadata_mut().insert("authorization", "Bearer t0ken".parse().unwrap());
    let resp = client.publish_stream(stream_req).await.unwrap().into_inner();
    assert_eq!(resp.accepted, 2);
    let idx: Vec<u32> = resp.rejections.iter().map(|x| x.index).collect();
    assert_eq!(idx, vec![1, 3]);
    assert_eq!(resp.rejected, 2);

    // A stream of bad items lists the first 1,000 rejections and counts them all; each
    // still reaches the dead-letter stream.
    let bad = |from: i64| PublishRequest { items: (0..700).map(|i| reading("S-2", -from - i)).collect() };
    let mut stream_req = tonic::Request::new(tokio_stream::iter(vec![bad(0), bad(700), bad(1400)]));
    stream_req.metadata_mut().insert("authorization", "Bearer t0ken".parse().unwrap());
    let resp = client.publish_stream(stream_req).await.unwrap().into_inner();
    assert_eq!((resp.accepted, resp.rejected), (0, 2100));
    assert_eq!(resp.rejections.len(), proact_ingest::grpc::MAX_REJECTIONS_LISTED);
    assert_eq!(resp.rejections.last().unwrap().index, 999);
    assert_eq!(dead_letters(&r).await.len(), 3 + 2 + 2100);

    // A caller's trace context keeps the W3C keys only, within their bounds.
    let mut t = reading("S-3", base + 20);
    t.trace_context.insert("traceparent".into(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    t.trace_context.insert("tracestate".into(), "x".repeat(10_000));
    for i in 0..100 {
        t.trace_context.insert(format!("junk{i}"), "y".repeat(1000));
    }
    let mut one = tonic::Request::new(PublishRequest { items: vec![t] });
    one.metadata_mut().insert("authorization", "Bearer t0ken".parse().unwrap());
    assert_eq!(client.publish(one).await.unwrap().into_inner().accepted, 1);
    let stored = stored_readings(&r).await.into_iter().find(|t| t.equipement_id == "S-3").expect("S-3 stored");
    assert_eq!(stored.trace_context.keys().collect::<Vec<_>>(), ["traceparent"]);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_from_file_and_from_the_amdec_table() {
    let _alone = METRICS.lock().await;
    let (mqtt, redis, pg) = tokio::try_join!(Mosquitto::start(), Redis::start(), Postgres::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allow.txt");
    std::fs::write(&file, "# known equipment\nA-1\n\nA-2\n").unwrap();
    let (db, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    db.batch_execute(include_str!("../../store/migrations/0002_reference.sql")).await.unwrap();
    db.batch_execute(
        "INSERT INTO amdec (equipement_id, failure_mode_code, failure_mode, severity, occurrence, detection, rpn) \
         VALUES ('D-1', 'FM1', 'bearing wear', 7, 3, 4, 84), ('D-1', 'FM2', 'seal leak', 5, 2, 3, 30)",
    )
    .await
    .unwrap();

    let base = base_micros();
    for (source, known, unknown, extra) in [
        (file.to_str().unwrap().to_string(), "A-2", "D-1", vec![]),
        ("db".to_string(), "D-1", "A-1", vec!["--database-url".to_string(), pg.url()]),
    ] {
        // Its own share group: the previous instance's persistent session still holds a
        // share of the group it was in.
        let group = format!("allow-{known}");
        let mut flags = vec!["--allowlist", source.as_str(), "--group", group.as_str()];
        flags.extend(extra.iter().map(String::as_str));
        let ingest = start_ingest(&mqtt.url(), &redis.url(), &format!("ingest-allow-{known}"), &flags).await;
        let mut client = IngestClient::connect(format!("http://{}", ingest.grpc)).await.unwrap();
        let resp = client
            .publish(PublishRequest { items: vec![reading(known, base), reading(unknown, base)] })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.accepted, 1, "{source}: {known} is known");
        assert_eq!(resp.rejections.len(), 1);
        assert_eq!(resp.rejections[0].reason, RejectReason::UnknownEquipment as i32, "{source}: {unknown} is not");
        // Same rule over MQTT.
        let p = |id: &str| payload(id, base + 1, 1).into_bytes();
        publish_raw(
            mqtt.port(),
            &[(format!("sensors/{unknown}/telemetry"), p(unknown)), (format!("sensors/{known}/telemetry"), p(known))],
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !stream_contents(&r).await.1.contains(&(known.to_string(), base + 1)) {
            assert!(tokio::time::Instant::now() < deadline, "{known} over MQTT not written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!stream_contents(&r).await.1.contains(&(unknown.to_string(), base + 1)));
        let dead = dead_letters(&r).await;
        assert!(dead.iter().any(|d| d.source == "mqtt"
            && d.reason == RejectReason::UnknownEquipment as i32
            && d.topic.contains(unknown)));
        ingest.stop().await;
    }
}

async fn xadd_ids(r: &Client, key: &str, ids: std::ops::RangeInclusive<u64>) {
    for i in ids {
        let _: String = r.xadd(key, false, None::<()>, format!("{i}-0"), ("p", "x")).await.unwrap();
    }
}

async fn read_group(r: &Client, key: &str, group: &str, count: u64) -> Vec<String> {
    let reply: Value = r.xreadgroup(group, "c1", Some(count), None, false, key, ">").await.unwrap();
    let resp = proact_server::redis::xread_response(reply).unwrap();
    resp.get(key).map(|e| e.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default()
}

async fn first_id(r: &Client, key: &str) -> EntryId {
    let e: Vec<(String, Value)> = r.xrange(key, "-", "+", Some(1)).await.unwrap();
    EntryId::parse(&e[0].0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_never_removes_what_a_group_has_not_acked() {
    let _alone = METRICS.lock().await;
    let redis = Redis::start().await.unwrap();
    let r = common::redis(&redis.url()).await;
    let key = "proact:telemetry:{0}";
    xadd_ids(&r, key, 1..=100).await;
    let by_len = TrimPolicy { max_len: Some(10), ..Default::default() };

    // No consumer group yet: its readers have not started, nothing goes.
    assert_eq!(trim_once(&r, key, by_len, 1_000).await.unwrap(), 0);

    proact_server::redis::ensure_group(&r, key, "archive").await.unwrap();
    let delivered = read_group(&r, key, "archive", 60).await;
    assert_eq!(delivered.len(), 60);
    let _: u64 = r.xack(key, "archive", delivered[..30].to_vec()).await.unwrap();
    // Entries 31..=60 are pending, 61..=100 not delivered: only 1..=30 may go.
    assert_eq!(trim_once(&r, key, by_len, 1_000).await.unwrap(), 30);
    assert_eq!(first_id(&r, key).await, EntryId { ms: 31, seq: 0 });

    // A second group that has read nothing pins everything.
    proact_server::redis::ensure_group(&r, key, "detector").await.unwrap();
    let _: u64 = r.xack(key, "archive", delivered[30..].to_vec()).await.unwrap();
    assert_eq!(trim_once(&r, key, by_len, 1_000).await.unwrap(), 0);

    // Both caught up: the length cap applies in full.
    let d2 = read_group(&r, key, "detector", 1000).await;
    let _: u64 = r.xack(key, "detector", d2).await.unwrap();
    let rest = read_group(&r, key, "archive", 1000).await;
    let _: u64 = r.xack(key, "archive", rest).await.unwrap();
    assert_eq!(trim_once(&r, key, by_len, 1_000).await.unwrap(), 60);
    let len: u64 = r.xlen(key).await.unwrap();
    assert_eq!(len, 10);

    // By age: ids are milliseconds; at "now" = 150 ms with a 60 ms cap, entries before 90 go,
    // except the ones still pending for a group.
    xadd_ids(&r, key, 101..=120).await;
    let pending = read_group(&r, key, "archive", 5).await; // 101..=105 pending
    assert_eq!(pending.len(), 5);
    let by_age = TrimPolicy { max_age: Some(Duration::from_millis(60)), ..Default::default() };
    let removed = trim_once(&r, key, by_age, 150).await.unwrap();
    assert_eq!(removed, 0, "91..=100 are younger than 90 ms, 101.. are pending or unread for detector");
    let removed = trim_once(&r, key, by_age, 200).await.unwrap();
    assert_eq!(removed, 10, "91..=100 are past the cap and acked by both groups; 101.. are not");
    assert_eq!(first_id(&r, key).await, EntryId { ms: 101, seq: 0 });
}

/// With no trimming setting at all, ingest keeps every stream bounded: old dead letters and
/// model events go (nobody reads them through a group), acknowledged telemetry past a day
/// goes, and what the archive has not acknowledged stays, however old. Redis' memory use is
/// exported for the `ProActRedisMemoryHigh` alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_is_bounded_by_default_without_losing_unacked_entries() {
    let _alone = METRICS.lock().await;
    use proact_proto::streams::{telemetry_stream, DEAD_LETTER_STREAM, MODEL_EVENTS_STREAM};
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    // Ids are milliseconds since the epoch: these entries are from January 1970.
    xadd_ids(&r, DEAD_LETTER_STREAM, 1..=30).await;
    xadd_ids(&r, MODEL_EVENTS_STREAM, 1..=1_200).await;
    let shard = telemetry_stream(0);
    xadd_ids(&r, &shard, 1..=40).await;
    proact_server::redis::ensure_group(&r, &shard, "archive").await.unwrap();
    let delivered = read_group(&r, &shard, "archive", 40).await;
    let _: u64 = r.xack(&shard, "archive", delivered[..25].to_vec()).await.unwrap();

    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-trim", &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dlq: u64 = r.xlen(DEAD_LETTER_STREAM).await.unwrap();
        let models: u64 = r.xlen(MODEL_EVENTS_STREAM).await.unwrap();
        let telemetry: u64 = r.xlen(&shard).await.unwrap();
        if (dlq, models, telemetry) == (0, proact_ingest::MODEL_EVENTS_KEPT, 15) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not trimmed: dlq {dlq}, model events {models}, shard {telemetry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first_id(&r, &shard).await, EntryId { ms: 26, seq: 0 }, "the 15 unacknowledged entries stay");
    assert_eq!(first_id(&r, MODEL_EVENTS_STREAM).await, EntryId { ms: 201, seq: 0 }, "the newest model events stay");
    let page = http_get(ingest.admin, "/metrics").await;
    assert!(metric(&page, "proact_ingest_redis_used_memory_bytes", "").unwrap_or(0.0) > 0.0, "{page}");
    assert!(metric(&page, "proact_ingest_redis_maxmemory_bytes", "").is_some(), "{page}");
    ingest.stop().await;
}
