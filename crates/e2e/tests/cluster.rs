//! The whole pipeline on a real Redis Cluster (three masters, three replicas), with two
//! replicas of ingest, archive, detector and gateway: MQTT in → PostgreSQL rows and alerts on
//! every gateway's WebSocket, each exactly once, with the telemetry shards spread over the
//! three masters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fred::prelude::*;
use futures::StreamExt;
use proact_e2e::wait_until as wait_for;
use proact_proto::streams::{telemetry_stream, ALERTS_STREAM, DEFAULT_SHARDS, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, AlertEventKind};
use prost::Message;
use rumqttc::QoS;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const EQUIPMENT: usize = 24;
const READINGS_EACH: usize = 25;
/// Equipment 0..HOT each get one reading above 90 °C: one episode, one alert each.
const HOT: usize = 6;

/// An RFC 3339 UTC time `offset_s` seconds from now.
fn rfc3339(offset_s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_s)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_of_each_service_on_a_redis_cluster_store_and_alert_exactly_once() {
    let (cluster, mqtt, postgres) = tokio::try_join!(
        proact_testkit::RedisCluster::start(),
        proact_testkit::Mosquitto::start(),
        proact_testkit::Postgres::start(),
    )
    .expect("real servers start");

    // The shard streams spread over the three masters: Redis' own slot of each key, and who
    // serves it.
    let masters = cluster.masters().unwrap();
    let any = masters[0].port;
    let mut shard_masters = BTreeSet::new();
    for shard in 0..DEFAULT_SHARDS {
        let key = telemetry_stream(shard);
        let slot: u16 = cluster.cli(any, &["CLUSTER", "KEYSLOT", &key]).unwrap().trim().parse().unwrap();
        assert_eq!(slot, fred::util::redis_keyslot(key.as_bytes()), "{key}");
        shard_masters.insert(cluster.master_of(slot).unwrap());
    }
    assert_eq!(shard_masters.len(), 3, "shards on {shard_masters:?} of {masters:?}");

    let ep = proact_e2e::Endpoints { mqtt_url: mqtt.url(), redis_url: cluster.url(), database_url: postgres.url() };
    let pipeline = proact_e2e::Pipeline::start_replicas(&ep, 2, None).await.expect("services start");
    assert_eq!(pipeline.gateways_http.len(), 2);

    // One dashboard client on each gateway, connected before anything is published.
    let mut sockets = Vec::new();
    for addr in &pipeline.gateways_http {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/alerts")).await.expect("ws connects");
        sockets.push(ws);
    }

    let (client, mut acked) = proact_e2e::sensor_on(mqtt.port(), "e2e-cluster-sensor", 1000);
    let total = EQUIPMENT * READINGS_EACH;
    let acks = tokio::spawn(async move {
        let mut n = 0;
        while n < total && acked.recv().await.is_some() {
            n += 1;
        }
        n
    });
    for r in 0..READINGS_EACH {
        for e in 0..EQUIPMENT {
            let id = format!("CLU-{e:02}");
            let hot = e < HOT && r == READINGS_EACH / 2;
            let temp = if hot { 95.5 } else { 60.0 + (r % 5) as f64 };
            let ts = rfc3339(-(READINGS_EACH as i64) + r as i64);
            let payload =
                format!(r#"{{"equipement_id":"{id}","temperature":{temp},"vibration":3.2,"timestamp":"{ts}"}}"#);
            client.publish(format!("sensors/{id}/telemetry"), QoS::AtLeastOnce, false, payload).await.unwrap();
        }
    }
    assert_eq!(tokio::time::timeout(Duration::from_secs(60), acks).await.expect("every reading acked").unwrap(), total);

    // Every reading archived exactly once.
    let (pg, conn) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    wait_for("every reading archived", Duration::from_secs(60), || async {
        pg.query_one("SELECT count(*) FROM telemetry", &[]).await.unwrap().get::<_, i64>(0) >= total as i64
    })
    .await;
    let per_equipment =
        pg.query("SELECT equipement_id, count(*) FROM telemetry GROUP BY equipement_id ORDER BY 1", &[]).await.unwrap();
    assert_eq!(per_equipment.len(), EQUIPMENT);
    for row in &per_equipment {
        assert_eq!(row.get::<_, i64>(1), READINGS_EACH as i64, "readings of {}", row.get::<_, String>(0));
    }

    // Every episode alerted exactly once in the alerts stream…
    let redis = proact_server::redis::connect(&cluster.url()).await.unwrap();
    let raised = || async {
        let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
            redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap();
        entries
            .iter()
            .map(|(_, f)| AlertEvent::decode(f[PAYLOAD_FIELD].as_ref()).unwrap())
            .filter(|e| e.kind == AlertEventKind::Raised as i32)
            .map(|e| e.alert.unwrap().equipement_id)
            .collect::<Vec<_>>()
    };
    wait_for("every episode raised", Duration::from_secs(60), || async { raised().await.len() >= HOT }).await;
    let mut ids = raised().await;
    ids.sort();
    let want: Vec<String> = (0..HOT).map(|e| format!("CLU-{e:02}")).collect();
    assert_eq!(ids, want, "one raised event per episode");

    // …and on each gateway's WebSocket.
    for (g, ws) in sockets.iter_mut().enumerate() {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < HOT {
            let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("alerts arrive").unwrap().unwrap();
            let WsMessage::Text(text) = msg else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "alert" && v["kind"] == "raised" {
                let id = v["alert"]["equipement_id"].as_str().unwrap().to_string();
                *seen.entry(id).or_default() += 1;
            }
        }
        assert!(seen.values().all(|&n| n == 1), "gateway {g}: {seen:?}");
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), want, "gateway {g}");
    }
    wait_for("alerts archived", Duration::from_secs(30), || async {
        pg.query_one("SELECT count(*) FROM alerts", &[]).await.unwrap().get::<_, i64>(0) == HOT as i64
    })
    .await;

    pipeline.stop().await.expect("services drain cleanly");
}

/// One sensor publishing readings one at a time, each only after the previous one's PUBACK,
/// so it knows exactly which readings were acknowledged: (equipment, event time in µs).
fn sensor_loop(
    port: u16,
    equipment: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<(String, i64)>)> {
    tokio::spawn(async move {
        let (client, mut acked_rx) = proact_e2e::sensor_on(port, &format!("sensor-{equipment}"), 10);
        let start = chrono::Utc::now() - chrono::Duration::hours(1);
        let (mut published, mut acked) = (0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let ts = start + chrono::Duration::milliseconds(published as i64);
            let payload = format!(
                r#"{{"equipement_id":"{equipment}","temperature":60.0,"vibration":3.2,"timestamp":"{}"}}"#,
                ts.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            );
            client.publish(format!("sensors/{equipment}/telemetry"), QoS::AtLeastOnce, false, payload).await.unwrap();
            published += 1;
            // Its acknowledgement can wait for the failover: ingest holds it until then.
            if acked_rx.recv().await.is_none() {
                break;
            }
            // As sent: to the millisecond.
            acked.push((equipment.clone(), ts.timestamp_millis() * 1000));
        }
        (published, acked)
    })
}

/// A Redis Cluster, a broker and a database, and one replica of each service on them.
async fn one_of_each_on_a_cluster(
) -> (proact_testkit::RedisCluster, proact_testkit::Mosquitto, proact_testkit::Postgres, proact_e2e::Pipeline) {
    let (cluster, mqtt, postgres) = tokio::try_join!(
        proact_testkit::RedisCluster::start(),
        proact_testkit::Mosquitto::start(),
        proact_testkit::Postgres::start(),
    )
    .expect("real servers start");
    let ep = proact_e2e::Endpoints { mqtt_url: mqtt.url(), redis_url: cluster.url(), database_url: postgres.url() };
    let pipeline = proact_e2e::Pipeline::start_replicas(&ep, 1, None).await.expect("services start");
    (cluster, mqtt, postgres, pipeline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_loses_no_acknowledged_reading() {
    let (mut cluster, mqtt, postgres, pipeline) = one_of_each_on_a_cluster().await;
    let (pg, conn) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = || async { pg.query_one("SELECT count(*) FROM telemetry", &[]).await.unwrap().get::<_, i64>(0) };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sensors: Vec<_> = (0..8).map(|i| sensor_loop(mqtt.port(), format!("FO-{i:02}"), stop.clone())).collect();
    wait_for("load flowing", Duration::from_secs(30), || async { rows().await >= 500 }).await;

    // The master of shard 0's stream dies under load; its replica takes over.
    let slot = fred::util::redis_keyslot(telemetry_stream(0).as_bytes());
    let victim = cluster.master_of(slot).unwrap();
    let promoted = cluster.kill_master(victim).await.expect("failover");
    assert_ne!(promoted, victim);
    // The new master has no replica until the old one is back: ingest acknowledges nothing
    // for its shards meanwhile (they are redelivered), then resumes.
    wait_for("ingest refusing batches the new master cannot replicate", Duration::from_secs(30), || async {
        proact_server::telemetry::metrics_handle().render().contains("proact_ingest_replica_wait_failures_total")
    })
    .await;
    let before_restart = rows().await;
    cluster.restart(victim).await.expect("the old master rejoins as a replica");
    wait_for("load flowing again", Duration::from_secs(60), || async { rows().await >= before_restart + 500 }).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut acked = std::collections::BTreeSet::new();
    let mut published = 0;
    for s in sensors {
        let (p, a) = tokio::time::timeout(Duration::from_secs(60), s).await.expect("sensors finish").unwrap();
        published += p;
        acked.extend(a);
    }
    assert!(acked.len() >= 1000, "{} acknowledged", acked.len());

    // Rows ⊇ acknowledged, rows ⊆ published, each once.
    wait_for("every acknowledged reading archived", Duration::from_secs(60), || async {
        rows().await >= acked.len() as i64
    })
    .await;
    let stored: Vec<(String, i64)> = pg
        .query("SELECT equipement_id, (extract(epoch FROM ts) * 1000000)::int8 FROM telemetry", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let stored_set: std::collections::BTreeSet<(String, i64)> = stored.iter().cloned().collect();
    assert_eq!(stored_set.len(), stored.len(), "no duplicate rows");
    let missing: Vec<_> = acked.difference(&stored_set).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but not archived: {missing:?}");
    assert!(stored.len() <= published, "{} rows for {published} published", stored.len());
    eprintln!("{published} published, {} acknowledged, {} archived", acked.len(), stored.len());

    pipeline.stop().await.expect("services drain cleanly");
}

/// The alerts stream's master dies: its promoted replica has no replica of its own until the
/// old master is back, so an alert appended there would vanish with it. The detector goes on
/// scoring (a second equipment's alert is raised meanwhile), the dashboard gets both alerts at
/// once, the readings that raised them stay unacked until a replica holds the alerts, then
/// are acked, each episode raised once.
/// With `PROACT_DETECTOR_REDIS_WAIT_REPLICAS=0` in the environment it fails: the readings
/// are acked at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reading_whose_alert_no_replica_holds_is_not_acked_until_one_does() {
    use proact_proto::streams::shard_for;
    let (mut cluster, mqtt, _postgres, pipeline) = one_of_each_on_a_cluster().await;
    // A dashboard client; its handshake also says the gateway is past its own connections to
    // Redis, made as it starts running (one made during the failover would fail it).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/alerts", pipeline.gateway_http))
        .await
        .expect("ws connects");
    let redis = proact_server::redis::connect(&cluster.url()).await.unwrap();
    let failures = || {
        proact_server::telemetry::metrics_handle()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("proact_detector_replica_wait_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = failures();

    let victim = cluster.master_of(fred::util::redis_keyslot(ALERTS_STREAM.as_bytes())).unwrap();
    let promoted = cluster.kill_master(victim).await.expect("failover");
    // Equipment whose shards are on masters that still have their replica (ingest holds a
    // reading of the promoted master's shards, and the detector would never see it).
    let masters = cluster.masters().unwrap();
    let lonely = masters.iter().find(|m| m.port == promoted).expect("the promoted master").clone();
    let mut hot: Vec<(String, String)> = Vec::new();
    for id in (0..200).map(|i| format!("WAIT-{i:03}")) {
        let key = telemetry_stream(shard_for(&id, DEFAULT_SHARDS));
        if !lonely.serves(fred::util::redis_keyslot(key.as_bytes())) && hot.iter().all(|(_, k)| *k != key) {
            hot.push((id, key));
        }
        if hot.len() == 2 {
            break;
        }
    }
    assert_eq!(hot.len(), 2, "two shards on the other masters");

    let raised = |id: String| {
        let redis = redis.clone();
        async move {
            let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
                redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap();
            entries
                .iter()
                .map(|(_, f)| AlertEvent::decode(f[PAYLOAD_FIELD].as_ref()).unwrap())
                .filter(|e| e.kind == AlertEventKind::Raised as i32 && e.alert.as_ref().unwrap().equipement_id == id)
                .count()
        }
    };
    let pending = |key: String| {
        let redis = redis.clone();
        async move {
            let reply: Value = redis.xpending(key.as_str(), "anomaly-detector", ()).await.unwrap();
            match reply {
                Value::Array(v) => v.first().and_then(Value::as_i64).unwrap_or(0),
                _ => 0,
            }
        }
    };
    let (client, mut acked) = proact_e2e::sensor_on(mqtt.port(), "sensor-wait", 10);
    for (i, (id, key)) in hot.iter().enumerate() {
        let payload = format!(
            r#"{{"equipement_id":"{id}","temperature":95.0,"vibration":3.2,"timestamp":"{}"}}"#,
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        client.publish(format!("sensors/{id}/telemetry"), QoS::AtLeastOnce, false, payload).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), acked.recv()).await.expect("ingest acks the reading");
        // The alert reaches the dashboard's stream at once (scoring is not held up by the
        // first one), but no replica can hold it: the reading stays unacked.
        wait_for("the alert appended and its replication refused", Duration::from_secs(30), || async {
            raised(id.clone()).await == 1 && failures() > before
        })
        .await;
        assert!(pending(key.clone()).await >= 1, "reading {i}, whose alert no replica holds, was acked");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("the alert on the dashboard").unwrap();
            let WsMessage::Text(text) = msg.unwrap() else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "alert" && v["kind"] == "raised" && v["alert"]["equipement_id"] == id.as_str() {
                break;
            }
        }
    }

    cluster.restart(victim).await.expect("the old master rejoins as a replica");
    for (id, key) in &hot {
        wait_for("the reading acked once a replica holds its alert", Duration::from_secs(60), || async {
            pending(key.clone()).await == 0
        })
        .await;
        assert_eq!(raised(id.clone()).await, 1, "{id}: the episode raised once, however often it was published");
    }
    pipeline.stop().await.expect("services drain cleanly");
}
