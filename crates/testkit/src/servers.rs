//! The three servers and the stack that groups them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{find_binary, free_port, port_is_free, wait_for_port, Guard};
use crate::KitError;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a server keeps its files: a temporary directory removed on drop, or a kept one.
pub(crate) enum Dir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Dir {
    pub(crate) fn new(keep_in: Option<&Path>) -> Result<Self, KitError> {
        let d = match keep_in {
            Some(p) => {
                std::fs::create_dir_all(p)?;
                // Absolute: the servers run with their own working directory.
                Dir::Kept(std::fs::canonicalize(p)?)
            }
            None => Dir::Temp(tempfile::Builder::new().prefix("proact-kit-").tempdir()?),
        };
        // PostgreSQL may run as another user: it must be able to traverse the directory.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(d)
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Dir::Temp(t) => t.path(),
            Dir::Kept(p) => p,
        }
    }
}

fn pick_port(wanted: Option<u16>) -> Result<u16, KitError> {
    match wanted {
        Some(p) if port_is_free(p) => Ok(p),
        Some(p) => Err(KitError::Start {
            server: "stack",
            detail: format!("port {p} is already in use (another broker, Redis or PostgreSQL running?)"),
        }),
        None => Ok(free_port()?),
    }
}

/// PEM files of a server that speaks TLS: the CA clients verify it with, its certificate
/// (for `localhost` and `127.0.0.1`) and its key, e.g. from [`crate::pki::Pki`].
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A Redis server with append-only persistence.
pub struct Redis {
    port: u16,
    guard: Guard,
    dir: Dir,
    tls: bool,
}

impl Redis {
    pub async fn start() -> Result<Self, KitError> {
        Self::start_with(None, None).await
    }

    pub async fn start_with(port: Option<u16>, keep_in: Option<PathBuf>) -> Result<Self, KitError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(port, keep_in.as_deref(), None))
            .await
            .map_err(|e| KitError::Start { server: "redis", detail: e.to_string() })?
    }

    /// A Redis that speaks TLS only (clients are not asked for a certificate); its
    /// [`url`](Self::url) is `rediss://`.
    pub async fn start_tls(tls: ServerTls) -> Result<Self, KitError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(None, None, Some(&tls)))
            .await
            .map_err(|e| KitError::Start { server: "redis", detail: e.to_string() })?
    }

    fn start_blocking(port: Option<u16>, keep_in: Option<&Path>, tls: Option<&ServerTls>) -> Result<Self, KitError> {
        let bin = find_binary("redis-server", "redis-server", &[])?;
        let dir = Dir::new(keep_in)?;
        let port = pick_port(port)?;
        let log = dir.path().join("redis.log");
        let mut cmd = Command::new(bin);
        match tls {
            None => cmd.args(["--port", &port.to_string()]),
            Some(t) => cmd
                .args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&t.cert)
                .arg("--tls-key-file")
                .arg(&t.key)
                .arg("--tls-ca-cert-file")
                .arg(&t.ca),
        };
        cmd.args(["--bind", "127.0.0.1", "--dir"]).arg(dir.path()).args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]);
        let mut guard = Guard::spawn("redis", cmd, &log)?;
        wait_for_port(&mut guard, port, &log, START_TIMEOUT)?;
        Ok(Self { port, guard, dir, tls: tls.is_some() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "rediss" } else { "redis" }, self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a signal to the server process (fault injection: "STOP", "CONT", "KILL").
    pub fn signal(&self, sig: &str) -> std::io::Result<()> {
        self.guard.signal(sig)
    }

    /// Stops the server (SIGTERM: its append-only file is flushed); [`restart`](Self::restart)
    /// brings it back with its data on the same port.
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    /// Stops the server (its data stays) and starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.guard.stop();
        let keep = self.dir.path().to_path_buf();
        let port = self.port;
        let fresh = tokio::task::spawn_blocking(move || Self::start_blocking(Some(port), Some(&keep), None))
            .await
            .map_err(|e| KitError::Start { server: "redis", detail: e.to_string() })??;
        self.guard = fresh.into_guard();
        Ok(())
    }

    fn into_guard(self) -> Guard {
        // The fresh instance shares our directory: keep ours, take its process.
        let Redis { guard, .. } = self;
        guard
    }
}

/// Security settings for a [`Mosquitto`] broker (for tests of authentication and TLS).
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// `(user, password)` pairs; when non-empty, anonymous clients are refused.
    pub users: Vec<(String, String)>,
    /// A Mosquitto password file to start from (e.g. written by `proact-device add`);
    /// `users` are added to a copy of it. Anonymous clients are then refused.
    pub password_file: Option<PathBuf>,
    /// A Mosquitto ACL file (`acl_file`), e.g. the shipped `deploy/docker/mosquitto-acl.conf`.
    pub acl_file: Option<PathBuf>,
    /// PEM files `(ca, server certificate, server key)`: the listener speaks TLS only.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// With `tls`: clients must present a certificate signed by the CA.
    pub require_client_cert: bool,
}

/// A Mosquitto broker with persistent sessions.
pub struct Mosquitto {
    port: u16,
    guard: Guard,
    dir: Dir,
    options: MosquittoOptions,
}

impl Mosquitto {
    pub async fn start() -> Result<Self, KitError> {
        Self::start_with(None, None).await
    }

    pub async fn start_with(port: Option<u16>, keep_in: Option<PathBuf>) -> Result<Self, KitError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(port, keep_in.as_deref(), MosquittoOptions::default()))
            .await
            .map_err(|e| KitError::Start { server: "mosquitto", detail: e.to_string() })?
    }

    /// A broker on a free port with passwords and/or TLS (see [`MosquittoOptions`]).
    pub async fn start_secured(options: MosquittoOptions) -> Result<Self, KitError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(None, None, options))
            .await
            .map_err(|e| KitError::Start { server: "mosquitto", detail: e.to_string() })?
    }

    fn start_blocking(port: Option<u16>, keep_in: Option<&Path>, options: MosquittoOptions) -> Result<Self, KitError> {
        let bin = find_binary("mosquitto", "mosquitto", &[])?;
        let dir = Dir::new(keep_in)?;
        let port = pick_port(port)?;
        let log = dir.path().join("mosquitto.log");
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous {}\n\
             persistence true\n\
             persistence_location {}/\n\
             autosave_interval 1\n\
             max_inflight_messages 1000\n\
             set_tcp_nodelay true\n\
             max_queued_messages 1000000\n\
             max_queued_bytes 0\n\
             message_size_limit 1048576\n\
             persistent_client_expiration 1d\n\
             log_dest stdout\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n",
            options.users.is_empty() && options.password_file.is_none(),
            dir.path().display()
        );
        if !options.users.is_empty() || options.password_file.is_some() {
            let passwd = dir.path().join("passwd");
            let _ = std::fs::remove_file(&passwd);
            if let Some(from) = &options.password_file {
                std::fs::copy(from, &passwd)?;
            }
            let tool = find_binary("mosquitto_passwd", "mosquitto", &[])?;
            for (user, password) in &options.users {
                let mut cmd = Command::new(&tool);
                if !passwd.exists() {
                    cmd.arg("-c");
                }
                let out = cmd.arg("-b").arg(&passwd).arg(user).arg(password).output()?;
                if !out.status.success() {
                    return Err(KitError::Start {
                        server: "mosquitto",
                        detail: format!("mosquitto_passwd failed: {}", String::from_utf8_lossy(&out.stderr)),
                    });
                }
            }
            text.push_str(&format!("password_file {}\n", passwd.display()));
        }
        if let Some(acl) = &options.acl_file {
            text.push_str(&format!("acl_file {}\n", acl.display()));
        }
        if let Some((ca, cert, key)) = &options.tls {
            text.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                ca.display(),
                cert.display(),
                key.display(),
                options.require_client_cert
            ));
        }
        if running_as_root() {
            // Otherwise mosquitto drops to a `mosquitto` user that cannot write our directory.
            text.push_str("user root\n");
        }
        std::fs::write(&conf, text)?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf);
        let mut guard = Guard::spawn("mosquitto", cmd, &log)?;
        wait_for_port(&mut guard, port, &log, START_TIMEOUT)?;
        Ok(Self { port, guard, dir, options })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's process id (benchmarks read its CPU time from `/proc`).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The broker's log (errors, warnings and notices, such as "Outgoing messages are being
    /// dropped for client …").
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    pub fn signal(&self, sig: &str) -> std::io::Result<()> {
        self.guard.signal(sig)
    }

    /// Stops the broker (its persistence file stays) and starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.guard.stop();
        let keep = self.dir.path().to_path_buf();
        let port = self.port;
        let options = self.options.clone();
        let fresh = tokio::task::spawn_blocking(move || Self::start_blocking(Some(port), Some(&keep), options))
            .await
            .map_err(|e| KitError::Start { server: "mosquitto", detail: e.to_string() })??;
        let Mosquitto { guard, .. } = fresh;
        self.guard = guard;
        Ok(())
    }
}

/// A PostgreSQL server with an empty `proact` database owned by user `proact` (trust auth,
/// loopback only).
pub struct Postgres {
    port: u16,
    guard: Guard,
    dir: Dir,
}

impl Postgres {
    pub async fn start() -> Result<Self, KitError> {
        Self::start_with(None, None).await
    }

    pub async fn start_with(port: Option<u16>, keep_in: Option<PathBuf>) -> Result<Self, KitError> {
        let pg = tokio::task::spawn_blocking(move || Self::start_blocking(port, keep_in.as_deref(), None))
            .await
            .map_err(|e| KitError::Start { server: "postgres", detail: e.to_string() })??;
        pg.create_database().await?;
        Ok(pg)
    }

    /// A PostgreSQL with `ssl = on` (plain connections are still accepted, as with a
    /// default `pg_hba.conf`: a client's `sslmode` decides).
    pub async fn start_tls(tls: ServerTls) -> Result<Self, KitError> {
        let pg = tokio::task::spawn_blocking(move || Self::start_blocking(None, None, Some(&tls)))
            .await
            .map_err(|e| KitError::Start { server: "postgres", detail: e.to_string() })??;
        pg.create_database().await?;
        Ok(pg)
    }

    fn start_blocking(port: Option<u16>, keep_in: Option<&Path>, tls: Option<&ServerTls>) -> Result<Self, KitError> {
        let pg_dirs = postgres_bin_dirs();
        let initdb = find_binary("initdb", "postgresql", &pg_dirs)?;
        let postgres = find_binary("postgres", "postgresql", &pg_dirs)?;
        let dir = Dir::new(keep_in)?;
        let port = pick_port(port)?;
        let data = dir.path().join("pgdata");
        let user = if running_as_root() { Some(unprivileged_user()?) } else { None };
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data)?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
            }
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
            let mut cmd = Command::new(&initdb);
            cmd.arg("-D").arg(&data).args(["-U", "proact", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"]);
            run_as(&mut cmd, user, dir.path());
            let out = cmd.output()?;
            if !out.status.success() {
                return Err(KitError::Start {
                    server: "postgres",
                    detail: format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)),
                });
            }
        }
        let log = dir.path().join("postgres.log");
        // The log file is written by our process (stdout), not the server's user.
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k", ""])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(["-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB", "-c", "timezone=UTC"]);
        if let Some(t) = tls {
            // The server reads its key as its own user, and refuses one others can read.
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::copy(&t.cert, &cert)?;
            std::fs::copy(&t.key, &key)?;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
                std::os::unix::fs::chown(&cert, Some(uid), Some(gid))?;
            }
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        run_as(&mut cmd, user, dir.path());
        let mut guard = Guard::spawn("postgres", cmd, &log)?.with_stop_signal("INT");
        wait_for_port(&mut guard, port, &log, START_TIMEOUT)?;
        Ok(Self { port, guard, dir })
    }

    async fn create_database(&self) -> Result<(), KitError> {
        let admin = format!("postgres://proact@127.0.0.1:{}/postgres", self.port);
        let mut last = String::new();
        // The port opens a moment before the server accepts logins.
        for _ in 0..200 {
            match tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    let exists = client
                        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'proact'", &[])
                        .await
                        .map_err(|e| KitError::Start { server: "postgres", detail: e.to_string() })?;
                    if exists.is_none() {
                        client
                            .batch_execute("CREATE DATABASE proact")
                            .await
                            .map_err(|e| KitError::Start { server: "postgres", detail: e.to_string() })?;
                    }
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(KitError::Start { server: "postgres", detail: format!("no login: {last}") })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `proact` database.
    pub fn url(&self) -> String {
        format!("postgres://proact@127.0.0.1:{}/proact", self.port)
    }

    pub fn signal(&self, sig: &str) -> std::io::Result<()> {
        self.guard.signal(sig)
    }

    /// Stops the server (fast shutdown; data stays) and starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.guard.stop();
        let keep = self.dir.path().to_path_buf();
        let port = self.port;
        let fresh = tokio::task::spawn_blocking(move || Self::start_blocking(Some(port), Some(&keep), None))
            .await
            .map_err(|e| KitError::Start { server: "postgres", detail: e.to_string() })??;
        let Postgres { guard, .. } = fresh;
        self.guard = guard;
        self.create_database().await
    }
}

/// How to start a [`Stack`].
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Fixed ports (mqtt, redis, postgres); `None`: free ports.
    pub ports: Option<(u16, u16, u16)>,
    /// Keep the servers' data in this directory across runs; `None`: a temporary one.
    pub data_dir: Option<PathBuf>,
}

/// Mosquitto, Redis and PostgreSQL together.
pub struct Stack {
    pub mqtt: Mosquitto,
    pub redis: Redis,
    pub postgres: Postgres,
}

impl Stack {
    /// All three on free ports in temporary directories.
    pub async fn start() -> Result<Self, KitError> {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(opts: StackOptions) -> Result<Self, KitError> {
        let (pm, pr, pp) = match opts.ports {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        };
        let sub = |name: &str| opts.data_dir.as_ref().map(|d| d.join(name));
        let (mqtt, redis, postgres) = tokio::try_join!(
            Mosquitto::start_with(pm, sub("mosquitto")),
            Redis::start_with(pr, sub("redis")),
            Postgres::start_with(pp, sub("postgres")),
        )?;
        Ok(Self { mqtt, redis, postgres })
    }

    /// The environment that points every ProAct service at this stack.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PROACT_MQTT_URL", self.mqtt.url()),
            ("PROACT_REDIS_URL", self.redis.url()),
            ("PROACT_DATABASE_URL", self.postgres.url()),
        ]
    }
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    // Newest version first.
    dirs.sort_by_key(|d| {
        std::cmp::Reverse(
            d.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()),
        )
    });
    dirs
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// uid and gid of `postgres`, else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Result<(u32, u32), KitError> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == wanted {
                if let (Ok(u), Ok(g)) = (f[2].parse(), f[3].parse()) {
                    return Ok((u, g));
                }
            }
        }
    }
    Err(KitError::Start {
        server: "postgres",
        detail: "running as root and no `postgres` or `nobody` user to run as".into(),
    })
}

fn run_as(cmd: &mut Command, user: Option<(u32, u32)>, cwd: &Path) {
    cmd.current_dir(cwd);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", cwd);
    }
}
