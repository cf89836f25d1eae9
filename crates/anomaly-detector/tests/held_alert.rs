//! An alert held for a replica (raised while the alerts stream's master had none in sync)
//! when its detector stops: the next owner of the shard publishes it again and holds the
//! reading that raised it until a replica holds the alert, on a real Redis Cluster.
//!
//! The alerts master is left without a replica by killing its replica (SIGKILL), so every
//! detector `WAIT` is refused until the replica is started again. Detector `a` raises the
//! alert, is stopped (SIGTERM: its last `WAIT` is refused too), and `b` takes the shard over
//! and scores the reading `a` left unacked. The alert's event, episode record and dedupe key
//! are then either kept (the master holding them lived on) or deleted, all three: what a
//! failover to a replica that never received the publish script's writes leaves (they
//! replicate together), simulated by deletion because the test kit cannot promote a replica
//! that is behind its master. Either way the alert is on the alerts stream exactly once, and
//! the reading acked only once the revived replica holds it.

mod common;

use common::{append_reading, wait_until};

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream, ALERTS_STREAM, DEFAULT_SHARDS, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, Telemetry};
use prost::Message;

const GROUP: &str = "anomaly-detector";
const EQUIPMENT: &str = "HELD-00";

/// A detector process, killed when dropped: a failing test must not leave one running.
struct Detector(Child);

impl Detector {
    /// SIGTERM, and waits for the drain to end.
    fn stop(&mut self) {
        let ok = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status().unwrap().success();
        assert!(ok, "kill -TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the detector drains within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A detector that acks a reading only once one replica of the alerts master holds the
/// alert it raised; rules only, so that a few readings raise exactly one episode.
fn spawn_detector(redis_url: &str, name: &str) -> Detector {
    let child = Command::new(env!("CARGO_BIN_EXE_proact-anomaly-detector"))
        .args(["--redis-url", redis_url, "--database-url", "postgres://proact@127.0.0.1:9/none"])
        .args(["--registry-url", "http://127.0.0.1:9", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .args(["--consumer", name, "--lease-ttl-ms", "3000", "--silence-after-secs", "0"])
        .env("RUST_LOG", "warn")
        .env("PROACT_DETECTOR_ONLINE", "off")
        .env("PROACT_DETECTOR_REDIS_WAIT_REPLICAS", "1")
        .env("PROACT_DETECTOR_REDIS_WAIT_TIMEOUT_MS", "300")
        .stdout(Stdio::null())
        .spawn()
        .expect("detector binary starts");
    Detector(child)
}

/// The alerts stream's events about [`EQUIPMENT`], with their stream ids.
async fn events(redis: &Client) -> Vec<(String, AlertEvent)> {
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|(id, f)| Some((id, AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok()?)))
        .filter(|(_, ev)| ev.alert.as_ref().is_some_and(|a| a.equipement_id == EQUIPMENT))
        .collect()
}

async fn pending(redis: &Client, key: &str) -> u64 {
    let v: Value = redis.xpending(key, GROUP, ()).await.unwrap();
    match v {
        Value::Array(a) => a.first().and_then(Value::as_u64).unwrap_or(0),
        _ => 0,
    }
}

/// The detector's key of `kind` for `shard` on a cluster (in the alerts stream's slot).
fn detector_key(kind: &str, shard: u32) -> String {
    format!("{{{ALERTS_STREAM}}}:detector:{kind}:{shard}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_alert_a_failover_lost_after_its_detector_stopped_is_published_again_once() {
    held_alert_outlives_its_detector(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_alert_that_survived_its_detector_stopping_is_on_the_stream_once() {
    held_alert_outlives_its_detector(false).await;
}

async fn held_alert_outlives_its_detector(lost: bool) {
    let mut cluster = proact_testkit::RedisCluster::start().await.unwrap();
    let redis = proact_server::redis::connect(&cluster.url()).await.unwrap();
    let alerts_master = cluster.master_of(fred::util::redis_keyslot(ALERTS_STREAM.as_bytes())).unwrap();
    let masters = cluster.masters().unwrap();
    let replica = masters.iter().find(|m| m.port == alerts_master).unwrap().replicas[0];
    cluster.kill(replica).unwrap();

    // Half a minute of normal readings, then a hot one, in the past (scored, not refused as
    // from the future).
    let shard = shard_for(EQUIPMENT, DEFAULT_SHARDS);
    let key = telemetry_stream(shard);
    let base = proact_proto::time::now_micros() / 1_000_000 * 1_000_000 - 3_600_000_000;
    for s in 0..=30 {
        let t = Telemetry {
            equipement_id: EQUIPMENT.into(),
            ts_micros: base + s * 1_000_000,
            temperature: if s == 30 { 96.0 } else { 55.0 },
            vibration: 2.0,
            ..Default::default()
        };
        append_reading(&redis, &key, &t).await;
    }

    let mut a = spawn_detector(&cluster.url(), "a");
    wait_until("a raises the alert and holds its reading", || async {
        events(&redis).await.len() == 1 && pending(&redis, &key).await == 1
    })
    .await;
    a.stop();
    assert_eq!(pending(&redis, &key).await, 1, "a stopped without a replica holding the alert: its reading is pending");

    let mut b = spawn_detector(&cluster.url(), "b");
    wait_until("b owns the shard", || async {
        let owner: Option<String> = redis.get(detector_key("lease", shard)).await.unwrap();
        owner.as_deref() == Some("b")
    })
    .await;
    // A few heartbeats of b's (a third of the lease TTL each), each refused a `WAIT`.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(pending(&redis, &key).await, 1, "b acked the reading while no replica holds its alert");

    let (stream_id, event) = events(&redis).await.pop().unwrap();
    if lost {
        let alert = event.alert.as_ref().unwrap();
        let dedupe = format!("{{{ALERTS_STREAM}}}:alert-dedupe:{}:{}:{}", alert.alert_id, event.kind, alert.severity);
        let deleted: (u64, u64, u64) = (
            redis.xdel(ALERTS_STREAM, stream_id.as_str()).await.unwrap(),
            redis.hdel(detector_key("episodes", shard), EQUIPMENT).await.unwrap(),
            redis.del(dedupe.as_str()).await.unwrap(),
        );
        assert_eq!(deleted, (1, 1, 1), "the event, its episode record and its dedupe key were there");
        wait_until("b appends the lost alert again", || async { events(&redis).await.len() == 1 }).await;
        assert_eq!(pending(&redis, &key).await, 1, "still no replica: the reading stays pending");
        let record: Option<Bytes> = redis.hget(detector_key("episodes", shard), EQUIPMENT).await.unwrap();
        assert!(record.is_some(), "the episode record is written again with the event");
    }

    cluster.revive(replica).await.unwrap();
    wait_until("b acks the reading once the replica holds the alert", || async { pending(&redis, &key).await == 0 })
        .await;
    let all = events(&redis).await;
    assert_eq!(all.len(), 1, "the alert on the stream exactly once: {all:?}");
    assert_eq!(all[0].1.alert, event.alert, "the same alert, under its id");
    assert_eq!(all[0].1.kind, event.kind);
    b.stop();
}
