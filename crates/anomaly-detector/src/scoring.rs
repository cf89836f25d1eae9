//! The scoring loop: reads the owned shards, scores each reading with the engine, publishes
//! the alert events under the shards' leases, then acknowledges the readings.
//!
//! One task runs it. Between batches it renews the leases (the heartbeat, which also writes
//! the seen records and takes over gained shards, see [`crate::takeover`]), swaps in models
//! the registry promoted, and checks silences; the engine is shared with the gRPC `Score`
//! calls behind a mutex.
//!
//! On a Redis Cluster a reading is acked only once a replica of the alerts stream's master
//! holds the alert events it raised ([`LoopSettings::alert_wait`]). Refused (the master has no
//! replica in sync, as after a failover until the old master rejoins), the events stay on the
//! dashboard, their readings stay pending in [`Unconfirmed`], and scoring goes on: readings
//! raising nothing are acked as usual. Each heartbeat publishes the held events again (a
//! failover's losses are appended again, the rest are duplicates) and acks their readings
//! once a replica holds them. Held readings a replica leaves behind (stopped, or fenced off)
//! are held again by the shard's next owner: its takeover replays their recorded events
//! ([`crate::takeover`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use proact_proto::streams::{decode_readings, shard_for, telemetry_stream, STATUS_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{AlertEvent, AlertEventKind, EquipmentStatus, Telemetry};
use proact_server::otel::{trace_id_of, KeyValue, PipelineSpan, Tracing};
use proact_server::redis::{ack, ensure_group, read_group, StreamEntry};
use proact_server::Readiness;
use prost::Message;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Engine, Models};
use crate::grpc::LoopStatus;
use crate::leases::{Fence, Leases};
use crate::{checkpoint, publish, seen, takeover};

/// Settings of the loop, from the service's configuration.
pub(crate) struct LoopSettings {
    pub group: String,
    pub replica: String,
    pub shards: u32,
    pub lease_ttl_ms: u64,
    pub batch: u64,
    /// How long a seen record outlives its equipment's last reading (see [`seen`]).
    pub seen_retention_micros: i64,
    /// Whether seen records are written and loaded: only for the no-data alarm, so not when
    /// it is off.
    pub record_seen: bool,
    /// How often the online detectors' states are checkpointed (see [`checkpoint`]); `None`:
    /// never.
    pub checkpoint_every: Option<Duration>,
    /// Replicas that must hold alert events before the readings that raised them are acked.
    pub alert_wait: publish::ReplicaWait,
}

/// Most entries held unacked for unconfirmed alerts: past it the loop reads no more until a
/// replica confirms them (the readings wait in their streams), so memory stays bounded however
/// long the alerts stream's master stays without a replica.
const MAX_UNCONFIRMED_ENTRIES: usize = 10_000;

/// Alert events appended to the alerts stream's master that no replica was confirmed to hold,
/// and the entries whose readings raised them (kept unacked until one does).
#[derive(Default)]
pub(crate) struct Unconfirmed {
    events: Vec<publish::Outgoing>,
    entries: Vec<StreamEntry>,
    /// The ids of `entries`, by stream key (looked up per entry read, without allocating).
    ids: HashMap<String, std::collections::HashSet<String>>,
}

impl Unconfirmed {
    fn hold(&mut self, event: publish::Outgoing, raised_by: Option<&StreamEntry>) {
        self.events.push(event);
        if let Some(e) = raised_by {
            if self.ids.entry(e.key.clone()).or_default().insert(e.id.clone()) {
                self.entries.push(e.clone());
            }
        }
    }

    fn holds(&self, e: &StreamEntry) -> bool {
        self.ids.get(e.key.as_str()).is_some_and(|ids| ids.contains(e.id.as_str()))
    }

    /// Forgets the events and entries of `shards` (lost to another replica, which reads their
    /// pending entries again).
    fn drop_shards(&mut self, shards: &BTreeSet<u32>, fence: &Fence) {
        let keys: BTreeSet<String> = shards.iter().map(|s| telemetry_stream(*s)).collect();
        self.events.retain(|o| !shards.contains(&shard_of_event(o, fence)));
        self.entries.retain(|e| !keys.contains(&e.key));
        self.ids.retain(|k, _| !keys.contains(k));
    }
}

/// The shard of the equipment an alert event is about.
fn shard_of_event(event: &publish::Outgoing, fence: &Fence) -> u32 {
    fence.shard_of(event.event.alert.as_ref().map_or("", |a| a.equipement_id.as_str()))
}

/// Everything the loop and its takeovers work with.
pub(crate) struct Scoring {
    pub settings: LoopSettings,
    /// The connection the blocking XREADGROUP waits on; nothing else uses it, so a read
    /// waiting for entries never delays a publish or an ack.
    pub stream_reader: Client,
    /// Every other command but publishes: leases, acks, claims, seen records.
    pub redis: Client,
    /// The alert publishes and their `WAIT`s alone: a `WAIT` blocks its connection, and a
    /// lease renewal queued behind it could lapse.
    pub publisher: Client,
    /// The online states' checkpoint writes alone (see [`checkpoint::Checkpointer`]).
    pub checkpoint_writer: Client,
    /// Alert events not yet confirmed on a replica, and the entries held for them.
    pub unconfirmed: std::sync::Mutex<Unconfirmed>,
    pub engine: Arc<Mutex<Engine>>,
    pub traces: Tracing,
    pub fence: Fence,
    pub status: Arc<std::sync::RwLock<LoopStatus>>,
    pub ready: Readiness,
}

/// What scoring a batch did.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    /// Shards whose events were fenced off (this replica lost their leases).
    pub fenced: BTreeSet<u32>,
    /// When the batch's alert events were appended, if it appended any.
    pub appended_at: Option<Instant>,
    /// Readings (of those whose events it publishes) older than the lateness tolerance, not
    /// scored.
    pub too_late: u64,
}

/// Where the loop stands between two batches.
struct LoopState {
    leases: Leases,
    /// Stream keys of the shards owned and ready to read.
    keys: Vec<String>,
    /// Shards whose consumer group is known to exist.
    groups_ready: BTreeSet<u32>,
    next_heartbeat: Instant,
    next_silence: Instant,
    /// Writes the online states, when they are checkpointed.
    checkpoints: Option<checkpoint::Checkpointer>,
    next_checkpoint: Instant,
}

impl Scoring {
    /// Runs until `shutdown`, then writes what was seen since the last heartbeat (for the
    /// replicas taking the shards over) and releases the leases.
    pub async fn run(self, mut models_rx: watch::Receiver<Models>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let s = &self.settings;
        let mut state = LoopState {
            leases: Leases::new(self.redis.clone(), s.replica.clone(), s.shards, s.lease_ttl_ms),
            keys: Vec::new(),
            groups_ready: BTreeSet::new(),
            next_heartbeat: Instant::now(),
            next_silence: Instant::now() + Duration::from_secs(1),
            checkpoints: s.checkpoint_every.map(|every| {
                checkpoint::Checkpointer::start(self.checkpoint_writer.clone(), s.replica.clone(), s.shards, every)
            }),
            next_checkpoint: Instant::now(),
        };
        let heartbeat_every = Duration::from_millis(s.lease_ttl_ms / 3);
        while !shutdown.is_cancelled() {
            if Instant::now() >= state.next_heartbeat {
                state.next_heartbeat = Instant::now() + heartbeat_every;
                if let Err(e) = self.heartbeat(&mut state).await? {
                    // Without renewals our leases lapse: stop scoring until Redis is back.
                    self.ready.set("redis", false);
                    tracing::warn!(error = %format!("{e:#}"), "lease heartbeat failed");
                    state.keys.clear();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            if models_rx.has_changed().unwrap_or(false) {
                let m = models_rx.borrow_and_update().clone();
                // Between two batches: every reading is scored by exactly one model set.
                self.engine.lock().await.set_models(m);
            }
            if let Some(checkpoints) = state.checkpoints.as_mut().filter(|_| Instant::now() >= state.next_checkpoint) {
                state.next_checkpoint = Instant::now() + checkpoints.tick_every();
                checkpoints.take_slice(&mut *self.engine.lock().await);
            }
            if Instant::now() >= state.next_silence {
                state.next_silence = Instant::now() + Duration::from_secs(1);
                self.check_silence(&mut state).await?;
            }
            if state.keys.is_empty() || self.unconfirmed().entries.len() >= MAX_UNCONFIRMED_ENTRIES {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            let read_started = Instant::now();
            let entries = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = read_group(&self.stream_reader, &s.group, &s.replica, &state.keys, s.batch, 200) => r,
            };
            match entries {
                Ok(entries) if !entries.is_empty() => {
                    metrics::histogram!("proact_detector_read_seconds").record(read_started.elapsed().as_secs_f64());
                    self.process_and_ack(&mut state, &entries).await?;
                }
                Ok(_) => {}
                Err(e) => {
                    self.ready.set("redis", false);
                    tracing::warn!(error = %e, "stream read failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // A last chance for the held readings: those still unconfirmed stay pending, and are
        // scored again by whoever owns their shard next.
        self.confirm_unconfirmed().await?;
        let changes = self.seen_to_write(now_micros()).await;
        if let Err(e) = seen::write(&self.redis, &s.replica, s.shards, &changes).await {
            tracing::warn!(error = %e, "seen records not written before releasing the shards");
        }
        if let Some(checkpoints) = state.checkpoints.take() {
            // Before the leases go: the next owner resumes from here.
            checkpoints.finish(&self.engine).await;
        }
        if let Err(e) = state.leases.release_all().await {
            tracing::warn!(error = %e, "leases not released; they expire on their own");
        }
        Ok(())
    }

    /// Renews the leases (writing the seen records in the same pipeline: one script per shard
    /// with changes, no round trip of their own), drops lost shards, takes gained ones over,
    /// and finishes entries left pending. The outer error stops the loop; the inner one is a
    /// failed renewal or takeover, after which the loop waits and tries again.
    async fn heartbeat(&self, state: &mut LoopState) -> anyhow::Result<anyhow::Result<()>> {
        let s = &self.settings;
        let now = now_micros();
        let seen_changes = self.seen_to_write(now).await;
        let calls = seen::write_calls(crate::leases::KeyLayout::of(&self.redis), &s.replica, s.shards, &seen_changes);
        let paused = match &state.checkpoints {
            Some(c) => Some(c.pause().await),
            None => None,
        };
        let held = state.leases.owned();
        let (change, seen_replies) = match state.leases.heartbeat_with(now / 1000, calls).await {
            Ok(r) => r,
            Err(e) => {
                // What a failure mid-way changed is reported by the next heartbeat; the
                // checkpoint cannot wait for it: every shard held or gained counts as lost, so
                // no state queued before is written under a later lease.
                if let Some(c) = &state.checkpoints {
                    c.lost(&held);
                    c.lost(&state.leases.owned());
                }
                return Ok(Err(e.into()));
            }
        };
        if let Some(c) = &state.checkpoints {
            c.lost(&change.lost);
        }
        drop(paused);
        self.ready.set("redis", true);
        self.seen_written(&seen_changes, seen_replies).await;
        if !change.lost.is_empty() {
            let lost: BTreeSet<u32> = change.lost.iter().copied().collect();
            self.unconfirmed().drop_shards(&lost, &self.fence);
            self.engine.lock().await.retain(|id| !lost.contains(&shard_for(id, s.shards)));
            tracing::info!(shards = ?change.lost, "shards released");
        }
        for (i, &shard) in change.gained.iter().enumerate() {
            if let Err(e) = self.take_shard(state, shard).await {
                // A cluster in the middle of a failover (CLUSTERDOWN), say: the shards not taken
                // over are given up whole, to be gained and taken over afresh by a later heartbeat
                // (this replica's or another's), never read half taken over.
                for &left in &change.gained[i..] {
                    self.engine.lock().await.retain(|id| shard_for(id, s.shards) != left);
                    if let Some(c) = &state.checkpoints {
                        c.lost(&[left]);
                    }
                    if let Err(e) = state.leases.release(left).await {
                        tracing::debug!(error = %e, shard = left, "lease not released; it expires");
                    }
                }
                return Ok(Err(e.context(format!("shard {shard} not taken over"))));
            }
            tracing::info!(shard, "shard taken");
        }
        state.keys = state.leases.owned().into_iter().map(telemetry_stream).collect();
        self.confirm_unconfirmed().await?;
        if let Err(e) = self.score_orphans(&state.keys).await {
            tracing::warn!(error = %format!("{e:#}"), "own pending entries not re-read; next heartbeat");
        }
        // Entries read by another replica and never acked (one fenced off after reading, or
        // one that died while its lease was still ours) once idle.
        let min_idle_ms = 2 * s.lease_ttl_ms;
        let pending = takeover::shard_pending(&self.redis, &s.group, &state.leases.owned(), min_idle_ms).await?;
        for p in pending.iter().filter(|p| p.stale) {
            self.claim_pending(&telemetry_stream(p.shard), min_idle_ms, &Default::default()).await?;
        }
        let mut st = self.status.write().unwrap_or_else(|p| p.into_inner());
        st.shards = state.leases.owned();
        st.lag = pending.iter().map(|p| (p.shard, p.pending)).collect();
        metrics::gauge!("proact_detector_shards_owned").set(st.shards.len() as f64);
        Ok(Ok(()))
    }

    /// Makes sure `shard`'s consumer group exists, then takes the shard over.
    async fn take_shard(&self, state: &mut LoopState, shard: u32) -> anyhow::Result<()> {
        if !state.groups_ready.contains(&shard) {
            ensure_group(&self.redis, &telemetry_stream(shard), &self.settings.group).await?;
            state.groups_ready.insert(shard);
        }
        self.take_over(shard).await
    }

    /// Raises the no-data alarms that are due.
    async fn check_silence(&self, state: &mut LoopState) -> anyhow::Result<()> {
        let transitions = self.engine.lock().await.check_silence(now_micros());
        let outgoing: Vec<_> = transitions.into_iter().map(|tr| outgoing(tr, HashMap::new())).collect();
        let raised_by = vec![None; outgoing.len()];
        let (fenced, _) = self.publish_all(outgoing, raised_by).await?;
        if !fenced.is_empty() {
            self.lose_fenced(&fenced).await;
            state.next_heartbeat = Instant::now();
        }
        Ok(())
    }

    /// Scores a batch read from the streams, publishes its events, acknowledges it.
    async fn process_and_ack(&self, state: &mut LoopState, entries: &[StreamEntry]) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let batch = self.process(entries).await?;
        if let Some(appended) = batch.appended_at {
            metrics::histogram!("proact_detector_alert_latency_seconds").record((appended - t0).as_secs_f64());
        }
        let t1 = Instant::now();
        let group = &self.settings.group;
        if batch.fenced.is_empty() {
            ack(&self.redis, group, &self.ackable(entries)).await?;
        } else {
            // Another replica owns these shards now: their entries stay pending for it (it
            // reclaims idle ones), and what we knew of them is stale.
            let fenced_key = |k: &str| batch.fenced.iter().any(|s| telemetry_stream(*s) == k);
            let keep: Vec<StreamEntry> = entries.iter().filter(|e| !fenced_key(&e.key)).cloned().collect();
            ack(&self.redis, group, &self.ackable(&keep)).await?;
            self.lose_fenced(&batch.fenced).await;
            state.keys.retain(|k| !fenced_key(k));
            state.next_heartbeat = Instant::now();
        }
        metrics::histogram!("proact_detector_process_seconds").record((t1 - t0).as_secs_f64());
        metrics::histogram!("proact_detector_ack_seconds").record(t1.elapsed().as_secs_f64());
        metrics::histogram!("proact_detector_batch_size").record(entries.len() as f64);
        Ok(())
    }

    /// The seen records to write now (none when the no-data alarm is off).
    async fn seen_to_write(&self, now: i64) -> seen::SeenChanges {
        if self.settings.record_seen {
            self.engine.lock().await.seen_changes(now, self.settings.seen_retention_micros)
        } else {
            seen::SeenChanges::default()
        }
    }

    /// Marks the seen records the heartbeat wrote as written. A failed script leaves them to
    /// write at the next heartbeat; a fenced one means the shard is lost (the renewal said so
    /// too, and its equipment are dropped).
    async fn seen_written(&self, changes: &seen::SeenChanges, replies: Vec<Result<Value, Error>>) {
        if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
            tracing::warn!(error = %e, "seen records not written; next heartbeat");
            return;
        }
        self.engine.lock().await.seen_written(changes);
    }

    /// Scores `entries` and publishes the alert events.
    pub(crate) async fn process(&self, entries: &[StreamEntry]) -> anyhow::Result<BatchOutcome> {
        self.score(&self.traces, entries, |_| true).await
    }

    /// Scores `entries` in order and publishes the alert events of those `publish` selects
    /// (the others only move the state on).
    pub(crate) async fn score(
        &self,
        traces: &Tracing,
        entries: &[StreamEntry],
        publish: impl Fn(&StreamEntry) -> bool,
    ) -> anyhow::Result<BatchOutcome> {
        let now = now_micros();
        let started = std::time::SystemTime::now();
        let mut outgoing = Vec::new();
        // The entry whose reading raised each event of `outgoing`.
        let mut raised_by: Vec<Option<&StreamEntry>> = Vec::new();
        let mut spans: Vec<PipelineSpan> = Vec::new();
        let mut too_late = 0;
        let mut scored = 0;
        {
            let mut engine = self.engine.lock().await;
            // An entry carries one reading, a batch of them in the order ingest read them, or
            // an equipment's status: all in the order of the shard.
            for e in entries {
                let Some(payload) = e.payload.as_ref() else { continue };
                // An equipment declared offline or online by its source (docs/adr/0006).
                if e.field == STATUS_FIELD {
                    if let Ok(status) = EquipmentStatus::decode(payload.as_ref()) {
                        let produced = engine.status(&status, now);
                        if publish(e) {
                            outgoing.extend(produced.into_iter().map(|tr| self::outgoing(tr, HashMap::new())));
                            raised_by.resize(outgoing.len(), Some(e));
                        }
                    }
                    continue;
                }
                // Ingest wrote these; an undecodable one is archive's to dead-letter, not ours.
                let publish_entry = publish(e);
                for t in decode_readings(e.field, payload).unwrap_or_default() {
                    scored += 1;
                    // Only readings ingest sampled carry a trace; the rest cost this one lookup.
                    let span = traces.follow("detector.score", &t.trace_context, started, Vec::new());
                    let trace_id = match trace_id_of(&t.trace_context) {
                        Some(id) => id.to_string(),
                        None => derived_trace_id(&t),
                    };
                    let late_before = engine.too_late;
                    let produced = engine.observe(&t, &trace_id, now);
                    let produced = if publish_entry {
                        too_late += engine.too_late - late_before;
                        produced
                    } else {
                        Vec::new()
                    };
                    // The alert events carry the scoring span's context, so what the gateway does
                    // with them hangs below the scoring that raised them.
                    let context = match &span {
                        Some(s) if !produced.is_empty() => {
                            let mut c = HashMap::new();
                            s.inject(&mut c);
                            c
                        }
                        _ => t.trace_context.clone(),
                    };
                    if let Some(mut s) = span {
                        s.set_attribute(KeyValue::new("equipement_id", t.equipement_id.clone()));
                        s.set_attribute(KeyValue::new("alert.transitions", produced.len() as i64));
                        spans.push(s);
                    }
                    outgoing.extend(produced.into_iter().map(|tr| self::outgoing(tr, context.clone())));
                    raised_by.resize(outgoing.len(), Some(e));
                }
            }
        }
        metrics::counter!("proact_detector_events_scored_total").increment(scored);
        let (fenced, appended_at) = self.publish_all(outgoing, raised_by).await?;
        spans.into_iter().for_each(PipelineSpan::end);
        Ok(BatchOutcome { fenced, appended_at, too_late })
    }

    /// Publishes each event once, under the lease of its equipment's shard, all in one round
    /// trip; returns the shards it was fenced off, and when the events were appended (if any
    /// was). Events no replica is confirmed to hold are kept, with the entries in `raised_by`
    /// (one per event), in [`Unconfirmed`].
    async fn publish_all(
        &self,
        outgoing: Vec<publish::Outgoing>,
        raised_by: Vec<Option<&StreamEntry>>,
    ) -> anyhow::Result<(BTreeSet<u32>, Option<Instant>)> {
        let mut fenced = BTreeSet::new();
        if outgoing.is_empty() {
            return Ok((fenced, None));
        }
        let results = match self.publish_after_unconfirmed(&outgoing).await {
            Ok(results) => results,
            Err(e) => {
                // Appended or not (a failover cut the connection, say): held like unconfirmed
                // events, published again (deduplicated) at the next heartbeat, their readings
                // unacked meanwhile, instead of stopping the loop.
                metrics::counter!("proact_detector_publish_failures_total").increment(1);
                tracing::warn!(error = %e, events = outgoing.len(), "alert events not published; their readings stay unacked until they are");
                let mut held = self.unconfirmed();
                for (out, by) in outgoing.into_iter().zip(raised_by) {
                    held.hold(out, by);
                }
                return Ok((fenced, None));
            }
        };
        let appended_at = Instant::now();
        // Added and duplicate events both wrote (see [`publish`]); a fenced one wrote nothing.
        let written: Vec<bool> = results.iter().map(|r| !matches!(r, publish::Published::Fenced)).collect();
        let mut added = 0;
        for (out, result) in outgoing.iter().zip(results) {
            // Logged once published, not before: a log write is not on the alert's path.
            if let Some(alert) = &out.event.alert {
                let kind = AlertEventKind::try_from(out.event.kind).unwrap_or_default();
                tracing::info!(equipement_id = %alert.equipement_id, trace_id = %alert.trace_id, ?kind, outcome = ?result, "alert transition");
            }
            match result {
                publish::Published::Added(_) => added += 1,
                publish::Published::Duplicate => {}
                publish::Published::Fenced => {
                    metrics::counter!("proact_detector_fenced_events_total").increment(1);
                    let equipment = out.event.alert.as_ref().map_or("", |a| a.equipement_id.as_str());
                    fenced.insert(self.fence.shard_of(equipment));
                }
            }
        }
        metrics::counter!("proact_detector_alert_events_total").increment(added);
        if written.contains(&true) && !self.replicated().await {
            let mut held = self.unconfirmed();
            for ((out, by), written) in outgoing.into_iter().zip(raised_by).zip(written) {
                if written {
                    held.hold(out, by);
                }
            }
        }
        Ok((fenced, (added > 0).then_some(appended_at)))
    }

    fn unconfirmed(&self) -> std::sync::MutexGuard<'_, Unconfirmed> {
        self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the events just published are on the replicas asked for. Without a wait, yes;
    /// while earlier events are unconfirmed, no at once: the next heartbeat confirms them all
    /// in one `WAIT`, instead of every batch raising an alert blocking for the timeout.
    async fn replicated(&self) -> bool {
        let wait = self.settings.alert_wait;
        if wait.replicas == 0 {
            return true;
        }
        if !self.unconfirmed().events.is_empty() {
            return false;
        }
        let started = Instant::now();
        let reached = publish::wait_for_replicas(&self.publisher, wait).await;
        metrics::histogram!("proact_detector_replica_wait_seconds").record(started.elapsed().as_secs_f64());
        match reached {
            Ok(n) if n >= i64::from(wait.replicas) => true,
            Ok(n) => {
                metrics::counter!("proact_detector_replica_wait_failures_total").increment(1);
                tracing::warn!(
                    reached = n,
                    wanted = wait.replicas,
                    timeout_ms = wait.timeout_ms,
                    "alert events not on enough replicas (PROACT_DETECTOR_REDIS_WAIT_REPLICAS); \
                     their readings stay unacked until they are"
                );
                false
            }
            Err(e) => {
                metrics::counter!("proact_detector_replica_wait_failures_total").increment(1);
                tracing::warn!(error = %e, "replica wait failed; the readings stay unacked until it succeeds");
                false
            }
        }
    }

    /// Publishes the unconfirmed events again, then `events`, in one pipeline, and returns what
    /// became of `events`. In that order, an event a failover lost is appended again before
    /// any later one of its episode (the rest are duplicates). Unconfirmed events of shards
    /// fenced off are forgotten with their entries.
    async fn publish_after_unconfirmed(&self, events: &[publish::Outgoing]) -> Result<Vec<publish::Published>, Error> {
        let held = self.unconfirmed().events.clone();
        if held.is_empty() {
            return publish::publish_batch(&self.publisher, events, &self.fence).await;
        }
        let all: Vec<publish::Outgoing> = held.iter().chain(events).cloned().collect();
        let mut results = publish::publish_batch(&self.publisher, &all, &self.fence).await?;
        let new = results.split_off(held.len());
        let mut lost = BTreeSet::new();
        let mut again = 0;
        for (out, result) in held.iter().zip(&results) {
            match result {
                publish::Published::Added(_) => again += 1,
                publish::Published::Duplicate => {}
                publish::Published::Fenced => {
                    lost.insert(shard_of_event(out, &self.fence));
                }
            }
        }
        if again > 0 {
            tracing::warn!(events = again, "alert events a failover lost, appended again");
            metrics::counter!("proact_detector_alert_events_total").increment(again);
            metrics::counter!("proact_detector_alert_events_republished_total").increment(again);
        }
        if !lost.is_empty() {
            self.unconfirmed().drop_shards(&lost, &self.fence);
        }
        Ok(new)
    }

    /// Publishes the unconfirmed events (and those whose publish failed) again and, once the
    /// replicas asked for hold them (at once without a wait), acks the entries that raised them.
    async fn confirm_unconfirmed(&self) -> anyhow::Result<()> {
        if self.unconfirmed().events.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.publish_after_unconfirmed(&[]).await {
            tracing::warn!(error = %e, "unconfirmed alert events not published again; next heartbeat");
            return Ok(());
        }
        let held = std::mem::take(&mut *self.unconfirmed());
        // (`held` is out of the shared list: this `WAIT` is a real one.)
        if !held.events.is_empty() && !self.replicated().await {
            *self.unconfirmed() = held;
            return Ok(());
        }
        ack(&self.redis, &self.settings.group, &held.entries).await?;
        tracing::info!(
            events = held.events.len(),
            entries = held.entries.len(),
            "alert events confirmed on a replica; their readings acked"
        );
        Ok(())
    }

    /// `entries` less those held for unconfirmed alert events.
    pub(crate) fn ackable<'a>(&self, entries: &'a [StreamEntry]) -> std::borrow::Cow<'a, [StreamEntry]> {
        let held = self.unconfirmed();
        if held.ids.is_empty() {
            return std::borrow::Cow::Borrowed(entries);
        }
        entries.iter().filter(|e| !held.holds(e)).cloned().collect::<Vec<_>>().into()
    }

    /// Forgets the equipment of shards this replica was fenced off.
    async fn lose_fenced(&self, fenced: &BTreeSet<u32>) {
        let s = &self.settings;
        tracing::warn!(shards = ?fenced, replica = %s.replica, "lease lost while scoring (fenced); dropping those shards");
        self.unconfirmed().drop_shards(fenced, &self.fence);
        self.engine.lock().await.retain(|id| !fenced.contains(&shard_for(id, s.shards)));
    }
}

/// The trace id of a reading ingest did not sample, derived from the reading itself (a stable
/// 32-bit hash of the equipment id, the shard function over `u32::MAX` "shards", then the
/// event time): the same for the same reading whichever replica scores it.
fn derived_trace_id(t: &Telemetry) -> String {
    format!("{:032x}", u128::from(shard_for(&t.equipement_id, u32::MAX)) << 64 | t.ts_micros as u128)
}

fn outgoing(tr: engine::Transition, trace_context: HashMap<String, String>) -> publish::Outgoing {
    let event = AlertEvent { kind: tr.kind as i32, alert: Some(tr.alert), event_id: String::new(), trace_context };
    publish::Outgoing { event, at_micros: Some(tr.at_micros), episode: tr.episode }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use proact_proto::v1::Alert;

    const GROUP: &str = "anomaly-detector";

    async fn scoring(url: &str, batch: u64) -> Scoring {
        let redis = proact_server::redis::connect(url).await.unwrap();
        Scoring {
            settings: LoopSettings {
                group: GROUP.into(),
                replica: "r".into(),
                shards: 8,
                lease_ttl_ms: 10_000,
                batch,
                seen_retention_micros: 0,
                record_seen: false,
                checkpoint_every: None,
                alert_wait: publish::ReplicaWait::default(),
            },
            stream_reader: redis.clone(),
            publisher: redis.clone(),
            checkpoint_writer: redis.clone(),
            redis,
            unconfirmed: Default::default(),
            engine: Arc::new(Mutex::new(Engine::new(EngineConfig::default()))),
            traces: Tracing::disabled(),
            fence: Fence { replica: "r".into(), shards: 8 },
            status: Default::default(),
            ready: Readiness::new(),
        }
    }

    /// A heartbeat that fails after some of its work (here a renewal's reply is an error: the
    /// lease key holds another type) reports no change: every shard it held counts as lost
    /// for the checkpoint, so no online state queued before is written under a lease gained
    /// again since.
    #[tokio::test]
    async fn a_failed_heartbeat_counts_its_shards_as_lost_for_the_checkpoint() {
        let server = proact_testkit::Redis::start().await.unwrap();
        let s = scoring(&server.url(), 10).await;
        let mut state = LoopState {
            leases: Leases::new(s.redis.clone(), "r", 8, 10_000),
            keys: Vec::new(),
            groups_ready: BTreeSet::new(),
            next_heartbeat: Instant::now(),
            next_silence: Instant::now(),
            checkpoints: Some(checkpoint::Checkpointer::start(
                s.checkpoint_writer.clone(),
                "r".into(),
                8,
                Duration::from_secs(10),
            )),
            next_checkpoint: Instant::now(),
        };
        s.heartbeat(&mut state).await.unwrap().unwrap();
        assert_eq!(state.leases.owned().len(), 8);
        let epochs = |state: &LoopState| state.checkpoints.as_ref().unwrap().epochs();
        assert_eq!(epochs(&state), [0; 8]);

        let lease = crate::leases::lease_key(3);
        let _: i64 = s.redis.del(lease.as_str()).await.unwrap();
        let _: i64 = s.redis.hset(lease.as_str(), ("not", "a lease")).await.unwrap();
        assert!(s.heartbeat(&mut state).await.unwrap().is_err(), "the renewal of shard 3 fails");
        assert!(epochs(&state).iter().all(|&e| e >= 1), "every shard held counts as lost: {:?}", epochs(&state));
    }

    /// Entries held for unconfirmed alerts fill the first pages of the pending list; the
    /// orphans behind them are scored and acked all the same, and the held ones stay pending.
    #[tokio::test]
    async fn orphans_behind_a_page_of_held_entries_are_scored() {
        let server = proact_testkit::Redis::start().await.unwrap();
        let s = scoring(&server.url(), 2).await;
        let key = telemetry_stream(0);
        ensure_group(&s.redis, &key, GROUP).await.unwrap();
        for i in 0..7 {
            let t = Telemetry { equipement_id: "EQ-0".into(), ts_micros: now_micros() + i, ..Default::default() };
            let _: String = s.redis.xadd(key.as_str(), false, None::<()>, "*", ("p", t.encode_to_vec())).await.unwrap();
        }
        // Delivered to this replica, never acked: five held for an alert, then two orphans.
        let delivered = read_group(&s.redis, GROUP, "r", std::slice::from_ref(&key), 100, 10).await.unwrap();
        assert_eq!(delivered.len(), 7);
        let event = publish::Outgoing {
            event: AlertEvent { alert: Some(Alert::default()), ..Default::default() },
            at_micros: None,
            episode: engine::Episode::Condition,
        };
        for e in &delivered[..5] {
            s.unconfirmed().hold(event.clone(), Some(e));
        }

        s.score_orphans(std::slice::from_ref(&key)).await.unwrap();

        let left = proact_server::redis::read_own_pending(&s.redis, GROUP, "r", &[key], 100).await.unwrap();
        let left: Vec<&str> = left.iter().map(|e| e.id.as_str()).collect();
        let held: Vec<&str> = delivered[..5].iter().map(|e| e.id.as_str()).collect();
        assert_eq!(left, held, "the orphans are acked, the held entries stay pending");
    }
}
