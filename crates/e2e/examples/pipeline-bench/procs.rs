//! The measured processes: the five services (and the Python design) started from their
//! release binaries as OS processes, and their CPU time and peak memory read from /proc.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, logs: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
        Ok(Self { name: name.to_string(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited with {status} (see its log)", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`; returns whether it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A ProAct service: its process and its admin address (`/readyz`).
pub struct Service {
    pub proc: Proc,
    pub admin: SocketAddr,
}

impl Service {
    pub fn spawn(bin_dir: &Path, name: &str, env: &[(String, String)], logs: &Path) -> anyhow::Result<Self> {
        let admin: SocketAddr = format!("127.0.0.1:{}", proact_testkit::free_port()?).parse()?;
        let mut cmd = Command::new(bin_dir.join(format!("proact-{name}")));
        cmd.envs(env.iter().cloned()).env("PROACT_ADMIN_ADDR", admin.to_string());
        Ok(Self { proc: Proc::spawn(name, cmd, logs)?, admin })
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.proc.check_alive()?;
            if http_status(self.admin, "/readyz").await == Some(200) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "{} not ready after {timeout:?}", self.proc.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Status code of a plain HTTP/1.0 GET, or `None` if nothing answered.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head)).await.ok()?.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The body of a plain HTTP/1.0 GET (`/metrics`), or `None` if nothing answered.
pub async fn http_body(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await.ok()?.ok()?;
    let text = String::from_utf8(all).ok()?;
    Some(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Sum of the samples of `name` whose labels contain every `label=value` pair of `labels`,
/// in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

pub use proact_testkit::procstat::{clock_ticks, cpu_secs};

/// The whole machine's CPU time from `/proc/stat`, in clock ticks summed over its cores: what
/// every process took (ours, the load driver's and anyone else's), and what the hypervisor
/// took from this virtual machine (`steal`).
#[derive(Debug, Default, Clone, Copy)]
pub struct MachineTicks {
    pub busy: f64,
    pub steal: f64,
}

impl MachineTicks {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return Self::default() };
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let f: Vec<f64> = cpu.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
        if f.len() < 8 {
            return Self::default();
        }
        Self { busy: f[0] + f[1] + f[2] + f[5] + f[6], steal: f[7] }
    }

    /// Cores busy and stolen between `self` and `later`, over `secs`.
    pub fn cores_until(&self, later: &Self, ticks_per_sec: f64, secs: f64) -> (f64, f64) {
        let per = |d: f64| d / ticks_per_sec / secs.max(1e-9);
        (per(later.busy - self.busy), per(later.steal - self.steal))
    }
}

/// Peak resident memory (`VmHWM`), MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// The servers this process started (Mosquitto, Redis, PostgreSQL and its backends), found
/// among its descendants by command name: `comm → pids`.
pub fn servers() -> BTreeMap<&'static str, Vec<u32>> {
    let me = std::process::id();
    let mut parent: BTreeMap<u32, (u32, String)> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 2..].split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        parent.insert(pid, (ppid, comm));
    }
    let descends = |mut pid: u32| {
        while let Some((ppid, _)) = parent.get(&pid) {
            if *ppid == me {
                return true;
            }
            pid = *ppid;
        }
        false
    };
    let mut out: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
    for (&pid, (_, comm)) in &parent {
        let name = match comm.as_str() {
            "mosquitto" => "mosquitto",
            "redis-server" => "redis",
            c if c == "postgres" || c.starts_with("postgres:") => "postgresql",
            _ => continue,
        };
        if descends(pid) {
            out.entry(name).or_default().push(pid);
        }
    }
    out
}
