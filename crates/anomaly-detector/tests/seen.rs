//! The seen records against a real Redis: written under the shard's lease only (a replica
//! that lost it writes nothing), in the heartbeat's pipeline, and pruned when loaded.

use std::collections::HashMap;

use bytes::Bytes;
use fred::prelude::*;
use proact_anomaly_detector::leases::{KeyLayout, Leases};
use proact_anomaly_detector::seen;
use proact_anomaly_detector::seen::{Seen, SeenChanges};
use proact_proto::streams::shard_for;

const SHARDS: u32 = 8;

fn now_ms() -> i64 {
    proact_proto::time::now_micros() / 1000
}

/// An equipment id of `shard`.
fn on_shard(shard: u32, n: usize) -> String {
    (0..).map(|i| format!("EQ-{i:04}")).filter(|id| shard_for(id, SHARDS) == shard).nth(n).unwrap()
}

async fn records(redis: &Client, shard: u32) -> HashMap<String, Seen> {
    let raw: HashMap<String, Bytes> = redis.hgetall(seen::seen_key(shard)).await.unwrap();
    raw.into_iter().map(|(k, v)| (k, seen::decode(&v).unwrap())).collect()
}

#[tokio::test]
async fn only_the_lease_holder_writes_and_expired_records_go_at_load() {
    let server = proact_testkit::Redis::start().await.unwrap();
    let redis = proact_server::redis::connect(&server.url()).await.unwrap();
    let mut a = Leases::new(redis.clone(), "a", SHARDS, 10_000);
    assert_eq!(a.heartbeat(now_ms()).await.unwrap().gained.len(), SHARDS as usize);

    let p = on_shard(3, 0);
    let seen_p = Seen { last_ts: 100, wall_micros: 200 };
    let changes = SeenChanges { set: vec![(p.clone(), seen_p)], pruned: vec![] };
    let (_, replies) =
        a.heartbeat_with(now_ms(), seen::write_calls(KeyLayout::Single, "a", SHARDS, &changes)).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(records(&redis, 3).await, HashMap::from([(p.clone(), seen_p)]), "written by the heartbeat");

    // b does not hold shard 3: fenced, nothing overwritten or deleted.
    let stale = SeenChanges { set: vec![(p.clone(), Seen { last_ts: 1, wall_micros: 1 })], pruned: vec![] };
    assert_eq!(seen::write(&redis, "b", SHARDS, &stale).await.unwrap(), 1);
    let gone = SeenChanges { set: vec![], pruned: vec![p.clone()] };
    assert_eq!(seen::write(&redis, "b", SHARDS, &gone).await.unwrap(), 1);
    assert_eq!(records(&redis, 3).await, HashMap::from([(p.clone(), seen_p)]));

    // At load: an expired record and one of another shard's equipment are deleted.
    let now = proact_proto::time::now_micros();
    let retention = 60_000_000;
    let live = Seen { last_ts: 5, wall_micros: now - 1_000_000 };
    let old = on_shard(3, 1);
    let expired = Seen { last_ts: 5, wall_micros: now - retention - 1 };
    let foreign = on_shard(4, 0);
    for (id, s) in [(&p, live), (&old, expired), (&foreign, live)] {
        let _: () =
            redis.hset(seen::seen_key(3), (id.as_str(), Bytes::copy_from_slice(&seen::encode(s)))).await.unwrap();
    }
    let _: () = redis.hset(seen::seen_key(3), ("LATER", Bytes::from_static(b"short"))).await.unwrap();
    let loaded = seen::load(&redis, "a", 3, SHARDS, now, retention).await.unwrap();
    assert_eq!(loaded, [(p.clone(), live)]);
    let left: Vec<String> = redis.hkeys(seen::seen_key(3)).await.unwrap();
    let mut left = left;
    left.sort();
    let mut want = vec![p.clone(), "LATER".to_string()];
    want.sort();
    assert_eq!(left, want, "expired and foreign deleted; an unreadable one (a later version's) kept");

    // No hash (an older version): nothing known, nothing fails.
    assert!(seen::load(&redis, "a", 5, SHARDS, now, retention).await.unwrap().is_empty());
}
