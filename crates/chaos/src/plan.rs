//! What a run does, decided before it starts: the readings (a pure function of their index,
//! so the checks can recompute any of them), the hot episodes among them, and the seeded
//! schedule of faults.

use std::fmt;
use std::time::Duration;

use proact_proto::streams::DEFAULT_SHARDS;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The five deployables, each run as its own OS process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Svc {
    Archive,
    Detector,
    Gateway,
    Trainer,
    Ingest,
}

impl Svc {
    /// In start order: consumers before the producer, the registry before the detector needs it.
    pub const ALL: [Svc; 5] = [Svc::Trainer, Svc::Archive, Svc::Detector, Svc::Gateway, Svc::Ingest];

    pub fn name(self) -> &'static str {
        match self {
            Svc::Archive => "archive",
            Svc::Detector => "anomaly-detector",
            Svc::Gateway => "alert-gateway",
            Svc::Trainer => "trainer",
            Svc::Ingest => "ingest",
        }
    }
}

/// The three servers of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Mosquitto,
    Redis,
    Postgres,
}

impl Server {
    pub const ALL: [Server; 3] = [Server::Mosquitto, Server::Redis, Server::Postgres];
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// `kill -9` the service, leave it down this long, start it again.
    Kill { svc: Svc, down: Duration },
    /// Stop the server (its data stays) and start it again on the same port.
    Restart(Server),
    /// SIGSTOP PostgreSQL for this long, then SIGCONT: connections hang instead of failing.
    FreezePostgres(Duration),
    /// On a Redis Cluster: `kill -9` the master serving this telemetry shard's slot, wait for
    /// its replica's promotion, leave the old node down this long, start it again (it
    /// rejoins as a replica).
    KillRedisMaster { shard: u32, down: Duration },
    /// On a Redis Cluster, the held-alert path: the detector is killed just before an episode
    /// starts, the master of the alerts stream once the episode's hot readings are stored,
    /// and the detector started again on the promoted replica while it stands alone. The
    /// detector raises the episode from its backlog, its `WAIT` for a replica is refused and
    /// the alert is held; the old node stays down this long after the first refusal, then
    /// rejoins and the held alert must be confirmed.
    KillAlertsMaster { down: Duration },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { svc, down } => write!(f, "kill -9 {} (down {:.1} s)", svc.name(), down.as_secs_f64()),
            Fault::Restart(s) => write!(f, "restart {s:?}"),
            Fault::FreezePostgres(d) => write!(f, "SIGSTOP Postgres for {} s, then SIGCONT", d.as_secs()),
            Fault::KillRedisMaster { shard, down } => {
                write!(
                    f,
                    "kill -9 the Redis master of shard {shard} (down {:.1} s after the failover)",
                    down.as_secs_f64()
                )
            }
            Fault::KillAlertsMaster { down } => write!(
                f,
                "kill -9 the Redis master of the alerts stream as an episode starts, the detector \
                 down, then hold an alert on the promoted replica ({:.1} s after the first refused WAIT)",
                down.as_secs_f64()
            ),
        }
    }
}

/// One fault and the pause under load before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub gap: Duration,
    pub fault: Fault,
}

/// How many faults of each kind, and how far apart.
#[derive(Debug, Clone)]
pub struct FaultMix {
    /// `kill -9` of each service, this many times.
    pub kills_each: usize,
    /// Restarts of each of `servers`, this many times.
    pub restarts_each: usize,
    pub servers: Vec<Server>,
    pub freezes: usize,
    pub freeze: Duration,
    /// Pause under load before each fault, drawn in this range.
    pub gap: (Duration, Duration),
    /// Kills of a Redis Cluster master (cluster runs only): the first one is the alerts
    /// stream's, timed to hold an alert ([`Fault::KillAlertsMaster`]); the others each of a
    /// seeded shard's master.
    pub master_kills: usize,
}

/// The faults in a seeded random order with seeded random gaps and downtimes: the same seed
/// gives the same schedule, so a failing run can be replayed.
pub fn schedule(seed: u64, mix: &FaultMix) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut faults = Vec::new();
    for _ in 0..mix.kills_each {
        for svc in Svc::ALL {
            faults.push(Fault::Kill { svc, down: Duration::ZERO });
        }
    }
    for _ in 0..mix.restarts_each {
        faults.extend(mix.servers.iter().copied().map(Fault::Restart));
    }
    faults.extend((0..mix.freezes).map(|_| Fault::FreezePostgres(mix.freeze)));
    faults.extend((0..mix.master_kills).map(|n| match n {
        0 => Fault::KillAlertsMaster { down: Duration::ZERO },
        _ => Fault::KillRedisMaster { shard: 0, down: Duration::ZERO },
    }));
    faults.shuffle(&mut rng);
    let (lo, hi) = (mix.gap.0.as_millis() as u64, mix.gap.1.as_millis().max(mix.gap.0.as_millis() + 1) as u64);
    faults
        .into_iter()
        .map(|mut fault| {
            if let Fault::Kill { down, .. } = &mut fault {
                // From "restarted at once" (a crash loop) to a few seconds of backlog.
                *down = Duration::from_millis(rng.gen_range(0..3_000));
            }
            if let Fault::KillRedisMaster { shard, down } = &mut fault {
                *shard = rng.gen_range(0..DEFAULT_SHARDS);
                // While it is down its promoted replica has no replica of its own: ingest's
                // WAIT refuses batches touching it, so this is also how long MQTT acks pause.
                *down = Duration::from_millis(rng.gen_range(0..5_000));
            }
            if let Fault::KillAlertsMaster { down } = &mut fault {
                // From one refused WAIT to several heartbeats' re-publishing of the held alert.
                *down = Duration::from_millis(rng.gen_range(0..3_000));
            }
            Step { gap: Duration::from_millis(rng.gen_range(lo..hi)), fault }
        })
        .collect()
}

/// One reading of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub equipment: usize,
    pub ts_micros: i64,
    pub temperature: f64,
    pub vibration: f64,
    /// The hot episode this reading belongs to, if it is one of its hot readings.
    pub episode: Option<u64>,
}

/// The readings of a run: reading `i` is due `i / rate` seconds after the start, goes to
/// equipment `i % equipment`, and is stamped `t0 + i * step`, so every (equipment, ts) is
/// unique. Hot episodes: episode `k` starts `first + k * every` into the run, on equipment
/// `k % hot_equipment`, and its readings are above 90 °C for `hot`; in between, readings are
/// far enough below the thresholds (and their hysteresis) for the episode to clear.
#[derive(Debug, Clone)]
pub struct Plan {
    pub t0_micros: i64,
    pub step_micros: i64,
    pub equipment: Vec<String>,
    pub hot_equipment: usize,
    pub first: Duration,
    pub every: Duration,
    pub hot: Duration,
}

pub const EQUIPMENT_PREFIX: &str = "CHAOS-";

impl Plan {
    pub fn new(t0_micros: i64, rate: u32, equipment: usize) -> Self {
        Self {
            t0_micros,
            step_micros: (1_000_000 / rate.max(1)) as i64,
            equipment: (1..=equipment).map(|n| format!("{EQUIPMENT_PREFIX}{n:02}")).collect(),
            hot_equipment: 4.min(equipment),
            first: Duration::from_secs(6),
            every: Duration::from_secs(12),
            hot: Duration::from_secs(3),
        }
    }

    pub fn reading(&self, i: u64) -> Reading {
        let equipment = (i % self.equipment.len() as u64) as usize;
        let offset = i as i64 * self.step_micros;
        let episode = self.episode_at(offset).filter(|k| (*k % self.hot_equipment as u64) as usize == equipment);
        // Deterministic spread, so archived values can be compared with what was sent.
        let jitter = (i.wrapping_mul(7919) % 200) as f64 / 10.0;
        let temperature = if episode.is_some() { 95.0 + (i % 7) as f64 / 10.0 } else { 45.0 + jitter };
        Reading {
            equipment,
            ts_micros: self.t0_micros + offset,
            temperature,
            vibration: 2.0 + (i % 30) as f64 / 10.0,
            episode,
        }
    }

    /// The episode whose hot phase covers `offset` micros into the run, on whichever equipment.
    fn episode_at(&self, offset: i64) -> Option<u64> {
        let first = self.first.as_micros() as i64;
        if offset < first {
            return None;
        }
        let every = self.every.as_micros() as i64;
        let k = (offset - first) / every;
        ((offset - first) - k * every < self.hot.as_micros() as i64).then_some(k as u64)
    }

    /// Start and end (exclusive) of episode `k`'s hot phase, in reading timestamps.
    pub fn episode_span(&self, k: u64) -> (i64, i64) {
        let start = self.t0_micros + self.first.as_micros() as i64 + k as i64 * self.every.as_micros() as i64;
        (start, start + self.hot.as_micros() as i64)
    }

    /// The first episode whose hot phase starts at or after reading `i` is due.
    pub fn next_episode(&self, i: u64) -> u64 {
        let offset = i as i64 * self.step_micros - self.first.as_micros() as i64;
        let every = self.every.as_micros() as i64;
        if offset <= 0 {
            0
        } else {
            ((offset + every - 1) / every) as u64
        }
    }

    /// The index of the first reading of episode `k`'s hot phase (on whichever equipment).
    pub fn episode_first_index(&self, k: u64) -> u64 {
        let offset = self.first.as_micros() as i64 + k as i64 * self.every.as_micros() as i64;
        ((offset + self.step_micros - 1) / self.step_micros) as u64
    }

    pub fn episode_equipment(&self, k: u64) -> &str {
        &self.equipment[(k % self.hot_equipment as u64) as usize]
    }

    /// The MQTT topic and JSON payload of reading `i`, as a sensor sends it.
    pub fn message(&self, i: u64) -> (String, Vec<u8>) {
        let r = self.reading(i);
        let id = &self.equipment[r.equipment];
        let ts = chrono::DateTime::from_timestamp_micros(r.ts_micros)
            .expect("plan timestamps are near now")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let payload = serde_json::json!({
            "equipement_id": id,
            "temperature": r.temperature,
            "vibration": r.vibration,
            "timestamp": ts,
        });
        (format!("sensors/{id}/telemetry"), payload.to_string().into_bytes())
    }

    /// The index of the reading of `equipment` stamped `ts_micros`, if the plan has one.
    pub fn index_of(&self, equipment: &str, ts_micros: i64) -> Option<u64> {
        let e = self.equipment.iter().position(|x| x == equipment)? as u64;
        let offset = ts_micros - self.t0_micros;
        if offset < 0 || offset % self.step_micros != 0 {
            return None;
        }
        let i = (offset / self.step_micros) as u64;
        (i % self.equipment.len() as u64 == e).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> FaultMix {
        FaultMix {
            kills_each: 2,
            restarts_each: 1,
            servers: Server::ALL.to_vec(),
            freezes: 1,
            freeze: Duration::from_secs(20),
            gap: (Duration::from_secs(3), Duration::from_secs(9)),
            master_kills: 0,
        }
    }

    #[test]
    fn a_cluster_schedule_kills_masters_and_never_restarts_a_single_redis() {
        let m = FaultMix { servers: vec![Server::Mosquitto, Server::Postgres], freezes: 0, master_kills: 2, ..mix() };
        let a = schedule(11, &m);
        assert_eq!(a.len(), 5 * 2 + 2 + 2);
        assert!(!a.iter().any(|s| s.fault == Fault::Restart(Server::Redis)));
        let kills: Vec<_> = a.iter().filter(|s| matches!(s.fault, Fault::KillRedisMaster { .. })).collect();
        assert_eq!(kills.len(), 1);
        let alerts = a.iter().filter(|s| matches!(s.fault, Fault::KillAlertsMaster { .. })).count();
        assert_eq!(alerts, 1, "one master kill holds an alert");
        assert_eq!(a, schedule(11, &m), "replayable");
        assert!(kills
            .iter()
            .all(|s| matches!(s.fault, Fault::KillRedisMaster { shard, .. } if shard < DEFAULT_SHARDS)));
    }

    #[test]
    fn a_seed_gives_one_schedule_with_every_fault() {
        let a = schedule(7, &mix());
        assert_eq!(a, schedule(7, &mix()), "replayable");
        assert_ne!(a, schedule(8, &mix()), "another seed, another schedule");
        assert_eq!(a.len(), 5 * 2 + 3 + 1);
        for svc in Svc::ALL {
            assert_eq!(a.iter().filter(|s| matches!(s.fault, Fault::Kill { svc: x, .. } if x == svc)).count(), 2);
        }
        assert!(a.iter().all(|s| s.gap >= Duration::from_secs(3) && s.gap < Duration::from_secs(9)));
        assert!(a.iter().any(|s| s.fault == Fault::FreezePostgres(Duration::from_secs(20))));
    }

    #[test]
    fn readings_are_unique_and_found_again() {
        let p = Plan::new(1_764_000_000_000_000, 300, 16);
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            let r = p.reading(i);
            assert!(seen.insert((r.equipment, r.ts_micros)));
            assert_eq!(p.index_of(&p.equipment[r.equipment], r.ts_micros), Some(i));
        }
        assert_eq!(p.index_of("CHAOS-02", p.t0_micros), None, "reading 0 is CHAOS-01's");
        assert_eq!(p.index_of("PUMP-01", p.t0_micros), None);
    }

    #[test]
    fn episodes_are_hot_on_one_equipment_and_normal_elsewhere() {
        let p = Plan::new(0, 300, 16);
        let mut hot = std::collections::BTreeMap::<u64, Vec<Reading>>::new();
        for i in 0..300 * 60 {
            let r = p.reading(i);
            match r.episode {
                Some(k) => {
                    assert!(r.temperature > 90.0);
                    hot.entry(k).or_default().push(r);
                }
                // Below the warning threshold minus the hysteresis: the episode clears.
                None => assert!(r.temperature < 78.0 && r.vibration < 9.0),
            }
        }
        assert_eq!(hot.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4], "every 12 s from 6 s, in 60 s");
        for (k, rs) in hot {
            let (start, end) = p.episode_span(k);
            assert!(rs.iter().all(|r| p.equipment[r.equipment] == p.episode_equipment(k)));
            assert!(rs.iter().all(|r| r.ts_micros >= start && r.ts_micros < end));
            assert!(rs.len() > 40, "about 3 s of one equipment's readings");
        }
    }

    #[test]
    fn the_next_episode_starts_at_or_after_a_reading() {
        let p = Plan::new(0, 250, 16);
        assert_eq!(p.next_episode(0), 0);
        assert_eq!(p.episode_first_index(0), 6 * 250);
        assert_eq!(p.next_episode(6 * 250), 0, "its own first reading");
        assert_eq!(p.next_episode(6 * 250 + 1), 1);
        assert_eq!(p.episode_first_index(1), 18 * 250);
        for k in 0..5 {
            let i = p.episode_first_index(k);
            let at = |i: u64| p.episode_at(i as i64 * p.step_micros);
            assert_eq!((at(i - 1), at(i)), (None, Some(k)), "episode {k} starts at reading {i}");
            assert_eq!(p.next_episode(i), k);
        }
    }

    #[test]
    fn messages_follow_the_mqtt_contract() {
        let p = Plan::new(1_764_000_000_000_000, 300, 16);
        let (topic, payload) = p.message(17);
        assert_eq!(topic, "sensors/CHAOS-02/telemetry");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["equipement_id"], "CHAOS-02");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v["temperature"].is_f64() && v["vibration"].is_f64());
    }
}
