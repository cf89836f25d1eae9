//! A child process that is stopped (SIGTERM, then SIGKILL after a grace period) on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::KitError;

pub(crate) struct Guard {
    name: &'static str,
    child: Option<Child>,
    /// The signal that stops this server promptly (PostgreSQL: INT, a fast shutdown).
    stop_signal: &'static str,
}

impl Guard {
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Result<Self, KitError> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Self { name, child: Some(child), stop_signal: "TERM" })
    }

    pub(crate) fn with_stop_signal(mut self, signal: &'static str) -> Self {
        self.stop_signal = signal;
        self
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Fails if the process already exited (a bad config, a port taken).
    pub(crate) fn check_alive(&mut self, log: &Path) -> Result<(), KitError> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: String =
                    tail.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(KitError::Start { server: self.name, detail: format!("exited with {status}:\n{tail}") });
            }
        }
        Ok(())
    }

    /// Sends `signal` (e.g. "STOP", "CONT", "KILL") to the process, for fault injection.
    pub(crate) fn signal(&self, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{signal} {} failed", self.pid())))
        }
    }

    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg(format!("-{}", self.stop_signal)).arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago, below the kernel's ephemeral port range, and
/// not handed out before by this process.
///
/// Below the ephemeral range: a server is often started (or restarted) on its port a moment
/// after it was picked, and a port of that range can meanwhile become the local end of any
/// outgoing connection (a client's to Redis or PostgreSQL); the server then fails with
/// "Address already in use". Never twice: tests of one binary start servers in parallel, and
/// two of them given the same port would have the second fail to bind while its readiness
/// check connects to the first. Processes side by side start their search apart (pid and
/// clock). Where the range cannot be read or leaves no room below it, the kernel picks.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    const FLOOR: u32 = 10_000;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let take = |port: u16| HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner()).insert(port);
    let low = ephemeral_low().unwrap_or(32_768).min(65_536);
    if low >= FLOOR + 1_000 {
        let span = low - FLOOR;
        let start = *START.get_or_init(|| {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            std::process::id().wrapping_mul(7_919).wrapping_add(nanos) % span
        });
        for _ in 0..span {
            let port = (FLOOR + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && take(port) {
                return Ok(port);
            }
        }
    }
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if take(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no free loopback port left that this process has not used",
    ))
}

/// The first port of the kernel's ephemeral range (Linux), if it can be read.
fn ephemeral_low() -> Option<u32> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Waits until `port` accepts TCP connections, the process staying alive.
pub(crate) fn wait_for_port(guard: &mut Guard, port: u16, log: &Path, timeout: Duration) -> Result<(), KitError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    loop {
        guard.check_alive(log)?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KitError::Start {
                server: guard.name,
                detail: format!("port {port} not accepting after {timeout:?}; see {}", log.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Finds `binary` on PATH or in the usual system directories.
pub(crate) fn find_binary(
    binary: &'static str,
    package: &'static str,
    extra_dirs: &[PathBuf],
) -> Result<PathBuf, KitError> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"].map(PathBuf::from));
    dirs.extend(extra_dirs.iter().cloned());
    dirs.into_iter().map(|d| d.join(binary)).find(|p| p.is_file()).ok_or(KitError::Missing { binary, package })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a port is still free a moment after it was picked depends on every other
    /// process of the machine, so it is not checked here: the pick itself binds it.
    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let low = ephemeral_low().unwrap_or(32_768);
        let ports: Vec<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        for p in &ports {
            assert!(u32::from(*p) < low, "{p} is in the ephemeral range (from {low})");
        }
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
