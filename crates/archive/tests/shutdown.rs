//! The archive's process stopping with SIGTERM after Redis went away first (a stack stopped as a
//! whole, a Redis node lost during a rollout): its drain must end by itself within the grace
//! period, not at the forced stop `DRAIN_MARGIN` later (which aborts whatever still waits on
//! the gone Redis), and it must not have acknowledged any entry it did not store.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream, PAYLOAD_FIELD};
use proact_proto::v1::Telemetry;
use proact_testkit::{Postgres, Redis};
use prost::Message;

const SHARDS: u32 = 4;
const GRACE_SECS: u64 = 2;

fn archive(redis: &Redis, pg: &Postgres, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::File::create(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_proact-archive"))
        .args(["--redis-url", &redis.url(), "--database-url", &pg.url(), "--shards", &SHARDS.to_string()])
        .args(["--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--consumer", "drain"])
        .args(["--block-ms", "50", "--linger-ms", "20", "--shutdown-grace-secs", &GRACE_SECS.to_string()])
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Appends `n` readings of 10 equipment from second `from`; returns their (id, ts) keys.
async fn produce(redis: &Client, from: i64, n: i64) -> Vec<(String, i64)> {
    let base = proact_proto::time::now_micros() - 3_600_000_000;
    let pipeline = redis.pipeline();
    let mut keys = Vec::new();
    for i in from..from + n {
        let t = Telemetry {
            equipement_id: format!("EQ-{:02}", i % 10),
            ts_micros: base + i * 1_000_000,
            temperature: 50.0,
            vibration: 1.0,
            received_micros: base + i * 1_000_000,
            ..Default::default()
        };
        let key = telemetry_stream(shard_for(&t.equipement_id, SHARDS));
        let _: () =
            pipeline.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await.unwrap();
        keys.push((t.equipement_id, t.ts_micros));
    }
    let _: Vec<Value> = pipeline.all().await.unwrap();
    keys
}

/// The rows stored (none before the archive has made its tables).
async fn stored(pg: &tokio_postgres::Client) -> HashSet<(String, i64)> {
    let rows = pg
        .query("SELECT equipement_id, (extract(epoch FROM ts) * 1000000)::bigint FROM telemetry", &[])
        .await
        .unwrap_or_default();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Every entry of the telemetry streams that the archive's group acknowledged: delivered (up
/// to the group's last-delivered id) and not pending. Payload decoded to its (id, ts) key.
async fn acked(redis: &Client) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for s in 0..SHARDS {
        let key = telemetry_stream(s);
        let groups = proact_server::redis::groups(redis, &key).await.unwrap();
        let Some(g) = groups.iter().find(|g| g.name == "archive") else { continue };
        let pending: Value = redis.xpending(&key, "archive", ("-", "+", 100_000u64)).await.unwrap();
        let pending: HashSet<String> = match pending {
            Value::Array(rows) => rows
                .into_iter()
                .filter_map(|r| match r {
                    Value::Array(f) => f.first().and_then(|id| id.as_string()),
                    _ => None,
                })
                .collect(),
            _ => HashSet::new(),
        };
        let entries: Vec<(String, std::collections::HashMap<String, Bytes>)> =
            redis.xrange(&key, "-", g.last_delivered.as_str(), None).await.unwrap();
        for (id, fields) in entries {
            if pending.contains(&id) {
                continue;
            }
            let t = Telemetry::decode(fields[PAYLOAD_FIELD].as_ref()).unwrap();
            out.push((t.equipement_id, t.ts_micros));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_redis_went_away_exits_within_the_drain_bound_and_acked_only_what_it_stored() {
    let (mut redis, pg) = tokio::try_join!(Redis::start(), Postgres::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("archive.log");
    let mut child = archive(&redis, &pg, &log);
    let client = proact_server::redis::connect(&redis.url()).await.unwrap();
    let (db, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);

    let first = produce(&client, 0, 500).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&db).await.len() < first.len() {
        assert!(Instant::now() < deadline, "the archive did not store the first readings: {}", log.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More in flight when Redis goes: some read, maybe stored, maybe acked.
    produce(&client, 500, 2_000).await;
    client.quit().await.unwrap();
    redis.stop();

    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let bound = Duration::from_secs(GRACE_SECS) + proact_server::shutdown::DRAIN_MARGIN;
    // Generous over the bound (a loaded machine), far under "waits for its kill".
    let deadline = signalled + bound + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the archive still ran {:?} after SIGTERM (bound {bound:?}):\n{}",
                signalled.elapsed(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    // Ended by itself: not by the forced stop at the bound, which aborts what still runs and
    // says so in the log (the log, not the clock: a loaded machine may be slow either way).
    let exited = signalled.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("tasks still draining after the grace period"),
        "the drain did not end by itself (exited after {exited:?}, forced stop at {bound:?}):\n{text}"
    );

    // Redis back with its data: whatever the group acknowledged is in PostgreSQL.
    redis.restart().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        // Until its append-only file is loaded, Redis answers LOADING.
        match proact_server::redis::connect(&redis.url()).await {
            Ok(c) if proact_server::redis::ping(&c).await => break c,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("Redis did not come back: {e}"),
            Ok(_) => panic!("Redis did not come back"),
        }
    };
    let rows = stored(&db).await;
    let acked = acked(&client).await;
    assert!(acked.len() >= first.len(), "the first readings were acked: {}", acked.len());
    let lost: Vec<_> = acked.iter().filter(|k| !rows.contains(k)).collect();
    assert!(lost.is_empty(), "{} entries acked but not stored, e.g. {:?}", lost.len(), lost.first());
}
