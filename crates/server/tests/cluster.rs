//! The Redis helpers on a real Redis Cluster: `redis-cluster://` URLs, group reads over shard
//! streams of several slots (one `XREADGROUP` of them all is refused with `CROSSSLOT`), the
//! start-up refusals of a URL of the wrong kind, and a start-up that waits out a cluster
//! missing a master's slots.

use std::time::{Duration, Instant};

use fred::prelude::*;
use proact_server::redis::{ack, claim_stale, connect, connect_within, ensure_group, read_group, read_own_pending};

#[tokio::test]
async fn group_reads_over_shards_on_several_masters() {
    let cluster = proact_testkit::RedisCluster::start().await.unwrap();
    let c = connect(&cluster.url()).await.unwrap();
    assert!(c.is_clustered());
    // The telemetry shards' names (proact_proto::streams), on every master.
    let keys: Vec<String> = (0..8).map(|s| format!("proact:telemetry:{{{s}}}")).collect();
    for k in &keys {
        ensure_group(&c, k, "g").await.unwrap();
        for i in 0..3 {
            let _: String = c.xadd(k.as_str(), false, None::<()>, "*", ("p", format!("{k}-{i}"))).await.unwrap();
        }
    }

    // What every version before did: one XREADGROUP of every shard. The cluster refuses it.
    let reader = connect(&cluster.url()).await.unwrap();
    let ids: Vec<&str> = keys.iter().map(|_| ">").collect();
    let whole: Result<Value, Error> = reader.xreadgroup("g", "c", Some(10), None, false, keys.clone(), ids).await;
    let e = whole.expect_err("one read over several slots");
    assert!(e.details().contains("CROSSSLOT"), "{e:?}");

    let got = read_group(&reader, "g", "c", &keys, 100, 10).await.unwrap();
    let payloads: Vec<String> =
        got.iter().map(|e| String::from_utf8(e.payload.clone().unwrap().to_vec()).unwrap()).collect();
    assert_eq!(payloads.len(), 24, "{payloads:?}");
    assert_eq!(payloads[0], format!("{}-0", keys[0]), "in the caller's key order");
    assert_eq!(payloads[23], format!("{}-2", keys[7]));
    assert_eq!(read_own_pending(&reader, "g", "c", &keys, 100).await.unwrap().len(), 24);
    // Another consumer takes them over once they are idle long enough.
    let claimed = claim_stale(&c, "g", "other", &keys, 0, 100).await.unwrap();
    assert_eq!(claimed.len(), 24);
    ack(&c, "g", &claimed).await.unwrap();
    assert!(read_own_pending(&reader, "g", "other", &keys, 100).await.unwrap().is_empty());

    // Idle, a blocking read waits its time; an entry added meanwhile on any shard wakes it.
    let started = Instant::now();
    assert!(read_group(&reader, "g", "c", &keys, 100, 300).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let writer = c.clone();
    let last = keys[7].clone();
    let add = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _: String = writer.xadd(last.as_str(), false, None::<()>, "*", ("p", "late")).await.unwrap();
    });
    let got = read_group(&reader, "g", "c", &keys, 100, 30_000).await.unwrap();
    add.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, keys[7]);
}

#[tokio::test]
async fn a_url_of_the_wrong_kind_is_refused_naming_the_setting() {
    let cluster = proact_testkit::RedisCluster::start().await.unwrap();
    let node = format!("redis://127.0.0.1:{}", cluster.ports()[0]);
    let e = connect(&node).await.expect_err("redis:// to a cluster node");
    assert!(e.details().contains("PROACT_REDIS_URL") && e.details().contains("redis-cluster://"), "{e:?}");

    let single = proact_testkit::Redis::start().await.unwrap();
    let url = format!("redis-cluster://127.0.0.1:{}", single.port());
    let e = connect(&url).await.expect_err("redis-cluster:// to one Redis");
    assert!(e.details().contains("PROACT_REDIS_URL"), "{e:?}");

    let e = connect("redis-cluster://127.0.0.1:1,nope").await.expect_err("bad URL");
    assert!(e.details().contains("PROACT_REDIS_URL") && e.details().contains("\"nope\""), "{e:?}");
}

/// A service starting while a master's slots have no live node (its death before its
/// replica's promotion; here master and replica are both down, so the window lasts until the
/// test ends it) keeps trying, and comes up working once the cluster serves them again.
#[tokio::test]
async fn a_start_during_a_failover_waits_for_the_cluster() {
    let mut cluster = proact_testkit::RedisCluster::start().await.unwrap();
    let key = "proact:telemetry:{0}";
    let victim = cluster.masters().unwrap().into_iter().find(|m| m.serves(fred::util::redis_keyslot(key.as_bytes())));
    let victim = victim.unwrap();
    cluster.kill(victim.port).unwrap();
    for &r in &victim.replicas {
        cluster.kill(r).unwrap();
    }
    let url = cluster.url();
    let starting = tokio::spawn(async move { connect_within(&url, Duration::from_secs(40)).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!starting.is_finished(), "gave up (or connected) while the slots had no node: {:?}", starting.await);

    cluster.revive(victim.port).await.unwrap();
    let c = starting.await.unwrap().expect("connected once the cluster serves every slot");
    ensure_group(&c, key, "g").await.unwrap();
    let _: String = c.xadd(key, false, None::<()>, "*", ("p", "after")).await.unwrap();
    let got = read_group(&c, "g", "c", &[key.to_string()], 10, 100).await.unwrap();
    assert_eq!(got.len(), 1);

    // A setting no wait can mend still fails at once, whatever the patience.
    let single = proact_testkit::Redis::start().await.unwrap();
    let started = Instant::now();
    let e = connect_within(&format!("redis-cluster://127.0.0.1:{}", single.port()), Duration::from_secs(30))
        .await
        .expect_err("redis-cluster:// to one Redis");
    assert!(e.details().contains("PROACT_REDIS_URL"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "not retried: {:?}", started.elapsed());
}

/// Patience has an end: a cluster that stays without a master's slots fails the start with a
/// message naming the setting.
#[tokio::test]
async fn a_cluster_that_stays_down_fails_the_start_naming_the_setting() {
    let mut cluster = proact_testkit::RedisCluster::start().await.unwrap();
    let victim = cluster.masters().unwrap().remove(0);
    cluster.kill(victim.port).unwrap();
    for &r in &victim.replicas {
        cluster.kill(r).unwrap();
    }
    let e = connect_within(&cluster.url(), Duration::from_secs(2)).await.expect_err("the cluster stays down");
    assert!(e.details().contains("PROACT_REDIS_CONNECT_TIMEOUT_SECS"), "{e:?}");
}
