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

/// A port that was free a moment ago on 127.0.0.1, and not handed out before by this process.
///
/// Tests of one binary start servers in parallel: without the second condition two of them
/// could be given the same port, the second server then fails to bind while its readiness
/// check connects to the first one, and its test talks to another test's server until that
/// one stops (seen as "connection refused" in the middle of a test).
pub(crate) fn free_port() -> Result<u16, KitError> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return Ok(port);
        }
    }
    Err(KitError::Start { server: "any", detail: "no free port left that this process has not used".into() })
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
