//! Dropping partitions past the retention against a real PostgreSQL, while a history read
//! holds `telemetry` for longer than the drop's lock timeout: the writers and a new
//! partition go through meanwhile, the partition is left pending detach, and the next pass
//! finishes dropping it.

use std::time::Duration;

use proact_proto::v1::Telemetry;
use proact_store::partitions::{list, Partitions};

const DAY: i64 = 86_400_000_000;

fn reading(ts_micros: i64) -> Telemetry {
    Telemetry {
        equipement_id: "PUMP-01".into(),
        ts_micros,
        temperature: 60.0,
        vibration: 1.5,
        received_micros: ts_micros,
        ..Default::default()
    }
}

/// A migrated database, a pool of `size` connections to it and a connection of the test's own.
async fn database(size: usize) -> (proact_testkit::Postgres, deadpool_postgres::Pool, tokio_postgres::Client) {
    let pg = proact_testkit::Postgres::start().await.expect("PostgreSQL starts");
    let pool = proact_server::db::pool(&pg.url(), size).unwrap();
    proact_store::schema::migrate(&mut pool.get().await.unwrap()).await.unwrap();
    let db = connect(&pg.url()).await;
    (pg, pool, db)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// Backends waiting for a lock, other than the dropping ones: (query, wait event).
async fn writers_waiting(db: &tokio_postgres::Client) -> Vec<(String, String)> {
    db.query(
        "SELECT query, wait_event FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query !~* '(DETACH|DROP) ' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn pending_detach(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'telemetry'::regclass AND i.inhdetachpending",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn an_expired_partition_is_dropped_without_holding_the_writers_behind_a_long_read() {
    let (pg, pool, db) = database(4).await;
    let parts = std::sync::Arc::new(Partitions::new(1));
    let now = proact_proto::time::now_micros();
    let old = now - 60 * DAY;
    parts.ensure(&pool, [old, now].into_iter()).await.unwrap();
    proact_store::store_telemetry(&pool, &[reading(old), reading(now)]).await.unwrap();
    let old_part = list(&db).await.unwrap().into_iter().find(|p| p.from <= old && old < p.to).unwrap().name;
    assert!(parts.past_retention(old, now, 30) && !parts.past_retention(now, now, 30));

    // A history read that stays open holds its lock on every partition until it ends.
    let reader = connect(&pg.url()).await;
    reader.batch_execute("BEGIN; SELECT count(*) FROM telemetry").await.unwrap();
    let dropping = tokio::spawn({
        let (parts, pool) = (parts.clone(), pool.clone());
        async move { parts.drop_expired(&pool, now, 30).await }
    });
    // The drop waits for the reader.
    for _ in 0..200 {
        let waiting: i64 = db.query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[]).await.unwrap().get(0);
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!dropping.is_finished(), "the drop did not wait for the open read");

    // Meanwhile a batch is stored and a new partition is made, neither queued behind it.
    let write = tokio::spawn({
        let pool = pool.clone();
        async move { proact_store::store_telemetry(&pool, &[reading(now + 1)]).await }
    });
    let create = tokio::spawn({
        let (parts, pool) = (parts.clone(), pool.clone());
        async move { parts.create_ahead(&pool, now + 10 * DAY, 0).await }
    });
    while !(write.is_finished() && create.is_finished()) {
        let waiting = writers_waiting(&db).await;
        assert!(waiting.is_empty(), "queued behind the drop: {waiting:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(write.await.unwrap().unwrap(), 1);
    assert_eq!(create.await.unwrap().unwrap().len(), 1, "the partition ten days ahead");

    // The read outlasts the drop's lock timeout (5 s): the partition is left pending detach.
    assert_eq!(dropping.await.unwrap().unwrap(), Vec::<String>::new(), "nothing dropped while the read lasts");
    assert_eq!(pending_detach(&db).await, vec![old_part.clone()]);
    reader.batch_execute("COMMIT").await.unwrap();

    // The next pass finishes it.
    assert_eq!(parts.drop_expired(&pool, now, 30).await.unwrap(), vec![old_part.clone()]);
    assert!(pending_detach(&db).await.is_empty());
    let gone = db.query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&old_part]).await.unwrap();
    assert!(gone.is_none(), "{old_part} still exists");
    let left: i64 = db.query_one("SELECT count(*) FROM telemetry", &[]).await.unwrap().get(0);
    assert_eq!(left, 2, "the rows of the kept partitions");
    // The session the drop used went back to the pool without its lock timeout: every
    // connection of the pool is held at once, so that one is among them.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.unwrap());
    }
    for c in &held {
        let t: String = c.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
        assert_eq!(t, "0");
    }
}

/// An operator's DEFAULT partition forbids a concurrent detach: the expired partition is
/// dropped plainly.
#[tokio::test]
async fn beside_a_default_partition_an_expired_one_is_dropped_plainly() {
    let (_pg, pool, db) = database(2).await;
    db.batch_execute("CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT").await.unwrap();
    let parts = Partitions::new(1);
    let now = proact_proto::time::now_micros();
    parts.ensure(&pool, [now - 60 * DAY, now].into_iter()).await.unwrap();
    let dropped = parts.drop_expired(&pool, now, 30).await.unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(list(&db).await.unwrap().iter().all(|p| p.to > now - 30 * DAY));
}
