//! Training labels from the intervention history, imported GMAO rows and closed work orders
//! alike (docs/models.md, "Labels").
//!
//! A feature window ending at `t` on an equipment gets, in this order of precedence:
//! 1. no label (left out) while the machine is being repaired — from the fault's onset to the
//!    end of the repair — and around an alert closed as *no fault found*, from `horizon`
//!    before the alert to the close: the technician could not tell, and intermittent faults
//!    are exactly what hides there, so neither label is safe;
//! 2. 1 within `horizon` before the onset of a confirmed failure: the start of an imported
//!    corrective intervention, or for a work order closed as *failure confirmed*, the start
//!    of its alert (the degradation the model must learn ends where the alert began, not
//!    days later when the repair started);
//! 3. 0 from `horizon` before an alert closed as *false alarm* to its close: a hard negative,
//!    what the detector thought anomalous and a technician found healthy;
//! 4. 0 otherwise.
//!
//! On imported rows alone this is the trainer's `Corrective` labelling, window for window.

use std::collections::HashMap;

use proact_proto::v1::Outcome;
use proact_store::work_orders::HistoryEvent;

use crate::MaintenanceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    HardNegative,
    Positive,
    Excluded,
}

/// `[from, to]` in ms, inclusive at both ends except a positive span, which ends before `to`.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: i64,
    to: i64,
    kind: Kind,
}

impl Span {
    fn covers(&self, t: i64) -> bool {
        match self.kind {
            Kind::Positive => self.from <= t && t < self.to,
            _ => self.from <= t && t <= self.to,
        }
    }
}

/// How many history rows gave each kind of label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelSources {
    pub imported_corrective: usize,
    pub confirmed: usize,
    pub false_alarms: usize,
    pub no_fault_found: usize,
}

/// The labeller the trainer calls per window: `label(equipment, t_ms)`.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    by_eq: HashMap<String, Vec<Span>>,
    horizon_ms: i64,
    sources: LabelSources,
}

impl Labels {
    pub fn from_history(events: &[HistoryEvent], horizon_ms: i64) -> Self {
        let mut labels = Labels { horizon_ms, ..Default::default() };
        for e in events {
            let start = e.started_at.timestamp_millis();
            let end = e.ended_at.map_or(start, |t| t.timestamp_millis()).max(start);
            let onset = e.fault_started_at.map_or(start, |t| t.timestamp_millis()).min(start);
            let spans: &[Span] = match (e.origin.as_str(), e.outcome) {
                ("gmao_import", _) if e.intervention_type == "corrective" => {
                    labels.sources.imported_corrective += 1;
                    &[
                        Span { from: start - horizon_ms, to: start, kind: Kind::Positive },
                        Span { from: start, to: end, kind: Kind::Excluded },
                    ]
                }
                ("work_order", Outcome::FailureConfirmed) => {
                    labels.sources.confirmed += 1;
                    &[
                        Span { from: onset - horizon_ms, to: onset, kind: Kind::Positive },
                        Span { from: onset, to: end, kind: Kind::Excluded },
                    ]
                }
                ("work_order", Outcome::FalseAlarm) => {
                    labels.sources.false_alarms += 1;
                    &[Span { from: onset - horizon_ms, to: end, kind: Kind::HardNegative }]
                }
                ("work_order", Outcome::NoFaultFound) => {
                    labels.sources.no_fault_found += 1;
                    &[Span { from: onset - horizon_ms, to: end, kind: Kind::Excluded }]
                }
                _ => &[],
            };
            labels.by_eq.entry(e.equipement_id.clone()).or_default().extend_from_slice(spans);
        }
        labels.by_eq.values_mut().for_each(|v| v.sort_unstable_by_key(|s| s.from));
        labels
    }

    /// Labels from the whole history in PostgreSQL.
    pub async fn load(client: &tokio_postgres::Client, horizon_ms: i64) -> Result<Self, MaintenanceError> {
        let events = proact_store::work_orders::label_history(client).await?;
        Ok(Self::from_history(&events, horizon_ms))
    }

    /// 1 before a failure, 0 otherwise, `None` when the window must be left out.
    pub fn label(&self, equipement_id: &str, t_ms: i64) -> Option<u8> {
        let Some(spans) = self.by_eq.get(equipement_id) else { return Some(0) };
        let started = spans.partition_point(|s| s.from <= t_ms);
        match spans[..started].iter().filter(|s| s.covers(t_ms)).map(|s| s.kind).max() {
            Some(Kind::Excluded) => None,
            Some(Kind::Positive) => Some(1),
            Some(Kind::HardNegative) | None => Some(0),
        }
    }

    /// Whether `t_ms` falls in a false alarm's window (a hard negative).
    pub fn is_hard_negative(&self, equipement_id: &str, t_ms: i64) -> bool {
        self.by_eq.get(equipement_id).is_some_and(|spans| {
            spans.iter().filter(|s| s.covers(t_ms)).map(|s| s.kind).max() == Some(Kind::HardNegative)
        })
    }

    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    pub fn sources(&self) -> LabelSources {
        self.sources
    }

    /// History rows that gave a label.
    pub fn len(&self) -> usize {
        let s = self.sources;
        s.imported_corrective + s.confirmed + s.false_alarms + s.no_fault_found
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For the dataset's `source`, e.g. `labels gmao:corrective 12, work orders 3 confirmed /
    /// 2 false alarms / 1 no fault found, horizon 48 h`.
    pub fn describe(&self) -> String {
        let s = self.sources;
        // Whole hours as hours; a shorter horizon (the demo's 45 s) in seconds, not "0 h".
        let horizon = if self.horizon_ms % 3_600_000 == 0 {
            format!("{} h", self.horizon_ms / 3_600_000)
        } else {
            format!("{} s", self.horizon_ms as f64 / 1000.0)
        };
        format!(
            "labels gmao:corrective {}, work orders {} confirmed / {} false alarms / {} no fault found, horizon {horizon}",
            s.imported_corrective, s.confirmed, s.false_alarms, s.no_fault_found
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    const H: i64 = 3_600_000;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn event(origin: &str, kind: &str, outcome: Outcome, start: i64, end: i64, onset: Option<i64>) -> HistoryEvent {
        HistoryEvent {
            equipement_id: "P".into(),
            started_at: at(start),
            ended_at: Some(at(end)),
            intervention_type: kind.into(),
            origin: origin.into(),
            outcome,
            fault_started_at: onset.map(at),
        }
    }

    #[test]
    fn imported_rows_label_as_the_trainer_does() {
        // The trainer's own test case (crates/trainer/src/dataset.rs), same answers.
        let l = Labels::from_history(
            &[event("gmao_import", "corrective", Outcome::Unspecified, 10 * H, 12 * H, None)],
            2 * H,
        );
        assert_eq!(l.label("P", 7 * H), Some(0));
        assert_eq!(l.label("P", 8 * H), Some(1));
        assert_eq!(l.label("P", 10 * H - 1), Some(1));
        assert_eq!(l.label("P", 10 * H), None);
        assert_eq!(l.label("P", 11 * H), None, "during the repair");
        assert_eq!(l.label("P", 12 * H), None);
        assert_eq!(l.label("P", 13 * H), Some(0));
        assert_eq!(l.label("OTHER", 9 * H), Some(0));
        let preventive = event("gmao_import", "preventive", Outcome::Unspecified, 10 * H, 12 * H, None);
        assert!(Labels::from_history(&[preventive], 2 * H).is_empty());
    }

    #[test]
    fn a_confirmed_failure_labels_the_windows_before_its_alert() {
        // Alert at 10 h, work started 30 h, closed 32 h.
        let l = Labels::from_history(
            &[event("work_order", "corrective", Outcome::FailureConfirmed, 30 * H, 32 * H, Some(10 * H))],
            2 * H,
        );
        assert_eq!(l.label("P", 7 * H), Some(0));
        assert_eq!(l.label("P", 8 * H), Some(1), "horizon before the alert");
        assert_eq!(l.label("P", 10 * H - 1), Some(1));
        assert_eq!(l.label("P", 20 * H), None, "faulty, waiting for the repair");
        assert_eq!(l.label("P", 32 * H), None);
        assert_eq!(l.label("P", 29 * H - 1), None, "not positive before the repair: the fault was already there");
        assert_eq!(l.label("P", 33 * H), Some(0));
        assert_eq!(l.sources().confirmed, 1);
    }

    #[test]
    fn false_alarms_are_hard_negatives_and_no_fault_found_is_left_out() {
        let l = Labels::from_history(
            &[
                event("work_order", "inspection", Outcome::FalseAlarm, 10 * H, 11 * H, Some(9 * H)),
                event("work_order", "inspection", Outcome::NoFaultFound, 50 * H, 51 * H, Some(49 * H)),
            ],
            2 * H,
        );
        assert_eq!(l.label("P", 7 * H), Some(0));
        assert!(l.is_hard_negative("P", 7 * H));
        assert!(l.is_hard_negative("P", 11 * H));
        assert!(!l.is_hard_negative("P", 12 * H));
        assert_eq!(l.label("P", 10 * H), Some(0));
        assert_eq!(l.label("P", 46 * H), Some(0));
        assert_eq!(l.label("P", 47 * H), None);
        assert_eq!(l.label("P", 51 * H), None);
        assert_eq!(l.label("P", 52 * H), Some(0));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn a_confirmed_failure_wins_over_an_earlier_false_alarm() {
        // A false alarm at 9 h, then the real failure's alert at 10 h: the precursor is positive.
        let l = Labels::from_history(
            &[
                event("work_order", "inspection", Outcome::FalseAlarm, 9 * H, 9 * H + H / 2, Some(9 * H)),
                event("work_order", "corrective", Outcome::FailureConfirmed, 11 * H, 12 * H, Some(10 * H)),
            ],
            2 * H,
        );
        assert_eq!(l.label("P", 7 * H + H / 2), Some(0));
        assert_eq!(l.label("P", 8 * H + H / 2), Some(1));
        assert!(!l.is_hard_negative("P", 9 * H));
        assert!(l.describe().contains("1 confirmed / 1 false alarms"));
        assert!(l.describe().ends_with("horizon 2 h"), "{}", l.describe());
        assert!(Labels::from_history(&[], 45_000).describe().ends_with("horizon 45 s"));
    }
}
