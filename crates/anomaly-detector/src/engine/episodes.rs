//! Alert episodes: one per incident, raised once, escalated when the severity rises, cleared
//! after the readings stayed normal for the hold time (event time, with hysteresis around the
//! threshold that holds it); and the no-data alarm of an equipment gone silent, or declared
//! offline by its source (a Sparkplug death certificate).

use proact_proto::v1::{Alert, AlertEventKind, AlertState, EquipmentStatus, Severity, Telemetry};

use super::{Assessment, Engine, EngineConfig, EquipmentState, Thresholds, ESTABLISHED_READINGS, RULES_VERSION};

/// Which of an equipment's two kinds of episode a transition moves; each has its own record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Episode {
    /// Raised by the rules or the models from the readings.
    #[default]
    Condition,
    /// Raised when the equipment went silent (wall clock), cleared when its data returns.
    NoData,
}

/// A lifecycle event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub kind: AlertEventKind,
    pub alert: Alert,
    pub episode: Episode,
    /// Event time of the reading that moved the episode (raised, escalated, cleared it); for
    /// a no-data alarm raised, that of the last reading before the silence.
    pub at_micros: i64,
}

/// The last transition of one of an equipment's episodes, as published (see
/// [`crate::publish`]): the alert (open, or cleared) and the event time of the reading that
/// caused it. Restored when the equipment's shard is taken over, because the warm-up re-reads
/// only the stream's tail, which may start in the middle of an episode or after its start,
/// and a no-data alarm is not in the stream at all.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRecord {
    pub alert: Alert,
    pub at_micros: i64,
    pub episode: Episode,
}

impl EpisodeRecord {
    /// The transition this record is the outcome of, as it was published: the kind is read
    /// from the alert (cleared; else raised by the reading at the episode's start; else
    /// escalated), so that publishing it again claims the original event's dedupe key (alert
    /// id, kind, severity) and is a duplicate of it if that event exists.
    pub fn transition(&self) -> Transition {
        let kind = if self.alert.state == AlertState::Cleared as i32 {
            AlertEventKind::Cleared
        } else if self.episode == Episode::NoData || self.alert.start_micros == self.at_micros {
            AlertEventKind::Raised
        } else {
            AlertEventKind::Escalated
        };
        Transition { kind, alert: self.alert.clone(), episode: self.episode, at_micros: self.at_micros }
    }
}

/// Moves an equipment's condition episode on one judged reading and its assessment; returns
/// the transition it causes, if any.
pub(super) fn advance(
    st: &mut EquipmentState,
    t: &Telemetry,
    assessment: Assessment,
    th: &Thresholds,
    cfg: &EngineConfig,
    trace_id: &str,
    now_micros: i64,
) -> Option<Transition> {
    let mut out = None;
    let abnormal = assessment.severity != Severity::Unspecified;
    match st.open.as_mut() {
        None if abnormal => {
            let alert = Alert {
                alert_id: format!("{}-{}", t.equipement_id, t.ts_micros),
                equipement_id: t.equipement_id.clone(),
                start_micros: t.ts_micros,
                severity: assessment.severity as i32,
                score: assessment.score,
                reason: assessment.reason,
                rule: assessment.rule,
                model_version: assessment.model_version,
                trace_id: trace_id.to_string(),
                state: AlertState::Open as i32,
                updated_micros: now_micros,
                value: assessment.value,
                ..Default::default()
            };
            st.open = Some(alert.clone());
            st.normal_since = None;
            out = Some(Transition {
                kind: AlertEventKind::Raised,
                alert,
                episode: Episode::Condition,
                at_micros: t.ts_micros,
            });
        }
        None => {}
        Some(open) if abnormal => {
            st.normal_since = None;
            if (assessment.severity as i32) > open.severity {
                open.severity = assessment.severity as i32;
                open.score = assessment.score;
                open.reason = assessment.reason;
                open.rule = assessment.rule;
                open.value = assessment.value;
                open.model_version = assessment.model_version;
                open.updated_micros = now_micros;
                out = Some(Transition {
                    kind: AlertEventKind::Escalated,
                    alert: open.clone(),
                    episode: Episode::Condition,
                    at_micros: t.ts_micros,
                });
            }
        }
        Some(open) => {
            // Normal again, but is it clear of the threshold that holds the episode by
            // the cfg.hysteresis margin? Near it, the clock does not run. Only that rule's
            // signal counts: an episode a model raised is not held open by a temperature
            // that merely sits near the temperature rule (SKAB's valve runs at 74-79 °C,
            // within 2 °C of the 80 °C warning, and no model episode ever cleared).
            let near = match open.rule.split('_').next() {
                Some("temperature") => t.temperature > th.temperature_warning - cfg.hysteresis,
                Some("vibration") => t.vibration > th.vibration_warning - cfg.hysteresis,
                _ => false,
            };
            if near {
                st.normal_since = None;
                return out;
            }
            let since = *st.normal_since.get_or_insert(t.ts_micros);
            if t.ts_micros - since >= cfg.clear_after_micros {
                let mut alert = open.clone();
                alert.end_micros = t.ts_micros;
                alert.state = AlertState::Cleared as i32;
                alert.updated_micros = now_micros;
                st.open = None;
                st.normal_since = None;
                out = Some(Transition {
                    kind: AlertEventKind::Cleared,
                    alert,
                    episode: Episode::Condition,
                    at_micros: t.ts_micros,
                });
            }
        }
    }
    out
}

impl Engine {
    /// Raises a no-data alarm for every tracked equipment silent for longer than the
    /// configured time (wall clock), among those whose silence means something: known to the
    /// reference data, or that sent [`ESTABLISHED_READINGS`] readings, or sent for at least
    /// the silence time (a previous owner's seen record counts as that). A stray or forged id
    /// that sent a reading or two raises nothing.
    pub fn check_silence(&mut self, now_micros: i64) -> Vec<Transition> {
        let limit = self.cfg.silence_after_micros;
        if limit <= 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        let info = &self.info;
        for (id, st) in self.states.iter_mut() {
            let established = info.contains_key(id)
                || st.readings >= ESTABLISHED_READINGS
                || st.last_seen_wall.saturating_sub(st.first_seen_wall) >= limit;
            if st.silent.is_none() && established && now_micros - st.last_seen_wall >= limit {
                let alert_id = format!("{id}-nodata-{}", st.last_ts.max(0));
                let reason = format!("aucune donnée depuis {} s", (now_micros - st.last_seen_wall) / 1_000_000);
                out.push(raise_no_data(id, st, alert_id, reason, now_micros));
            }
        }
        out
    }

    /// An equipment's source declared it offline (a Sparkplug death) or back online (a
    /// birth). Offline raises its no-data alarm at once, the alarm a silence would raise
    /// only after the configured time; online ends it, as a new reading does, and restarts
    /// the silence clock. Nothing for an equipment never read here (no state: nothing to
    /// watch), nor when the no-data alarm is off (`PROACT_SILENCE_AFTER_SECS=0`).
    pub fn status(&mut self, s: &EquipmentStatus, now_micros: i64) -> Vec<Transition> {
        if self.cfg.silence_after_micros <= 0 {
            return Vec::new();
        }
        let Some(st) = self.states.get_mut(&s.equipement_id) else { return Vec::new() };
        if s.online {
            st.last_seen_wall = now_micros;
            st.seen_dirty = true;
            let end = st.last_ts;
            return st.silent.take().map(|silent| clear_no_data(silent, end, now_micros)).into_iter().collect();
        }
        if st.silent.is_some() {
            return Vec::new();
        }
        // One alarm per death: its id carries the time ingest received the certificate.
        let alert_id = format!("{}-nodata-{}", s.equipement_id, s.at_micros.max(0));
        let reason = format!("hors ligne : {}", s.reason);
        vec![raise_no_data(&s.equipement_id, st, alert_id, reason, now_micros)]
    }
}

/// Opens `st`'s no-data alarm for `reason` (a silence, a death certificate).
fn raise_no_data(id: &str, st: &mut EquipmentState, alert_id: String, reason: String, now_micros: i64) -> Transition {
    let alert = Alert {
        alert_id,
        equipement_id: id.to_string(),
        start_micros: now_micros,
        severity: Severity::Warning as i32,
        score: 0.5,
        reason,
        rule: "no_data".into(),
        model_version: RULES_VERSION.into(),
        state: AlertState::Open as i32,
        updated_micros: now_micros,
        ..Default::default()
    };
    // Recorded with the last reading's event time: a new owner of the shard keeps the alarm
    // open through its warm-up, which re-reads the readings before it.
    st.silent = Some(EpisodeRecord { alert: alert.clone(), at_micros: st.last_ts, episode: Episode::NoData });
    Transition { kind: AlertEventKind::Raised, alert, episode: Episode::NoData, at_micros: st.last_ts }
}

/// Ends a no-data alarm: data came back (a reading of event time `at_micros`), or the
/// equipment was declared online.
pub(super) fn clear_no_data(silent: EpisodeRecord, at_micros: i64, now_micros: i64) -> Transition {
    let mut alarm = silent.alert;
    alarm.state = AlertState::Cleared as i32;
    alarm.end_micros = at_micros;
    alarm.updated_micros = now_micros;
    Transition { kind: AlertEventKind::Cleared, alert: alarm, episode: Episode::NoData, at_micros }
}
