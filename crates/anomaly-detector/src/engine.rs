//! The scoring engine: per-equipment state, scoring, and alert episodes.
//!
//! Every reading goes through the equipment's rolling [`Window`] (the feature function the
//! trainer uses too), then is assessed by the rules (per equipment-type thresholds, the seed's
//! temperature > 90 °C by default), the equipment's online detector (learning from every
//! reading after scoring it, see [`online`]), its normal-behaviour model and the RandomForest
//! when one is loaded. The result drives one alert *episode* per incident:
//! raised once, escalated when the severity rises, cleared after readings stayed normal for
//! a hold time (event time, with hysteresis), so a flapping signal raises one alert, not a
//! storm. An equipment that goes silent raises a no-data alarm, cleared when data resumes.
//!
//! The same engine serves the live loop, gRPC `Score` (without state changes) and the
//! offline `replay`, so a backtest scores exactly as production does.

mod episodes;
mod online;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;

use proact_features::{FeatureSchema, FeatureVector, Placement, Window, WindowConfig};
use proact_models::Scorer;
use proact_online::{EquipmentDetector, OnlineConfig, Verdict};
use proact_proto::v1::{Alert, AlertEventKind, AlertState, Severity, Telemetry};

pub use episodes::{Episode, EpisodeRecord, Transition};
pub use settings::{EngineConfig, EquipmentInfo, Models, Thresholds};

use crate::seen::{Seen, SeenChanges};

/// The verdict on one reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// In [0, 1]; the highest of the rules' and the models' scores.
    pub score: f64,
    /// `Unspecified` when the reading is normal.
    pub severity: Severity,
    pub rule: String,
    pub reason: String,
    pub value: f64,
    /// Model versions that took part, e.g. `rules-v1` or `anomaly-rf@3`.
    pub model_version: String,
    /// The highest of the models' scores on this reading whether or not it crossed their
    /// threshold (0 without a model or before the window has features): the continuous
    /// anomaly score a backtest ranks rows by.
    pub model_score: f64,
}

/// What a takeover restored of an equipment, until its first reading.
#[derive(Debug, Default)]
struct Restored {
    condition: Option<EpisodeRecord>,
    no_data: Option<EpisodeRecord>,
    /// The online detectors' checkpoint.
    online: Option<EquipmentDetector>,
}

#[derive(Debug)]
struct EquipmentState {
    window: Window,
    online: EquipmentDetector,
    /// Learned since its online state was last checkpointed.
    online_dirty: bool,
    open: Option<Alert>,
    normal_since: Option<i64>,
    /// The open no-data alarm, with the event time of the last reading before the silence:
    /// only a newer reading ends it (the warm-up re-reads older ones).
    silent: Option<EpisodeRecord>,
    last_ts: i64,
    last_seen_wall: i64,
    /// Wall clock of its first reading here, and readings scored: see [`Engine::check_silence`]
    /// for which equipment may raise a no-data alarm.
    first_seen_wall: i64,
    readings: u32,
    /// Read since its seen record was last written (a flag, not a set: no allocation per
    /// reading; the heartbeat scans the states).
    seen_dirty: bool,
    /// Its seen record is in Redis (written, or loaded at a takeover).
    seen_recorded: bool,
    /// The condition transition its restored record says a reading of that event time caused,
    /// until a reading at or past that time: scored again, that reading's entry was left
    /// unacked, maybe while no replica held its event (see [`Engine::restore`]).
    replay: Option<Transition>,
}

impl EquipmentState {
    /// An equipment's state before its first reading, from what a takeover restored of it.
    fn start(schema: &FeatureSchema, window: WindowConfig, restored: Restored, wall_micros: i64) -> Self {
        let Restored { condition, no_data, online } = restored;
        let is_open = |r: &EpisodeRecord| r.alert.state == AlertState::Open as i32;
        Self {
            window: Window::new(schema, window),
            online: online.unwrap_or_default(),
            online_dirty: false,
            open: condition.as_ref().filter(|r| is_open(r)).map(|r| r.alert.clone()),
            replay: condition.as_ref().map(EpisodeRecord::transition),
            normal_since: None,
            silent: no_data.filter(is_open),
            last_ts: condition.map_or(i64::MIN, |r| r.at_micros),
            last_seen_wall: wall_micros,
            first_seen_wall: wall_micros,
            readings: 0,
            seen_dirty: false,
            seen_recorded: false,
        }
    }
}

/// Per-equipment state of the equipment this replica owns.
pub struct Engine {
    cfg: EngineConfig,
    schema: FeatureSchema,
    models: Models,
    /// The online detectors' parameters; `None`: they are off.
    online: Option<OnlineConfig>,
    info: HashMap<String, EquipmentInfo>,
    states: HashMap<String, EquipmentState>,
    /// Episode records of equipment not seen since their shard was taken over, consumed by
    /// their first reading or by their seen record ([`Engine::seed_seen`]); equipment with
    /// neither (gone for longer than the seen retention) never get a state, nor an alarm.
    restored: HashMap<String, Restored>,
    features: FeatureVector,
    /// The reading's channel values in schema order (reused: no allocation per reading).
    values: Vec<f64>,
    pub too_late: u64,
    pub reordered: u64,
    pub too_early: u64,
    pub untracked: u64,
}

/// Readings after which an equipment unknown to the reference data is expected to keep
/// sending (its silence raises a no-data alarm).
pub const ESTABLISHED_READINGS: u32 = 10;

/// Version stamped when only the rules judged.
pub const RULES_VERSION: &str = "rules-v1";

/// A reading's values in the order of `schema`'s channels: temperature, vibration, then each
/// extra channel from the reading's extra fields (NaN when it lacks one: the window carries the
/// previous value forward).
pub fn channel_values(schema: &FeatureSchema, t: &Telemetry, out: &mut Vec<f64>) {
    out.clear();
    out.push(t.temperature);
    out.push(t.vibration);
    for c in &schema.channels()[proact_features::BASE_CHANNELS.len()..] {
        out.push(t.extra.get(c).copied().unwrap_or(f64::NAN));
    }
}

impl Engine {
    /// An engine over the contract's two channels (temperature, vibration).
    pub fn new(cfg: EngineConfig) -> Self {
        Self::with_schema(cfg, FeatureSchema::base())
    }

    /// An engine whose windows (and so models) cover `schema`'s channels; readings' extra
    /// fields named like its extra channels are scored with temperature and vibration.
    pub fn with_schema(cfg: EngineConfig, schema: FeatureSchema) -> Self {
        let n = schema.len();
        Self {
            values: Vec::with_capacity(schema.channels().len()),
            cfg,
            schema,
            models: Models::default(),
            online: Some(OnlineConfig::default()),
            info: HashMap::new(),
            states: HashMap::new(),
            restored: HashMap::new(),
            features: FeatureVector { values: vec![0.0; n] },
            too_late: 0,
            reordered: 0,
            too_early: 0,
            untracked: 0,
        }
    }

    /// The feature schema id models must have been trained on.
    pub fn schema_id(&self) -> &str {
        self.schema.id()
    }

    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Sets the online detectors' parameters (`None` turns them off); the equipment's
    /// learned states are kept.
    pub fn set_online(&mut self, cfg: Option<OnlineConfig>) {
        self.online = cfg;
    }

    /// Swaps the models between two readings: every reading after this call is scored by
    /// the new set, none by both.
    pub fn set_models(&mut self, models: Models) {
        self.models = models;
    }

    pub fn set_equipment_info(&mut self, info: HashMap<String, EquipmentInfo>) {
        self.info = info;
    }

    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    /// Forgets the equipment `keep` says no (a shard handed to another replica).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.states.retain(|id, _| keep(id));
        self.restored.retain(|id, _| keep(id));
    }

    /// Starts an equipment from the last published transition of its episodes (call once per
    /// record, condition and no-data, before the equipment's warm-up readings).
    ///
    /// An open condition episode continues (no second raise, the same id, escalation only
    /// above its severity) and readings older than that transition only fill the window,
    /// since the episode state at that instant is known. The reading of that transition's event
    /// time, scored again, publishes the recorded transition again instead of being judged:
    /// its entry was left unacked by the previous owner, which may have stopped or lost the
    /// shard while no replica was confirmed to hold the event (the publish is idempotent: a
    /// duplicate if the event is there, appended again if a failover lost it, and held until
    /// a replica holds it either way). An open no-data alarm stays open
    /// (no second alarm for the same silence) until a reading newer than the last one before
    /// the silence, and is then cleared under its id.
    pub fn restore(&mut self, equipement_id: &str, record: EpisodeRecord) {
        self.states.remove(equipement_id);
        let r = self.restored.entry(equipement_id.to_string()).or_default();
        match record.episode {
            Episode::Condition => r.condition = Some(record),
            Episode::NoData => r.no_data = Some(record),
        }
    }

    /// Seeds an equipment's silence clock from its owner's seen record (call after the
    /// shard's warm-up, for each record loaded at the takeover).
    ///
    /// Not in the warm-up (the shard's tail did not reach back to it): it gets a state, so
    /// that a silence past the configured time raises its no-data alarm, once, under the id
    /// the previous owner would have used (`{id}-nodata-{last event time}`); an alarm the
    /// previous owner raised, restored from the episode record, is not raised again. In the
    /// warm-up with nothing newer than the record: the silence clock starts when the previous
    /// owner got that reading rather than at the takeover. With newer readings (the owner
    /// read them after its last write), the takeover time stays: an alarm may come up to one
    /// heartbeat later, never early.
    pub fn seed_seen(&mut self, equipement_id: &str, seen: Seen) {
        if let Some(st) = self.states.get_mut(equipement_id) {
            if st.last_ts <= seen.last_ts {
                st.last_ts = seen.last_ts;
                st.last_seen_wall = st.last_seen_wall.min(seen.wall_micros);
            }
            // The previous owner judged it worth a seen record: its silence counts as before.
            st.first_seen_wall = i64::MIN;
            st.seen_recorded = true;
            return;
        }
        let r = self.restored.remove(equipement_id).unwrap_or_default();
        let mut st = EquipmentState::start(&self.schema, self.cfg.window, r, seen.wall_micros);
        // The previous owner judged it worth a seen record: its silence counts as before.
        st.first_seen_wall = i64::MIN;
        st.last_ts = st.last_ts.max(seen.last_ts);
        st.seen_recorded = true;
        self.states.insert(equipement_id.to_string(), st);
    }

    /// What to write of the seen records: every equipment read since the last write, and
    /// every recorded one not read for longer than `retention_micros` (to delete). Call
    /// [`Engine::seen_written`] once they are written.
    pub fn seen_changes(&self, now_micros: i64, retention_micros: i64) -> SeenChanges {
        let mut out = SeenChanges::default();
        for (id, st) in &self.states {
            let seen = Seen { last_ts: st.last_ts, wall_micros: st.last_seen_wall };
            if st.seen_dirty {
                out.set.push((id.clone(), seen));
            } else if st.seen_recorded && crate::seen::expired(seen, now_micros, retention_micros) {
                out.pruned.push(id.clone());
            }
        }
        out
    }

    /// Marks `changes` (from [`Engine::seen_changes`]) written.
    pub fn seen_written(&mut self, changes: &SeenChanges) {
        for (id, _) in &changes.set {
            if let Some(st) = self.states.get_mut(id) {
                st.seen_dirty = false;
                st.seen_recorded = true;
            }
        }
        // Silent past the retention: its record is gone, and so goes its state (an alarm
        // already raised for it stays in the alerts history).
        for id in &changes.pruned {
            if self.states.get(id).is_some_and(|st| !st.seen_dirty) {
                self.states.remove(id);
            }
        }
    }

    fn thresholds(&self, id: &str) -> &Thresholds {
        self.info
            .get(id)
            .and_then(|i| self.cfg.type_thresholds.get(&i.equipment_type))
            .unwrap_or(&self.cfg.default_thresholds)
    }

    /// Judges a reading given the features of its window (rules, then models).
    fn assess_with(&self, t: &Telemetry, features: Option<&[f64]>, online: Option<Verdict>) -> Assessment {
        let th = self.thresholds(&t.equipement_id);
        let mut a = Assessment {
            score: (t.temperature / th.temperature_critical).clamp(0.0, 1.0) * 0.5,
            severity: Severity::Unspecified,
            rule: String::new(),
            reason: String::new(),
            value: t.temperature,
            model_version: RULES_VERSION.to_string(),
            model_score: 0.0,
        };
        let mut raise = |sev: Severity, score: f64, rule: &str, reason: String, value: f64, version: Option<String>| {
            if sev > a.severity || (sev == a.severity && score > a.score) {
                a.severity = sev;
                a.score = score.max(a.score);
                a.rule = rule.to_string();
                a.reason = reason;
                a.value = value;
                if let Some(v) = version {
                    a.model_version = v;
                }
            }
        };
        if t.temperature > th.temperature_critical {
            raise(
                Severity::Critical,
                1.0,
                "temperature_critical",
                format!("température {:.1} °C > {:.1} °C", t.temperature, th.temperature_critical),
                t.temperature,
                None,
            );
        } else if t.temperature > th.temperature_warning {
            raise(
                Severity::Warning,
                0.7,
                "temperature_warning",
                format!("température {:.1} °C > {:.1} °C", t.temperature, th.temperature_warning),
                t.temperature,
                None,
            );
        }
        if t.vibration > th.vibration_critical {
            raise(
                Severity::Critical,
                1.0,
                "vibration_critical",
                format!("vibration {:.1} mm/s > {:.1} mm/s", t.vibration, th.vibration_critical),
                t.vibration,
                None,
            );
        } else if t.vibration > th.vibration_warning {
            raise(
                Severity::Warning,
                0.7,
                "vibration_warning",
                format!("vibration {:.1} mm/s > {:.1} mm/s", t.vibration, th.vibration_warning),
                t.vibration,
                None,
            );
        }
        let critical_equipment = self.info.get(&t.equipement_id).is_some_and(|i| i.max_rpn >= self.cfg.rpn_critical);
        let model_severity = if critical_equipment { Severity::Critical } else { Severity::Warning };
        let mut model_score: f64 = 0.0;
        if let (Some(v), Some(cfg)) = (online, &self.online) {
            model_score = v.score;
            if v.score >= cfg.threshold {
                let reason = online::reason(&self.schema, v, cfg);
                raise(model_severity, v.score, online::RULE, reason, v.score, Some(online::VERSION.into()));
            }
        }
        if let Some(f) = features {
            let mut judge = |m: &Arc<dyn Scorer>, rule: &str| {
                let s = m.score(f);
                model_score = model_score.max(s);
                if s >= m.threshold() {
                    let reason = format!("modèle {} {} : score {:.2} ≥ {:.2}", m.name(), m.version(), s, m.threshold());
                    raise(model_severity, s, rule, reason, s, Some(format!("{}@{}", m.name(), m.version())));
                }
            };
            if let Some(m) = &self.models.forest {
                judge(m, "model_forest");
            }
            if let Some(m) = self.models.normal.get(&t.equipement_id) {
                judge(m, "model_normal_behaviour");
            }
        }
        a.model_score = model_score;
        a
    }

    /// Scores a reading without changing any state (gRPC `Score`): the window is the
    /// equipment's current one plus this reading.
    pub fn score(&self, t: &Telemetry) -> Assessment {
        let mut f = None;
        let mut buf = vec![0.0; self.schema.len()];
        let mut values = Vec::with_capacity(self.schema.channels().len());
        channel_values(&self.schema, t, &mut values);
        let st = self.states.get(&t.equipement_id);
        // Not read since a takeover restored it: its checkpoint is what it learned so far.
        let learned = st.map(|st| &st.online).or_else(|| self.restored.get(&t.equipement_id)?.online.as_ref());
        let online = learned.zip(self.online.as_ref()).map(|(d, cfg)| d.score(t.ts_micros, &values, cfg));
        if let Some(st) = st {
            let mut w = st.window.clone();
            if w.push(t.ts_micros / 1000, &values).is_ok() && w.write_features(&mut buf).is_ok() {
                f = Some(&buf[..]);
            }
        }
        self.assess_with(t, f, online)
    }

    /// Feeds one reading; returns the transitions it causes (at most two: the end of a
    /// no-data alarm and a condition transition).
    pub fn observe(&mut self, t: &Telemetry, trace_id: &str, now_micros: i64) -> Vec<Transition> {
        self.observe_as(t, trace_id, now_micros, true)
    }

    /// Feeds one reading as [`Engine::observe`] does, but only to learn from it: it enters the
    /// equipment's window (and ends a no-data alarm) without being judged, so no condition
    /// episode opens or closes on it. A backtest's probationary rows go through this.
    pub fn learn(&mut self, t: &Telemetry, now_micros: i64) -> Vec<Transition> {
        self.observe_as(t, "", now_micros, false)
    }

    fn observe_as(&mut self, t: &Telemetry, trace_id: &str, now_micros: i64, judge: bool) -> Vec<Transition> {
        let mut out = Vec::new();
        if t.ts_micros > now_micros.saturating_add(self.cfg.max_future_micros) {
            // Scoring it would move the window's watermark ahead, and every real reading
            // after it would be "too late": the equipment would go quiet.
            self.too_early += 1;
            metrics::counter!("proact_detector_future_events_total").increment(1);
            return out;
        }
        if self.states.len() >= self.cfg.max_tracked
            && !self.states.contains_key(&t.equipement_id)
            && !self.info.contains_key(&t.equipement_id)
        {
            self.untracked += 1;
            metrics::counter!("proact_detector_untracked_readings_total").increment(1);
            return out;
        }
        channel_values(&self.schema, t, &mut self.values);
        let window_cfg = self.cfg.window;
        let schema = &self.schema;
        let restored = &mut self.restored;
        let st = self.states.entry(t.equipement_id.clone()).or_insert_with(|| {
            let r = restored.remove(&t.equipement_id).unwrap_or_default();
            EquipmentState::start(schema, window_cfg, r, now_micros)
        });
        st.last_seen_wall = now_micros;
        st.readings = st.readings.saturating_add(1);
        st.seen_dirty = true;
        // Data is back when a reading newer than the silence comes: an older one is the
        // warm-up re-reading what came before it (or a redelivery), and clearing on it would
        // lose the clear (the warm-up publishes nothing for acked entries).
        if let Some(silent) = st.silent.take_if(|s| t.ts_micros > s.at_micros) {
            out.push(episodes::clear_no_data(silent, t.ts_micros, now_micros));
        }
        let placement = st.window.push(t.ts_micros / 1000, &self.values);
        match placement {
            Ok(Placement::TooLate { .. }) => {
                // Older than the tolerance: counted, never scored, never a crash.
                self.too_late += 1;
                metrics::counter!("proact_detector_late_events_total").increment(1);
                return out;
            }
            Ok(Placement::Duplicate) => return out,
            Ok(Placement::Reordered { .. }) => {
                self.reordered += 1;
                metrics::counter!("proact_detector_reordered_events_total").increment(1);
            }
            _ => {}
        }
        let have_features = st.window.write_features(&mut self.features.values).is_ok();
        // Episodes move forward in event time: a reordered reading adds to the window (and
        // the features of later readings) but does not reopen or close an episode.
        if t.ts_micros < st.last_ts {
            return out;
        }
        // Scored, then learned from: the verdict never saw the reading it judges.
        let online = self.online.as_ref().map(|cfg| st.online.observe(t.ts_micros, &self.values, cfg));
        st.online_dirty |= online.is_some();
        if !judge {
            st.last_ts = t.ts_micros;
            return out;
        }
        if let Some(replay) = st.replay.take_if(|r| t.ts_micros >= r.at_micros) {
            if replay.at_micros == t.ts_micros {
                // The reading that caused the restored transition: its outcome is known.
                out.push(replay);
                return out;
            }
        }
        let assessment = self.assess_with(t, have_features.then_some(&self.features.values[..]), online);
        let th = self.thresholds(&t.equipement_id).clone();
        let st = self.states.get_mut(&t.equipement_id).expect("inserted above");
        st.last_ts = t.ts_micros;
        out.extend(episodes::advance(st, t, assessment, &th, &self.cfg, trace_id, now_micros));
        out
    }
}

/// One fuzzing step, shared by the libFuzzer target (`crates/anomaly-detector/fuzz`) and the
/// stable corpus-replay test: the bytes are a sequence of telemetry stream entries (each a
/// length byte, then that many bytes of payload), scored in order as the detector scores a
/// shard, a second of wall clock apart. Ingest validates what it writes, but any writer of
/// the stream may send any reading: none may panic the scoring, and every transition names
/// the reading's equipment.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use prost::Message;
    let mut engine = Engine::new(EngineConfig { silence_after_micros: 30_000_000, ..Default::default() });
    let mut now = 1_710_928_800_000_000; // 2024-03-20T10:00:00Z
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (entry, tail) = tail.split_at((len as usize).min(tail.len()));
        rest = tail;
        now += 1_000_000;
        let Ok(t) = Telemetry::decode(entry) else { continue };
        let _ = engine.score(&t);
        for tr in engine.observe(&t, "0af7651916cd43dd8448eb211c80319c", now) {
            assert_eq!(tr.alert.equipement_id, t.equipement_id);
            assert!(!tr.alert.alert_id.is_empty());
        }
        for tr in engine.check_silence(now) {
            assert_eq!(tr.kind, AlertEventKind::Raised);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str, s: i64, temp: f64) -> Telemetry {
        Telemetry {
            equipement_id: id.into(),
            ts_micros: s * 1_000_000,
            temperature: temp,
            vibration: 1.0,
            ..Default::default()
        }
    }

    fn kinds(e: &mut Engine, series: &[(i64, f64)]) -> Vec<AlertEventKind> {
        series.iter().flat_map(|(s, t)| e.observe(&reading("P", *s, *t), "", 0)).map(|t| t.kind).collect()
    }

    #[test]
    fn flapping_signal_raises_one_alert() {
        let mut e = Engine::new(EngineConfig::default());
        let k = kinds(&mut e, &[(0, 91.0), (1, 89.5), (2, 91.0), (3, 89.9), (4, 92.0), (5, 89.0), (6, 93.0)]);
        assert_eq!(k, vec![AlertEventKind::Raised]);
    }

    #[test]
    fn slow_drift_raises_warning_then_escalates_once() {
        let mut e = Engine::new(EngineConfig::default());
        let series: Vec<(i64, f64)> = (0..60).map(|i| (i, 60.0 + i as f64 * 0.6)).collect(); // 60 → 95.4 °C
        let k = kinds(&mut e, &series);
        assert_eq!(k, vec![AlertEventKind::Raised, AlertEventKind::Escalated]);
    }

    #[test]
    fn clears_after_hold_time_below_hysteresis() {
        let mut e = Engine::new(EngineConfig::default());
        assert_eq!(e.observe(&reading("P", 0, 95.0), "", 0).len(), 1);
        assert!(e.observe(&reading("P", 10, 60.0), "", 0).is_empty());
        assert!(
            e.observe(&reading("P", 50, 79.0), "", 0).is_empty(),
            "79 °C is within the hysteresis of the 80 °C warning"
        );
        assert!(e.observe(&reading("P", 60, 60.0), "", 0).is_empty());
        let t = e.observe(&reading("P", 121, 60.0), "", 0);
        assert_eq!(t.len(), 1, "cleared after 60 s normal");
        assert_eq!(t[0].kind, AlertEventKind::Cleared);
        assert_eq!(t[0].alert.end_micros, 121_000_000);
        let again = e.observe(&reading("P", 200, 95.0), "", 0);
        assert_ne!(again[0].alert.alert_id, t[0].alert.alert_id, "a new episode gets a new id");
    }

    #[test]
    fn threshold_is_strict() {
        let mut e = Engine::new(EngineConfig::default());
        assert_eq!(e.observe(&reading("P", 0, 80.0), "", 0).len(), 0);
        assert_eq!(e.observe(&reading("P", 1, 90.01), "", 0)[0].alert.severity, Severity::Critical as i32);
    }

    #[test]
    fn silence_raises_no_data_once_and_clears_on_data() {
        let cfg = EngineConfig { silence_after_micros: 30_000_000, ..Default::default() };
        let mut e = Engine::new(cfg);
        e.set_equipment_info(HashMap::from([("P".to_string(), EquipmentInfo::default())]));
        e.observe(&reading("P", 0, 60.0), "", 0);
        assert!(e.check_silence(10_000_000).is_empty());
        let t = e.check_silence(31_000_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].alert.rule, "no_data");
        assert!(e.check_silence(40_000_000).is_empty(), "one alarm per silence");
        let back = e.observe(&reading("P", 45, 60.0), "", 45_000_000);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].kind, AlertEventKind::Cleared);
    }

    fn status(id: &str, online: bool, at_s: i64) -> proact_proto::v1::EquipmentStatus {
        proact_proto::v1::EquipmentStatus {
            equipement_id: id.into(),
            online,
            at_micros: at_s * 1_000_000,
            reason: if online { "Sparkplug DBIRTH" } else { "Sparkplug DDEATH" }.into(),
            ..Default::default()
        }
    }

    /// Issue 22: a death certificate is an explicit silence: the no-data alarm goes up at
    /// once, not after the silence time, and the birth (or a reading) brings it down.
    #[test]
    fn a_death_raises_no_data_at_once_and_a_birth_clears_it() {
        let cfg = EngineConfig { silence_after_micros: 120_000_000, ..Default::default() };
        let mut e = Engine::new(cfg);
        e.observe(&reading("P", 0, 60.0), "", 0);
        let down = e.status(&status("P", false, 1), 1_000_000);
        assert_eq!(down.len(), 1, "one second after the last reading, not 120");
        let alarm = &down[0].alert;
        assert_eq!((down[0].kind, down[0].episode), (AlertEventKind::Raised, Episode::NoData));
        assert_eq!((alarm.rule.as_str(), alarm.state), ("no_data", AlertState::Open as i32));
        assert_eq!(alarm.alert_id, "P-nodata-1000000");
        assert!(alarm.reason.contains("hors ligne") && alarm.reason.contains("DDEATH"), "{}", alarm.reason);
        assert!(e.status(&status("P", false, 2), 2_000_000).is_empty(), "one alarm per death");
        assert!(e.check_silence(200_000_000).is_empty(), "the silence is the same one");
        let up = e.status(&status("P", true, 3), 3_000_000);
        assert_eq!((up.len(), up[0].kind), (1, AlertEventKind::Cleared));
        assert_eq!(up[0].alert.alert_id, "P-nodata-1000000");
        assert!(e.status(&status("P", true, 4), 4_000_000).is_empty(), "nothing left to clear");
        assert!(e.check_silence(100_000_000).is_empty(), "the birth restarted the silence clock");
        // Died again, then data is back without a birth: the reading clears it.
        assert_eq!(e.status(&status("P", false, 5), 5_000_000).len(), 1);
        let back = e.observe(&reading("P", 6, 60.0), "", 6_000_000);
        assert_eq!((back[0].kind, back[0].alert.alert_id.as_str()), (AlertEventKind::Cleared, "P-nodata-5000000"));
    }

    #[test]
    fn a_death_of_an_equipment_never_read_or_with_the_alarm_off_raises_nothing() {
        let mut e = Engine::new(EngineConfig { silence_after_micros: 120_000_000, ..Default::default() });
        assert!(e.status(&status("GATEWAY", false, 1), 1_000_000).is_empty());
        let mut off = Engine::new(EngineConfig { silence_after_micros: 0, ..Default::default() });
        off.observe(&reading("P", 0, 60.0), "", 0);
        assert!(off.status(&status("P", false, 1), 1_000_000).is_empty());
    }

    /// Issue 21: one reading dated a day ahead would move the window's watermark, and every
    /// real reading after it would be refused as too late: the equipment would go quiet.
    #[test]
    fn a_reading_dated_ahead_of_the_clock_is_not_scored_and_silences_nothing() {
        let now = 1_000_000_000_000;
        let mut e = Engine::new(EngineConfig::default());
        let at = |s: i64, temp: f64| Telemetry { ts_micros: now + s * 1_000_000, ..reading("P", 0, temp) };
        assert!(e.observe(&at(86_400, 95.0), "", now).is_empty(), "a day ahead: not scored, even hot");
        assert_eq!(e.too_early, 1);
        assert!(e.observe(&at(299, 60.0), "", now).is_empty(), "within the 300 s skew: scored");
        let hot = e.observe(&at(300, 95.0), "", now);
        assert_eq!(hot.len(), 1, "the next real reading is judged, not refused as too late");
        assert_eq!((e.too_early, e.too_late), (1, 0));
    }

    /// Issue 21: random ids (a flood of forged ones) do not grow the engine past its cap, nor
    /// raise a no-data alarm each; equipment of the reference data are always tracked.
    #[test]
    fn unknown_ids_are_capped_and_their_silence_raises_nothing() {
        let cfg = EngineConfig { silence_after_micros: 30_000_000, max_tracked: 100, ..Default::default() };
        let mut e = Engine::new(cfg);
        e.set_equipment_info(HashMap::from([("KNOWN".to_string(), EquipmentInfo::default())]));
        for i in 0..1_000 {
            e.observe(&reading(&format!("FORGED-{i}"), 0, 60.0), "", 0);
        }
        assert_eq!(e.tracked(), 100);
        assert_eq!(e.untracked, 900);
        e.observe(&reading("KNOWN", 0, 60.0), "", 0);
        assert_eq!(e.tracked(), 101, "the reference's equipment is tracked beyond the cap");
        // A regular sender unknown to the reference: established by its readings.
        e.retain(|id| id != "FORGED-0" && id != "FORGED-1");
        for s in 0..ESTABLISHED_READINGS as i64 {
            e.observe(&reading("REGULAR", s, 60.0), "", 0);
        }
        let alarms: Vec<String> = e.check_silence(31_000_000).into_iter().map(|t| t.alert.equipement_id).collect();
        assert_eq!(alarms.len(), 2, "{alarms:?}");
        assert!(alarms.contains(&"KNOWN".to_string()) && alarms.contains(&"REGULAR".to_string()), "{alarms:?}");
    }

    #[test]
    fn out_of_order_within_tolerance_is_placed_older_is_counted() {
        let mut e = Engine::new(EngineConfig::default());
        e.observe(&reading("P", 100, 60.0), "", 0);
        e.observe(&reading("P", 98, 61.0), "", 0); // 2 s late: within the 5 s tolerance
        assert_eq!(e.reordered, 1);
        e.observe(&reading("P", 10, 95.0), "", 0); // 90 s late: refused, even though hot
        assert_eq!(e.too_late, 1);
        assert!(e.observe(&reading("P", 9, 99.0), "", 0).is_empty());
    }

    #[test]
    fn per_type_thresholds_apply() {
        let mut cfg = EngineConfig::default();
        cfg.type_thresholds.insert(
            "conveyor".into(),
            Thresholds { temperature_critical: 70.0, temperature_warning: 65.0, ..Default::default() },
        );
        let mut e = Engine::new(cfg);
        e.set_equipment_info(
            [("C".to_string(), EquipmentInfo { equipment_type: "conveyor".into(), max_rpn: 10.0 })].into(),
        );
        let t = e.observe(&reading("C", 0, 72.0), "", 0);
        assert_eq!(t[0].alert.rule, "temperature_critical");
        assert!(e.observe(&reading("P", 0, 72.0), "", 0).is_empty());
    }
}

#[cfg(test)]
mod swap_tests {
    use super::*;
    use proact_models::{ArtefactInfo, NormalBehaviourParams, SchemaRef};

    fn reading(s: i64, temp: f64, vib: f64) -> Telemetry {
        Telemetry {
            equipement_id: "P".into(),
            ts_micros: s * 1_000_000,
            temperature: temp,
            vibration: vib,
            ..Default::default()
        }
    }

    fn normal_model(version: &str) -> Arc<dyn Scorer> {
        normal_model_at(version, 60.0)
    }

    /// A normal-behaviour model of "P" learned at about `temperature` °C and 2 mm/s.
    fn normal_model_at(version: &str, temperature: f64) -> Arc<dyn Scorer> {
        let schema = FeatureSchema::base();
        let mut w = Window::new(&schema, WindowConfig::default());
        let mut rows = Vec::new();
        let mut buf = vec![0.0; schema.len()];
        for i in 0..500 {
            let _ = w.push(i * 1000, &[temperature + (i % 7) as f64 * 0.3, 2.0 + (i % 3) as f64 * 0.1]);
            w.write_features(&mut buf).unwrap();
            rows.extend_from_slice(&buf);
        }
        let m = NormalBehaviourParams::default().fit(&rows, schema.len()).unwrap();
        let info = ArtefactInfo::new("normal-behaviour/P", version, SchemaRef::from(&schema));
        m.to_artefact(info).scorer(schema.id()).unwrap()
    }

    #[test]
    fn swapped_models_score_every_later_reading_and_stamp_alerts() {
        let mut e = Engine::new(EngineConfig::default());
        // The trained models' path alone: the online detector would see the shift too.
        e.set_online(None);
        // Normal history, then a vibration shift the rules do not see (below 11 mm/s).
        for s in 0..100 {
            assert!(e.observe(&reading(s, 60.0 + (s % 7) as f64 * 0.3, 2.0 + (s % 3) as f64 * 0.1), "", 0).is_empty());
        }
        let before = e.observe(&reading(100, 60.0, 7.5), "", 0);
        assert!(before.is_empty(), "rules alone: 7.5 mm/s is normal");
        let mut models = Models::default();
        models.normal.insert("P".into(), normal_model("v2"));
        e.set_models(models);
        let after = e.observe(&reading(101, 60.0, 7.6), "", 0);
        assert_eq!(after.len(), 1, "the new model scores the very next reading");
        assert_eq!(after[0].alert.model_version, "normal-behaviour/P@v2");
        assert_eq!(after[0].alert.rule, "model_normal_behaviour");
        assert_eq!(e.models().versions(), vec![("normal-behaviour/P".to_string(), "v2".to_string())]);
    }

    /// Found on SKAB (issue 7): a model episode on a machine running within the hysteresis
    /// of the temperature warning (78-79 °C against 80 °C) never cleared, so the replay's
    /// false-alarm rate was 100 %. Only the rule holding the episode keeps its clock still.
    #[test]
    fn a_model_episode_clears_near_an_unrelated_rule_threshold() {
        let mut e = Engine::new(EngineConfig::default());
        e.set_online(None);
        let warm = |s: i64| reading(s, 77.5 + (s % 7) as f64 * 0.3, 2.0 + (s % 3) as f64 * 0.1);
        for s in 0..100 {
            assert!(e.observe(&warm(s), "", 0).is_empty(), "the rules alone: 77.5-79.3 °C is normal");
        }
        let mut models = Models::default();
        models.normal.insert("P".into(), normal_model_at("v1", 77.5));
        e.set_models(models);
        let raised = e.observe(&reading(100, 77.5, 7.5), "", 0);
        assert_eq!(raised[0].alert.rule, "model_normal_behaviour");
        let kinds: Vec<AlertEventKind> = (101..400).flat_map(|s| e.observe(&warm(s), "", 0)).map(|t| t.kind).collect();
        assert_eq!(kinds, [AlertEventKind::Cleared], "cleared once the model says normal for the hold time");
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;

    fn reading(s: i64, temp: f64) -> Telemetry {
        Telemetry {
            equipement_id: "P".into(),
            ts_micros: s * 1_000_000,
            temperature: temp,
            vibration: 1.0,
            ..Default::default()
        }
    }

    fn open_at(s: i64) -> EpisodeRecord {
        let alert = Alert {
            alert_id: format!("P-{}", s * 1_000_000),
            equipement_id: "P".into(),
            start_micros: s * 1_000_000,
            severity: Severity::Warning as i32,
            state: AlertState::Open as i32,
            ..Default::default()
        };
        EpisodeRecord { alert, at_micros: s * 1_000_000, episode: Episode::Condition }
    }

    #[test]
    fn a_restored_open_episode_continues_under_its_id() {
        let mut e = Engine::new(no_clock());
        e.restore("P", open_at(10));
        assert!(e.observe(&reading(500, 85.0), "", 0).is_empty(), "still the same warning episode: no second raise");
        let up = e.observe(&reading(501, 95.0), "", 0);
        assert_eq!(up[0].kind, AlertEventKind::Escalated);
        assert_eq!(up[0].alert.alert_id, "P-10000000");
        assert!(e.observe(&reading(502, 60.0), "", 0).is_empty());
        let clear = e.observe(&reading(562, 60.0), "", 0);
        assert_eq!(clear[0].kind, AlertEventKind::Cleared);
        assert_eq!(clear[0].alert.alert_id, "P-10000000");
    }

    #[test]
    fn readings_before_the_restored_transition_only_fill_the_window() {
        let mut e = Engine::new(EngineConfig::default());
        let mut cleared = open_at(10);
        cleared.alert.state = AlertState::Cleared as i32;
        cleared.at_micros = 100_000_000;
        e.restore("P", cleared.clone());
        // The warm-up starts inside the episode that was cleared at 100 s: its hot readings
        // must not raise it again under another id.
        assert!(e.observe(&reading(50, 95.0), "", 0).is_empty());
        assert!(e.observe(&reading(99, 60.0), "", 0).is_empty());
        // The reading that cleared it gives the recorded clear, nothing new (published only
        // if its entry was left unacked).
        assert_eq!(e.observe(&reading(100, 60.0), "", 0), [cleared.transition()]);
        assert_eq!(e.observe(&reading(101, 95.0), "", 0)[0].kind, AlertEventKind::Raised, "a later one is new");
    }

    /// The previous owner raised the episode on the reading at 10 s, then stopped before a
    /// replica was confirmed to hold the event, leaving that reading unacked: scored again,
    /// it gives the very event it raised (same id, kind and severity: the same dedupe key),
    /// whatever it is judged now, and the readings after it continue the episode.
    #[test]
    fn the_reading_that_moved_a_restored_episode_gives_its_transition_again() {
        let mut e = Engine::new(no_clock());
        e.restore("P", open_at(10));
        assert!(e.observe(&reading(9, 60.0), "", 0).is_empty(), "an earlier reading only fills the window");
        let again = e.observe(&reading(10, 60.0), "", 0);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].kind, again[0].at_micros), (AlertEventKind::Raised, 10_000_000));
        assert_eq!(again[0].alert, open_at(10).alert);
        assert!(e.observe(&reading(10, 95.0), "", 0).is_empty(), "once");
        assert!(e.observe(&reading(11, 85.0), "", 0).is_empty(), "the same episode goes on");

        let mut escalated = open_at(10);
        escalated.at_micros = 20_000_000;
        escalated.alert.severity = Severity::Critical as i32;
        assert_eq!(escalated.transition().kind, AlertEventKind::Escalated);
        let mut e = Engine::new(no_clock());
        e.restore("P", escalated);
        assert!(e.observe(&reading(21, 95.0), "", 0).is_empty(), "a later reading: nothing to give again");
        assert!(e.observe(&reading(20, 95.0), "", 0).is_empty(), "past it, the transition is not given again");
    }

    fn silent_since(s: i64) -> EpisodeRecord {
        let alert = Alert {
            alert_id: format!("P-nodata-{}", s * 1_000_000),
            equipement_id: "P".into(),
            rule: "no_data".into(),
            severity: Severity::Warning as i32,
            state: AlertState::Open as i32,
            ..Default::default()
        };
        EpisodeRecord { alert, at_micros: s * 1_000_000, episode: Episode::NoData }
    }

    /// Readings here are dated without regard to the wall clock the tests pass.
    fn no_clock() -> EngineConfig {
        EngineConfig { max_future_micros: i64::MAX, ..Default::default() }
    }

    /// "P" is in the reference data, so its silence always counts.
    fn silence_engine() -> Engine {
        let mut e = Engine::new(EngineConfig { silence_after_micros: 30_000_000, ..no_clock() });
        e.set_equipment_info(HashMap::from([("P".to_string(), EquipmentInfo::default())]));
        e
    }

    /// Issue 7: a no-data alarm open when its replica died. The new owner's warm-up re-reads
    /// the readings before the silence: they neither clear it (that clear would never be
    /// published) nor let a second alarm be raised; the first newer reading clears it.
    #[test]
    fn a_restored_no_data_alarm_stays_open_through_the_warm_up_and_clears_once_on_new_data() {
        let mut e = silence_engine();
        e.restore("P", silent_since(100));
        for s in 0..=100 {
            assert!(e.observe(&reading(s, 60.0), "", 1_000_000).is_empty(), "warm-up reading at {s} s");
        }
        assert!(e.check_silence(500_000_000).is_empty(), "the same silence: no second alarm");
        let back = e.observe(&reading(101, 60.0), "", 501_000_000);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].kind, back[0].episode), (AlertEventKind::Cleared, Episode::NoData));
        assert_eq!(back[0].alert.alert_id, "P-nodata-100000000");
        assert_eq!(back[0].alert.state, AlertState::Cleared as i32);
        assert_eq!(back[0].at_micros, 101_000_000);
        assert!(e.observe(&reading(102, 60.0), "", 502_000_000).is_empty(), "cleared once");
        let next = e.check_silence(540_000_000);
        assert_eq!(next[0].alert.alert_id, "P-nodata-102000000", "a later silence is a new alarm");
    }

    #[test]
    fn a_restored_no_data_alarm_of_an_equipment_not_in_the_warm_up_is_not_raised_again() {
        let mut e = silence_engine();
        e.restore("P", silent_since(100));
        assert!(e.check_silence(500_000_000).is_empty(), "no state, no second alarm");
        let back = e.observe(&reading(400, 60.0), "", 501_000_000);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].kind, back[0].alert.alert_id.as_str()), (AlertEventKind::Cleared, "P-nodata-100000000"));
    }

    #[test]
    fn both_records_of_an_equipment_are_restored() {
        let mut e = silence_engine();
        e.restore("P", open_at(10));
        e.restore("P", silent_since(100));
        let back = e.observe(&reading(101, 85.0), "", 0);
        assert_eq!(back.len(), 1, "the alarm clears; the warning episode continues, not raised again: {back:?}");
        assert_eq!(back[0].episode, Episode::NoData);
        let mut cleared = silent_since(100);
        cleared.alert.state = AlertState::Cleared as i32;
        e.restore("Q", cleared);
        let q = Telemetry { equipement_id: "Q".into(), ..reading(200, 60.0) };
        assert!(e.observe(&q, "", 0).is_empty(), "a cleared alarm stays cleared");
    }

    #[test]
    fn a_raised_no_data_alarm_is_recorded_with_the_last_reading_before_the_silence() {
        let mut e = silence_engine();
        e.observe(&reading(7, 60.0), "", 0);
        let t = e.check_silence(31_000_000);
        assert_eq!((t[0].episode, t[0].at_micros), (Episode::NoData, 7_000_000));
        assert!(e.observe(&reading(7, 60.0), "", 40_000_000).is_empty(), "a redelivered old reading is not data back");
        assert_eq!(e.observe(&reading(8, 60.0), "", 41_000_000)[0].kind, AlertEventKind::Cleared);
    }

    #[test]
    fn retain_forgets_restored_records_of_lost_shards() {
        let mut e = Engine::new(no_clock());
        e.restore("P", open_at(10));
        e.retain(|_| false);
        assert_eq!(e.observe(&reading(500, 85.0), "", 0)[0].kind, AlertEventKind::Raised);
    }

    fn seen_at(s: i64, wall_s: i64) -> Seen {
        Seen { last_ts: s * 1_000_000, wall_micros: wall_s * 1_000_000 }
    }

    /// Issue 7: an equipment silent at a takeover, its alarm not raised yet, that the warm-up
    /// did not reach: its seen record alone starts its silence clock.
    #[test]
    fn a_seen_record_alone_raises_the_alarm_once_after_the_silence_time() {
        let mut e = silence_engine();
        e.seed_seen("P", seen_at(100, 1_000));
        assert!(e.check_silence(1_029_000_000).is_empty(), "not silent for 30 s yet");
        let t = e.check_silence(1_030_000_000);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].kind, t[0].episode, t[0].at_micros), (AlertEventKind::Raised, Episode::NoData, 100_000_000));
        assert_eq!(t[0].alert.alert_id, "P-nodata-100000000", "the id the previous owner would have used");
        assert!(e.check_silence(1_100_000_000).is_empty(), "once");
        assert!(e.observe(&reading(100, 60.0), "", 1_101_000_000).is_empty(), "a redelivered old reading");
        let back = e.observe(&reading(101, 60.0), "", 1_102_000_000);
        assert_eq!((back[0].kind, back[0].alert.alert_id.as_str()), (AlertEventKind::Cleared, "P-nodata-100000000"));
    }

    #[test]
    fn a_seen_record_does_not_raise_again_an_alarm_the_episode_record_has_open() {
        let mut e = silence_engine();
        e.restore("P", silent_since(100));
        e.seed_seen("P", seen_at(100, 1_000));
        assert!(e.check_silence(2_000_000_000).is_empty());
        let back = e.observe(&reading(101, 60.0), "", 2_001_000_000);
        assert_eq!((back[0].kind, back[0].alert.alert_id.as_str()), (AlertEventKind::Cleared, "P-nodata-100000000"));
    }

    #[test]
    fn a_seen_record_keeps_a_restored_condition_episode() {
        let mut e = silence_engine();
        e.restore("P", open_at(10));
        e.seed_seen("P", seen_at(100, 1_000));
        assert!(e.observe(&reading(101, 85.0), "", 1_001_000_000).is_empty(), "the same warning, not raised again");
        assert_eq!(e.observe(&reading(102, 95.0), "", 1_002_000_000)[0].alert.alert_id, "P-10000000");
    }

    #[test]
    fn in_the_warm_up_the_silence_clock_starts_at_the_recorded_wall_time_unless_newer_data() {
        let mut e = silence_engine();
        // Warm-up at wall 1,000 s re-reads P up to 100 s; the record says it came at 980 s.
        e.observe(&reading(100, 60.0), "", 1_000_000_000);
        e.seed_seen("P", seen_at(100, 980));
        assert_eq!(e.check_silence(1_010_000_000)[0].alert.alert_id, "P-nodata-100000000", "due at 980 + 30 s");
        // Q's warm-up has a reading newer than its record: the takeover time stays.
        let q = |s| Telemetry { equipement_id: "Q".into(), ..reading(s, 60.0) };
        e.observe(&q(200), "", 1_000_000_000);
        e.seed_seen("Q", seen_at(150, 900));
        assert!(e.check_silence(1_029_000_000).is_empty());
        assert_eq!(e.check_silence(1_030_000_000)[0].alert.alert_id, "Q-nodata-200000000");
    }

    #[test]
    fn seen_changes_are_the_equipment_read_since_the_last_write_then_the_expired() {
        let mut e = silence_engine();
        let retention = 100_000_000;
        e.observe(&reading(1, 60.0), "", 5_000_000);
        let c = e.seen_changes(6_000_000, retention);
        assert_eq!(c.set, [("P".to_string(), seen_at(1, 5))]);
        assert!(c.pruned.is_empty());
        e.seen_written(&c);
        assert_eq!(e.seen_changes(7_000_000, retention), SeenChanges::default(), "nothing read since");
        // Unwritten (the heartbeat failed): still to write.
        e.observe(&reading(2, 60.0), "", 8_000_000);
        let _ = e.seen_changes(9_000_000, retention);
        assert_eq!(e.seen_changes(9_000_000, retention).set.len(), 1);
        e.seen_written(&e.seen_changes(9_000_000, retention));
        assert!(e.seen_changes(108_000_000, retention).pruned.is_empty(), "at the retention: kept");
        let c = e.seen_changes(108_000_001, retention);
        assert_eq!(c.pruned, ["P"]);
        e.seen_written(&c);
        assert_eq!(e.seen_changes(200_000_000, retention), SeenChanges::default(), "deleted once");
        e.observe(&reading(3, 60.0), "", 201_000_000);
        assert_eq!(e.seen_changes(202_000_000, retention).set, [("P".to_string(), seen_at(3, 201))], "back: written");
        // A record loaded at a takeover is recorded, so it expires too.
        e.seed_seen("Q", seen_at(1, 1));
        assert_eq!(e.seen_changes(202_000_000, retention).pruned, ["Q"]);
    }
}
