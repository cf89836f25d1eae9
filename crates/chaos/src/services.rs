//! The five services as OS processes (as `deploy/demo.sh` and a cluster run them), on ports
//! chosen once so that a restarted process comes back where its clients look for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::plan::Svc;

/// Fixed addresses of one run's services.
#[derive(Debug, Clone)]
pub struct Ports {
    pub admin: Vec<(Svc, SocketAddr)>,
    pub grpc: Vec<(Svc, SocketAddr)>,
    pub http: SocketAddr,
}

impl Ports {
    pub fn pick() -> std::io::Result<Self> {
        let mut admin = Vec::new();
        let mut grpc = Vec::new();
        for s in Svc::ALL {
            admin.push((s, free_addr()?));
            grpc.push((s, free_addr()?));
        }
        Ok(Self { admin, grpc, http: free_addr()? })
    }

    pub fn admin(&self, s: Svc) -> SocketAddr {
        self.admin.iter().find(|(x, _)| *x == s).expect("every service has one").1
    }

    pub fn grpc(&self, s: Svc) -> SocketAddr {
        self.grpc.iter().find(|(x, _)| *x == s).expect("every service has one").1
    }
}

/// A loopback address free now, below the kernel's ephemeral port range: the services bind
/// these ports seconds later and again after every restart ([`proact_testkit::free_port`]).
fn free_addr() -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], proact_testkit::free_port()?)))
}

/// How the services reach the stack.
pub struct Endpoints {
    pub mqtt: String,
    pub redis: String,
    pub database: String,
}

/// The flags of each service: what `crates/e2e` passes in-process, plus what makes faults
/// observable in a few minutes (short lease and clear times, no background training).
pub fn args(svc: Svc, ports: &Ports, ep: &Endpoints) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--admin-addr".into(),
        ports.admin(svc).to_string(),
        "--grpc-addr".into(),
        ports.grpc(svc).to_string(),
        "--redis-url".into(),
        ep.redis.clone(),
    ];
    let registry = format!("http://{}", ports.grpc(Svc::Trainer));
    let extra: Vec<String> = match svc {
        Svc::Ingest => vec![
            "--mqtt-url".into(),
            ep.mqtt.clone(),
            "--client-id".into(),
            "chaos-ingest".into(),
            // Mosquitto 2.0.11 does not restore `$share` subscriptions when it restarts: what
            // is published between its restart and ingest's resubscribe would be dropped by the
            // broker. With one replica a plain subscription on the persistent session is kept.
            "--shared-subscription".into(),
            "false".into(),
        ],
        Svc::Archive => vec!["--consumer".into(), "chaos-archive".into(), "--block-ms".into(), "100".into()],
        Svc::Detector => vec![
            "--consumer".into(),
            "chaos-detector".into(),
            "--registry-url".into(),
            registry.clone(),
            "--lease-ttl-ms".into(),
            "3000".into(),
            // Episodes of the plan are 3 s hot then 9 s normal: they clear in between.
            "--clear-after-secs".into(),
            "5".into(),
            // Outages of the pipeline itself are not sensor silence; keep the alert set known.
            "--silence-after-secs".into(),
            "0".into(),
            // What chaos checks is delivery (each planned episode raised once), not judgment:
            // the online detectors would also judge the plan's synthetic signal (a 3 s jump to
            // 95 °C, then back) and add episodes of their own to the alert set.
            "--online".into(),
            "off".into(),
        ],
        Svc::Gateway => vec![
            "--http-addr".into(),
            ports.http.to_string(),
            "--archive-grpc-url".into(),
            format!("http://{}", ports.grpc(Svc::Archive)),
            "--registry-grpc-url".into(),
            registry,
        ],
        Svc::Trainer => vec!["--train-schedule".into(), "off".into()],
    };
    a.extend(extra);
    if svc != Svc::Ingest {
        a.extend(["--database-url".into(), ep.database.clone()]);
    }
    a
}

/// One service process, restartable.
pub struct Service {
    pub svc: Svc,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    admin: SocketAddr,
    child: Option<Child>,
    /// Exits nobody asked for (a crash), each followed by a restart.
    pub crashes: Vec<String>,
}

impl Service {
    pub fn new(svc: Svc, bin_dir: &Path, log_dir: &Path, args: Vec<String>, admin: SocketAddr) -> Self {
        Self {
            svc,
            bin: bin_dir.join(format!("proact-{}", svc.name())),
            args,
            log: log_dir.join(format!("{}.log", svc.name())),
            admin,
            child: None,
            crashes: Vec::new(),
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.bin.is_file(),
            "{} not found: build the services first (`cargo build -p proact-{}`), or point --bin-dir at them",
            self.bin.display(),
            self.svc.name()
        );
        // Appended across restarts: one log per service tells the whole run.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`, and wait for the process to be gone.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM (the services drain), SIGKILL if it takes longer than `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else { return };
        if let Some(pid) = c.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// The exit status if the process ended on its own since the last check.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// How many lines of this service's log, over all its restarts, contain `text`.
    pub fn log_lines_with(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.log).map(|l| l.lines().filter(|l| l.contains(text)).count()).unwrap_or(0)
    }

    /// The value of a counter or gauge on `/metrics` (summed over its labels), if the process
    /// answers and has recorded it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let body = get(self.admin, "/metrics").await?;
        parse_metric(&body, name)
    }

    /// Until `/readyz` answers 200 (its dependencies reachable), up to `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Looked at, not taken: whoever supervises the process sees the exit too.
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!("{} exited with {status} while starting; see {}", self.svc.name(), self.log.display());
            }
            anyhow::ensure!(self.child.is_some(), "{} is not running", self.svc.name());
            if ready(self.admin).await {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?}; see {}",
                self.svc.name(),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `GET /readyz` on an admin port: true on a 200.
async fn ready(admin: SocketAddr) -> bool {
    get(admin, "/readyz").await.is_some()
}

/// The body of `GET path` on an admin port, if it answered 200 within 2 s.
async fn get(admin: SocketAddr, path: &str) -> Option<String> {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(admin).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await?;
        std::io::Result::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(2), probe).await.ok()?.ok()?;
    if !(reply.starts_with(b"HTTP/1.1 200") || reply.starts_with(b"HTTP/1.0 200")) {
        return None;
    }
    let text = String::from_utf8_lossy(&reply);
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// `name`'s samples in a Prometheus text exposition, summed over their labels.
fn parse_metric(body: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = body
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_its_labels_and_not_confused_with_a_longer_name() {
        let body = "# TYPE proact_detector_replica_wait_failures_total counter\n\
                    proact_detector_replica_wait_failures_total 3\n\
                    proact_detector_replica_wait_failures_total_extra 100\n\
                    proact_detector_alert_events_total{rule=\"a\"} 2\n\
                    proact_detector_alert_events_total{rule=\"b\"} 5\n";
        assert_eq!(parse_metric(body, "proact_detector_replica_wait_failures_total"), Some(3.0));
        assert_eq!(parse_metric(body, "proact_detector_alert_events_total"), Some(7.0));
        assert_eq!(parse_metric(body, "proact_detector_alert_events_republished_total"), None);
    }
}
