//! Alert episodes: one alert per incident, not one per reading.
//!
//! An equipment enters an episode when a reading crosses the critical rule and leaves it
//! once its readings have stayed below the rule minus a hysteresis margin for a hold time
//! (event time), so a signal flapping around the threshold raises one alert, not a storm.

use std::collections::HashMap;

use proact_proto::v1::{Alert, AlertEventKind, AlertState, Severity, Telemetry};

/// The rule and its episode timing.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// Critical temperature, °C (the seed's rule: > 90).
    pub temperature_critical: f64,
    /// Margin below the threshold a reading must reach to count as normal again, °C.
    pub hysteresis: f64,
    /// How long readings must stay normal before the episode is cleared, microseconds.
    pub clear_after_micros: i64,
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self { temperature_critical: 90.0, hysteresis: 2.0, clear_after_micros: 60_000_000 }
    }
}

/// What an equipment's episode is doing.
#[derive(Debug, Clone, Default)]
struct EquipmentState {
    open: Option<Alert>,
    /// Event time of the first normal reading since the last hot one, while open.
    normal_since: Option<i64>,
    last_ts: i64,
}

/// The episode tracker of the equipment this replica owns.
#[derive(Debug, Default)]
pub struct Episodes {
    rule: RuleConfig,
    states: HashMap<String, EquipmentState>,
    model_version: String,
}

/// A lifecycle event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub kind: AlertEventKind,
    pub alert: Alert,
}

impl Episodes {
    pub fn new(rule: RuleConfig, model_version: impl Into<String>) -> Self {
        Self { rule, states: HashMap::new(), model_version: model_version.into() }
    }

    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    /// Scores one reading without changing anything: (score in [0, 1], severity, reason).
    pub fn score(&self, t: &Telemetry) -> (f64, Severity, Option<String>) {
        let thr = self.rule.temperature_critical;
        if t.temperature > thr {
            (1.0, Severity::Critical, Some(format!("temperature {:.1} °C > {thr:.1} °C", t.temperature)))
        } else {
            ((t.temperature / thr).clamp(0.0, 1.0) * 0.5, Severity::Unspecified, None)
        }
    }

    /// Feeds one reading (in event-time order per equipment); returns the transition it causes.
    pub fn observe(&mut self, t: &Telemetry, trace_id: &str, now_micros: i64) -> Option<Transition> {
        let (score, severity, reason) = self.score(t);
        let rule = self.rule.clone();
        let model_version = self.model_version.clone();
        let st = self.states.entry(t.equipement_id.clone()).or_default();
        if t.ts_micros < st.last_ts {
            // Out of order: the episode logic only moves forward in event time.
            metrics::counter!("proact_detector_out_of_order_total").increment(1);
            return None;
        }
        st.last_ts = t.ts_micros;
        match (&mut st.open, reason) {
            (None, Some(reason)) => {
                let alert = Alert {
                    alert_id: format!("{}-{}", t.equipement_id, t.ts_micros),
                    equipement_id: t.equipement_id.clone(),
                    start_micros: t.ts_micros,
                    end_micros: 0,
                    severity: severity as i32,
                    score,
                    reason,
                    rule: "temperature_critical".into(),
                    model_version,
                    trace_id: trace_id.to_string(),
                    state: AlertState::Open as i32,
                    updated_micros: now_micros,
                    value: t.temperature,
                    ..Default::default()
                };
                st.open = Some(alert.clone());
                st.normal_since = None;
                Some(Transition { kind: AlertEventKind::Raised, alert })
            }
            (Some(_), Some(_)) => {
                st.normal_since = None;
                None
            }
            (Some(open), None) => {
                if t.temperature > rule.temperature_critical - rule.hysteresis {
                    st.normal_since = None;
                    return None;
                }
                let since = *st.normal_since.get_or_insert(t.ts_micros);
                if t.ts_micros - since < rule.clear_after_micros {
                    return None;
                }
                let mut alert = open.clone();
                alert.end_micros = t.ts_micros;
                alert.state = AlertState::Cleared as i32;
                alert.updated_micros = now_micros;
                st.open = None;
                st.normal_since = None;
                Some(Transition { kind: AlertEventKind::Cleared, alert })
            }
            (None, None) => None,
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

    #[test]
    fn flapping_signal_raises_one_alert() {
        let mut e = Episodes::new(RuleConfig::default(), "rules");
        let mut raised = 0;
        for (i, temp) in [91.0, 89.5, 91.0, 89.9, 92.0, 89.0, 93.0].iter().enumerate() {
            if let Some(t) = e.observe(&reading("P", i as i64, *temp), "", 0) {
                assert_eq!(t.kind, AlertEventKind::Raised);
                raised += 1;
            }
        }
        assert_eq!(raised, 1);
    }

    #[test]
    fn clears_after_hold_time_below_hysteresis() {
        let mut e = Episodes::new(RuleConfig::default(), "rules");
        assert!(e.observe(&reading("P", 0, 95.0), "", 0).is_some());
        assert!(e.observe(&reading("P", 10, 80.0), "", 0).is_none());
        assert!(e.observe(&reading("P", 50, 80.0), "", 0).is_none());
        let t = e.observe(&reading("P", 71, 80.0), "", 0).expect("cleared after 60 s normal");
        assert_eq!(t.kind, AlertEventKind::Cleared);
        assert_eq!(t.alert.end_micros, 71_000_000);
        // A new episode gets a new id.
        let again = e.observe(&reading("P", 100, 95.0), "", 0).unwrap();
        assert_ne!(again.alert.alert_id, t.alert.alert_id);
    }

    #[test]
    fn threshold_is_strict() {
        let mut e = Episodes::new(RuleConfig::default(), "rules");
        assert!(e.observe(&reading("P", 0, 90.0), "", 0).is_none());
        assert!(e.observe(&reading("P", 1, 90.01), "", 0).is_some());
    }
}
