//! A Sparkplug B device's death certificate raises its no-data alarm at once, and its birth
//! clears it: MQTT → ingest (`--sparkplug`) → the equipment's shard (a status entry, field
//! `s`) → detector → the alerts stream, with real Mosquitto, Redis and PostgreSQL. The
//! detector's silence time is ten minutes, so only the death can raise the alarm in time.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, AlertEventKind};
use proact_sparkplug::encode::{encode_dbirth, encode_ddata, encode_ddeath, encode_nbirth};
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

/// Every no-data event of `id` on the alerts stream: (kind, alert id).
async fn no_data_events(r: &Client, id: &str) -> Vec<(AlertEventKind, String)> {
    let entries: Vec<(String, HashMap<String, Bytes>)> = r.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap();
    entries
        .iter()
        .filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
        .filter_map(|e| {
            let kind = e.kind();
            let a = e.alert?;
            (a.equipement_id == id && a.rule == "no_data").then_some((kind, a.alert_id))
        })
        .collect()
}

async fn send(client: &AsyncClient, events: &mut rumqttc::EventLoop, msgs: Vec<(&str, Vec<u8>)>) {
    let n = msgs.len();
    for (topic, payload) in msgs {
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let mut acked = 0;
    while acked < n {
        match tokio::time::timeout(Duration::from_secs(20), events.poll()).await.expect("broker answers") {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("edge node connection: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_death_raises_no_data_at_once_and_its_birth_clears_it() {
    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    let shutdown = CancellationToken::new();
    let common = |bin: &str| {
        vec![
            bin.to_string(),
            "--redis-url".into(),
            stack.redis.url(),
            "--admin-addr".into(),
            "127.0.0.1:0".into(),
            "--grpc-addr".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let mut d = common("proact-anomaly-detector");
    d.extend(
        ["--consumer", "detector-spb", "--registry-url", "http://127.0.0.1:9", "--silence-after-secs", "600"]
            .map(String::from),
    );
    d.extend(["--database-url".into(), stack.postgres.url()]);
    let detector = proact_anomaly_detector::App::build(proact_anomaly_detector::Config::try_parse_from(d).unwrap())
        .await
        .expect("detector builds");
    let detector = tokio::spawn(detector.run_until_stopped(shutdown.clone()));
    let mut i = common("proact-ingest");
    i.extend(["--mqtt-url".into(), stack.mqtt.url(), "--client-id".into(), "ingest-spb-e2e".into()]);
    i.extend(["--sparkplug", "Plant1"].map(String::from));
    let ingest = proact_ingest::App::build(proact_ingest::Config::try_parse_from(i).unwrap()).await.expect("ingest");
    let ready = ingest.readiness();
    let ingest = tokio::spawn(ingest.run_until_stopped(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ready.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "ingest not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redis = proact_server::redis::connect(&stack.redis.url()).await.unwrap();

    let (edge, mut events) = AsyncClient::new(MqttOptions::new("edge2", "127.0.0.1", stack.mqtt.port()), 100);
    let now_ms = || (proact_proto::time::now_micros() / 1000) as u64;
    let birth = |seq, ms| encode_dbirth(seq, ms, &[("Temperature", 1, 60.0), ("Vibration", 2, 1.5)]);
    let t0 = now_ms() - 5_000;
    send(
        &edge,
        &mut events,
        vec![
            ("spBv1.0/Plant1/NBIRTH/Edge2", encode_nbirth(1, 0, t0, &[])),
            ("spBv1.0/Plant1/DBIRTH/Edge2/PUMP-07", birth(1, t0)),
            ("spBv1.0/Plant1/DDATA/Edge2/PUMP-07", encode_ddata(2, t0 + 1000, &[(1, 61.0)])),
            ("spBv1.0/Plant1/DDEATH/Edge2/PUMP-07", encode_ddeath(3, now_ms())),
        ],
    )
    .await;
    let r = &redis;
    let alarm = "the no-data alarm on the death";
    proact_e2e::wait_until(
        alarm,
        Duration::from_secs(30),
        || async move { !no_data_events(r, "PUMP-07").await.is_empty() },
    )
    .await;
    let raised = no_data_events(r, "PUMP-07").await;
    assert_eq!(raised[0].0, AlertEventKind::Raised);
    send(&edge, &mut events, vec![("spBv1.0/Plant1/DBIRTH/Edge2/PUMP-07", birth(4, now_ms()))]).await;
    let cleared = "the alarm cleared by the birth";
    proact_e2e::wait_until(cleared, Duration::from_secs(30), || async move {
        no_data_events(r, "PUMP-07").await.len() >= 2
    })
    .await;
    let both = no_data_events(r, "PUMP-07").await;
    assert_eq!(both[1], (AlertEventKind::Cleared, raised[0].1.clone()), "the same alarm, cleared once");
    assert_eq!(both.len(), 2);

    shutdown.cancel();
    detector.await.unwrap().unwrap();
    ingest.await.unwrap().unwrap();
}
