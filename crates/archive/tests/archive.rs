//! The archive against real Redis and PostgreSQL (test kit): exactly-once storage under
//! redelivery, crashes, database outages and poison entries; partitions and retention;
//! history queries across partitions and time zones.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use clap::Parser;
use fred::prelude::*;
use proact_archive::pipeline::Stats;
use proact_archive::{App, Config};
use proact_proto::streams::{
    shard_for, telemetry_stream, BATCH_FIELD, DEAD_LETTER_STREAM, PAYLOAD_FIELD, STATUS_FIELD,
};
use proact_proto::v1::archive_client::ArchiveClient;
use proact_proto::v1::{
    BucketsRequest, DeadLetter, EquipmentStatus, RejectReason, Telemetry, TelemetryBatch, TelemetryRangeRequest,
};
use proact_server::Readiness;
use proact_testkit::{Postgres, Redis};
use prost::Message;
use tokio_util::sync::CancellationToken;

const SHARDS: u32 = 4;

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stats: Arc<Stats>,
    ready: Readiness,
    grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("archive drains").unwrap().unwrap();
    }
}

fn config(redis: &Redis, pg: &Postgres, consumer: &str, extra: &[&str]) -> Config {
    let (r, p) = (redis.url(), pg.url());
    let mut args = vec![
        "proact-archive",
        "--redis-url",
        &r,
        "--database-url",
        &p,
        "--shards",
        "4",
        "--admin-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--consumer",
        consumer,
        "--block-ms",
        "50",
        "--linger-ms",
        "20",
        "--shutdown-grace-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    let c = Config::try_parse_from(args).unwrap();
    c.validate().unwrap();
    c
}

async fn start(redis: &Redis, pg: &Postgres, consumer: &str, extra: &[&str], skip_ack: bool) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        proact_server::telemetry::init("text");
    }
    let mut app = App::build(config(redis, pg, consumer, extra)).await.unwrap();
    if skip_ack {
        app = app.skip_acks();
    }
    let (stats, ready, grpc, admin) = (app.stats(), app.readiness(), app.grpc_addr(), app.admin_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Running { shutdown, task, stats, ready, grpc, admin }
}

async fn servers() -> (Redis, Postgres) {
    tokio::try_join!(Redis::start(), Postgres::start()).unwrap()
}

async fn redis_client(redis: &Redis) -> Client {
    proact_server::redis::connect(&redis.url()).await.unwrap()
}

async fn pg_client(pg: &Postgres) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

fn reading(id: &str, ts_micros: i64, temperature: f64) -> Telemetry {
    Telemetry {
        equipement_id: id.into(),
        ts_micros,
        temperature,
        vibration: 1.5,
        received_micros: ts_micros,
        source: "test".into(),
        ..Default::default()
    }
}

/// A fixed instant: 2026-11-20T00:00:00Z.
fn base() -> i64 {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap().timestamp_micros()
}

/// `n` readings over 10 equipment, one second apart per equipment.
fn readings(n: usize, from: i64) -> Vec<Telemetry> {
    (0..n).map(|i| reading(&format!("EQ-{:02}", i % 10), from + (i / 10) as i64 * 1_000_000, i as f64)).collect()
}

async fn add_raw(redis: &Client, key: &str, payload: Bytes) {
    let _: () = redis.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, payload)).await.unwrap();
}

async fn produce(redis: &Client, rows: &[Telemetry]) {
    let pipeline = redis.pipeline();
    for t in rows {
        let key = telemetry_stream(shard_for(&t.equipement_id, SHARDS));
        let _: () =
            pipeline.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await.unwrap();
    }
    let _: Vec<Value> = pipeline.all().await.unwrap();
}

/// Writes `rows` as ingest's batch entries do: each shard's readings, in order, `per_entry`
/// to an entry (field `b`). Returns the entries written.
async fn produce_batches(redis: &Client, rows: &[Telemetry], per_entry: usize) -> u64 {
    let mut per_shard: Vec<Vec<Telemetry>> = vec![Vec::new(); SHARDS as usize];
    for t in rows {
        per_shard[shard_for(&t.equipement_id, SHARDS) as usize].push(t.clone());
    }
    let pipeline = redis.pipeline();
    let mut entries = 0;
    for (shard, readings) in per_shard.iter().enumerate() {
        for chunk in readings.chunks(per_entry) {
            let batch = Bytes::from(TelemetryBatch { items: chunk.to_vec() }.encode_to_vec());
            let key = telemetry_stream(shard as u32);
            let _: () = pipeline.xadd(key, false, None::<()>, "*", (BATCH_FIELD, batch)).await.unwrap();
            entries += 1;
        }
    }
    let _: Vec<Value> = pipeline.all().await.unwrap();
    entries
}

async fn count(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one("SELECT count(*) FROM telemetry", &[]).await.unwrap().get(0)
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` rows of EQ-BIG from today's start, 100 ms apart (today's partition exists from the start).
async fn insert_big(db: &tokio_postgres::Client, n: i32) {
    db.execute(
        "INSERT INTO telemetry (equipement_id, ts, temperature, vibration)
         SELECT 'EQ-BIG', date_trunc('day', now()) + i * interval '100 milliseconds', i, 0
         FROM generate_series(0, $1 - 1) i",
        &[&n],
    )
    .await
    .unwrap();
}

/// Waits until PostgreSQL waits to write a range query's rows to the archive: the client
/// stopped reading and the rows are not being drained into the archive's memory.
async fn blocked_on_a_slow_reader(db: &tokio_postgres::Client) {
    eventually("PostgreSQL blocked on a slow reader", || async {
        db.query_opt(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT ts, temperature%' AND wait_event = 'ClientWrite'",
            &[],
        )
        .await
        .unwrap()
        .is_some()
    })
    .await;
}

/// Entries pending (delivered, not acked) for the group over every shard.
async fn pending(redis: &Client) -> i64 {
    let mut n = 0;
    for s in 0..SHARDS {
        let v: Value = redis.xpending(telemetry_stream(s), "archive", ()).await.unwrap();
        if let Value::Array(a) = v {
            n += a.first().and_then(|x| x.as_i64()).unwrap_or(0);
        }
    }
    n
}

async fn dead_letters(redis: &Client) -> Vec<DeadLetter> {
    let v: Value = redis.xrange(DEAD_LETTER_STREAM, "-", "+", None).await.unwrap();
    let Value::Array(entries) = v else { return Vec::new() };
    entries
        .into_iter()
        .filter_map(|e| {
            let Value::Array(pair) = e else { return None };
            let Value::Array(fields) = pair.get(1)?.clone() else { return None };
            let payload = fields.get(1)?.as_bytes()?.to_vec();
            DeadLetter::decode(payload.as_slice()).ok()
        })
        .collect()
}

async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return 0 };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Sends `sig` to the whole PostgreSQL server: the postmaster and every process it started
/// (`Postgres::signal` reaches the postmaster only, and existing sessions would keep
/// answering). `postmaster` comes from [`postmaster_pid`].
fn signal_server(postmaster: u32, sig: &str) {
    let mut pids = vec![postmaster];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if parent_of(pid) == Some(postmaster) {
            pids.push(pid);
        }
    }
    for pid in pids {
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

async fn postmaster_pid(db: &tokio_postgres::Client) -> u32 {
    let backend: i32 = db.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    parent_of(backend as u32).unwrap()
}

#[tokio::test]
async fn redelivered_entries_are_stored_once() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let rows = readings(1000, base());
    produce(&r, &rows).await;
    let a = start(&redis, &pg, "a1", &[], false).await;
    eventually("1000 rows", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 1000 }).await;
    assert_eq!(count(&db).await, 1000);
    assert_eq!(a.stats.rows_inserted.load(Ordering::Relaxed), 1000);
    a.stop().await;

    // The same readings again: published twice upstream, and the group rewound so every
    // entry is delivered a second time.
    produce(&r, &rows).await;
    for s in 0..SHARDS {
        let _: () = r.xgroup_setid(telemetry_stream(s), "archive", "0").await.unwrap();
    }
    let a = start(&redis, &pg, "a1", &[], false).await;
    eventually("2000 entries handled", || async {
        a.stats.entries_acked.load(Ordering::Relaxed) >= 2000 && pending(&r).await == 0
    })
    .await;
    assert_eq!(a.stats.rows_inserted.load(Ordering::Relaxed), 0, "nothing new");
    assert_eq!(count(&db).await, 1000, "rows once");
    let dups: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM telemetry GROUP BY equipement_id, ts HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dups, 0);
    a.stop().await;
}

#[tokio::test]
async fn crash_between_commit_and_ack_writes_no_duplicates() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    produce(&r, &readings(500, base())).await;

    // Commits, never acks: the process "dies" right after each commit.
    let a = start(&redis, &pg, "c1", &[], true).await;
    eventually("500 rows committed", || async { a.stats.rows_committed.load(Ordering::Relaxed) == 500 }).await;
    a.stop().await;
    assert_eq!(count(&db).await, 500);
    assert_eq!(pending(&r).await, 500, "nothing acked");

    // Restarted under the same name: its own pending entries first, stored again, no duplicates.
    let a = start(&redis, &pg, "c1", &[], false).await;
    eventually("own pending acked", || async { pending(&r).await == 0 }).await;
    assert_eq!(a.stats.rows_inserted.load(Ordering::Relaxed), 0);
    assert_eq!(count(&db).await, 500);
    a.stop().await;

    // A replica that never comes back: another consumer claims its entries once idle.
    produce(&r, &readings(300, base() + 3_600_000_000)).await;
    let a = start(&redis, &pg, "c1", &[], true).await;
    eventually("300 more committed", || async { a.stats.rows_committed.load(Ordering::Relaxed) == 300 }).await;
    a.stop().await;
    assert_eq!(pending(&r).await, 300);
    let b = start(&redis, &pg, "c2", &["--claim-idle-ms", "1000"], false).await;
    eventually("claimed and acked", || async { pending(&r).await == 0 }).await;
    assert_eq!(b.stats.entries_acked.load(Ordering::Relaxed), 300);
    assert_eq!(count(&db).await, 800);
    b.stop().await;
}

/// Batch entries (ADR 0004) mixed with single ones in the same streams: every reading stored
/// once across a crash between commit and ack, the restart's own pending entries, and a
/// claim by another consumer; nothing stays pending.
#[tokio::test]
async fn batch_and_single_entries_are_archived_once_across_a_crash_and_redelivery() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let rows = readings(1000, base());
    // Old single entries, then batch entries, then single again, in the same shard streams.
    produce(&r, &rows[..200]).await;
    let mut entries = 200 + produce_batches(&r, &rows[200..800], 20).await;
    produce(&r, &rows[800..]).await;
    entries += 200;
    assert!(entries < 1000);

    let a = start(&redis, &pg, "b1", &[], true).await;
    eventually("1000 rows committed", || async { a.stats.rows_committed.load(Ordering::Relaxed) == 1000 }).await;
    a.stop().await;
    assert_eq!(count(&db).await, 1000);
    assert_eq!(pending(&r).await, entries as i64, "nothing acked");

    let a = start(&redis, &pg, "b1", &[], false).await;
    eventually("own pending acked", || async { pending(&r).await == 0 }).await;
    assert_eq!(a.stats.rows_inserted.load(Ordering::Relaxed), 0, "redelivery wrote nothing new");
    assert_eq!(a.stats.entries_acked.load(Ordering::Relaxed), entries);
    a.stop().await;

    // Left pending by a consumer that never comes back, claimed by another.
    let later = readings(400, base() + 3_600_000_000);
    let more = produce_batches(&r, &later, 50).await;
    let a = start(&redis, &pg, "b1", &[], true).await;
    eventually("400 more committed", || async { a.stats.rows_committed.load(Ordering::Relaxed) == 400 }).await;
    a.stop().await;
    let b = start(&redis, &pg, "b2", &["--claim-idle-ms", "1000"], false).await;
    eventually("claimed and acked", || async { pending(&r).await == 0 }).await;
    assert_eq!(b.stats.entries_acked.load(Ordering::Relaxed), more);
    assert_eq!(b.stats.rows_inserted.load(Ordering::Relaxed), 0);
    assert_eq!(count(&db).await, 1400, "every reading once");
    b.stop().await;
}

/// A reading of a batch entry that cannot be stored goes to the dead-letter stream alone,
/// as a `Telemetry` with its position in the entry; the entry's other readings are stored
/// and the entry is acked. A batch entry that cannot be decoded is dead-lettered whole.
#[tokio::test]
async fn a_poison_reading_in_a_batch_entry_is_dead_lettered_alone() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let key = telemetry_stream(0);
    let nul = reading("EQ-\u{0}-BAD", base(), 1.0);
    let absurd = reading("EQ-01", i64::MIN / 2, 1.0);
    let good: Vec<Telemetry> = (0..3).map(|i| reading("EQ-01", base() + i * 1_000_000, i as f64)).collect();
    let items = vec![good[0].clone(), nul.clone(), good[1].clone(), absurd.clone(), good[2].clone()];
    let batch = Bytes::from(TelemetryBatch { items }.encode_to_vec());
    let id: String = r.xadd(key.as_str(), false, None::<()>, "*", (BATCH_FIELD, batch)).await.unwrap();
    let _: () =
        r.xadd(key.as_str(), false, None::<()>, "*", (BATCH_FIELD, Bytes::from_static(&[0x0a, 0x7f]))).await.unwrap();

    let a = start(&redis, &pg, "d2", &["--max-attempts", "2"], false).await;
    eventually("both entries acked", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 2 }).await;
    assert_eq!(count(&db).await, 3, "the good readings of the entry committed");
    assert_eq!(pending(&r).await, 0);
    let dead = dead_letters(&r).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    let absurd_dl = dead.iter().find(|d| d.reason == RejectReason::AbsurdTimestamp as i32).expect("absurd time");
    assert_eq!(absurd_dl.topic, format!("{key} {id} #3"));
    assert_eq!(Telemetry::decode(absurd_dl.payload.as_slice()).unwrap(), absurd, "the reading alone");
    let refused = dead.iter().find(|d| d.reason == RejectReason::Unspecified as i32).expect("the refused row");
    assert_eq!(refused.topic, format!("{key} {id} #1"));
    assert!(refused.detail.contains("PostgreSQL refused"), "{}", refused.detail);
    assert_eq!(Telemetry::decode(refused.payload.as_slice()).unwrap(), nul);
    let whole = dead.iter().find(|d| d.reason == RejectReason::UndecodableEntry as i32).expect("the broken entry");
    assert!(whole.detail.contains("TelemetryBatch"), "{}", whole.detail);
    assert_eq!(whole.payload, vec![0x0a, 0x7f]);
    a.stop().await;
}

#[tokio::test]
async fn postgres_restart_mid_stream_loses_nothing() {
    let (redis, mut pg) = servers().await;
    let r = redis_client(&redis).await;
    let a = start(&redis, &pg, "p1", &[], false).await;
    let total = 12_000;
    let rows = readings(total, base());
    let producer = {
        let r = r.clone();
        tokio::spawn(async move {
            for chunk in rows.chunks(500) {
                produce(&r, chunk).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    eventually("some rows stored", || async { a.stats.rows_committed.load(Ordering::Relaxed) > 0 }).await;
    pg.restart().await.unwrap();
    producer.await.unwrap();
    eventually("every row stored", || async { a.stats.entries_acked.load(Ordering::Relaxed) == total as u64 }).await;
    let db = pg_client(&pg).await;
    assert_eq!(count(&db).await, total as i64);
    assert_eq!(pending(&r).await, 0);
    eventually("ready again", || async { a.ready.is_ready() }).await;
    a.stop().await;
}

#[tokio::test]
async fn frozen_postgres_makes_the_archive_unready_and_loses_nothing() {
    let (redis, pg) = servers().await;
    let r = redis_client(&redis).await;
    let a = start(&redis, &pg, "f1", &[], false).await;
    eventually("ready", || async { http_status(a.admin, "/readyz").await == 200 }).await;
    produce(&r, &readings(2000, base())).await;
    eventually("first rows", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 2000 }).await;

    let postmaster = postmaster_pid(&pg_client(&pg).await).await;
    signal_server(postmaster, "STOP");
    produce(&r, &readings(3000, base() + 3_600_000_000)).await;
    let seen_unready = tokio::time::timeout(Duration::from_secs(30), async {
        while http_status(a.admin, "/readyz").await != 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    signal_server(postmaster, "CONT");
    assert!(seen_unready.is_ok(), "/readyz stayed 200 while PostgreSQL was frozen");
    eventually("caught up", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 5000 }).await;
    eventually("ready again", || async { http_status(a.admin, "/readyz").await == 200 }).await;
    assert_eq!(count(&pg_client(&pg).await).await, 5000);
    a.stop().await;
}

/// An equipment status (field `s`, docs/adr/0006-equipment-status-entries.md) among the readings of its shard: the
/// detector's to act on, acknowledged here with its batch, neither a row nor a dead letter.
#[tokio::test]
async fn status_entries_are_acked_without_a_row_or_a_dead_letter() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let good = readings(20, base());
    produce(&r, &good[..10]).await;
    let status = EquipmentStatus {
        equipement_id: good[0].equipement_id.clone(),
        online: false,
        at_micros: base(),
        reason: "Sparkplug DDEATH".into(),
        ..Default::default()
    };
    let key = telemetry_stream(shard_for(&status.equipement_id, SHARDS));
    let entry = Bytes::from(status.encode_to_vec());
    let _: () = r.xadd(key.as_str(), false, None::<()>, "*", (STATUS_FIELD, entry)).await.unwrap();
    // Readings after it in batch entries: both kinds of reading entries around a status.
    let batches = produce_batches(&r, &good[10..], 4).await;
    let a = start(&redis, &pg, "s1", &[], false).await;
    eventually("all entries acked", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 11 + batches }).await;
    assert_eq!(count(&db).await, 20);
    assert_eq!(pending(&r).await, 0);
    assert!(dead_letters(&r).await.is_empty(), "a status is not a poison entry");
    a.stop().await;
}

#[tokio::test]
async fn poison_entries_go_to_the_dead_letter_stream_and_never_block() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let good = readings(200, base());
    produce(&r, &good[..100]).await;
    let key = telemetry_stream(0);
    add_raw(&r, &key, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).await; // not protobuf
    let _: () = r.xadd(&key, false, None::<()>, "*", ("other", "field")).await.unwrap(); // no payload
                                                                                         // PostgreSQL refuses a NUL byte in text: decodes fine, fails only in the database.
    let nul = reading("EQ-\u{0}-BAD", base(), 1.0);
    add_raw(&r, &telemetry_stream(shard_for(&nul.equipement_id, SHARDS)), nul.encode_to_vec().into()).await;
    let absurd = reading("EQ-01", i64::MIN / 2, 1.0);
    add_raw(&r, &telemetry_stream(shard_for("EQ-01", SHARDS)), absurd.encode_to_vec().into()).await;
    produce(&r, &good[100..]).await;

    let a = start(&redis, &pg, "d1", &["--max-attempts", "2"], false).await;
    eventually("all entries acked", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 204 }).await;
    assert_eq!(count(&db).await, 200, "the good rows of the batch committed");
    assert_eq!(pending(&r).await, 0);
    let dead = dead_letters(&r).await;
    assert_eq!(dead.len(), 4, "{dead:?}");
    let reasons: Vec<i32> = dead.iter().map(|d| d.reason).collect();
    assert_eq!(reasons.iter().filter(|&&x| x == RejectReason::UndecodableEntry as i32).count(), 2);
    assert!(reasons.contains(&(RejectReason::AbsurdTimestamp as i32)));
    let refused = dead.iter().find(|d| d.reason == RejectReason::Unspecified as i32).expect("the refused row");
    assert!(refused.detail.contains("PostgreSQL refused"), "{}", refused.detail);
    assert_eq!(Telemetry::decode(refused.payload.as_slice()).unwrap().equipement_id, nul.equipement_id);

    // The group moves on.
    produce(&r, &readings(50, base() + 7_200_000_000)).await;
    eventually("later rows", || async { count(&db).await == 250 }).await;
    a.stop().await;
}

#[tokio::test]
async fn buckets_follow_local_days_across_partitions_and_dst() {
    let (redis, pg) = servers().await;
    let r = redis_client(&redis).await;
    // Every 10 minutes from 2026-10-24T00:00Z to 2026-10-27T00:00Z: three UTC-day partitions,
    // and Europe/Paris leaves summer time on 2026-10-25 at 03:00 local (01:00Z).
    let from = Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap().timestamp_micros();
    let step = 600_000_000;
    let rows: Vec<Telemetry> = (0..432).map(|i| reading("EQ-TZ", from + i * step, i as f64)).collect();
    produce(&r, &rows).await;
    let a = start(&redis, &pg, "q1", &[], false).await;
    eventually("stored", || async { a.stats.entries_acked.load(Ordering::Relaxed) == 432 }).await;
    let db = pg_client(&pg).await;
    let parts: Vec<String> = db
        .query("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'telemetry'::regclass ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for p in ["telemetry_p20261024", "telemetry_p20261025", "telemetry_p20261026"] {
        assert!(parts.contains(&p.to_string()), "{p} created on demand: {parts:?}");
    }

    let mut client = ArchiveClient::connect(format!("http://{}", a.grpc)).await.unwrap();
    let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().timestamp_micros();
    let buckets = |from_micros, to_micros, bucket_seconds, tz: &str| BucketsRequest {
        equipement_id: "EQ-TZ".into(),
        from_micros,
        to_micros,
        bucket_seconds,
        field: "temperature".into(),
        time_zone: tz.into(),
    };
    let collect = |s: tonic::Streaming<proact_proto::v1::Bucket>| async move {
        let mut s = s;
        let mut out = Vec::new();
        while let Some(b) = s.message().await.unwrap() {
            out.push(b);
        }
        out
    };

    // Paris days: the 25th (25 hours) and the 26th (24 hours), starting at local midnight.
    let days = collect(
        client
            .query_buckets(buckets(at(2026, 10, 24, 22), at(2026, 10, 26, 23), 86_400, "Europe/Paris"))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(days.len(), 2, "{days:?}");
    assert_eq!((days[0].start_micros, days[0].count), (at(2026, 10, 24, 22), 150));
    assert_eq!((days[1].start_micros, days[1].count), (at(2026, 10, 25, 23), 144));
    // Row i is at from + i·10 min and has temperature i.
    assert_eq!((days[0].min, days[0].max), (132.0, 281.0));
    assert!((days[0].avg - (132.0 + 281.0) / 2.0).abs() < 1e-9);

    // Hours of the 25th in Paris: 25 of them, 6 readings each, one real hour apart — the
    // repeated 02:00 hour stays two buckets.
    let hours = collect(
        client
            .query_buckets(buckets(at(2026, 10, 24, 22), at(2026, 10, 25, 23), 3_600, "Europe/Paris"))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(hours.len(), 25);
    assert!(hours.iter().all(|b| b.count == 6), "{hours:?}");
    assert!(hours.windows(2).all(|w| w[1].start_micros - w[0].start_micros == 3_600_000_000));

    // UTC days: each partition is one bucket.
    let utc =
        collect(client.query_buckets(buckets(from, at(2026, 10, 27, 0), 86_400, "")).await.unwrap().into_inner()).await;
    assert_eq!(utc.iter().map(|b| b.count).collect::<Vec<_>>(), vec![144, 144, 144]);

    // A range across the three partitions comes back whole and in order.
    let mut s = client
        .query_range(TelemetryRangeRequest { equipement_id: "EQ-TZ".into(), from_micros: from, to_micros: 0, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut last = i64::MIN;
    let mut n = 0;
    while let Some(p) = s.message().await.unwrap() {
        assert!(p.ts_micros > last);
        last = p.ts_micros;
        n += 1;
    }
    assert_eq!(n, 432);

    let bad = client.query_buckets(buckets(from, 0, 3600, "Mars/Olympus")).await;
    let err = match bad {
        Err(e) => e,
        Ok(s) => s.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    a.stop().await;
}

#[tokio::test]
async fn large_ranges_stream_under_backpressure() {
    let (redis, pg) = servers().await;
    let a = start(&redis, &pg, "b1", &[], false).await;
    let db = pg_client(&pg).await;
    // Today's partition and the next ones exist from the start; 300k rows 100 ms apart.
    insert_big(&db, 300_000).await;
    let mut client = ArchiveClient::connect(format!("http://{}", a.grpc)).await.unwrap();
    let mut s = client
        .query_range(TelemetryRangeRequest { equipement_id: "EQ-BIG".into(), from_micros: 0, to_micros: 0, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_some());
    // The client reads no further: PostgreSQL must end up waiting to write to the archive,
    // i.e. the rows are not being drained into the archive's memory.
    blocked_on_a_slow_reader(&db).await;
    let mut n = 1;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 300_000);
    a.stop().await;
}

/// An operator added a DEFAULT partition (the schema has none on purpose): the archive
/// lists its own range partitions around it instead of panicking on the DEFAULT's bound,
/// and keeps storing.
#[tokio::test]
async fn a_default_partition_added_by_hand_is_left_alone() {
    let (redis, pg) = servers().await;
    let r = redis_client(&redis).await;
    let a = start(&redis, &pg, "d1", &["--maintenance-secs", "1"], false).await;
    let db = pg_client(&pg).await;
    db.batch_execute("CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT").await.unwrap();
    let parts = proact_archive::partitions::list(&db).await.unwrap();
    assert!(!parts.is_empty() && parts.iter().all(|p| p.name != "telemetry_default"), "{parts:?}");
    let now = proact_proto::time::now_micros();
    produce(&r, &[reading("EQ-DEF", now, 1.0)]).await;
    eventually("stored beside a DEFAULT partition", || async { a.stats.rows_committed.load(Ordering::Relaxed) == 1 })
        .await;
    a.stop().await;
}

/// A history query holds its lock on `telemetry` for as long as it runs (here, a transaction
/// that read it and stays open). A batch that needs a new partition meanwhile is stored without
/// waiting for the query to end, and so is every batch queued behind it.
#[tokio::test]
async fn a_new_partition_does_not_wait_for_a_long_query() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let a = start(&redis, &pg, "lq", &[], false).await;
    produce(&r, &readings(100, base())).await;
    eventually("the first day stored", || async { count(&db).await == 100 }).await;

    let reader = pg_client(&pg).await;
    reader.batch_execute("BEGIN; SELECT count(*) FROM telemetry").await.unwrap();
    let next_day = base() + 5 * 86_400_000_000;
    produce(&r, &readings(100, next_day)).await;
    produce(&r, &readings(100, base() + 100_000_000)).await;
    eventually("a new day's partition and the batches behind it, while the query runs", || async {
        count(&db).await == 300
    })
    .await;
    let open: i64 = db
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 1, "the long query's transaction was still open");
    let day = chrono::DateTime::<Utc>::from_timestamp_micros(next_day).unwrap().format("%Y%m%d");
    let parts = proact_archive::partitions::list(&db).await.unwrap();
    assert!(parts.iter().any(|p| p.name == format!("telemetry_p{day}")), "{parts:?}");
    reader.batch_execute("COMMIT").await.unwrap();
    a.stop().await;
}

/// A partition stored before the retention was set is dropped once it is; a reading past
/// the retention that comes later is refused with its reason, not stored in a partition made
/// again only to be dropped.
#[tokio::test]
async fn retention_drops_old_partitions_and_refuses_readings_past_it() {
    let (redis, pg) = servers().await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    let now = proact_proto::time::now_micros();
    let old = now - 60 * 86_400_000_000;
    let keep = start(&redis, &pg, "r0", &[], false).await;
    produce(&r, &[reading("EQ-OLD", old, 1.0), reading("EQ-NEW", now, 2.0)]).await;
    eventually("both stored", || async { keep.stats.rows_committed.load(Ordering::Relaxed) == 2 }).await;
    keep.stop().await;

    let a = start(&redis, &pg, "r1", &["--retention-days", "30", "--maintenance-secs", "1"], false).await;
    let old_part =
        format!("telemetry_p{}", chrono::DateTime::<Utc>::from_timestamp_micros(old).unwrap().format("%Y%m%d"));
    let exists = |name: String| {
        let db = &db;
        async move { db.query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&name]).await.unwrap().is_some() }
    };
    eventually("old partition dropped", || {
        let e = exists(old_part.clone());
        async move { !e.await }
    })
    .await;
    produce(&r, &[reading("EQ-LATE", old + 1_000_000, 3.0)]).await;
    produce(&r, &[reading("EQ-NEW", now + 1_000_000, 4.0)]).await;
    eventually("the new reading stored", || async { a.stats.rows_committed.load(Ordering::Relaxed) == 1 }).await;
    let dead = dead_letters(&r).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, RejectReason::PastRetention as i32);
    assert!(dead[0].detail.contains("PROACT_ARCHIVE_RETENTION_DAYS=30"), "{}", dead[0].detail);
    assert!(!exists(old_part.clone()).await, "{old_part} made again for a reading past the retention");
    let mut ids: Vec<String> =
        db.query("SELECT equipement_id FROM telemetry", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    ids.sort();
    assert_eq!(ids, vec!["EQ-NEW".to_string(), "EQ-NEW".to_string()]);
    eventually("the refused reading acked with its batch", || async { pending(&r).await == 0 }).await;
    a.stop().await;
}

#[tokio::test]
async fn migrations_convert_a_plain_telemetry_table_and_rerun_idempotently() {
    let pg = Postgres::start().await.unwrap();
    let mut db = pg_client(&pg).await;
    // A database migrated before partitioning: versions 1 and 2 applied, rows in a plain table.
    db.batch_execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    for (v, name, sql) in proact_store::schema::migrations().iter().filter(|m| m.0 < 3) {
        db.batch_execute(sql).await.unwrap();
        db.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[v, name]).await.unwrap();
    }
    db.batch_execute(
        "INSERT INTO telemetry (equipement_id, ts, temperature, vibration)
         SELECT 'EQ-' || (i % 3), timestamptz '2026-01-01' + i * interval '1 hour', i, 0 FROM generate_series(0, 99) i",
    )
    .await
    .unwrap();
    let applied = proact_store::schema::migrate(&mut db).await.unwrap();
    assert!(applied.contains(&3), "{applied:?}");
    let kind: i8 =
        db.query_one("SELECT relkind::\"char\" FROM pg_class WHERE relname = 'telemetry'", &[]).await.unwrap().get(0);
    assert_eq!(kind as u8, b'p');
    assert_eq!(count(&db).await, 100);
    let parts: i64 = db
        .query_one("SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(parts, 5, "100 hours from 2026-01-01 span five UTC days");
    // The unique key still holds across the conversion.
    let dup = db
        .execute(
            "INSERT INTO telemetry (equipement_id, ts, temperature, vibration) VALUES ('EQ-0', '2026-01-01', 0, 0)",
            &[],
        )
        .await;
    assert!(dup.is_err());
    assert!(proact_store::schema::migrate(&mut db).await.unwrap().is_empty(), "second run applies nothing");
}

/// With `PROACT_GRPC_TOKEN` set, the archive's query API answers only calls that carry it; the
/// health service stays open for the platform's probes. A short token stops the service at
/// start, naming the setting.
#[tokio::test]
async fn the_query_api_requires_the_internal_token_when_one_is_set() {
    const TOKEN: &str = "archive-internal-token-42";
    let (redis, pg) = servers().await;
    let a = start(&redis, &pg, "t1", &["--grpc-token", TOKEN], false).await;
    let url = format!("http://{}", a.grpc);
    let req = || TelemetryRangeRequest { equipement_id: "EQ-1".into(), from_micros: 0, to_micros: 0, limit: 1 };

    let err = ArchiveClient::connect(url.clone()).await.unwrap().query_range(req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(req());
    wrong.metadata_mut().insert("authorization", "Bearer archive-internal-token-43".parse().unwrap());
    let err = ArchiveClient::connect(url.clone()).await.unwrap().query_range(wrong).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let traces = proact_server::otel::Tracing::disabled();
    let mut client = ArchiveClient::new(proact_server::grpc::connect(&url, &traces, Some(TOKEN)).await.unwrap());
    let mut rows = client.query_range(req()).await.expect("the token opens the API").into_inner();
    assert!(rows.message().await.unwrap().is_none());

    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let probe = tonic_health::pb::HealthCheckRequest { service: String::new() };
    assert_eq!(health.check(probe).await.unwrap().into_inner().status, 1, "SERVING without a token");
    a.stop().await;

    let short =
        Config::try_parse_from(["proact-archive", "--database-url", &pg.url(), "--grpc-token", "too-short"]).unwrap();
    let err = short.validate().unwrap_err().to_string();
    assert!(err.contains("PROACT_GRPC_TOKEN"), "{err}");
}

/// Readers that stop reading hold their PostgreSQL connection (the answer streams with
/// backpressure): they must not take the writers' connections. With one query connection,
/// a second slow reader is refused, and the archive keeps storing meanwhile.
#[tokio::test]
async fn slow_readers_never_starve_the_writers() {
    let (redis, pg) = servers().await;
    let extra = ["--database-pool-size", "2", "--writers", "1", "--query-connections", "1"];
    let a = start(&redis, &pg, "q1", &extra, false).await;
    let (r, db) = (redis_client(&redis).await, pg_client(&pg).await);
    insert_big(&db, 200_000).await;
    let before = count(&db).await;
    let big = || TelemetryRangeRequest { equipement_id: "EQ-BIG".into(), from_micros: 0, to_micros: 0, limit: 0 };
    let mut first = ArchiveClient::connect(format!("http://{}", a.grpc)).await.unwrap();
    let mut held = first.query_range(big()).await.unwrap().into_inner();
    assert!(held.message().await.unwrap().is_some());
    blocked_on_a_slow_reader(&db).await;

    let mut second = ArchiveClient::connect(format!("http://{}", a.grpc)).await.unwrap();
    let mut refused = second.query_range(big()).await.unwrap().into_inner();
    let err = refused.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    // Dated now, in a partition that exists already: creating one takes a lock on the parent
    // table that a running query holds off (a separate limit, not this test's subject).
    produce(&r, &readings(1000, proact_proto::time::now_micros())).await;
    eventually("1000 new rows stored while the reader stalls", || async {
        a.stats.entries_acked.load(Ordering::Relaxed) == 1000
    })
    .await;
    assert_eq!(count(&db).await, before + 1000);
    drop(held);
    a.stop().await;
}
