//! Shard leases against a real Redis: fair sharing, takeover of a dead replica's shards,
//! and more replicas than shards.

use std::time::Duration;

use proact_anomaly_detector::leases::Leases;

async fn client(url: &str) -> fred::prelude::Client {
    proact_server::redis::connect(url).await.unwrap()
}

fn now_ms() -> i64 {
    proact_proto::time::now_micros() / 1000
}

#[tokio::test]
async fn replicas_share_shards_and_take_over_a_dead_one() {
    let redis = proact_testkit::Redis::start().await.unwrap();
    let mut a = Leases::new(client(&redis.url()).await, "a", 8, 1_000);
    let mut b = Leases::new(client(&redis.url()).await, "b", 8, 1_000);

    let ca = a.heartbeat(now_ms()).await.unwrap();
    assert_eq!(ca.gained.len(), 8, "alone, a replica takes every shard");
    let cb = b.heartbeat(now_ms()).await.unwrap();
    assert!(cb.gained.is_empty(), "held shards are not stolen");
    // a now sees two live replicas: it releases down to its fair share, b takes the rest.
    let ca = a.heartbeat(now_ms()).await.unwrap();
    assert_eq!(ca.lost.len(), 4);
    let cb = b.heartbeat(now_ms()).await.unwrap();
    assert_eq!(cb.gained.len(), 4);
    let mut all: Vec<u32> = a.owned().into_iter().chain(b.owned()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "each shard has exactly one owner");

    // a dies (stops renewing) while b keeps its heartbeat: after the TTL, b owns everything.
    let mut gained = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cb = b.heartbeat(now_ms()).await.unwrap();
        assert!(cb.lost.is_empty(), "b renews in time");
        gained += cb.gained.len();
    }
    assert_eq!(gained, 4);
    assert_eq!(b.owned().len(), 8);
    // A late heartbeat of a cannot renew what it lost.
    let ca = a.heartbeat(now_ms()).await.unwrap();
    assert_eq!(ca.lost.len(), 4);
    assert!(a.owned().len() <= 4);
    let mut all: Vec<u32> = a.owned().into_iter().chain(b.owned()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), a.owned().len() + b.owned().len(), "no shard owned twice");
}

#[tokio::test]
async fn more_replicas_than_shards() {
    let redis = proact_testkit::Redis::start().await.unwrap();
    let mut replicas = Vec::new();
    for name in ["r1", "r2", "r3"] {
        replicas.push(Leases::new(client(&redis.url()).await, name, 2, 5_000));
    }
    for _ in 0..3 {
        for r in replicas.iter_mut() {
            r.heartbeat(now_ms()).await.unwrap();
        }
    }
    let owned: Vec<usize> = replicas.iter().map(|r| r.owned().len()).collect();
    assert_eq!(owned.iter().sum::<usize>(), 2, "{owned:?}");
    assert!(owned.iter().all(|&n| n <= 1), "{owned:?}");
    // A graceful stop hands its shard over at once.
    let holder = replicas.iter().position(|r| !r.owned().is_empty()).unwrap();
    replicas[holder].release_all().await.unwrap();
    let mut taken = 0;
    for (i, r) in replicas.iter_mut().enumerate() {
        if i != holder {
            taken += r.heartbeat(now_ms()).await.unwrap().gained.len();
        }
    }
    assert_eq!(taken, 1);
}

/// A replica that paused past its TTL and lost a shard publishes nothing for it: Redis checks
/// the lease in the same script that appends the alert event.
#[tokio::test]
async fn a_replica_that_lost_its_lease_is_fenced_off() {
    use proact_anomaly_detector::leases::Fence;
    use proact_anomaly_detector::publish::{publish_once, Published};
    use proact_proto::v1::{Alert, AlertEvent, AlertEventKind};

    let redis = proact_testkit::Redis::start().await.unwrap();
    let c = client(&redis.url()).await;
    let mut a = Leases::new(client(&redis.url()).await, "a", 8, 1_000);
    assert_eq!(a.heartbeat(now_ms()).await.unwrap().gained.len(), 8);
    let fence = Fence { replica: "a".into(), shards: 8 };
    let event = |id: &str| AlertEvent {
        kind: AlertEventKind::Raised as i32,
        alert: Some(Alert { alert_id: id.into(), equipement_id: "PUMP-01".into(), severity: 2, ..Default::default() }),
        ..Default::default()
    };

    assert!(matches!(publish_once(&c, &event("A-1"), Some(&fence)).await.unwrap(), Published::Added(_)));
    assert_eq!(publish_once(&c, &event("A-1"), Some(&fence)).await.unwrap(), Published::Duplicate);

    // a pauses; its lease on PUMP-01's shard expires and replica b takes it.
    let key = proact_anomaly_detector::leases::lease_key(fence.shard_of("PUMP-01"));
    let _: () = fred::prelude::KeysInterface::del(&c, &key).await.unwrap();
    let _: () = fred::prelude::KeysInterface::set(&c, &key, "b", None, None, false).await.unwrap();
    assert_eq!(publish_once(&c, &event("A-2"), Some(&fence)).await.unwrap(), Published::Fenced);
    // Fenced means nothing was appended or claimed: b publishes the same event itself.
    let fence_b = Fence { replica: "b".into(), shards: 8 };
    assert!(matches!(publish_once(&c, &event("A-2"), Some(&fence_b)).await.unwrap(), Published::Added(_)));
    let n: u64 = fred::prelude::StreamsInterface::xlen(&c, proact_proto::streams::ALERTS_STREAM).await.unwrap();
    assert_eq!(n, 2, "A-1 once, A-2 once (by b)");
    // And a's next heartbeat notices the loss.
    let change = a.heartbeat(now_ms()).await.unwrap();
    assert!(change.lost.contains(&fence.shard_of("PUMP-01")), "{change:?}");
}

/// A batch's events go out in one pipeline, with one outcome each in order, and each
/// published transition leaves the equipment's episode record (what a takeover restores);
/// a fenced or duplicate one leaves nothing.
#[tokio::test]
async fn a_batch_is_published_in_one_call_and_records_its_episodes() {
    use proact_anomaly_detector::leases::Fence;
    use proact_anomaly_detector::publish::{load_episodes, publish_batch, Outgoing, Published};
    use proact_proto::v1::{Alert, AlertEvent, AlertEventKind};

    let redis = proact_testkit::Redis::start().await.unwrap();
    let c = client(&redis.url()).await;
    let mut a = Leases::new(client(&redis.url()).await, "a", 8, 10_000);
    assert_eq!(a.heartbeat(now_ms()).await.unwrap().gained.len(), 8);
    let fence = Fence { replica: "a".into(), shards: 8 };
    let ours = "PUMP-01";
    let theirs = (0..100).map(|i| format!("FAN-{i:02}")).find(|id| fence.shard_of(id) != fence.shard_of(ours)).unwrap();
    // Replica b holds the other equipment's shard now.
    let key = proact_anomaly_detector::leases::lease_key(fence.shard_of(&theirs));
    let _: () = fred::prelude::KeysInterface::set(&c, &key, "b", None, None, false).await.unwrap();
    let out = |kind: AlertEventKind, id: &str, equipment: &str, severity: i32, at: i64| Outgoing {
        event: AlertEvent {
            kind: kind as i32,
            alert: Some(Alert {
                alert_id: id.into(),
                equipement_id: equipment.into(),
                severity,
                state: 1,
                ..Default::default()
            }),
            ..Default::default()
        },
        at_micros: Some(at),
        episode: proact_anomaly_detector::engine::Episode::Condition,
    };
    let batch = [
        out(AlertEventKind::Raised, "P-1", ours, 2, 10),
        out(AlertEventKind::Raised, "P-1", ours, 2, 10),
        out(AlertEventKind::Raised, "F-1", &theirs, 2, 20),
        out(AlertEventKind::Escalated, "P-1", ours, 3, 30),
    ];
    let results = publish_batch(&c, &batch, &fence).await.unwrap();
    assert!(matches!(results[0], Published::Added(_)), "{results:?}");
    assert_eq!(results[1..3], [Published::Duplicate, Published::Fenced]);
    assert!(matches!(results[3], Published::Added(_)), "{results:?}");
    let n: u64 = fred::prelude::StreamsInterface::xlen(&c, proact_proto::streams::ALERTS_STREAM).await.unwrap();
    assert_eq!(n, 2, "the raise and the escalation");

    let records = load_episodes(&c, fence.shard_of(ours)).await.unwrap();
    assert_eq!(records.len(), 1);
    let (equipment, record) = &records[0];
    assert_eq!(equipment, ours);
    assert_eq!((record.at_micros, record.alert.severity, record.alert.alert_id.as_str()), (30, 3, "P-1"));
    assert!(load_episodes(&c, fence.shard_of(&theirs)).await.unwrap().is_empty(), "fenced: nothing recorded");
    assert!(publish_batch(&c, &[], &fence).await.unwrap().is_empty());

    // A duplicate renews its dedupe key: a write, so that a `WAIT` after publishing an event
    // again covers its first append (scoring's unconfirmed events).
    let dedupe = format!("proact:alert-dedupe:P-1:{}:2", AlertEventKind::Raised as i32);
    let _: () = fred::prelude::KeysInterface::expire(&c, &dedupe, 100, None).await.unwrap();
    assert_eq!(publish_batch(&c, &batch[..1], &fence).await.unwrap(), [Published::Duplicate]);
    let ttl: i64 = fred::prelude::KeysInterface::ttl(&c, &dedupe).await.unwrap();
    assert!(ttl > 100, "the duplicate renewed its dedupe key ({ttl} s left)");
    // One Redis without replicas: a replica wait is refused, promptly.
    let wait = proact_anomaly_detector::publish::ReplicaWait { replicas: 1, timeout_ms: 10 };
    assert_eq!(proact_anomaly_detector::publish::wait_for_replicas(&c, wait).await.unwrap(), 0);
}

/// A heartbeat that fails after it found a shard lost (here: acquiring a free shard is
/// refused by an ACL) reports nothing; the next one must still report that loss, or the
/// scoring loop would keep the lost shard's equipment state and never drop it.
#[tokio::test]
async fn a_loss_seen_by_a_heartbeat_that_failed_is_reported_by_the_next() {
    use fred::prelude::*;
    use proact_anomaly_detector::leases::lease_key;
    let redis = proact_testkit::Redis::start().await.unwrap();
    let admin = client(&redis.url()).await;
    let lease = |s: u32| lease_key(s);
    // Shard 5 is another replica's at first.
    let _: () = admin.set(lease(5), "x", Some(Expiration::PX(60_000)), None, false).await.unwrap();
    let mut r = Leases::new(client(&redis.url()).await, "r", 8, 60_000);
    let first = r.heartbeat(now_ms()).await.unwrap();
    assert_eq!(first.gained, vec![0, 1, 2, 3, 4, 6, 7]);

    // Shard 2 is taken by another replica, shard 5 becomes free but r may not write its lease.
    let _: () = admin.set(lease(2), "x", Some(Expiration::PX(60_000)), None, false).await.unwrap();
    let _: i64 = admin.del(lease(5)).await.unwrap();
    let mut acl: Vec<String> =
        ["SETUSER", "default", "resetkeys", "%R~*", "~proact:detector:replicas"].map(String::from).to_vec();
    acl.extend((0..8).filter(|&s| s != 5).map(|s| format!("~{}", lease(s))));
    let acl_cmd = || fred::types::CustomCommand::new_static("ACL", fred::types::ClusterHash::Random, false);
    let _: Value = admin.custom(acl_cmd(), acl).await.unwrap();
    assert!(r.heartbeat(now_ms()).await.is_err(), "acquiring shard 5 is refused");
    assert!(!r.owned().contains(&2), "the failed heartbeat saw shard 2 lost");

    let _: Value = admin.custom(acl_cmd(), vec!["SETUSER", "default", "allkeys"]).await.unwrap();
    let next = r.heartbeat(now_ms()).await.unwrap();
    assert_eq!(next.lost, vec![2], "the loss the failed heartbeat saw is reported");
    assert_eq!(next.gained, vec![5]);
    assert_eq!(r.owned(), vec![0, 1, 3, 4, 5, 6, 7]);
}
