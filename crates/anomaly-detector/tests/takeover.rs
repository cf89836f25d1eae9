//! A detector replica killed with SIGKILL: another takes its shards over, finishes what it
//! left unacknowledged, rebuilds state from the stream tail, and no alert is raised twice.
//! A replica restarted after a long episode does not raise it again from its warm-up, and a
//! no-data alarm open at a takeover is cleared once, by the new owner. And a live replica
//! whose read reply was lost still scores what Redis delivered to it.

mod common;

use common::{append_reading, wait_until};

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream, ALERTS_STREAM, BATCH_FIELD, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, AlertEventKind, Telemetry, TelemetryBatch};
use prost::Message;

const SHARDS: u32 = 8;
const GROUP: &str = "anomaly-detector";

/// A detector process, killed when dropped: a failing test must not leave one running
/// (or stopped, after a SIGSTOP) behind it.
struct Detector(Child);

impl Detector {
    /// SIGKILL, as a crash: the replica's leases and pending entries stay in Redis.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.0.id().to_string()).status().unwrap().success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_detector(redis_url: &str, name: &str, lease_ttl_ms: &str) -> Detector {
    spawn_detector_silence(redis_url, name, lease_ttl_ms, "0")
}

/// A detector raising a no-data alarm after `silence_secs` without a reading ("0": never).
fn spawn_detector_silence(redis_url: &str, name: &str, lease_ttl_ms: &str, silence_secs: &str) -> Detector {
    spawn_detector_with(redis_url, name, lease_ttl_ms, silence_secs, "on")
}

/// As [`spawn_detector_silence`], with the online detectors `on` or `off`.
fn spawn_detector_with(redis_url: &str, name: &str, lease_ttl_ms: &str, silence_secs: &str, online: &str) -> Detector {
    let child = Command::new(env!("CARGO_BIN_EXE_proact-anomaly-detector"))
        .args(["--redis-url", redis_url, "--database-url", "postgres://proact@127.0.0.1:9/none"])
        .args(["--registry-url", "http://127.0.0.1:9", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .args(["--consumer", name, "--lease-ttl-ms", lease_ttl_ms, "--silence-after-secs", silence_secs])
        .env("RUST_LOG", "warn")
        .env("PROACT_DETECTOR_ONLINE", online)
        .stdout(Stdio::null())
        .spawn()
        .expect("detector binary starts");
    Detector(child)
}

/// Readings of `equipment` machines, one a second each for seconds `from..to`, the `hot`
/// ones at 96 °C at second `hot_at`, in time order.
fn readings(equipment: usize, from: i64, to: i64, hot_at: i64, hot: &[usize]) -> Vec<Telemetry> {
    // Every second used here is in the past: the detector does not score readings from the
    // future. One origin for the whole run, so that two publications of the same seconds are
    // the same readings.
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| proact_proto::time::now_micros() / 1_000_000 * 1_000_000 - 4 * 3_600_000_000);
    let mut out = Vec::new();
    for s in from..to {
        for e in 0..equipment {
            let temp = if s == hot_at && hot.contains(&e) { 96.0 } else { 55.0 };
            out.push(Telemetry {
                equipement_id: format!("EQ-{e:02}"),
                ts_micros: base + s * 1_000_000,
                temperature: temp,
                vibration: 2.0,
                ..Default::default()
            });
        }
    }
    out
}

/// One entry per reading (field `p`).
async fn publish(redis: &Client, equipment: usize, from: i64, to: i64, hot_at: i64, hot: &[usize]) {
    for t in readings(equipment, from, to, hot_at, hot) {
        let key = telemetry_stream(shard_for(&t.equipement_id, SHARDS));
        append_reading(redis, &key, &t).await;
    }
}

/// As ingest's batch entries (field `b`): each shard's readings of every 7 s in one entry.
async fn publish_batches(redis: &Client, equipment: usize, from: i64, to: i64, hot_at: i64, hot: &[usize]) {
    let all = readings(equipment, from, to, hot_at, hot);
    for chunk in all.chunks(7 * equipment) {
        let mut per_shard: Vec<Vec<Telemetry>> = vec![Vec::new(); SHARDS as usize];
        for t in chunk {
            per_shard[shard_for(&t.equipement_id, SHARDS) as usize].push(t.clone());
        }
        for (shard, items) in per_shard.into_iter().enumerate().filter(|(_, items)| !items.is_empty()) {
            let batch = Bytes::from(TelemetryBatch { items }.encode_to_vec());
            let _: String =
                redis.xadd(telemetry_stream(shard as u32), false, None::<()>, "*", (BATCH_FIELD, batch)).await.unwrap();
        }
    }
}

async fn raised(redis: &Client) -> Vec<String> {
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap_or_default();
    entries
        .iter()
        .filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
        .filter(|ev| ev.kind == AlertEventKind::Raised as i32)
        .map(|ev| ev.alert.unwrap().equipement_id)
        .collect()
}

async fn owns_every_shard(redis: &Client, replica: &str) -> bool {
    let mut n = 0;
    for s in 0..SHARDS {
        let owner: Option<String> = redis.get(format!("proact:detector:lease:{{{s}}}")).await.unwrap();
        n += usize::from(owner.as_deref() == Some(replica));
    }
    n == SHARDS as usize
}

async fn pending_total(redis: &Client, keys: &[String]) -> u64 {
    let mut total = 0u64;
    for k in keys {
        let v: Value = redis.xpending(k.as_str(), GROUP, ()).await.unwrap();
        if let Value::Array(a) = v {
            total += a.first().and_then(|x| x.as_u64()).unwrap_or(0);
        }
    }
    total
}

/// Whether the group has been handed every entry of `keys` (its last-delivered id is the
/// stream's last id): with no pending entries either, everything was read and acked.
async fn delivered_all(redis: &Client, keys: &[String]) -> bool {
    for k in keys {
        let exists: u64 = redis.exists(k.as_str()).await.unwrap();
        if exists == 0 {
            continue;
        }
        let last: Vec<(String, HashMap<String, Bytes>)> = redis.xrevrange(k.as_str(), "+", "-", Some(1)).await.unwrap();
        let Some((last_id, _)) = last.first() else { continue };
        let groups = proact_server::redis::groups(redis, k).await.unwrap();
        let delivered = groups.iter().find(|g| g.name == GROUP).map(|g| g.last_delivered.clone());
        if delivered.as_deref() != Some(last_id.as_str()) {
            return false;
        }
    }
    true
}

/// Waits until the group has read every entry of `keys` and acked it. (Pending counts only
/// what was handed out, so "nothing pending" alone passes before the reading starts.)
async fn wait_all_read_and_acked(who: &str, redis: &Client, keys: &[String]) {
    wait_until(&format!("{who} reads and acks everything"), || async {
        delivered_all(redis, keys).await && pending_total(redis, keys).await == 0
    })
    .await;
}

/// Appends `n` readings of EQ-00, one a second from `base`, with `temperature(s)` at second
/// `s`, to its shard stream in one pipeline; returns that stream's key.
async fn fill_eq00(redis: &Client, base: i64, n: i64, temperature: impl Fn(i64) -> f64) -> String {
    fill(redis, "EQ-00", base, n, temperature).await
}

/// As [`fill_eq00`], for any equipment.
async fn fill(redis: &Client, id: &str, base: i64, n: i64, temperature: impl Fn(i64) -> f64) -> String {
    let key = telemetry_stream(shard_for(id, SHARDS));
    let pipe = redis.pipeline();
    for s in 0..n {
        let _: () =
            pipe.xadd(key.as_str(), false, None::<()>, "*", reading_of(id, base, s, temperature(s))).await.unwrap();
    }
    let _: Vec<Value> = pipe.all().await.unwrap();
    key
}

/// EQ-00's reading at second `s` after `base`, as a stream entry's field.
fn eq00_reading(base: i64, s: i64, temperature: f64) -> (&'static str, Bytes) {
    reading_of("EQ-00", base, s, temperature)
}

fn reading_of(id: &str, base: i64, s: i64, temperature: f64) -> (&'static str, Bytes) {
    let t = Telemetry {
        equipement_id: id.into(),
        ts_micros: base + s * 1_000_000,
        temperature,
        vibration: 2.0,
        ..Default::default()
    };
    (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))
}

/// Reads every new entry of `keys` in `consumer`'s name (they are then pending on it).
async fn read_as(redis: &Client, consumer: &str, keys: &[String]) -> usize {
    let mut n = 0;
    loop {
        let got = proact_server::redis::read_group(redis, GROUP, consumer, keys, 1000, 10).await.unwrap();
        if got.is_empty() {
            return n;
        }
        n += got.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_taken_over_without_duplicate_alerts() {
    killed_replica_taken_over(false).await;
}

/// The same with batch entries (ADR 0004): the dead replica's pending entries each carry
/// several readings; the new owner claims, scores and acks them whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_with_batch_entries_is_taken_over_without_duplicate_alerts() {
    killed_replica_taken_over(true).await;
}

async fn killed_replica_taken_over(batches: bool) {
    let send = |redis: &Client, from: i64, to: i64, hot_at: i64, hot: &'static [usize]| {
        let redis = redis.clone();
        async move {
            match batches {
                true => publish_batches(&redis, 10, from, to, hot_at, hot).await,
                false => publish(&redis, 10, from, to, hot_at, hot).await,
            }
        }
    };
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let mut a = spawn_detector(&server.url(), "a", "1500");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;

    // Phase 1, scored by a: EQ-00..04 run hot once.
    send(&redis, 0, 40, 20, &[0, 1, 2, 3, 4]).await;
    wait_until("a raises 5 alerts", || async { raised(&redis).await.len() == 5 }).await;
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    // Else what a is still scoring (or has not read yet) of phase 1 is counted in its pending
    // list below: "nothing pending" alone passes while entries are still undelivered.
    wait_all_read_and_acked("a", &redis, &keys).await;
    a.kill();

    // Phase 2 arrives while a is dead; pretend a had read it and died before acking, so it
    // sits in a's pending list: EQ-05..09 run hot.
    send(&redis, 40, 80, 60, &[5, 6, 7, 8, 9]).await;
    let pending = read_as(&redis, "a", &keys).await;
    assert!(if batches { pending < 400 } else { pending == 400 }, "phase 2 is pending on the dead replica: {pending}");

    let mut b = spawn_detector(&server.url(), "b", "1500");
    wait_until("b raises the 5 alerts a left unacknowledged", || async { raised(&redis).await.len() >= 10 }).await;
    // Phase 3, live on b: EQ-00 runs hot again much later: a new episode.
    send(&redis, 80, 240, 230, &[0]).await;
    wait_until("b raises the new episode", || async { raised(&redis).await.len() >= 11 }).await;
    // Events are published before their reading is acked: once b has read and acked
    // everything, nothing it scored can still publish.
    wait_all_read_and_acked("b", &redis, &keys).await;
    let ids = raised(&redis).await;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 11, "one raise per episode, none repeated by the takeover: {ids:?}");
    assert_eq!(distinct.len(), 10);
    b.kill();
}

/// The same readings as single entries to one Redis and as batch entries to another: the
/// detector raises and clears the same episodes, at the same event times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_raise_the_same_episodes_as_single_ones() {
    let mut seen = Vec::new();
    for batches in [false, true] {
        let server = proact_testkit::Redis::start().await.unwrap();
        let redis = proact_server::redis::connect(&server.url()).await.unwrap();
        let a = spawn_detector_with(&server.url(), "a", "5000", "0", "off");
        wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
        // EQ-00..02 hot at 20 s, EQ-03 at 100 s; every episode clears after the hold time.
        let (first, second): (&[usize], &[usize]) = (&[0, 1, 2], &[3]);
        if batches {
            publish_batches(&redis, 6, 0, 90, 20, first).await;
            publish_batches(&redis, 6, 90, 260, 100, second).await;
        } else {
            publish(&redis, 6, 0, 90, 20, first).await;
            publish(&redis, 6, 90, 260, 100, second).await;
        }
        let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
        wait_all_read_and_acked("a", &redis, &keys).await;
        let entries: Vec<(String, HashMap<String, Bytes>)> = redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap();
        let mut events: Vec<(String, i32, String, i64, i64)> = entries
            .iter()
            .filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
            .map(|ev| {
                let alert = ev.alert.unwrap();
                (alert.equipement_id, ev.kind, alert.rule, alert.start_micros, alert.end_micros)
            })
            .collect();
        events.sort();
        seen.push(events);
        drop(a);
    }
    assert!(seen[0].iter().filter(|e| e.1 == AlertEventKind::Raised as i32).count() == 4, "{:?}", seen[0]);
    assert_eq!(seen[0], seen[1], "single entries, then batch entries");
}

/// Found by `just chaos` (Redis restarted while the detector's read was answered): Redis
/// counts entries as delivered when it sends the reply, so a lost reply leaves them pending
/// on a replica that keeps its shards and never reads them. Simulated without a restart:
/// the replica is paused (SIGSTOP) past its read's block time, entries are added and read
/// in its name, then it resumes, holding its leases. It must still score and ack them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_whose_read_reply_was_lost_are_still_scored() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    // A long lease: the pause must not look like a death (a takeover would claim them anyway).
    let mut a = spawn_detector(&server.url(), "a", "20000");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;

    a.signal("STOP");
    // Its blocking read (200 ms) ends unanswered: nothing is sent to it in flight.
    tokio::time::sleep(Duration::from_millis(600)).await;
    publish(&redis, 10, 0, 30, 20, &[0, 1]).await;
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    assert_eq!(read_as(&redis, "a", &keys).await, 300, "delivered to a, which never received the reply");
    a.signal("CONT");

    wait_until("a scores what it never received", || async { raised(&redis).await.len() == 2 }).await;
    wait_until("and acks it", || async { pending_total(&redis, &keys).await == 0 }).await;
    a.kill();
}

/// Found by `just chaos` at 1,500 readings/s: a replica taking a shard over rebuilds state
/// from the last 5,000 entries; when they start inside an episode, replaying them raised
/// that episode again, under the id of the first hot reading they contain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_inside_an_old_episode_does_not_raise_it_again() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    let mut a = spawn_detector(&server.url(), "a", "1500");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    // EQ-00 alone on its shard: hot for its first 100 s, then normal for long enough that
    // the warm-up's 5,000 entries start in the middle of the hot part.
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    fill_eq00(&redis, base, 5_050, |s| if s < 100 { 96.0 } else { 55.0 }).await;
    wait_until("a raises the episode once", || async { raised(&redis).await.len() == 1 }).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    a.kill();

    let mut b = spawn_detector(&server.url(), "b", "1500");
    // Scored after b's warm-up of EQ-00's shard (its loop does one thing at a time).
    wait_until("b owns every shard", || owns_every_shard(&redis, "b")).await;
    publish(&redis, 2, 10_000, 10_040, 10_020, &[1]).await;
    wait_until("b raises EQ-01", || async { raised(&redis).await.contains(&"EQ-01".to_string()) }).await;
    wait_all_read_and_acked("b", &redis, &keys).await;
    assert_eq!(raised(&redis).await, ["EQ-00", "EQ-01"], "EQ-00's episode raised once, before the takeover");
    b.kill();
}

/// Every alert event of the alerts stream: (kind, alert id).
async fn events(redis: &Client) -> Vec<(i32, String)> {
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap_or_default();
    entries
        .iter()
        .filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
        .map(|ev| (ev.kind, ev.alert.unwrap().alert_id))
        .collect()
}

/// Issue 7: the warm-up re-reads only the last 5,000 entries, so an episode raised before
/// them was unknown to the new owner, and an unacked abnormal reading inside it raised it a
/// second time under a new id. The shard's episode record carries it over the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_raised_before_the_warm_up_tail_survives_a_takeover() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    // The rules' episode alone: after 5,000 readings at 79 °C, 55 °C is an anomaly to the
    // online detectors for longer than this test waits.
    let mut a = spawn_detector_with(&server.url(), "a", "1500", "0", "off");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    // EQ-00 hot once, then at 79 °C: normal, but within the hysteresis of the 80 °C warning,
    // so the episode stays open through the 5,000 entries a warm-up re-reads.
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    let key = fill_eq00(&redis, base, 5_050, |s| if s == 0 { 96.0 } else { 79.0 }).await;
    let reading = |s: i64, temperature: f64| eq00_reading(base, s, temperature);
    wait_until("a raises the episode", || async { raised(&redis).await.len() == 1 }).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    a.kill();

    // Hot again, read by a, which died before acking it.
    let _: String = redis.xadd(key.as_str(), false, None::<()>, "*", reading(5_050, 96.0)).await.unwrap();
    // Either a's last blocking read, still registered in Redis for a moment after the kill,
    // took it, or it is read here in a's name: pending on a either way.
    read_as(&redis, "a", &keys).await;
    assert_eq!(pending_total(&redis, &keys).await, 1, "the hot reading is pending on the dead replica");
    let mut b = spawn_detector_with(&server.url(), "b", "1500", "0", "off");
    wait_until("b owns every shard", || owns_every_shard(&redis, "b")).await;
    wait_until("b finishes what a left", || async { pending_total(&redis, &keys).await == 0 }).await;
    // Normal for 70 s: the episode clears, under the id a raised it with.
    for s in 5_051..5_121 {
        let _: String = redis.xadd(key.as_str(), false, None::<()>, "*", reading(s, 55.0)).await.unwrap();
    }
    let cleared = AlertEventKind::Cleared as i32;
    wait_until("b clears the episode", || async { events(&redis).await.iter().any(|(k, _)| *k == cleared) }).await;
    wait_all_read_and_acked("b", &redis, &keys).await;
    let all = events(&redis).await;
    let raised_id = format!("EQ-00-{base}");
    assert_eq!(
        all,
        [(AlertEventKind::Raised as i32, raised_id.clone()), (cleared, raised_id)],
        "one episode, raised by a and cleared by b"
    );
    b.kill();
}

/// The events of the alerts stream about `alert_id`, by kind.
async fn events_of(redis: &Client, alert_id: &str) -> Vec<AlertEventKind> {
    let all = events(redis).await;
    all.iter().filter(|(_, id)| id == alert_id).map(|(k, _)| AlertEventKind::try_from(*k).unwrap()).collect()
}

/// Issue 7: a no-data alarm was not recorded, so when its replica died the new owner knew
/// nothing of it: its warm-up (the readings before the silence) made the equipment look
/// fine, and the data coming back cleared nothing; the alarm stayed open on the dashboard.
/// The data comes back right after the takeover, before the new owner's own silence clock
/// (started by its warm-up) could raise a duplicate of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_data_alarm_open_at_a_takeover_is_cleared_once_by_the_new_owner() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    let mut a = spawn_detector_silence(&server.url(), "a", "1500", "3");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    let key = fill_eq00(&redis, base, 20, |_| 55.0).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    let alarm = format!("EQ-00-nodata-{}", base + 19_000_000);
    wait_until("a raises the no-data alarm", || async { events_of(&redis, &alarm).await == [AlertEventKind::Raised] })
        .await;
    a.kill();

    let mut b = spawn_detector_silence(&server.url(), "b", "1500", "3");
    wait_until("b owns every shard", || owns_every_shard(&redis, "b")).await;
    for s in 20..25 {
        let _: String = redis.xadd(key.as_str(), false, None::<()>, "*", eq00_reading(base, s, 55.0)).await.unwrap();
    }
    wait_until("b clears the alarm a raised", || async { events_of(&redis, &alarm).await.len() == 2 }).await;
    wait_all_read_and_acked("b", &redis, &keys).await;
    assert_eq!(events_of(&redis, &alarm).await, [AlertEventKind::Raised, AlertEventKind::Cleared]);
    // The only other event b may publish: the alarm of the silence after reading 24.
    let later = format!("EQ-00-nodata-{}", base + 24_000_000);
    let others: Vec<(i32, String)> =
        events(&redis).await.into_iter().filter(|(_, id)| *id != alarm && *id != later).collect();
    assert!(others.is_empty(), "{others:?}");
    b.kill();
}

/// The same, when the silent equipment is not in the new owner's warm-up (5,000 readings of
/// another equipment of its shard came after it) and stays silent for longer than the
/// silence time: no second alarm for that silence, and one clear when its data comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_data_alarm_open_at_a_takeover_is_not_raised_again_while_the_silence_lasts() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    let mut a = spawn_detector_silence(&server.url(), "a", "1500", "2");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    let key = fill_eq00(&redis, base, 20, |_| 55.0).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    let alarm = format!("EQ-00-nodata-{}", base + 19_000_000);
    wait_until("a raises EQ-00's alarm", || async { events_of(&redis, &alarm).await == [AlertEventKind::Raised] })
        .await;
    let sibling =
        (1..100).map(|i| format!("EQ-{i:02}")).find(|id| shard_for(id, SHARDS) == shard_for("EQ-00", SHARDS)).unwrap();
    fill(&redis, &sibling, base, 5_000, |_| 55.0).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    let sibling_alarm = format!("{sibling}-nodata-{}", base + 4_999_000_000);
    wait_until("a raises the sibling's alarm", || async { events_of(&redis, &sibling_alarm).await.len() == 1 }).await;
    a.kill();

    let mut b = spawn_detector_silence(&server.url(), "b", "1500", "2");
    wait_until("b owns every shard", || owns_every_shard(&redis, "b")).await;
    // Both stay silent for more than twice the silence time under b.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(events(&redis).await.len(), 2, "no second alarm: {:?}", events(&redis).await);
    let _: String = redis.xadd(key.as_str(), false, None::<()>, "*", eq00_reading(base, 20, 55.0)).await.unwrap();
    wait_until("b clears EQ-00's alarm", || async { events_of(&redis, &alarm).await.len() == 2 }).await;
    wait_all_read_and_acked("b", &redis, &keys).await;
    assert_eq!(events_of(&redis, &alarm).await, [AlertEventKind::Raised, AlertEventKind::Cleared]);
    assert_eq!(events_of(&redis, &sibling_alarm).await, [AlertEventKind::Raised], "still silent, still open");
    b.kill();
}

/// Entries another consumer read and left unacked while this replica kept the shard (one
/// fenced off after reading) are claimed by the owner's heartbeat once idle for two lease
/// TTLs, then scored and acked. The replica is paused (well under its TTL) so that the entry
/// goes to the other consumer and not to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_left_unacked_by_another_consumer_are_claimed_by_the_owners_heartbeat() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    let mut a = spawn_detector(&server.url(), "a", "1500");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    // Let a's read of the (still empty) streams start, so it is not the one that gets the entry.
    a.signal("STOP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proact_proto::time::now_micros() - 3_600_000_000;
    fill_eq00(&redis, base, 1, |_| 96.0).await;
    assert_eq!(read_as(&redis, "fenced-off", &keys).await, 1);
    a.signal("CONT");
    wait_until("a claims, scores and acks it", || async {
        pending_total(&redis, &keys).await == 0 && raised(&redis).await.len() == 1
    })
    .await;
    assert!(owns_every_shard(&redis, "a").await, "a kept its shards: the claim was the heartbeat's");
    a.kill();
}

/// The no-data events of the alerts stream about `equipment`, whatever their id (a second
/// alarm for the same silence under another id would show here).
async fn no_data_events_of(redis: &Client, equipment: &str) -> Vec<(AlertEventKind, proact_proto::v1::Alert)> {
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap_or_default();
    entries
        .iter()
        .filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
        .filter_map(|ev| Some((AlertEventKind::try_from(ev.kind).ok()?, ev.alert?)))
        .filter(|(_, a)| a.equipement_id == equipment && a.rule == "no_data")
        .collect()
}

/// Issue 7: an equipment that went silent shortly before its replica died, its alarm not
/// raised yet. The new owner knew it only from its warm-up, and here 5,000 readings of another
/// equipment of the shard came after it, so it knew nothing and never raised the alarm. The
/// owner's record of what it has seen (`proact:detector:seen:{shard}`) carries it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equipment_silent_at_a_takeover_and_out_of_the_warm_up_is_alarmed_once_by_the_new_owner() {
    const SILENCE_SECS: i64 = 6;
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    let silence = SILENCE_SECS.to_string();
    let mut a = spawn_detector_silence(&server.url(), "a", "1500", &silence);
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    let before_last_reading = proact_proto::time::now_micros();
    let key = fill_eq00(&redis, base, 20, |_| 55.0).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    let sibling =
        (1..100).map(|i| format!("EQ-{i:02}")).find(|id| shard_for(id, SHARDS) == shard_for("EQ-00", SHARDS)).unwrap();
    fill(&redis, &sibling, base + 20_000_000, 5_000, |_| 55.0).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    // A heartbeat of a has recorded EQ-00's newest reading, then a dies, before EQ-00's
    // silence time (a raised nothing: checked below, which is what this test needs of the clock).
    let seen_key = proact_anomaly_detector::seen::seen_key(shard_for("EQ-00", SHARDS));
    wait_until("a's heartbeat records EQ-00", || async {
        let raw: Option<Bytes> = redis.hget(seen_key.as_str(), "EQ-00").await.unwrap_or(None);
        raw.and_then(|r| proact_anomaly_detector::seen::decode(&r)).is_some_and(|s| s.last_ts == base + 19_000_000)
    })
    .await;
    a.kill();
    assert!(
        no_data_events_of(&redis, "EQ-00").await.is_empty(),
        "a raised nothing for EQ-00 (a setup slower than the {SILENCE_SECS} s silence time makes this test meaningless)"
    );

    let mut b = spawn_detector_silence(&server.url(), "b", "1500", &silence);
    wait_until("b owns every shard", || owns_every_shard(&redis, "b")).await;
    let alarm = format!("EQ-00-nodata-{}", base + 19_000_000);
    wait_until("b raises EQ-00's alarm", || async { !no_data_events_of(&redis, "EQ-00").await.is_empty() }).await;
    // Silent for one more silence time: still one alarm.
    tokio::time::sleep(Duration::from_secs(SILENCE_SECS as u64 + 1)).await;
    let raised = no_data_events_of(&redis, "EQ-00").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!((raised[0].0, raised[0].1.alert_id.as_str()), (AlertEventKind::Raised, alarm.as_str()));
    assert!(
        raised[0].1.start_micros >= before_last_reading + SILENCE_SECS * 1_000_000,
        "raised after the silence time, not before"
    );
    let _: String = redis.xadd(key.as_str(), false, None::<()>, "*", eq00_reading(base, 20, 55.0)).await.unwrap();
    wait_until("b clears EQ-00's alarm", || async { no_data_events_of(&redis, "EQ-00").await.len() == 2 }).await;
    wait_all_read_and_acked("b", &redis, &keys).await;
    let all: Vec<(AlertEventKind, String)> =
        no_data_events_of(&redis, "EQ-00").await.into_iter().map(|(k, a)| (k, a.alert_id)).collect();
    assert_eq!(all, [(AlertEventKind::Raised, alarm.clone()), (AlertEventKind::Cleared, alarm)]);
    b.kill();
}

/// EQ-00's online state as last checkpointed.
async fn checkpointed_eq00(redis: &Client) -> proact_online::EquipmentDetector {
    let shard = shard_for("EQ-00", SHARDS);
    let raw: Option<Bytes> = redis
        .hget(
            proact_anomaly_detector::checkpoint::online_key(proact_anomaly_detector::leases::KeyLayout::Single, shard),
            "EQ-00",
        )
        .await
        .unwrap();
    proact_anomaly_detector::checkpoint::decode(&raw.expect("EQ-00's state is checkpointed")).expect("readable")
}

/// The online detectors keep learning across a hand-over: a replica stopped with SIGTERM
/// checkpoints them before its leases go, and the next owner loads them before its warm-up,
/// whose tail (5,000 entries) does not reach the first readings. What the live loop has
/// learned is, each time, exactly what one detector fed every reading in process learned;
/// a new owner starting cold (from the tail alone) would differ.
#[tokio::test]
async fn the_online_detectors_learning_continues_across_a_handover() {
    use proact_anomaly_detector::engine::{Engine, EngineConfig};
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let keys: Vec<String> = (0..SHARDS).map(telemetry_stream).collect();
    let base = proact_proto::time::now_micros() - 7_200_000_000;
    let temperature = |s: i64| 55.0 + (s % 13) as f64 * 0.2 + (s as f64 / 300.0).sin();
    let mut in_process = Engine::new(EngineConfig { max_future_micros: i64::MAX, ..Default::default() });
    let mut feed = |from: i64, to: i64| {
        for s in from..to {
            let t = Telemetry {
                equipement_id: "EQ-00".into(),
                ts_micros: base + s * 1_000_000,
                temperature: temperature(s),
                vibration: 2.0,
                ..Default::default()
            };
            in_process.observe(&t, "", t.ts_micros);
        }
        in_process.take_online_changes().pop().expect("EQ-00 learned").1
    };

    let a = spawn_detector(&server.url(), "a", "1500");
    wait_until("replica a owns every shard", || owns_every_shard(&redis, "a")).await;
    fill_eq00(&redis, base, 6_000, temperature).await;
    wait_all_read_and_acked("a", &redis, &keys).await;
    a.signal("TERM");
    wait_until("a released its shards", || async { !owns_every_shard(&redis, "a").await }).await;
    let learned_by_a = feed(0, 6_000);
    assert_eq!(checkpointed_eq00(&redis).await, learned_by_a, "a checkpointed what it learned at hand-over");

    let b = spawn_detector(&server.url(), "b", "1500");
    wait_until("b owns every shard", || owns_every_shard(&redis, "b")).await;
    fill_eq00(&redis, base + 6_000_000_000, 300, |s| temperature(s + 6_000)).await;
    wait_all_read_and_acked("b", &redis, &keys).await;
    b.signal("TERM");
    wait_until("b released its shards", || async { !owns_every_shard(&redis, "b").await }).await;
    assert_eq!(checkpointed_eq00(&redis).await, feed(6_000, 6_300), "b went on from a's checkpoint");
}
