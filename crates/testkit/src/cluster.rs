//! A real Redis Cluster on loopback: three masters and three replicas, each a
//! `redis-server --cluster-enabled yes` in its own directory under one temporary directory,
//! joined by `redis-cli --cluster create … --cluster-replicas 1`, and stopped on drop.
//!
//! The kit talks to the nodes with `redis-cli` (it has no Redis client of its own): the
//! topology a test asserts on comes from `CLUSTER NODES`, as an operator would read it.
//! Failures are quick on purpose (`cluster-node-timeout` of one second), so that a test
//! killing a master ([`RedisCluster::kill_master`]) waits for its replica's promotion in
//! seconds, not the production default of fifteen.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{find_binary, free_port, wait_for_port, Guard};
use crate::servers::Dir;
use crate::KitError;

const MASTERS: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const NODE_TIMEOUT_MS: u32 = 1_000;

struct Node {
    port: u16,
    bus: u16,
    dir: PathBuf,
    /// `None` once the node was killed.
    guard: Option<Guard>,
}

impl Node {
    /// Starts this node's server (again: it keeps its `nodes.conf` and data).
    fn spawn(&mut self, bin: &Path) -> Result<(), KitError> {
        let log = self.dir.join("redis.log");
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &self.port.to_string(), "--cluster-port", &self.bus.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(self.dir.join("nodes.conf"))
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "no", "--dir"])
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]);
        let mut guard = Guard::spawn("redis cluster node", cmd, &log)?;
        wait_for_port(&mut guard, self.port, &log, START_TIMEOUT)?;
        self.guard = Some(guard);
        Ok(())
    }
}

/// One master of the cluster as `CLUSTER NODES` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub port: u16,
    pub id: String,
    /// The hash slots it serves.
    pub slots: Vec<RangeInclusive<u16>>,
    /// Ports of its connected replicas.
    pub replicas: Vec<u16>,
}

impl Master {
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|r| r.contains(&slot))
    }
}

/// Three masters, three replicas, on free loopback ports.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: Dir,
    bin: PathBuf,
    cli: PathBuf,
}

impl RedisCluster {
    /// Starts the six nodes, creates the cluster and returns once every node reports
    /// `cluster_state:ok` and every replica is in sync with its master.
    pub async fn start() -> Result<Self, KitError> {
        let cluster = tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .map_err(|e| KitError::Start { server: "redis cluster", detail: e.to_string() })??;
        cluster.wait_until_settled(None, START_TIMEOUT).await?;
        Ok(cluster)
    }

    fn start_blocking() -> Result<Self, KitError> {
        let bin = find_binary("redis-server", "redis-server", &[])?;
        let cli = find_binary("redis-cli", "redis-tools", &[])?;
        let dir = Dir::new(None)?;
        let mut nodes = Vec::new();
        for i in 0..MASTERS * 2 {
            let mut node =
                Node { port: free_port()?, bus: free_port()?, dir: dir.path().join(format!("node-{i}")), guard: None };
            std::fs::create_dir_all(&node.dir)?;
            node.spawn(&bin)?;
            nodes.push(node);
        }
        let cluster = Self { nodes, dir, bin, cli };
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(&cluster.cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()?;
        if !out.status.success() {
            return Err(KitError::Start {
                server: "redis cluster",
                detail: format!(
                    "redis-cli --cluster create failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(cluster)
    }

    /// `redis-cluster://` with every node, the form `PROACT_REDIS_URL` takes.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// The ports of the nodes still running.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.guard.is_some()).map(|n| n.port).collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The masters serving slots, as a live node sees them, in port order.
    pub fn masters(&self) -> Result<Vec<Master>, KitError> {
        let port = self.ports().first().copied().ok_or_else(|| cluster_error("every node was killed"))?;
        Ok(parse_masters(&self.cli(port, &["CLUSTER", "NODES"])?))
    }

    /// The port of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Result<u16, KitError> {
        self.masters()?
            .into_iter()
            .find(|m| m.serves(slot))
            .map(|m| m.port)
            .ok_or_else(|| cluster_error(&format!("no master serves slot {slot}")))
    }

    /// Runs `redis-cli -p port ARGS…` and returns its output (for a test's own checks, e.g.
    /// `CLUSTER KEYSLOT key`).
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, KitError> {
        let out = Command::new(&self.cli).args(["-p", &port.to_string()]).args(args).output()?;
        if !out.status.success() {
            return Err(cluster_error(&format!("redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills (SIGKILL) the master on `port` and waits until one of its replicas was promoted
    /// and the cluster is whole again (`cluster_state:ok` on every live node). Returns the
    /// new master's port.
    pub async fn kill_master(&mut self, port: u16) -> Result<u16, KitError> {
        let before = self.masters()?;
        let dead = before
            .iter()
            .find(|m| m.port == port)
            .cloned()
            .ok_or_else(|| cluster_error(&format!("port {port} is not a master")))?;
        self.kill(port)?;
        let slot = dead.slots.first().map(|r| *r.start()).unwrap_or(0);
        self.wait_until_settled(Some(slot), START_TIMEOUT).await
    }

    /// Kills (SIGKILL) the node on `port` and returns at once, without waiting for the
    /// cluster to notice or fail over: a test acts in the window a failover leaves.
    pub fn kill(&mut self, port: u16) -> Result<(), KitError> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .ok_or_else(|| cluster_error(&format!("port {port} is not a node of this cluster")))?;
        if let Some(guard) = node.guard.take() {
            guard.signal("KILL")?;
        }
        Ok(())
    }

    /// Starts again the node on `port` that [`kill`](Self::kill) killed, in whatever role its
    /// `nodes.conf` gives it, and returns once every live node says the cluster is whole.
    pub async fn revive(&mut self, port: u16) -> Result<(), KitError> {
        let bin = self.bin.clone();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port && n.guard.is_none())
            .ok_or_else(|| cluster_error(&format!("no killed node on port {port}")))?;
        node.spawn(&bin)?;
        self.wait_until_settled(None, START_TIMEOUT).await.map(|_| ())
    }

    /// Starts again the node on `port` that [`kill_master`](Self::kill_master) killed; it
    /// rejoins as a replica of the master that replaced it. Returns once it is in sync.
    pub async fn restart(&mut self, port: u16) -> Result<(), KitError> {
        self.revive(port).await?;
        let rejoined = |m: &Master| m.replicas.contains(&port);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.masters()?.iter().any(rejoined) {
            if Instant::now() > deadline {
                return Err(cluster_error(&format!("node {port} did not rejoin as a replica")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_until_settled(None, START_TIMEOUT).await?;
        Ok(())
    }

    /// Waits until every live node says `cluster_state:ok`, knows every live node, and every
    /// master with a replica has it in sync; with `slot`, also until a live master serves it.
    /// Returns the port of the master of `slot` (or 0 without one).
    /// (`redis-cli` calls are short: they run on the caller's task.)
    async fn wait_until_settled(&self, slot: Option<u16>, timeout: Duration) -> Result<u16, KitError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match self.settled(slot) {
                Ok(Some(port)) => return Ok(port),
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(cluster_error(&format!(
                    "not settled after {timeout:?} (last: {last}); logs in {}",
                    self.dir.path().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn settled(&self, slot: Option<u16>) -> Result<Option<u16>, KitError> {
        let live = self.ports();
        for &port in &live {
            let info = self.cli(port, &["CLUSTER", "INFO"])?;
            if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                return Ok(None);
            }
        }
        let masters = self.masters()?;
        if masters.len() != MASTERS || masters.iter().any(|m| !live.contains(&m.port)) {
            return Ok(None);
        }
        for m in &masters {
            for &r in m.replicas.iter().filter(|r| live.contains(r)) {
                if !self.cli(r, &["INFO", "replication"])?.contains("master_link_status:up") {
                    return Ok(None);
                }
            }
        }
        Ok(Some(slot.and_then(|s| masters.iter().find(|m| m.serves(s))).map_or(0, |m| m.port)))
    }
}

fn cluster_error(detail: &str) -> KitError {
    KitError::Start { server: "redis cluster", detail: detail.to_string() }
}

/// Reads `CLUSTER NODES`: `id ip:port@bus flags master-id ping pong epoch link slot…`. A
/// master flagged `fail` (or `fail?`) is left out, and so are its replicas.
fn parse_masters(nodes: &str) -> Vec<Master> {
    let rows: Vec<Vec<&str>> =
        nodes.lines().map(|l| l.split_whitespace().collect()).filter(|f: &Vec<&str>| f.len() >= 8).collect();
    let port_of = |addr: &str| -> Option<u16> { addr.split('@').next()?.rsplit(':').next()?.parse().ok() };
    let failed = |flags: &str| flags.split(',').any(|f| f == "fail" || f == "fail?");
    let mut masters: Vec<Master> = rows
        .iter()
        .filter(|f| f[2].split(',').any(|x| x == "master") && !failed(f[2]) && f.len() > 8)
        .filter_map(|f| {
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                    None => s.parse().ok().map(|x: u16| x..=x),
                })
                .collect();
            Some(Master { port: port_of(f[1])?, id: f[0].to_string(), slots, replicas: Vec::new() })
        })
        .collect();
    for f in &rows {
        if f[2].split(',').any(|x| x == "slave") && !failed(f[2]) && f[7] == "connected" {
            if let (Some(m), Some(port)) = (masters.iter_mut().find(|m| m.id == f[3]), port_of(f[1])) {
                m.replicas.push(port);
            }
        }
    }
    masters.sort_by_key(|m| m.port);
    masters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_read_as_masters_with_their_slots_and_replicas() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922 [5461->-x]
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 slave b2 0 0 2 disconnected
f6 127.0.0.1:7006@17006 master - 0 0 4 connected 10923-16383
";
        let m = parse_masters(nodes);
        assert_eq!(m.len(), 3, "the failed master is left out: {m:?}");
        assert_eq!((m[0].port, m[0].replicas.clone()), (7001, vec![7004]));
        assert_eq!(m[1].slots, vec![5461..=10922], "a migrating-slot marker is not a slot");
        assert!(m[1].replicas.is_empty(), "a disconnected replica does not count");
        assert_eq!(m[2].port, 7006);
        assert!(m[2].serves(16383) && !m[2].serves(10922));
    }
}
