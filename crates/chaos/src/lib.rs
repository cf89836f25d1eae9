//! `proact-chaos`: the fault-injection harness of `just chaos` (issue #11). It proves the
//! delivery guarantees of DESIGN.md on the real thing rather than in-process: a real stack
//! (`proact_testkit::Stack`: Mosquitto with persistent sessions, Redis with its append-only
//! file, PostgreSQL), the five service binaries as separate OS processes, a QoS 1 sensor
//! fleet that records exactly which messages the broker acknowledged ([`publisher`]), and a
//! dashboard client on `/ws/alerts` that resumes with `after=` whenever the gateway goes
//! away ([`watcher`]).
//!
//! Under that load it follows a seeded random schedule ([`plan`]): `kill -9` of each
//! service (then a restart), restarts of Mosquitto, Redis and PostgreSQL, and PostgreSQL
//! frozen with SIGSTOP for 20 s. Hot readings at known moments make a known set of alert
//! episodes. After recovery it checks ([`verify`]) that every acknowledged message is a row,
//! every row was published, no row is there twice, and each episode reached the client as
//! exactly one `raised`; it exits non-zero on any violation. Results: docs/RELIABILITY.md.
//!
//! The `cluster` profile runs the same checks on a Redis Cluster (three masters, three
//! replicas: `proact_testkit::RedisCluster`) and kills masters under load: ingest then acks
//! MQTT only once a replica has each entry (`WAIT`, on by default on a cluster), so a promoted
//! replica must hold every acknowledged reading. One of its master kills is the alerts
//! stream's, timed so that the detector raises an episode while the promoted master has no
//! replica: its `WAIT` is refused, the alert held and confirmed once the old node is back, and
//! the run fails if that did not happen.

pub mod plan;
pub mod publisher;
pub mod services;
pub mod verify;
pub mod watcher;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use proact_proto::streams::{telemetry_streams, ALERTS_STREAM, DEFAULT_SHARDS, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, AlertEventKind};
use proact_proto::Message;
use proact_server::ConfigError;
use proact_testkit::{Mosquitto, Postgres, Redis, RedisCluster, Stack};
use tokio_util::sync::CancellationToken;

use plan::{Fault, FaultMix, Plan, Server, Step, Svc};
use services::{Endpoints, Ports, Service};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Each fault once, about three minutes: what CI runs.
    Short,
    /// Each fault several times at a higher rate, about ten minutes: on demand.
    Long,
    /// On a Redis Cluster: each service killed once, two master kills (failover, one of them
    /// the alerts stream's, holding an alert), Mosquitto and PostgreSQL restarted; about two
    /// minutes.
    Cluster,
}

/// Command line and environment of `proact-chaos`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "proact-chaos",
    version,
    about = "ProAct fault injection: kill, restart and freeze under load, then count"
)]
pub struct Config {
    /// `short` (CI) or `long` (on demand).
    #[arg(long, env = "PROACT_CHAOS_PROFILE", value_enum, default_value_t = Profile::Short)]
    pub profile: Profile,
    /// Seed of the fault schedule; a run prints its own, to replay it (default: from the clock).
    #[arg(long, env = "PROACT_CHAOS_SEED")]
    pub seed: Option<u64>,
    /// Messages per second over all equipment (default: 1000 short, 1500 long).
    #[arg(long, env = "PROACT_CHAOS_RATE")]
    pub rate: Option<u32>,
    /// Simulated equipment (the first four have the hot episodes).
    #[arg(long, env = "PROACT_CHAOS_EQUIPMENT", default_value_t = 16)]
    pub equipment: usize,
    /// How long PostgreSQL stays frozen (SIGSTOP), seconds.
    #[arg(long, env = "PROACT_CHAOS_FREEZE_SECS", default_value_t = 20)]
    pub freeze_secs: u64,
    /// Where the service binaries are (default: next to this one, e.g. target/debug).
    #[arg(long, env = "PROACT_CHAOS_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Logs of the run's services go to `<dir>/<seed>/`.
    #[arg(long, env = "PROACT_CHAOS_WORK_DIR", default_value = "target/chaos")]
    pub work_dir: PathBuf,
}

/// What a profile injects and how hard it loads the pipeline.
struct Preset {
    rate: u32,
    mix: FaultMix,
    /// Load before the first fault and after the last one.
    warm_up: Duration,
    tail: Duration,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(r) = self.rate {
            if !(10..=20_000).contains(&r) {
                return Err(ConfigError::new(
                    "PROACT_CHAOS_RATE",
                    r.to_string(),
                    "must be between 10 and 20000 per second",
                ));
            }
        }
        if !(4..=1000).contains(&self.equipment) {
            return Err(ConfigError::new(
                "PROACT_CHAOS_EQUIPMENT",
                self.equipment.to_string(),
                "must be between 4 and 1000 (four of them carry the hot episodes)",
            ));
        }
        if self.freeze_secs == 0 || self.freeze_secs > 600 {
            return Err(ConfigError::new(
                "PROACT_CHAOS_FREEZE_SECS",
                self.freeze_secs.to_string(),
                "must be between 1 and 600",
            ));
        }
        if let Some(d) = &self.bin_dir {
            if !d.is_dir() {
                return Err(ConfigError::new("PROACT_CHAOS_BIN_DIR", d.display().to_string(), "is not a directory"));
            }
        }
        Ok(())
    }

    fn preset(&self) -> Preset {
        let freeze = Duration::from_secs(self.freeze_secs);
        match self.profile {
            Profile::Short => Preset {
                rate: self.rate.unwrap_or(1000),
                mix: FaultMix {
                    kills_each: 1,
                    restarts_each: 1,
                    servers: Server::ALL.to_vec(),
                    freezes: 1,
                    freeze,
                    gap: (Duration::from_secs(3), Duration::from_secs(8)),
                    master_kills: 0,
                },
                warm_up: Duration::from_secs(5),
                tail: Duration::from_secs(10),
            },
            Profile::Long => Preset {
                rate: self.rate.unwrap_or(1500),
                mix: FaultMix {
                    kills_each: 4,
                    restarts_each: 3,
                    servers: Server::ALL.to_vec(),
                    freezes: 2,
                    freeze,
                    gap: (Duration::from_secs(2), Duration::from_secs(15)),
                    master_kills: 0,
                },
                warm_up: Duration::from_secs(10),
                tail: Duration::from_secs(20),
            },
            Profile::Cluster => Preset {
                rate: self.rate.unwrap_or(1000),
                mix: FaultMix {
                    kills_each: 1,
                    restarts_each: 1,
                    servers: vec![Server::Mosquitto, Server::Postgres],
                    freezes: 0,
                    freeze,
                    gap: (Duration::from_secs(3), Duration::from_secs(8)),
                    master_kills: 2,
                },
                warm_up: Duration::from_secs(5),
                tail: Duration::from_secs(10),
            },
        }
    }
}

/// What a run injected and counted.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub profile: Profile,
    pub rate: u32,
    pub faults: Vec<String>,
    /// Services that exited without being killed (each was restarted, as a supervisor would).
    pub crashes: Vec<String>,
    pub verdict: verify::Verdict,
    pub ws_connections: u64,
    pub publisher_connections: u64,
    pub converged: bool,
    pub wall: Duration,
    /// What each held-alert fault saw (cluster profile).
    pub held: Vec<HeldAlert>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verdict.violations.is_empty()
    }

    /// The report printed at the end (and pasted into docs/RELIABILITY.md).
    pub fn report(&self) -> String {
        let c = &self.verdict.counts;
        let mut s = String::new();
        s += &format!(
            "chaos {:?} profile, seed {}, {} msg/s, wall time {:.0} s\n",
            self.profile,
            self.seed,
            self.rate,
            self.wall.as_secs_f64()
        );
        s += &format!("faults injected ({}):\n", self.faults.len());
        for f in &self.faults {
            s += &format!("  - {f}\n");
        }
        s += &format!("services that exited on their own and were restarted: {}\n", self.crashes.len());
        for c in &self.crashes {
            s += &format!("  - {c}\n");
        }
        s += &format!(
            "published {} (resent after reconnects {}), acked {}, archived {} (of them unacked {}), \
             missing acked {}, duplicate rows {}\n",
            c.published, c.resent, c.acked, c.archived, c.archived_unacked, c.missing_acked, c.duplicate_rows
        );
        s += &format!(
            "episodes expected {} (plus {} with no hot reading acked), delivered {}; \
             events delivered {} ({} raised, {} cleared) over {} WebSocket connections\n",
            c.episodes_expected,
            c.episodes_unacked,
            c.episodes_delivered,
            c.events_delivered,
            c.raised_events,
            c.cleared_events,
            self.ws_connections
        );
        for h in &self.held {
            let what = if h.wait_failures > 0 && h.confirmed > 0 {
                "held-alert path exercised"
            } else {
                "held-alert path NOT exercised"
            };
            s += &format!(
                "{what}: episode {} ({}), alerts master alone {:.1} s: {} refused WAIT(s), \
                 {} confirmation(s) after the rejoin, {} event(s) a failover lost appended again\n",
                h.episode,
                h.equipment,
                h.alone.as_secs_f64(),
                h.wait_failures,
                h.confirmed,
                h.republished
            );
        }
        if !self.converged {
            s += "the pipeline did not settle before the checks (see the violations)\n";
        }
        if self.passed() {
            s += "PASS: archived ⊇ acked, archived ⊆ published, no duplicates, each episode raised exactly once\n";
        } else {
            s += &format!("FAIL: {} violation(s):\n", self.verdict.violations.len());
            for v in &self.verdict.violations {
                s += &format!("  - {v}\n");
            }
        }
        s
    }
}

/// The Redis a run uses: one server, or a cluster.
enum RedisKind {
    Single(Redis),
    Cluster(RedisCluster),
}

impl RedisKind {
    fn url(&self) -> String {
        match self {
            RedisKind::Single(r) => r.url(),
            RedisKind::Cluster(c) => c.url(),
        }
    }
}

/// A run in progress: the stack, the service processes, and the clock of the log lines.
struct Run {
    mqtt: Mosquitto,
    redis: RedisKind,
    postgres: Postgres,
    services: Vec<Service>,
    started: Instant,
    crashes: Vec<String>,
    violations: Vec<String>,
    held: Vec<HeldAlert>,
}

/// The load under way, for the faults that are timed by it.
struct Load {
    plan: Arc<Plan>,
    ledger: publisher::SharedLedger,
    rate: u32,
    database: String,
}

/// What the held-alert fault ([`Fault::KillAlertsMaster`]) saw.
#[derive(Debug, Clone, Default)]
pub struct HeldAlert {
    pub episode: u64,
    pub equipment: String,
    /// The detector's `WAIT`s refused while the promoted master stood alone.
    pub wait_failures: u64,
    /// Held events the failover had lost, appended again.
    pub republished: u64,
    /// Held events the detector confirmed on a replica once the old node was back.
    pub confirmed: u64,
    /// How long the promoted master stood without a replica.
    pub alone: Duration,
}

/// The detector's log line when held alert events are on a replica and their readings acked.
const CONFIRMED_LINE: &str = "alert events confirmed on a replica";
/// How long each stage of the held-alert fault may take before it counts as a miss.
const HELD_STAGE_TIMEOUT: Duration = Duration::from_secs(30);

impl Run {
    fn say(&self, msg: impl AsRef<str>) {
        eprintln!("[{:6.1}s] {}", self.started.elapsed().as_secs_f64(), msg.as_ref());
    }

    fn service(&mut self, svc: Svc) -> &mut Service {
        self.services.iter_mut().find(|s| s.svc == svc).expect("every service is in the run")
    }

    /// Restarts any service that exited without being told to, as Kubernetes would.
    fn reap(&mut self) {
        let mut lines = Vec::new();
        for s in &mut self.services {
            if let Some(status) = s.exited() {
                let line = format!("{} exited with {status} (see {})", s.svc.name(), s.log().display());
                if let Err(e) = s.start() {
                    lines.push(format!("{line}; restart failed: {e}"));
                } else {
                    lines.push(format!("{line}; restarted"));
                }
            }
        }
        for l in lines {
            self.say(&l);
            self.crashes.push(format!("at {:.0} s: {l}", self.started.elapsed().as_secs_f64()));
        }
    }

    /// Waits `d` under load, restarting whatever crashes meanwhile.
    async fn hold(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.reap();
            tokio::time::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(250))).await;
        }
    }

    /// Until every service answers `/readyz`; a service that does not within `timeout` is a
    /// violation (it would never have recovered on its own).
    async fn all_ready(&mut self, timeout: Duration, after: &str) {
        let deadline = Instant::now() + timeout;
        for svc in Svc::ALL {
            loop {
                self.reap();
                let left = deadline.saturating_duration_since(Instant::now());
                match self.service(svc).wait_ready(left.min(Duration::from_secs(1))).await {
                    Ok(()) => break,
                    Err(_) if !left.is_zero() => {}
                    Err(e) => {
                        let v = format!("after {after}: {e}");
                        self.say(&v);
                        self.violations.push(v);
                        break;
                    }
                }
            }
        }
    }

    async fn inject(&mut self, fault: &Fault, load: &Load) -> anyhow::Result<()> {
        match *fault {
            Fault::Kill { svc, down } => {
                self.service(svc).kill9().await?;
                self.hold(down).await;
                self.service(svc).start()?;
            }
            Fault::Restart(server) => match (server, &mut self.redis) {
                (Server::Mosquitto, _) => self.mqtt.restart().await?,
                (Server::Redis, RedisKind::Single(redis)) => redis.restart().await?,
                (Server::Redis, RedisKind::Cluster(_)) => anyhow::bail!("a cluster's nodes are killed, not restarted"),
                (Server::Postgres, _) => self.postgres.restart().await?,
            },
            Fault::FreezePostgres(d) => {
                self.postgres.signal("STOP")?;
                self.hold(d).await;
                self.postgres.signal("CONT")?;
            }
            Fault::KillRedisMaster { shard, down } => {
                let RedisKind::Cluster(cluster) = &mut self.redis else {
                    anyhow::bail!("no Redis Cluster in this run");
                };
                let slot = fred::util::redis_keyslot(proact_proto::streams::telemetry_stream(shard).as_bytes());
                let victim = cluster.master_of(slot)?;
                let promoted = cluster.kill_master(victim).await?;
                self.say(format!("  master {victim} killed; replica {promoted} promoted"));
                self.hold(down).await;
                let RedisKind::Cluster(cluster) = &mut self.redis else { unreachable!("checked above") };
                cluster.restart(victim).await?;
                self.say(format!("  node {victim} back as a replica"));
            }
            Fault::KillAlertsMaster { down } => self.hold_an_alert(down, load).await?,
        }
        Ok(())
    }

    /// [`Fault::KillAlertsMaster`]. A reading that enters the streams while a master stands
    /// alone is refused by ingest's own `WAIT` (the batch is held, so nothing new arrives), so
    /// an alert raised in that window comes from the detector's backlog: the detector is down
    /// across the episode's start and comes back on the promoted replica. A stage that does
    /// not happen in time is a violation: a run that misses its fault proves nothing.
    async fn hold_an_alert(&mut self, down: Duration, load: &Load) -> anyhow::Result<()> {
        let half_second = u64::from(load.rate / 2);
        let sent = || load.ledger.lock().unwrap().sent;
        let k = load.plan.next_episode(sent() + half_second);
        let first = load.plan.episode_first_index(k);
        let equipment = load.plan.episode_equipment(k).to_string();
        let (hot_from, hot_to) = load.plan.episode_span(k);
        self.say(format!("  episode {k} ({equipment}) is next: waiting for its start"));
        let until = Instant::now() + HELD_STAGE_TIMEOUT;
        while sent() + half_second < first {
            anyhow::ensure!(Instant::now() < until, "the publisher never reached episode {k}");
            self.hold(Duration::from_millis(50)).await;
        }
        let confirmed_before = self.service(Svc::Detector).log_lines_with(CONFIRMED_LINE);
        self.service(Svc::Detector).kill9().await?;
        self.say("  detector killed; waiting for a hot reading of the episode to be archived");
        let db = proact_server::db::connect(&load.database).await?;
        let until = Instant::now() + HELD_STAGE_TIMEOUT;
        loop {
            let rows = proact_store::telemetry::readings_with_prefix(&db, &equipment).await?;
            if rows.iter().any(|(id, ts, _)| *id == equipment && (hot_from..hot_to).contains(ts)) {
                break;
            }
            if Instant::now() > until {
                self.service(Svc::Detector).start()?;
                anyhow::bail!("no hot reading of episode {k} archived within {HELD_STAGE_TIMEOUT:?}");
            }
            self.hold(Duration::from_millis(100)).await;
        }

        let RedisKind::Cluster(cluster) = &mut self.redis else {
            self.service(Svc::Detector).start()?;
            anyhow::bail!("no Redis Cluster in this run");
        };
        let slot = fred::util::redis_keyslot(ALERTS_STREAM.as_bytes());
        let victim = cluster.master_of(slot)?;
        let promoted = cluster.kill_master(victim).await?;
        let alone_since = Instant::now();
        self.say(format!("  alerts master {victim} killed; replica {promoted} promoted; detector started on it"));
        self.service(Svc::Detector).start()?;

        let mut held = HeldAlert { episode: k, equipment, ..HeldAlert::default() };
        let until = Instant::now() + HELD_STAGE_TIMEOUT;
        while held.wait_failures == 0 && Instant::now() < until {
            self.hold(Duration::from_millis(100)).await;
            held.wait_failures = self.detector_metric("proact_detector_replica_wait_failures_total").await;
        }
        if held.wait_failures == 0 {
            self.violations.push(format!(
                "held-alert path not exercised: the detector's WAIT was never refused in {:.0} s \
                 with the alerts master {promoted} alone (episode {k})",
                HELD_STAGE_TIMEOUT.as_secs_f64()
            ));
        } else {
            self.say(format!(
                "  the detector's WAIT refused after {:.1} s alone: alert held",
                alone_since.elapsed().as_secs_f64()
            ));
        }
        self.hold(down).await;
        held.wait_failures = self.detector_metric("proact_detector_replica_wait_failures_total").await;
        let RedisKind::Cluster(cluster) = &mut self.redis else { unreachable!("checked above") };
        cluster.restart(victim).await?;
        held.alone = alone_since.elapsed();
        self.say(format!("  node {victim} back as a replica after {:.1} s alone", held.alone.as_secs_f64()));

        let until = Instant::now() + HELD_STAGE_TIMEOUT;
        while held.wait_failures > 0 && held.confirmed == 0 && Instant::now() < until {
            self.hold(Duration::from_millis(100)).await;
            let lines = self.service(Svc::Detector).log_lines_with(CONFIRMED_LINE);
            held.confirmed = lines.saturating_sub(confirmed_before) as u64;
        }
        held.wait_failures = self.detector_metric("proact_detector_replica_wait_failures_total").await;
        held.republished = self.detector_metric("proact_detector_alert_events_republished_total").await;
        if held.wait_failures > 0 && held.confirmed == 0 {
            self.violations.push(format!(
                "held alert of episode {k} never confirmed within {:.0} s of node {victim} rejoining",
                HELD_STAGE_TIMEOUT.as_secs_f64()
            ));
        } else if held.confirmed > 0 {
            self.say(format!(
                "  held alert confirmed; refused WAITs {}, events a failover lost appended again {}",
                held.wait_failures, held.republished
            ));
        }
        self.held.push(held);
        Ok(())
    }

    /// A counter of the detector's `/metrics` (0 if it has not counted yet or does not answer).
    async fn detector_metric(&mut self, name: &str) -> u64 {
        self.service(Svc::Detector).metric(name).await.unwrap_or(0.0) as u64
    }

    async fn stop_services(&mut self) {
        for s in self.services.iter_mut().rev() {
            s.terminate(Duration::from_secs(30)).await;
        }
    }
}

/// Runs the whole thing: stack, services, load, faults, recovery, checks.
pub async fn run(config: Config) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let preset = config.preset();
    let seed = config.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            % 1_000_000
    });
    let steps: Vec<Step> = plan::schedule(seed, &preset.mix);
    let bin_dir = match &config.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default(),
    };
    let log_dir = config.work_dir.join(seed.to_string());
    // A replay of the same seed starts its logs afresh (services append across restarts).
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir)?;
    eprintln!(
        "chaos: {:?} profile, seed {seed} (replay with --seed {seed}), {} msg/s, {} faults; logs in {}",
        config.profile,
        preset.rate,
        steps.len(),
        log_dir.display()
    );

    let (mqtt, redis, postgres) = match config.profile {
        Profile::Cluster => {
            let (m, r, p) = tokio::try_join!(Mosquitto::start(), RedisCluster::start(), Postgres::start())?;
            (m, RedisKind::Cluster(r), p)
        }
        Profile::Short | Profile::Long => {
            let Stack { mqtt, redis, postgres } = Stack::start().await?;
            (mqtt, RedisKind::Single(redis), postgres)
        }
    };
    let ep = Endpoints { mqtt: mqtt.url(), redis: redis.url(), database: postgres.url() };
    let ports = Ports::pick()?;
    let services =
        Svc::ALL.map(|s| Service::new(s, &bin_dir, &log_dir, services::args(s, &ports, &ep), ports.admin(s))).into();
    let mut run =
        Run { mqtt, redis, postgres, services, started, crashes: Vec::new(), violations: Vec::new(), held: Vec::new() };
    run.say(format!("stack up: {} {} {}", ep.mqtt, ep.redis, ep.database));
    for svc in Svc::ALL {
        run.service(svc).start()?;
        run.service(svc).wait_ready(Duration::from_secs(120)).await?;
    }
    run.say("services ready");

    let seen = watcher::SharedSeen::default();
    let watch_stop = CancellationToken::new();
    let watcher = tokio::spawn(watcher::run(ports.http, seen.clone(), watch_stop.clone()));
    while seen.lock().unwrap().connections == 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(180), "the WebSocket client never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let plan = Arc::new(Plan::new(proact_proto::time::now_micros(), preset.rate, config.equipment));
    let ledger = publisher::SharedLedger::default();
    let pub_stop = CancellationToken::new();
    let broker = format!("127.0.0.1:{}", run.mqtt.port()).parse()?;
    let publisher = tokio::spawn(
        publisher::Publisher {
            plan: plan.clone(),
            broker,
            rate: preset.rate,
            client_id: "chaos-sensors".into(),
            stop: pub_stop.clone(),
            drain: Duration::from_secs(120),
        }
        .run(ledger.clone()),
    );
    run.say("publishing");
    let load = Load { plan: plan.clone(), ledger: ledger.clone(), rate: preset.rate, database: ep.database.clone() };
    run.hold(preset.warm_up).await;

    let mut faults = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        run.hold(step.gap).await;
        run.say(format!("fault {}/{}: {}", n + 1, steps.len(), step.fault));
        let at = started.elapsed();
        if let Err(e) = run.inject(&step.fault, &load).await {
            let v = format!("could not inject {}: {e:#}", step.fault);
            run.say(&v);
            run.violations.push(v);
        }
        run.all_ready(Duration::from_secs(120), &step.fault.to_string()).await;
        let (sent, acked) = {
            let l = ledger.lock().unwrap();
            (l.sent, l.acked_count)
        };
        run.say(format!("  recovered; published {sent}, acked {acked}"));
        faults.push(format!("at {:.0} s: {}", at.as_secs_f64(), step.fault));
    }
    run.hold(preset.tail).await;

    pub_stop.cancel();
    run.say("load stopped; draining the publisher");
    while !publisher.is_finished() {
        run.hold(Duration::from_millis(250)).await;
    }
    let ledger = ledger.lock().unwrap().clone();
    run.say(format!("published {}, acked {}; waiting for the pipeline to settle", ledger.sent, ledger.acked_count));

    let redis = proact_server::redis::connect(&ep.redis).await?;
    let unsettled = settle(&mut run, &redis, &ep.database, &plan, &ledger, &seen).await?;
    if let Some(state) = &unsettled {
        run.violations
            .push(format!("the pipeline had not caught up {} s after the load stopped: {state}", SETTLE.as_secs()));
    }
    watch_stop.cancel();
    let _ = watcher.await;

    let rows = fetch_rows(&ep.database).await?;
    let stream = stream_raises(&redis).await?;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut verdict = verify::check(&plan, &ledger, &rows, &seen.events, &stream);
    if verdict.counts.missing_acked > 0 {
        let by = verify::missing_by_equipment(&plan, &ledger, &rows);
        verdict.violations.push(format!("missing acked rows by equipment: {by:?}"));
    }
    if !seen.unexpected.is_empty() {
        verdict.violations.push(format!("unexpected WebSocket messages: {:?}", seen.unexpected));
    }
    verdict.violations.splice(0..0, run.violations.drain(..));
    run.say("stopping");
    run.stop_services().await;
    Ok(Outcome {
        seed,
        profile: config.profile,
        rate: preset.rate,
        faults,
        crashes: std::mem::take(&mut run.crashes),
        verdict,
        ws_connections: seen.connections,
        publisher_connections: ledger.connections,
        converged: unsettled.is_none(),
        wall: started.elapsed(),
        held: std::mem::take(&mut run.held),
    })
}

/// How long the pipeline may take to finish after the load stops: the archive reclaims
/// entries left pending after 30 s idle (`PROACT_ARCHIVE_CLAIM_IDLE_MS`), plus its backlog.
const SETTLE: Duration = Duration::from_secs(240);

/// Waits until the pipeline has done all it will: both consumer groups have read and acked
/// every telemetry entry, every acked message is a row, and the client has every alert
/// event. Returns what was still not done if that never happened within [`SETTLE`]: entries
/// left pending for good are readings nobody will store or score.
async fn settle(
    run: &mut Run,
    redis: &Client,
    database: &str,
    plan: &Plan,
    ledger: &publisher::Ledger,
    seen: &watcher::SharedSeen,
) -> anyhow::Result<Option<String>> {
    let deadline = Instant::now() + SETTLE;
    let mut last_state = String::new();
    while Instant::now() < deadline {
        run.reap();
        let idle = groups_idle(redis, &["archive", "anomaly-detector"]).await.unwrap_or_else(|e| Err(e.to_string()));
        let state = match idle {
            Err(why) => why,
            Ok(()) => {
                let rows = fetch_rows(database).await.unwrap_or_default();
                let missing = verify::missing_by_equipment(plan, ledger, &rows).values().sum::<u64>();
                let tail = alerts_tail(redis).await.unwrap_or_default();
                let last = seen.lock().unwrap().last_id.clone();
                if missing > 0 {
                    format!("{missing} acked messages not archived yet")
                } else if let Some(tail) = tail.filter(|t| *t != last) {
                    format!("client at {last}, alerts stream at {tail}")
                } else {
                    run.say("settled");
                    return Ok(None);
                }
            }
        };
        if state != last_state {
            run.say(format!("  waiting: {state}"));
            last_state = state;
        }
        run.hold(Duration::from_secs(2)).await;
    }
    run.say("did not settle; checking what there is");
    Ok(Some(last_state))
}

/// `Ok(Ok(()))` when every telemetry shard's `groups` have no pending entry and have been
/// delivered the stream's last entry. (Not `lag`: Redis 7.0 does not keep a group's
/// entries-read count across its restart, and reports a lag long after the group caught up.)
async fn groups_idle(redis: &Client, groups: &[&str]) -> Result<Result<(), String>, Error> {
    for key in telemetry_streams(DEFAULT_SHARDS) {
        let exists: i64 = redis.exists(key.as_str()).await?;
        if exists == 0 {
            continue;
        }
        let stream = fields(redis.xinfo_stream(key.as_str(), false, None).await?);
        let last = stream.get("last-generated-id").and_then(|v| v.as_string()).unwrap_or_default();
        let info: Value = redis.xinfo_groups(key.as_str()).await?;
        let found: Vec<HashMap<String, Value>> = match info {
            Value::Array(groups) => groups.into_iter().map(fields).collect(),
            _ => Vec::new(),
        };
        for g in groups {
            let Some(f) = found.iter().find(|f| f.get("name").and_then(|v| v.as_string()).as_deref() == Some(*g))
            else {
                return Ok(Err(format!("{key}: no group {g} yet")));
            };
            let pending = f.get("pending").and_then(|v| v.as_i64()).unwrap_or(-1);
            let delivered = f.get("last-delivered-id").and_then(|v| v.as_string()).unwrap_or_default();
            if pending != 0 || delivered != last {
                return Ok(Err(format!("{key}: group {g} has {pending} pending, read up to {delivered} of {last}")));
            }
        }
    }
    Ok(Ok(()))
}

/// An `XINFO` reply as a map, whichever RESP version answered.
fn fields(v: Value) -> HashMap<String, Value> {
    match v {
        Value::Map(m) => m.inner().into_iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v))).collect(),
        Value::Array(kv) => kv
            .chunks(2)
            .filter_map(|p| match p {
                [k, v] => Some((k.as_string()?, v.clone())),
                _ => None,
            })
            .collect(),
        _ => HashMap::new(),
    }
}

async fn alerts_tail(redis: &Client) -> Result<Option<String>, Error> {
    let last: Vec<(String, HashMap<String, Bytes>)> = redis.xrevrange(ALERTS_STREAM, "+", "-", Some(1)).await?;
    Ok(last.into_iter().next().map(|(id, _)| id))
}

/// Every `raised` in the alerts stream.
async fn stream_raises(redis: &Client) -> Result<Vec<verify::Raised>, Error> {
    let all: Vec<(String, HashMap<String, Bytes>)> = redis.xrange(ALERTS_STREAM, "-", "+", None).await?;
    Ok(all
        .into_iter()
        .filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok())
        .filter(|e| e.kind == AlertEventKind::Raised as i32)
        .filter_map(|e| e.alert)
        .map(|a| verify::Raised { alert_id: a.alert_id, equipement_id: a.equipement_id, start_micros: a.start_micros })
        .collect())
}

/// The run's rows of `telemetry`, duplicates included if there were any.
async fn fetch_rows(database: &str) -> anyhow::Result<Vec<verify::Row>> {
    let client = proact_server::db::connect(database).await?;
    let rows = proact_store::telemetry::readings_with_prefix(&client, plan::EQUIPMENT_PREFIX).await?;
    Ok(rows
        .into_iter()
        .map(|(equipement_id, ts_micros, temperature)| verify::Row { equipement_id, ts_micros, temperature })
        .collect())
}
