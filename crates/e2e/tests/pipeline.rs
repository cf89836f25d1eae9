//! The walking skeleton end to end, with real servers: MQTT in → ingest → Redis streams →
//! archive (PostgreSQL) and detector → alerts stream → gateway → WebSocket out.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use proact_e2e::wait_until as wait_for;
use proact_proto::streams::{DEAD_LETTER_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{DeadLetter, RejectReason};
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const EQUIPMENT: usize = 10;
const READINGS_EACH: usize = 20;
/// Equipment 0..HOT each get one reading above 90 °C: one episode, one alert each.
const HOT: usize = 4;

fn malformed() -> Vec<(String, String, RejectReason)> {
    let ts = chrono_like_now(-30);
    vec![
        ("sensors/PUMP-00/telemetry".into(), "{not json".into(), RejectReason::InvalidJson),
        (
            "sensors/PUMP-00/telemetry".into(),
            format!(r#"{{"equipement_id":"PUMP-00","vibration":1,"timestamp":"{ts}"}}"#),
            RejectReason::MissingField,
        ),
        (
            "sensors/PUMP-01/telemetry".into(),
            format!(r#"{{"equipement_id":"PUMP-02","temperature":95,"vibration":1,"timestamp":"{ts}"}}"#),
            RejectReason::IdMismatch,
        ),
        (
            "sensors/PUMP-01/telemetry".into(),
            format!(r#"{{"equipement_id":"PUMP-01","temperature":"hot","vibration":1,"timestamp":"{ts}"}}"#),
            RejectReason::NotNumeric,
        ),
        (
            "sensors/PUMP-02/telemetry".into(),
            r#"{"equipement_id":"PUMP-02","temperature":1,"vibration":1,"timestamp":"20/03/2024"}"#.into(),
            RejectReason::BadTimestamp,
        ),
        (
            "sensors/PUMP-02/telemetry".into(),
            r#"{"equipement_id":"PUMP-02","temperature":1,"vibration":1,"timestamp":"1999-01-01T00:00:00Z"}"#.into(),
            RejectReason::AbsurdTimestamp,
        ),
        (
            "sensors/PUMP-03/telemetry".into(),
            format!(r#"{{"equipement_id":"PUMP-03","temperature":NaN,"vibration":1,"timestamp":"{ts}"}}"#),
            RejectReason::NonFinite,
        ),
    ]
}

/// An RFC 3339 UTC time `offset_s` seconds from now, without pulling in a date crate.
fn chrono_like_now(offset_s: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + offset_s;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mqtt_to_postgres_dead_letters_and_websocket_alerts() {
    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    let pipeline = proact_e2e::Pipeline::start(&stack, None).await.expect("services start");

    // A dashboard client connects before anything is published.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/alerts", pipeline.gateway_http))
        .await
        .expect("ws connects");

    // Publish: valid readings (a few hot), plus malformed messages.
    let mut opts = MqttOptions::new("e2e-sensor", "127.0.0.1", stack.mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let acks = tokio::spawn(async move {
        let mut n = 0;
        while n < EQUIPMENT * READINGS_EACH + 7 {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                n += 1;
            }
        }
        n
    });
    for r in 0..READINGS_EACH {
        for e in 0..EQUIPMENT {
            let id = format!("PUMP-{e:02}");
            let hot = e < HOT && r == READINGS_EACH / 2;
            let temp = if hot { 95.5 } else { 60.0 + (r % 5) as f64 };
            let ts = chrono_like_now(-(READINGS_EACH as i64) + r as i64);
            let payload = format!(
                r#"{{"equipement_id":"{id}","temperature":{temp},"vibration":3.2,"pressure":4.1,"timestamp":"{ts}"}}"#
            );
            client.publish(format!("sensors/{id}/telemetry"), QoS::AtLeastOnce, false, payload).await.unwrap();
        }
    }
    let bad = malformed();
    for (topic, payload, _) in &bad {
        client.publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), acks).await.unwrap().unwrap(),
        EQUIPMENT * READINGS_EACH + bad.len()
    );

    // Exactly the valid readings are archived, with their extra channel.
    let (pg, conn) = tokio_postgres::connect(&stack.postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let expected = (EQUIPMENT * READINGS_EACH) as i64;
    wait_for("rows in telemetry", Duration::from_secs(30), || async {
        pg.query_one("SELECT count(*) FROM telemetry", &[]).await.unwrap().get::<_, i64>(0) >= expected
    })
    .await;
    let rows: i64 = pg.query_one("SELECT count(*) FROM telemetry", &[]).await.unwrap().get(0);
    assert_eq!(rows, expected);
    let pressure: f64 = pg
        .query_one("SELECT (extra->>'pressure')::float8 FROM telemetry WHERE equipement_id = 'PUMP-05' LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pressure, 4.1);

    // Every malformed message is in the dead-letter stream with its reason.
    let redis = proact_server_redis(&stack).await;
    wait_for("dead letters", Duration::from_secs(10), || async {
        let n: u64 = fred::prelude::StreamsInterface::xlen(&redis, DEAD_LETTER_STREAM).await.unwrap();
        n >= bad.len() as u64
    })
    .await;
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
        fred::prelude::StreamsInterface::xrange(&redis, DEAD_LETTER_STREAM, "-", "+", None).await.unwrap();
    assert_eq!(entries.len(), bad.len());
    let mut got: Vec<(String, i32)> = entries
        .iter()
        .map(|(_, f)| {
            let d = DeadLetter::decode(f[PAYLOAD_FIELD].as_ref()).unwrap();
            assert!(!d.detail.is_empty(), "a dead letter says why");
            assert!(!d.payload.is_empty(), "a dead letter keeps the payload");
            (d.topic, d.reason)
        })
        .collect();
    let mut want: Vec<(String, i32)> = bad.iter().map(|(t, _, r)| (t.clone(), *r as i32)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // Exactly one alert per hot equipment reaches the WebSocket client.
    let mut raised: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while raised.len() < HOT {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("alerts arrive in time").unwrap().unwrap();
        let WsMessage::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "alert" {
            assert_eq!(v["kind"], "raised");
            let id = v["alert"]["equipement_id"].as_str().unwrap().to_string();
            assert!(raised.insert(id, v).is_none(), "one alert per episode");
        }
    }
    // Nothing else arrives (heartbeats aside).
    if let Ok(Some(Ok(WsMessage::Text(text)))) = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_ne!(v["type"], "alert", "unexpected extra alert: {text}");
    }
    let want_ids: Vec<String> = (0..HOT).map(|e| format!("PUMP-{e:02}")).collect();
    assert_eq!(raised.keys().cloned().collect::<Vec<_>>(), want_ids);
    for v in raised.values() {
        assert_eq!(v["alert"]["severity"], "critical");
        assert_eq!(v["alert"]["value"], 95.5);
        assert!(!v["event_id"].as_str().unwrap().is_empty());
    }

    // The archive records the alerts too.
    wait_for("alerts archived", Duration::from_secs(10), || async {
        pg.query_one("SELECT count(*) FROM alerts", &[]).await.unwrap().get::<_, i64>(0) == HOT as i64
    })
    .await;

    pipeline.stop().await.expect("services drain cleanly");
}

async fn proact_server_redis(stack: &proact_testkit::Stack) -> fred::prelude::Client {
    use fred::prelude::*;
    let c = Builder::from_config(Config::from_url(&stack.redis.url()).unwrap()).build().unwrap();
    c.init().await.unwrap();
    c
}
