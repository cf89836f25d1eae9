//! The online detectors' checkpoint against a real Redis: a restarted replica, or one taking
//! the shard over, resumes each equipment's learning where the checkpoint left it (it scores
//! the next readings exactly as a replica that never stopped), and a replica that lost the
//! shard cannot overwrite its new owner's states.

use std::collections::HashMap;

use bytes::Bytes;
use fred::prelude::*;
use proact_anomaly_detector::checkpoint::{self, Checkpointer};
use proact_anomaly_detector::engine::{Engine, EngineConfig};
use proact_anomaly_detector::leases::{KeyLayout, Leases};
use proact_proto::streams::shard_for;
use proact_proto::v1::Telemetry;

const SHARDS: u32 = 8;

fn now_ms() -> i64 {
    proact_proto::time::now_micros() / 1000
}

/// An equipment id of `shard`.
fn on_shard(shard: u32, n: usize) -> String {
    (0..).map(|i| format!("EQ-{i:04}")).filter(|id| shard_for(id, SHARDS) == shard).nth(n).unwrap()
}

/// Reading `i` of `id`: a daily-like cycle with noise, a reading a minute.
fn reading(id: &str, i: i64) -> Telemetry {
    let noise = ((i as f64 * 0.754_877_666).fract() - 0.5) * 0.8;
    let cycle = (i as f64 * std::f64::consts::TAU / 240.0).sin();
    Telemetry {
        equipement_id: id.to_string(),
        ts_micros: 1_700_000_000_000_000 + i * 60_000_000,
        temperature: 60.0 + 4.0 * cycle + noise,
        vibration: 2.0 + 0.3 * cycle.abs() + noise * 0.1,
        ..Default::default()
    }
}

fn engine() -> Engine {
    Engine::new(EngineConfig { max_future_micros: i64::MAX, ..Default::default() })
}

/// Feeds readings `from..to` of every id to `e`.
fn feed(e: &mut Engine, ids: &[String], from: i64, to: i64) {
    for i in from..to {
        for id in ids {
            let t = reading(id, i);
            e.observe(&t, "", t.ts_micros);
        }
    }
}

/// The online scores `e` gives readings `from..to` of `id` (each scored, then fed), with a
/// level shift from `shift_at` on so that alarms are part of what is compared.
fn scores(e: &mut Engine, id: &str, from: i64, to: i64, shift_at: i64) -> Vec<f64> {
    (from..to)
        .map(|i| {
            let mut t = reading(id, i);
            if i >= shift_at {
                t.temperature += 15.0;
            }
            let s = e.score(&t).model_score;
            e.observe(&t, "", t.ts_micros);
            s
        })
        .collect()
}

#[tokio::test]
async fn a_restart_resumes_learning_from_the_checkpoint() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let mut leases = Leases::new(redis.clone(), "a", SHARDS, 10_000);
    assert_eq!(leases.heartbeat(now_ms()).await.unwrap().gained.len(), SHARDS as usize);
    let ids = vec![on_shard(3, 0), on_shard(3, 1), on_shard(5, 0)];

    let mut uninterrupted = engine();
    let mut before_restart = engine();
    feed(&mut uninterrupted, &ids, 0, 2_000);
    feed(&mut before_restart, &ids, 0, 2_000);
    let states = before_restart.take_online_changes();
    assert_eq!(states.len(), 3, "every equipment learned");
    assert!(before_restart.take_online_changes().is_empty(), "taken once until they learn again");
    assert_eq!(checkpoint::write(&redis, "a", SHARDS, &states).await.unwrap(), 0);

    // The restarted replica loads its shards' checkpoints, then gets the next readings.
    let mut restarted = engine();
    let mut cold = engine();
    for shard in [3, 5] {
        for (id, state) in checkpoint::load(&redis, shard, SHARDS).await.unwrap() {
            restarted.restore_online(&id, state);
        }
    }
    let want = scores(&mut uninterrupted, &ids[0], 2_000, 2_400, 2_200);
    assert_eq!(scores(&mut restarted, &ids[0], 2_000, 2_400, 2_200), want, "scored as if never stopped");
    assert!(want[200..].iter().any(|&s| s >= 0.5), "the shift alarms (the comparison covers alarms)");
    assert_ne!(scores(&mut cold, &ids[0], 2_000, 2_400, 2_200), want, "a cold start does not");
}

#[tokio::test]
async fn a_takeover_resumes_learning_and_the_old_owner_cannot_overwrite_it() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let id = on_shard(3, 0);
    let ids = vec![id.clone()];

    let mut a = Leases::new(redis.clone(), "a", SHARDS, 10_000);
    a.heartbeat(now_ms()).await.unwrap();
    let mut owner_a = engine();
    let mut uninterrupted = engine();
    feed(&mut owner_a, &ids, 0, 1_500);
    feed(&mut uninterrupted, &ids, 0, 1_500);
    // At hand-over (a's shutdown), its states are written before its leases go.
    let states = owner_a.take_online_changes();
    assert_eq!(checkpoint::write(&redis, "a", SHARDS, &states).await.unwrap(), 0);
    a.release_all().await.unwrap();

    let mut b = Leases::new(redis.clone(), "b", SHARDS, 10_000);
    assert!(b.heartbeat(now_ms()).await.unwrap().gained.contains(&3));
    let mut owner_b = engine();
    for (eq, state) in checkpoint::load(&redis, 3, SHARDS).await.unwrap() {
        owner_b.restore_online(&eq, state);
    }
    let want = scores(&mut uninterrupted, &id, 1_500, 1_800, 1_650);
    assert_eq!(scores(&mut owner_b, &id, 1_500, 1_800, 1_650), want, "b continues a's learning");

    // b checkpoints; a, which lost the shard, writes an older state: fenced, b's stays.
    assert_eq!(checkpoint::write(&redis, "b", SHARDS, &owner_b.take_online_changes()).await.unwrap(), 0);
    let stored: HashMap<String, Bytes> = redis.hgetall(checkpoint::online_key(KeyLayout::Single, 3)).await.unwrap();
    feed(&mut owner_a, &ids, 1_500, 1_510);
    assert_eq!(checkpoint::write(&redis, "a", SHARDS, &owner_a.take_online_changes()).await.unwrap(), 1);
    let after: HashMap<String, Bytes> = redis.hgetall(checkpoint::online_key(KeyLayout::Single, 3)).await.unwrap();
    assert_eq!(after, stored);

    // A state this version cannot read is skipped (that equipment starts cold), not an error.
    let _: () = redis.hset(checkpoint::online_key(KeyLayout::Single, 3), (on_shard(3, 1), "not json")).await.unwrap();
    let loaded = checkpoint::load(&redis, 3, SHARDS).await.unwrap();
    assert_eq!(loaded.iter().map(|(eq, _)| eq.as_str()).collect::<Vec<_>>(), vec![id.as_str()]);
}

/// The checkpoint spread over its interval and written in the background: slices taken while
/// scoring goes on, then shutdown. What the engine learned last (after its slice was written)
/// is what a restarted replica loads: `finish` writes every state still dirty and waits.
#[tokio::test]
async fn a_spread_checkpoint_writes_the_last_states_at_shutdown() {
    let (_server, redis) = every_lease_held_by_a().await;
    let ids: Vec<String> = (0..SHARDS).flat_map(|s| [on_shard(s, 0), on_shard(s, 1)]).collect();

    let mut uninterrupted = engine();
    feed(&mut uninterrupted, &ids, 0, 1_200);
    let live = std::sync::Arc::new(tokio::sync::Mutex::new(engine()));
    let mut checkpoints = Checkpointer::start(redis.clone(), "a".into(), SHARDS, std::time::Duration::from_secs(4));
    assert_eq!(checkpoints.tick_every(), std::time::Duration::from_secs(1), "four slices");
    feed(&mut *live.lock().await, &ids, 0, 1_000);
    let mut taken = 0;
    for _ in 0..3 {
        taken += checkpoints.take_slice(&mut *live.lock().await);
    }
    assert!(taken > 0 && taken < ids.len(), "three slices of four: {taken} of {}", ids.len());
    // Learns more after its slices were taken, then stops.
    feed(&mut *live.lock().await, &ids, 1_000, 1_200);
    checkpoints.finish(&live).await;

    let mut restarted = engine();
    for shard in 0..SHARDS {
        for (id, state) in checkpoint::load(&redis, shard, SHARDS).await.unwrap() {
            restarted.restore_online(&id, state);
        }
    }
    for id in &ids {
        let want = scores(&mut uninterrupted, id, 1_200, 1_300, 1_250);
        assert_eq!(scores(&mut restarted, id, 1_200, 1_300, 1_250), want, "{id} resumes from its last state");
    }
}

/// A slice taken before its shard was lost is not written, even once the shard is this
/// replica's again: the new owner's state in between may be newer.
#[tokio::test]
async fn a_slice_of_a_shard_lost_since_it_was_taken_is_not_written() {
    let (_server, redis) = every_lease_held_by_a().await;
    let ids = vec![on_shard(3, 0), on_shard(5, 0)];
    let live = tokio::sync::Mutex::new(engine());
    feed(&mut *live.lock().await, &ids, 0, 100);
    let mut checkpoints = Checkpointer::start(redis.clone(), "a".into(), SHARDS, std::time::Duration::from_secs(1));
    {
        // As the loop's heartbeat does: shard 3 lost (and its lease ours again at once).
        let paused = checkpoints.pause().await;
        assert_eq!(checkpoints.take_slice(&mut *live.lock().await), 2);
        checkpoints.lost(&[3]);
        drop(paused);
    }
    checkpoints.finish(&live).await;
    assert!(checkpoint::load(&redis, 3, SHARDS).await.unwrap().is_empty(), "shard 3's state not written");
    assert_eq!(checkpoint::load(&redis, 5, SHARDS).await.unwrap().len(), 1);
}

/// A Redis where replica "a" holds every shard's lease, and a client of it.
async fn every_lease_held_by_a() -> (proact_testkit::Redis, Client) {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let mut leases = Leases::new(redis.clone(), "a", SHARDS, 10_000);
    leases.heartbeat(now_ms()).await.unwrap();
    (server, redis)
}
