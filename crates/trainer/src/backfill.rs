//! `proact-trainer backfill`: writes a past for the simulated fleet, so a fresh system (the
//! demo) has something to learn from in its first minute instead of weeks of live telemetry.
//!
//! The past is [`proact_simulator::history`] (the live simulator's signal model and failure
//! episodes, in fast-forward). It goes where the live pipeline would have put it, by the same
//! code: readings into `telemetry` through the archive's batch writer, partitions created as
//! the archive creates them; the rules' alerts into `alerts` as the archive stores them; and
//! for each alert a work order taken through `proact_maintenance::WorkOrders` (create, start,
//! close with its outcome, on a clock set to the past), so the labels come from the closed
//! orders exactly as they do in production: failures confirmed for the episodes, false alarms
//! for the spikes.
//!
//! Idempotent: `simulated_history` records each back-fill; a finished one is not written
//! again, an interrupted one is resumed with its recorded plan (readings and alerts are
//! upserts, an alert that already has a work order is skipped).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::{StreamExt, TryStreamExt};
use proact_maintenance::WorkOrders;
use proact_proto::v1::{
    Alert, AlertState, CloseWorkOrderRequest, CreateWorkOrderRequest, Outcome, Severity, Telemetry,
};
use proact_simulator::history::{self, Failure, FalseAlarm, HistoryPlan, MachineHistory, RuleThresholds};
use proact_store::partitions::Partitions;
use proact_store::taxonomy::{fleet, Equipment};
use proact_store::telemetry::WriteMethod;

/// Who the history's work orders are made and closed by.
const BY: &str = "historique simulé";
/// What the detector stamps on its rules' alerts (its `engine::RULES_VERSION`).
const RULES_VERSION: &str = "rules-v1";
/// Readings per COPY batch.
const BATCH: usize = 20_000;
/// Machines written at once.
const PARALLEL: usize = 3;
/// Connections a back-fill needs: its lock's, and two per machine written at once (a batch and
/// its partitions, or a work order and its check), or the record's.
pub const POOL_SIZE: usize = 1 + 2 * PARALLEL;

/// Flags of `proact-trainer backfill`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// Days of history, ending now.
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// Seconds between two readings of one machine (the live window is 60 s: keep several
    /// readings in it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=30))]
    pub step_secs: i64,
    /// Seed of the episodes and the noise (the live simulator's PROACT_SIM_SEED).
    #[arg(long, env = "PROACT_SIM_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Seconds a failure episode lasts: the live simulator's --episode-secs, so the models
    /// learn the shape they will see live.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(20..=86_400))]
    pub episode_secs: i64,
    /// Mean hours between two failure episodes of one machine.
    #[arg(long, default_value_t = 12.0)]
    pub episode_every_hours: f64,
    /// One false alarm (a one-reading spike the rules raised) per this many failures of a
    /// machine; 0: none.
    #[arg(long, default_value_t = 4)]
    pub false_alarm_every: u32,
    /// The temperature rule that raised the history's alerts (the detector's setting).
    #[arg(long, env = "PROACT_TEMPERATURE_WARNING", default_value_t = 80.0)]
    pub temperature_warning: f64,
    /// The vibration rule that raised the history's alerts (the detector's setting).
    #[arg(long, env = "PROACT_VIBRATION_WARNING", default_value_t = 11.0)]
    pub vibration_warning: f64,
    /// Width of the telemetry partitions it creates (the archive's setting).
    #[arg(long, env = "PROACT_ARCHIVE_PARTITION_DAYS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub partition_days: u32,
    /// Days of telemetry the archive keeps (its setting; 0 keeps everything): a longer history
    /// is refused, and readings its next pass would drop are not written.
    #[arg(long, env = "PROACT_ARCHIVE_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,
}

impl BackfillArgs {
    /// The generator's plan for a history ending at `now`.
    pub fn plan(&self, now: DateTime<Utc>) -> Result<HistoryPlan, BackfillError> {
        let h = self.episode_every_hours;
        if !(h.is_finite() && h > 0.0 && h <= 24.0 * 366.0) {
            return Err(BackfillError::Invalid(format!(
                "--episode-every-hours {h}: must be a number of hours in (0, 8784]"
            )));
        }
        if self.retention_days > 0 && self.days > self.retention_days {
            return Err(BackfillError::Invalid(format!(
                "--days {} reaches past the archive's retention (PROACT_ARCHIVE_RETENTION_DAYS = {}): \
                 its next pass would drop the older days; back-fill at most {} days",
                self.days, self.retention_days, self.retention_days
            )));
        }
        let to = now.timestamp() / self.step_secs * self.step_secs;
        let plan = HistoryPlan {
            seed: self.seed,
            from: to - i64::from(self.days) * 86_400,
            to,
            step_secs: self.step_secs,
            episode_secs: self.episode_secs,
            episode_every_secs: (h * 3600.0).round() as i64,
            false_alarm_every: self.false_alarm_every,
            rules: RuleThresholds {
                temperature_warning: self.temperature_warning,
                vibration_warning: self.vibration_warning,
            },
        };
        plan.validate().map_err(|history::PlanError::Invalid { field, value, why }| {
            let flag = match field {
                "step_secs" => "--step-secs",
                "episode_secs" => "--episode-secs",
                "episode_every_secs" => "--episode-every-hours",
                "rules" => "--temperature-warning / --vibration-warning",
                other => other,
            };
            BackfillError::Invalid(format!("{flag} ({field} = {value}): {why}"))
        })?;
        Ok(plan)
    }
}

/// Why a back-fill stopped. What it committed stays, and a new run resumes it.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: run `proact-trainer load-reference` first")]
    MissingReference(String),
    #[error("another back-fill is running on this database")]
    Busy,
    #[error(transparent)]
    Migration(#[from] proact_store::schema::MigrationError),
    #[error("PostgreSQL: {0}")]
    Store(#[from] proact_store::StoreError),
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("telemetry partitions: {0}")]
    Partition(#[from] proact_store::partitions::PartitionError),
    #[error("work order: {0}")]
    WorkOrder(#[from] proact_maintenance::MaintenanceError),
    #[error("work-order events not published (they stay in the outbox for the gateway): {0}")]
    Publish(#[from] proact_maintenance::events::PublishError),
    #[error("the recorded plan of back-fill {id} cannot be read ({why}): delete that row of simulated_history")]
    RecordedPlan { id: i64, why: String },
    #[error("history generation: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A finished back-fill is on record: nothing written.
    AlreadyDone {
        started_at: DateTime<Utc>,
        readings: i64,
        failures: i32,
        false_alarms: i32,
    },
    Written(Written),
}

/// What a back-fill wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub plan: HistoryPlan,
    /// The run continued an interrupted back-fill.
    pub resumed: bool,
    pub machines: usize,
    pub readings: u64,
    /// Readings that were not stored yet (all of them on a first run).
    pub new_readings: u64,
    /// Readings not written because the archive's retention drops their partition (the oldest
    /// days of a back-fill resumed long after it began).
    pub past_retention: u64,
    pub failures: usize,
    pub false_alarms: usize,
    /// Work orders made and closed by this run (fewer than alerts when resuming).
    pub work_orders: usize,
    /// Their transitions published on the work-order stream.
    pub events: usize,
    pub telemetry_secs: f64,
    pub work_order_secs: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Report::AlreadyDone { started_at, readings, failures, false_alarms } => write!(
                f,
                "back-fill: the history is already there (written {}: {readings} readings, {failures} failures, \
                 {false_alarms} false alarms); nothing written",
                started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Report::Written(w) => {
                let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default().format("%Y-%m-%d %H:%M");
                write!(
                    f,
                    "back-fill{}: {} → {} UTC, {} machines, {} readings ({} new{}) in {:.1} s; {} failures and {} false \
                     alarms as alerts, {} work orders closed in {:.1} s",
                    if w.resumed { " (resumed)" } else { "" },
                    at(w.plan.from),
                    at(w.plan.to),
                    w.machines,
                    w.readings,
                    w.new_readings,
                    match w.past_retention {
                        0 => String::new(),
                        n => format!(", {n} past the archive's retention not written"),
                    },
                    w.telemetry_secs,
                    w.failures,
                    w.false_alarms,
                    w.work_orders,
                    w.work_order_secs
                )
            }
        }
    }
}

/// Writes the history planned by `args` ending at `now`, unless one is already on record.
/// `redis`: where the work orders' events go (as the gateway's would); `None` leaves them in
/// the outbox, for the gateway to publish at its start.
pub async fn run(
    pool: &Pool,
    redis: Option<fred::prelude::Client>,
    args: &BackfillArgs,
    now: DateTime<Utc>,
) -> Result<Report, BackfillError> {
    let fresh = args.plan(now)?;
    proact_store::schema::migrate(&mut *pool.get().await?).await?;
    // Held until this function returns, however it returns; the record itself is written on
    // other connections, committed at once, so an interrupted back-fill is found and resumed.
    let mut lock_client = pool.get().await?;
    let lock = lock_client.transaction().await?;
    if !proact_store::simulated::try_lock(&lock).await? {
        return Err(BackfillError::Busy);
    }
    let record = pool.get().await?;
    let latest = proact_store::simulated::latest(&**record).await?;
    if let Some(b) = latest.as_ref().filter(|b| b.finished_at.is_some()) {
        return Ok(Report::AlreadyDone {
            started_at: b.started_at,
            readings: b.readings,
            failures: b.failures,
            false_alarms: b.false_alarms,
        });
    }
    let machines = fleet();
    let technicians = check_reference(pool, &machines).await?;
    let (id, plan, resumed) = match latest {
        Some(b) => {
            let plan: HistoryPlan = serde_json::from_value(b.plan.clone())
                .map_err(|e| BackfillError::RecordedPlan { id: b.id, why: e.to_string() })?;
            tracing::info!(id = b.id, "resuming an interrupted back-fill with its recorded plan");
            (b.id, plan, true)
        }
        None => {
            let json = serde_json::to_value(&fresh).map_err(|e| BackfillError::Invalid(e.to_string()))?;
            (proact_store::simulated::begin(&**record, &json).await?, fresh, false)
        }
    };
    drop(record);
    let partitions = Arc::new(Partitions::new(args.partition_days));
    partitions.refresh(&*pool.get().await?).await?;

    let started = Instant::now();
    // Per machine: its history without the readings once they are written (a few machines'
    // readings are in memory at a time), how many there were, and what became of them.
    let (retention_days, now_micros) = (args.retention_days, now.timestamp_micros());
    let histories: Vec<(MachineHistory, u64, Stored)> = futures::stream::iter(machines.iter().cloned().enumerate())
        .map(|(i, eq)| {
            let (plan, pool, partitions) = (plan.clone(), pool.clone(), partitions.clone());
            async move {
                let mut h = tokio::task::spawn_blocking(move || history::machine_history(&plan, &eq, i)).await?;
                let stored = write_readings(&pool, &partitions, &h, retention_days, now_micros).await?;
                let readings = std::mem::take(&mut h.readings).len() as u64;
                Ok::<_, BackfillError>((h, readings, stored))
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    let telemetry_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut alerts = Vec::new();
    for (h, ..) in &histories {
        alerts.extend(h.failures.iter().map(|f| failure_alert(&plan, &h.equipment, f)));
        alerts.extend(h.false_alarms.iter().map(|a| false_alarm_alert(&plan, &h.equipment, a)));
    }
    proact_store::store_alerts(pool, &alerts).await?;
    let technicians = Arc::new(technicians);
    let work_orders: usize = futures::stream::iter(histories.iter().enumerate())
        .map(|(i, (h, ..))| close_orders(pool, &plan, h, technicians.clone(), i))
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<usize>>()
        .await?
        .into_iter()
        .sum();
    // The orders' events wait in the outbox until now: one publisher sends them once, in
    // order (concurrent publishers may repeat an event).
    let events = WorkOrders::new(pool.clone(), redis).publish_pending().await?;
    let work_order_secs = started.elapsed().as_secs_f64();

    let written = Written {
        resumed,
        machines: histories.len(),
        readings: histories.iter().map(|(_, n, _)| n).sum(),
        new_readings: histories.iter().map(|(.., s)| s.new).sum(),
        past_retention: histories.iter().map(|(.., s)| s.past_retention).sum(),
        failures: histories.iter().map(|(h, ..)| h.failures.len()).sum(),
        false_alarms: histories.iter().map(|(h, ..)| h.false_alarms.len()).sum(),
        work_orders,
        events,
        telemetry_secs,
        work_order_secs,
        plan,
    };
    let record = pool.get().await?;
    proact_store::simulated::finish(
        &**record,
        id,
        written.readings as i64,
        written.failures as i32,
        written.false_alarms as i32,
    )
    .await?;
    // Fresh statistics, so the first training run's scan is planned on the real row counts.
    record.batch_execute("ANALYZE telemetry").await?;
    lock.rollback().await?;
    Ok(Report::Written(written))
}

/// The technicians to assign, after checking every machine has its AMDEC modes (work orders
/// name one).
async fn check_reference(pool: &Pool, machines: &[Equipment]) -> Result<Vec<String>, BackfillError> {
    let client = pool.get().await?;
    for eq in machines {
        if proact_store::work_orders::amdec_modes(&**client, &eq.id).await?.is_empty() {
            return Err(BackfillError::MissingReference(format!("no AMDEC failure mode for {}", eq.id)));
        }
    }
    let technicians: Vec<String> =
        proact_store::reference::technicians(&client).await?.into_iter().map(|t| t.technician_id).collect();
    if technicians.is_empty() {
        return Err(BackfillError::MissingReference("no technician in the workload table".into()));
    }
    Ok(technicians)
}

/// What became of one machine's readings.
#[derive(Debug, Clone, Copy, Default)]
struct Stored {
    new: u64,
    past_retention: u64,
}

/// Archives one machine's readings in batches, but those the archive's retention (of
/// `retention_days` at `now_micros`) drops: it refuses them too (`Partitions::past_retention`).
async fn write_readings(
    pool: &Pool,
    partitions: &Partitions,
    h: &MachineHistory,
    retention_days: u32,
    now_micros: i64,
) -> Result<Stored, BackfillError> {
    let mut stored = Stored::default();
    for chunk in h.readings.chunks(BATCH) {
        let kept = chunk.iter().filter(|(t, _)| !partitions.past_retention(t * 1_000_000, now_micros, retention_days));
        let rows: Vec<Telemetry> = kept
            .map(|(t, s)| Telemetry {
                equipement_id: h.equipment.id.clone(),
                ts_micros: t * 1_000_000,
                temperature: s.temperature,
                vibration: s.vibration,
                extra: [("pressure".to_string(), s.pressure), ("current".to_string(), s.current)].into(),
                received_micros: t * 1_000_000,
                ..Default::default()
            })
            .collect();
        stored.past_retention += (chunk.len() - rows.len()) as u64;
        if rows.is_empty() {
            continue;
        }
        // Partition DDL takes a connection of its own: none is held across it.
        partitions.ensure(pool, rows.iter().map(|r| r.ts_micros)).await?;
        let mut client = pool.get().await?;
        stored.new += proact_store::telemetry::write_telemetry(&mut client, &rows, WriteMethod::CopyFirst).await?;
    }
    Ok(stored)
}

fn alert_id(plan: &HistoryPlan, eq: &Equipment, at: i64) -> String {
    format!("SIM-{}-{}-{at}", plan.seed, eq.id)
}

/// The rules' alert for a failure, cleared when the machine stopped.
fn failure_alert(plan: &HistoryPlan, eq: &Equipment, f: &Failure) -> Alert {
    let (reason, value) = match f.rule {
        "temperature_warning" => {
            (format!("température {:.1} °C > {:.1} °C", f.value, plan.rules.temperature_warning), f.value)
        }
        "vibration_warning" => {
            (format!("vibration {:.1} mm/s > {:.1} mm/s", f.value, plan.rules.vibration_warning), f.value)
        }
        _ => (format!("arrêt machine ({})", f.episode.mode.mode_fr), f.value),
    };
    Alert {
        alert_id: alert_id(plan, eq, f.detected_at),
        equipement_id: eq.id.clone(),
        start_micros: f.detected_at * 1_000_000,
        end_micros: f.episode.end * 1_000_000,
        severity: Severity::Warning as i32,
        score: 1.0,
        reason,
        rule: f.rule.to_string(),
        model_version: RULES_VERSION.to_string(),
        state: AlertState::Cleared as i32,
        updated_micros: f.episode.end * 1_000_000,
        value,
        ..Default::default()
    }
}

/// The rules' alert for a spike, cleared at the next reading.
fn false_alarm_alert(plan: &HistoryPlan, eq: &Equipment, a: &FalseAlarm) -> Alert {
    let end = (a.at + plan.step_secs) * 1_000_000;
    Alert {
        alert_id: alert_id(plan, eq, a.at),
        equipement_id: eq.id.clone(),
        start_micros: a.at * 1_000_000,
        end_micros: end,
        severity: Severity::Warning as i32,
        score: 1.0,
        reason: format!("température {:.1} °C > {:.1} °C", a.value, plan.rules.temperature_warning),
        rule: "temperature_warning".into(),
        model_version: RULES_VERSION.to_string(),
        state: AlertState::Cleared as i32,
        updated_micros: end,
        value: a.value,
        ..Default::default()
    }
}

/// Takes every alert of one machine through a work order, in time order, on a clock set to
/// the history's times; returns how many orders it closed.
async fn close_orders(
    pool: &Pool,
    plan: &HistoryPlan,
    h: &MachineHistory,
    technicians: Arc<Vec<String>>,
    machine: usize,
) -> Result<usize, BackfillError> {
    let now = Arc::new(AtomicI64::new(0));
    let clock_now = now.clone();
    let clock: proact_maintenance::Clock =
        Arc::new(move || DateTime::from_timestamp(clock_now.load(Ordering::Relaxed), 0).unwrap_or_default());
    let orders = WorkOrders::with_clock(pool.clone(), None, clock);
    // The orders take their own connections: none is held across them.
    let has_order = |alert: String| async move {
        let client = pool.get().await?;
        Ok::<_, BackfillError>(proact_store::work_orders::latest_for_alert(&client, &alert).await?.is_some())
    };
    let technician = |k: usize| technicians[(machine + k) % technicians.len()].clone();
    let mut closed = 0;
    for (k, f) in h.failures.iter().enumerate() {
        let alert = alert_id(plan, &h.equipment, f.detected_at);
        if has_order(alert.clone()).await? {
            continue;
        }
        let m = &f.episode.mode;
        // Opened a few minutes after the alert; the repair begins once the machine has stopped.
        now.store(f.detected_at + 300, Ordering::Relaxed);
        let repair_start = f.episode.end.max(f.detected_at) + 1800;
        let repair_h = 1.0 + (k % 4) as f64 * 0.5;
        let w = orders
            .create(&CreateWorkOrderRequest {
                alert_id: alert,
                failure_mode_code: m.code.to_string(),
                technician_id: technician(k),
                planned_start_micros: repair_start * 1_000_000,
                estimated_duration_h: repair_h,
                description: format!("{} : {}", m.component, m.mode_fr),
                by: BY.into(),
                ..Default::default()
            })
            .await?;
        now.store(repair_start, Ordering::Relaxed);
        orders.start(&w.work_order_id, BY, "").await?;
        now.store(repair_start + (repair_h * 3600.0) as i64, Ordering::Relaxed);
        orders
            .close(&CloseWorkOrderRequest {
                work_order_id: w.work_order_id,
                by: BY.into(),
                outcome: Outcome::FailureConfirmed as i32,
                found_failure_mode_code: m.code.to_string(),
                cause_found: m.cause_fr.to_string(),
                action_taken: m.action_fr.to_string(),
                actual_duration_h: Some(repair_h),
                ..Default::default()
            })
            .await?;
        closed += 1;
    }
    for (k, a) in h.false_alarms.iter().enumerate() {
        let alert = alert_id(plan, &h.equipment, a.at);
        if has_order(alert.clone()).await? {
            continue;
        }
        now.store(a.at + 300, Ordering::Relaxed);
        let w = orders
            .create(&CreateWorkOrderRequest {
                alert_id: alert,
                technician_id: technician(k + 1),
                estimated_duration_h: 0.5,
                description: "Contrôle après dépassement de seuil".into(),
                by: BY.into(),
                ..Default::default()
            })
            .await?;
        now.store(a.at + 3600, Ordering::Relaxed);
        orders
            .close(&CloseWorkOrderRequest {
                work_order_id: w.work_order_id,
                by: BY.into(),
                outcome: Outcome::FalseAlarm as i32,
                cause_found: "Pic isolé, mesures normales avant et après".into(),
                action_taken: "Aucune".into(),
                actual_duration_h: Some(0.5),
                ..Default::default()
            })
            .await?;
        closed += 1;
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BackfillArgs,
    }

    fn parse(a: &[&str]) -> Result<BackfillArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("backfill").chain(a.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn the_plan_ends_now_on_the_step_grid() {
        let now = DateTime::from_timestamp(1_796_000_007, 0).unwrap();
        let p = parse(&[]).unwrap().plan(now).unwrap();
        assert_eq!(p.to, 1_796_000_000);
        assert_eq!(p.to - p.from, 21 * 86_400);
        assert_eq!(p.episode_every_secs, 12 * 3600);
    }

    #[test]
    fn bad_arguments_are_refused_with_the_flag() {
        let now = Utc::now();
        let e = parse(&["--days", "0"]).err().unwrap().to_string();
        assert!(e.contains("--days"), "{e}");
        let e = parse(&["--step-secs", "120"]).err().unwrap().to_string();
        assert!(e.contains("--step-secs"), "{e}");
        let e = parse(&["--episode-every-hours=-1"]).unwrap().plan(now).unwrap_err().to_string();
        assert!(e.contains("--episode-every-hours"), "{e}");
        let e = parse(&["--episode-secs", "20", "--step-secs", "15"]).unwrap().plan(now).unwrap_err().to_string();
        assert!(e.starts_with("--episode-secs (episode_secs = 20)"), "{e}");
        let e = parse(&["--temperature-warning", "NaN"]).unwrap().plan(now).unwrap_err().to_string();
        assert!(e.contains("--temperature-warning"), "{e}");
        let e = parse(&["--days", "8", "--retention-days", "7"]).unwrap().plan(now).unwrap_err().to_string();
        assert!(e.contains("--days 8") && e.contains("PROACT_ARCHIVE_RETENTION_DAYS = 7"), "{e}");
        assert!(parse(&["--days", "7", "--retention-days", "7"]).unwrap().plan(now).is_ok());
    }
}
