//! Time partitions of `telemetry` (migration 0003 made it range-partitioned on `ts`): the
//! archive creates them ahead of time, on demand for a batch carrying an older or newer
//! timestamp, and drops those past the retention; the trainer's history back-fill creates the
//! ones its batches need the same way. Sits between the batch writers
//! ([`crate::telemetry`]) and PostgreSQL.
//!
//! Partitions are `width` days wide, aligned on 2000-01-03T00:00Z (a Monday: weekly partitions
//! start on Mondays), named `telemetry_pYYYYMMDD` after their first day (UTC). If the width
//! setting changes, a new partition is clipped to the gap between existing ones, so the
//! ranges never overlap. Creation and dropping each run under an advisory lock, so several
//! archive replicas do not race, and with a lock timeout. Neither makes the writers wait for a
//! long query on `telemetry`: a partition is created as a table and then attached (see
//! `create_slots`), and detached concurrently before it is dropped (see `drop_expired`); the
//! archive refuses a row past the retention rather than store it in a partition being dropped
//! ([`Partitions::past_retention`]).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

const DAY_MICROS: i64 = 86_400_000_000;
/// 2000-01-03T00:00:00Z, a Monday.
const ORIGIN_MICROS: i64 = 946_857_600_000_000;
/// Serialises partition creation between replicas ("PARTS").
const LOCK: i64 = 0x0050_4152_5453;

/// One partition: its name and range [from, to) in microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub from: i64,
    pub to: i64,
}

/// The partition layout and what is known to exist.
pub struct Partitions {
    width_micros: i64,
    known: Mutex<Vec<(i64, i64)>>,
}

impl Partitions {
    pub fn new(width_days: u32) -> Self {
        Self { width_micros: i64::from(width_days.max(1)) * DAY_MICROS, known: Mutex::new(Vec::new()) }
    }

    /// Start of the slot holding `ts`.
    pub fn slot(&self, ts: i64) -> i64 {
        ORIGIN_MICROS + (ts - ORIGIN_MICROS).div_euclid(self.width_micros) * self.width_micros
    }

    /// The slots among `ts` that no known partition covers (deduplicated, sorted).
    pub fn missing_slots(&self, ts: impl Iterator<Item = i64>) -> Vec<i64> {
        // Sorted by start, ranges never overlap.
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<i64> = Vec::new();
        let mut last_ok: Option<(i64, i64)> = None;
        for t in ts {
            // Batches come mostly in time order: the last covering range answers most rows.
            if last_ok.is_some_and(|(f, e)| f <= t && t < e) {
                continue;
            }
            if let Some(range) = covering(&known, t) {
                last_ok = Some(range);
                continue;
            }
            let s = self.slot(t);
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out.sort_unstable();
        out
    }

    /// Reads the partitions from the catalog and remembers them.
    pub async fn refresh(&self, client: &tokio_postgres::Client) -> Result<Vec<Partition>, tokio_postgres::Error> {
        let parts = list(client).await?;
        let mut k: Vec<(i64, i64)> = parts.iter().map(|p| (p.from, p.to)).collect();
        k.sort_unstable();
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = k;
        Ok(parts)
    }

    /// Makes sure every timestamp in `ts` has a partition, creating the missing ones.
    /// Returns the names created. Cheap when all are known (no query).
    pub async fn ensure(&self, pool: &Pool, ts: impl Iterator<Item = i64>) -> Result<Vec<String>, PartitionError> {
        let missing = self.missing_slots(ts);
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        self.create_slots(pool, &missing).await
    }

    /// Creates the partitions of `slots` (slot starts) that do not exist yet.
    pub async fn create_slots(&self, pool: &Pool, slots: &[i64]) -> Result<Vec<String>, PartitionError> {
        let mut object = pool.get().await?;
        let client: &mut tokio_postgres::Client = &mut object;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await?;
        let existing = list(&tx).await?;
        let mut created = Vec::new();
        for &slot in slots {
            let Some((from, to)) = clip(slot, slot + self.width_micros, &existing) else { continue };
            let name = partition_name(from);
            // Made apart, then attached: `CREATE TABLE … PARTITION OF` takes an ACCESS EXCLUSIVE
            // lock on `telemetry`, which waits for every running query on it (a long history
            // read) while the writers queue behind the wait; ATTACH takes SHARE UPDATE
            // EXCLUSIVE, which neither readers nor writers conflict with. The new table is
            // empty, so checking its rows against the range costs nothing.
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} (LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
                 ALTER TABLE telemetry ATTACH PARTITION {name} FOR VALUES FROM ('{}') TO ('{}')",
                rfc3339(from),
                rfc3339(to)
            ))
            .await?;
            tracing::info!(partition = %name, from = %rfc3339(from), to = %rfc3339(to), "telemetry partition created");
            metrics::counter!("proact_archive_partitions_created_total").increment(1);
            created.push(name);
        }
        tx.commit().await?;
        self.refresh(client).await?;
        Ok(created)
    }

    /// Creates the partition of `now` and the `ahead` next ones.
    pub async fn create_ahead(&self, pool: &Pool, now: i64, ahead: u32) -> Result<Vec<String>, PartitionError> {
        let first = self.slot(now);
        let slots: Vec<i64> = (0..=i64::from(ahead)).map(|i| first + i * self.width_micros).collect();
        let missing = self.missing_slots(slots.iter().copied());
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        self.create_slots(pool, &missing).await
    }

    /// Whether a row of time `ts` is past the retention at `now`: the partition holding it
    /// (the known one, else the one its slot would get) ends before `now - retention_days`
    /// plus [`RETENTION_MARGIN_MICROS`], so [`Self::drop_expired`] drops it within that
    /// margin, or already has. `retention_days` 0: never.
    pub fn past_retention(&self, ts: i64, now: i64, retention_days: u32) -> bool {
        if retention_days == 0 {
            return false;
        }
        let horizon = horizon(now, retention_days) + RETENTION_MARGIN_MICROS;
        if ts >= horizon {
            return false;
        }
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        // A partition made for it would be clipped to its slot, never past the slot's end.
        let end = covering(&known, ts).map_or(self.slot(ts) + self.width_micros, |(_, to)| to);
        end <= horizon
    }

    /// Drops the partitions whose whole range is older than `now - retention_days`.
    /// Returns the names dropped. `retention_days` 0 keeps everything.
    ///
    /// Each is detached `CONCURRENTLY` first: a plain `DROP` of a partition takes an ACCESS
    /// EXCLUSIVE lock on `telemetry`, which waits for every running query on it (a long
    /// history read) while the writers queue behind the wait; the concurrent detach waits for
    /// those queries holding no lock the writers or a new partition's `ATTACH` need. Cut by
    /// the lock timeout, it leaves the partition pending detach and the call returns what it
    /// dropped so far; the next call finalises it.
    /// Where an operator added a DEFAULT partition (PostgreSQL then refuses a concurrent
    /// detach) the partitions are dropped plainly.
    pub async fn drop_expired(
        &self,
        pool: &Pool,
        now: i64,
        retention_days: u32,
    ) -> Result<Vec<String>, PartitionError> {
        if retention_days == 0 {
            return Ok(Vec::new());
        }
        let horizon = horizon(now, retention_days);
        let mut object = pool.get().await?;
        // A concurrent detach cannot run in a transaction: the lock timeout and the lock
        // serialising replicas are the session's, set and released around the work.
        let client: &mut tokio_postgres::Client = &mut object;
        client.batch_execute("SET lock_timeout = '5s'").await?;
        let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&DROP_LOCK]).await?.get(0);
        let result = if locked { drop_before(client, horizon).await } else { Ok(Vec::new()) };
        let released = async {
            if locked {
                client.execute("SELECT pg_advisory_unlock($1)", &[&DROP_LOCK]).await?;
            }
            client.batch_execute("RESET lock_timeout").await
        }
        .await;
        if released.is_err() || result.is_err() {
            // Never back to the pool holding the lock or the setting: closing it releases both.
            drop(deadpool_postgres::Object::take(object));
        } else {
            self.refresh(client).await?;
        }
        released?;
        result
    }
}

/// The known range (sorted by start, never overlapping) holding `ts`, if any.
fn covering(known: &[(i64, i64)], ts: i64) -> Option<(i64, i64)> {
    let i = known.partition_point(|&(from, _)| from <= ts);
    i.checked_sub(1).map(|i| known[i]).filter(|&(_, to)| ts < to)
}

/// The time before which a partition's whole range is past `retention_days`.
fn horizon(now: i64, retention_days: u32) -> i64 {
    now - i64::from(retention_days) * DAY_MICROS
}

/// A row is refused ([`Partitions::past_retention`]) when its partition is this close to the
/// retention's horizon: the replica that drops it may run on a clock ahead of the writer's,
/// and a writer (a history back-fill) may still be at work when the horizon passes it.
pub const RETENTION_MARGIN_MICROS: i64 = 3_600_000_000;

/// Serialises the dropping between replicas ("PDROP"), apart from [`LOCK`]: creating a
/// partition must not wait for a detach that waits for a long query.
const DROP_LOCK: i64 = 0x0050_4452_4f50;

/// The work of [`Partitions::drop_expired`] on one session.
async fn drop_before(client: &tokio_postgres::Client, horizon: i64) -> Result<Vec<String>, PartitionError> {
    let mut dropped = Vec::new();
    // PostgreSQL allows one pending detach per table: an interrupted one is completed first.
    let pending = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'telemetry'::regclass AND i.inhdetachpending",
            &[],
        )
        .await?;
    for row in pending {
        let partition: String = row.get(0);
        let name = quote(&partition);
        if !within_lock_timeout(client, &format!("ALTER TABLE telemetry DETACH PARTITION {name} FINALIZE")).await? {
            return Ok(dropped);
        }
        client.batch_execute(&format!("DROP TABLE IF EXISTS {name}")).await?;
        tracing::info!(partition = %partition, "telemetry partition dropped (retention, detach finalised)");
        metrics::counter!("proact_archive_partitions_dropped_total").increment(1);
        dropped.push(partition);
    }
    let has_default: bool = client
        .query_one("SELECT partdefid <> 0 FROM pg_partitioned_table WHERE partrelid = 'telemetry'::regclass", &[])
        .await?
        .get(0);
    for p in list(client).await? {
        if p.to > horizon {
            continue;
        }
        let name = quote(&p.name);
        if !has_default
            && !within_lock_timeout(client, &format!("ALTER TABLE telemetry DETACH PARTITION {name} CONCURRENTLY"))
                .await?
        {
            return Ok(dropped);
        }
        client.batch_execute(&format!("DROP TABLE IF EXISTS {name}")).await?;
        tracing::info!(partition = %p.name, to = %rfc3339(p.to), "telemetry partition dropped (retention)");
        metrics::counter!("proact_archive_partitions_dropped_total").increment(1);
        dropped.push(p.name);
    }
    Ok(dropped)
}

/// Runs a detach; `false` when it waited for older queries past the lock timeout: the
/// partition is then pending detach (or, cut before, still attached) and a later pass
/// finishes it. The expected outcome behind a long query, not a failure.
async fn within_lock_timeout(client: &tokio_postgres::Client, sql: &str) -> Result<bool, tokio_postgres::Error> {
    match client.batch_execute(sql).await {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            tracing::info!(
                statement = sql,
                "telemetry partition detach waits for queries older than it; finished at a later maintenance pass"
            );
            metrics::counter!("proact_archive_partition_detach_waits_total").increment(1);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A partition could not be listed, created or dropped; retried later.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// The partitions of `telemetry` with their ranges; DEFAULT and unbounded sides are read as
/// covering nothing / everything on that side.
pub async fn list(client: &impl tokio_postgres::GenericClient) -> Result<Vec<Partition>, tokio_postgres::Error> {
    // The bound expression prints timestamps in the session time zone; casting them back in
    // the same session reads them right. A DEFAULT partition an operator added has no range
    // (`b` is NULL): it is not one of ours and is left out, never read as one.
    let rows = client
        .query(
            "SELECT c.relname::text,
                    b[1] = 'MINVALUE', (CASE WHEN b[1] <> 'MINVALUE' THEN trim(both '''' from b[1]) END)::timestamptz,
                    b[2] = 'MAXVALUE', (CASE WHEN b[2] <> 'MAXVALUE' THEN trim(both '''' from b[2]) END)::timestamptz
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\((.+)\\) TO \\((.+)\\)') AS b
             WHERE i.inhparent = 'telemetry'::regclass
               AND b IS NOT NULL",
            &[],
        )
        .await?;
    let mut out: Vec<Partition> = rows
        .iter()
        .map(|r| {
            let from = if r.get::<_, bool>(1) { i64::MIN } else { r.get::<_, DateTime<Utc>>(2).timestamp_micros() };
            let to = if r.get::<_, bool>(3) { i64::MAX } else { r.get::<_, DateTime<Utc>>(4).timestamp_micros() };
            Partition { name: r.get(0), from, to }
        })
        .collect();
    out.sort_by_key(|p| p.from);
    Ok(out)
}

/// [from, to) minus the existing ranges around `from`: the part that is free, if any.
fn clip(from: i64, to: i64, existing: &[Partition]) -> Option<(i64, i64)> {
    let (mut from, mut to) = (from, to);
    for p in existing {
        if p.from <= from && from < p.to {
            from = p.to; // the slot's start is taken: begin after that partition
        }
    }
    for p in existing {
        if from < p.from && p.from < to {
            to = p.from; // stop where the next partition begins
        }
    }
    (from < to).then_some((from, to))
}

fn partition_name(from: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_micros(from).unwrap_or_default();
    if from.rem_euclid(DAY_MICROS) == 0 {
        format!("telemetry_p{}", t.format("%Y%m%d"))
    } else {
        format!("telemetry_p{}", t.format("%Y%m%d_%H%M%S"))
    }
}

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(from: i64, to: i64) -> Partition {
        Partition { name: partition_name(from), from, to }
    }

    #[test]
    fn slots_align_on_days_and_mondays() {
        let day = Partitions::new(1);
        let t = 1_795_000_000_000_000; // 2026-11-18T...
        assert_eq!(day.slot(t) % DAY_MICROS, 0);
        assert!(day.slot(t) <= t && t < day.slot(t) + DAY_MICROS);
        let week = Partitions::new(7);
        let s = week.slot(t);
        // 1970-01-01 was a Thursday: Mondays are 4 days after a multiple of 7 days.
        assert_eq!((s / DAY_MICROS).rem_euclid(7), 4);
        assert!(week.slot(-1) <= -1 && -1 < week.slot(-1) + 7 * DAY_MICROS);
        assert_eq!(partition_name(day.slot(t)), "telemetry_p20261118");
    }

    #[test]
    fn clipping_keeps_ranges_apart() {
        let d = DAY_MICROS;
        let existing = vec![p(0, d), p(3 * d, 4 * d)];
        assert_eq!(clip(0, 7 * d, &existing), Some((d, 3 * d)));
        assert_eq!(clip(3 * d, 4 * d, &existing), None);
        assert_eq!(clip(4 * d, 5 * d, &existing), Some((4 * d, 5 * d)));
    }

    #[test]
    fn past_the_retention_is_decided_by_the_partition_end_not_the_row() {
        let d = DAY_MICROS;
        let now = ORIGIN_MICROS + 100 * d;
        let parts = Partitions::new(1);
        // 30 days kept: the horizon is day 70. A row of day 69 is in a partition ending on day
        // 70: dropped. One of day 70 is not.
        assert!(parts.past_retention(ORIGIN_MICROS + 69 * d + 5, now, 30));
        assert!(!parts.past_retention(ORIGIN_MICROS + 70 * d, now, 30));
        assert!(!parts.past_retention(ORIGIN_MICROS, now, 0), "0 keeps everything");
        // A week-wide partition made before the width changed, from day 64 to day 71: kept
        // while it reaches past the horizon, whatever its rows' age.
        *parts.known.lock().unwrap() = vec![(ORIGIN_MICROS + 64 * d, ORIGIN_MICROS + 71 * d)];
        assert!(!parts.past_retention(ORIGIN_MICROS + 64 * d, now, 30));
        assert!(parts.past_retention(ORIGIN_MICROS + 63 * d, now, 30), "its slot ends on day 64");
        // Half an hour before the horizon reaches a partition's end, its rows are refused
        // already: the drop may run on a clock ahead of this one.
        let parts = Partitions::new(1);
        let early = now - RETENTION_MARGIN_MICROS / 2;
        assert!(parts.past_retention(ORIGIN_MICROS + 69 * d + 5, early, 30));
        assert!(!parts.past_retention(ORIGIN_MICROS + 69 * d + 5, early - RETENTION_MARGIN_MICROS, 30));
    }

    #[test]
    fn known_ranges_answer_without_queries() {
        let parts = Partitions::new(1);
        *parts.known.lock().unwrap() = vec![(0, DAY_MICROS)];
        assert!(parts.missing_slots([1, 2, 3].into_iter()).is_empty());
        assert_eq!(parts.missing_slots([DAY_MICROS + 1, -1, 2 * DAY_MICROS + 5].into_iter()).len(), 3);
    }
}
