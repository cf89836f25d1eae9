//! The kit's Redis Cluster: created whole, a killed master's replica takes over, and the
//! old master, started again, rejoins as its replica.

use proact_testkit::RedisCluster;

#[tokio::test]
async fn a_cluster_has_three_masters_each_with_a_replica_and_survives_a_master_kill_and_restart() {
    let mut cluster = RedisCluster::start().await.expect("cluster");
    let masters = cluster.masters().unwrap();
    assert_eq!(masters.len(), 3, "{masters:?}");
    assert!(masters.iter().all(|m| m.replicas.len() == 1), "{masters:?}");
    let covered: u32 = masters.iter().flat_map(|m| m.slots.iter()).map(|r| u32::from(r.end() - r.start()) + 1).sum();
    assert_eq!(covered, 16384);
    assert!(cluster.url().starts_with("redis-cluster://127.0.0.1:"));

    let victim = masters[1].clone();
    let promoted = cluster.kill_master(victim.port).await.expect("failover");
    assert_eq!(promoted, victim.replicas[0], "its replica took its slots");
    let after = cluster.masters().unwrap();
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|m| m.port != victim.port));
    assert_eq!(cluster.ports().len(), 5);

    cluster.restart(victim.port).await.expect("the old master comes back");
    let back = cluster.masters().unwrap();
    let promoted_master = back.iter().find(|m| m.port == promoted).unwrap();
    assert_eq!(promoted_master.replicas, vec![victim.port], "it is the new master's replica");
    assert_eq!(cluster.ports().len(), 6);
}
