//! A past of the fleet in fast-forward: what the machines measured over some days, with the
//! failure episodes of [`proact_store::taxonomy::episodes`] read through the same signal model
//! as the live publisher ([`crate::reading`]), when the threshold rules would have caught each
//! one, and a few transient spikes the rules raised on healthy machines (the false alarms).
//!
//! Pure and deterministic: the same plan gives the same readings, episodes and alarms, so a
//! back-fill interrupted half-way is resumed by generating it again (the trainer's
//! `backfill` command writes it; `docs/models.md` "The demo's history").

use proact_store::taxonomy::{episodes, Episode, Equipment};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::reading::{reading, Sample};

/// The rule thresholds that raised the history's alerts (the detector's warnings).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleThresholds {
    pub temperature_warning: f64,
    pub vibration_warning: f64,
}

/// What to generate; times in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryPlan {
    pub seed: u64,
    pub from: i64,
    pub to: i64,
    /// Seconds between two readings of one machine.
    pub step_secs: i64,
    /// Length of a failure episode (the live simulator's `--episode-secs`, so the models learn
    /// the shape they will see live).
    pub episode_secs: i64,
    /// Mean gap between two episodes of one machine.
    pub episode_every_secs: i64,
    /// One false alarm per this many failures of a machine (0: none).
    pub false_alarm_every: u32,
    pub rules: RuleThresholds,
}

/// How the rules caught a failure episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub episode: Episode,
    /// The first reading past a warning threshold, or the episode's end (the machine stopped)
    /// when no reading crossed one.
    pub detected_at: i64,
    /// `temperature_warning`, `vibration_warning`, or `machine_stopped`.
    pub rule: &'static str,
    /// The measurement that crossed (the last temperature for a stop).
    pub value: f64,
}

/// A transient spike on a healthy machine that crossed the temperature warning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FalseAlarm {
    pub at: i64,
    pub value: f64,
}

/// One machine's history.
#[derive(Debug, Clone)]
pub struct MachineHistory {
    pub equipment: Equipment,
    /// (time in seconds, reading), in time order.
    pub readings: Vec<(i64, Sample)>,
    pub failures: Vec<Failure>,
    pub false_alarms: Vec<FalseAlarm>,
}

/// Why a plan cannot be generated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("{field} = {value}: {why}")]
    Invalid { field: &'static str, value: String, why: &'static str },
}

impl HistoryPlan {
    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |field, value: String, why| Err(PlanError::Invalid { field, value, why });
        if self.to <= self.from {
            return bad("to", self.to.to_string(), "must be after from");
        }
        if !(1..=3600).contains(&self.step_secs) {
            return bad("step_secs", self.step_secs.to_string(), "must be 1..=3600 seconds");
        }
        if self.episode_secs < 2 * self.step_secs {
            return bad("episode_secs", self.episode_secs.to_string(), "must hold at least two readings (2 × step)");
        }
        if self.episode_every_secs < self.episode_secs {
            return bad("episode_every_secs", self.episode_every_secs.to_string(), "must be at least episode_secs");
        }
        let finite = |x: f64| x.is_finite() && x > 0.0;
        if !finite(self.rules.temperature_warning) || !finite(self.rules.vibration_warning) {
            return bad("rules", format!("{:?}", self.rules), "thresholds must be positive numbers");
        }
        Ok(())
    }

    /// Readings of one machine over the whole plan.
    pub fn readings_per_machine(&self) -> i64 {
        (self.to - self.from + self.step_secs - 1) / self.step_secs
    }
}

/// The history of `eq` (the `index`-th machine of the fleet, which seeds its noise).
pub fn machine_history(plan: &HistoryPlan, eq: &Equipment, index: usize) -> MachineHistory {
    let eps = episodes(plan.seed, eq, plan.from, plan.to, plan.episode_every_secs, plan.episode_secs);
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(index as u64));
    let spikes = false_alarm_times(plan, &eps, &mut rng);
    let mut readings = Vec::with_capacity(plan.readings_per_machine().max(0) as usize);
    let mut failures: Vec<Failure> = Vec::with_capacity(eps.len());
    let mut false_alarms = Vec::with_capacity(spikes.len());
    let (mut next_ep, mut next_spike) = (0, 0);
    let mut t = plan.from;
    while t < plan.to {
        while next_ep < eps.len() && eps[next_ep].end <= t {
            close_episode(&mut failures, &eps[next_ep], &readings);
            next_ep += 1;
        }
        let ep = eps.get(next_ep).filter(|e| e.start <= t);
        let mut s = reading(eq, t, ep.map(|e| &e.mode), ep.map_or(0.0, |e| e.degradation(t)), &mut rng);
        if let Some(e) = ep {
            if failures.last().is_none_or(|f| f.episode != *e) {
                if let Some((rule, value)) = crossed(&s, plan.rules) {
                    failures.push(Failure { episode: e.clone(), detected_at: t, rule, value });
                }
            }
        }
        if spikes.get(next_spike).is_some_and(|&at| at <= t) {
            // A spike of one reading: a sensor glitch or a brief overload, gone at the next.
            s.temperature = ((plan.rules.temperature_warning + rng.gen_range(1.0..6.0)) * 100.0).round() / 100.0;
            false_alarms.push(FalseAlarm { at: t, value: s.temperature });
            next_spike += 1;
        }
        readings.push((t, s));
        t += plan.step_secs;
    }
    for e in &eps[next_ep..] {
        close_episode(&mut failures, e, &readings);
    }
    MachineHistory { equipment: eq.clone(), readings, failures, false_alarms }
}

/// The rule a reading crosses, temperature first (as the detector checks it).
fn crossed(s: &Sample, rules: RuleThresholds) -> Option<(&'static str, f64)> {
    if s.temperature > rules.temperature_warning {
        Some(("temperature_warning", s.temperature))
    } else if s.vibration > rules.vibration_warning {
        Some(("vibration_warning", s.vibration))
    } else {
        None
    }
}

/// An episode that ended without crossing a rule was found when the machine stopped.
fn close_episode(failures: &mut Vec<Failure>, e: &Episode, readings: &[(i64, Sample)]) {
    if failures.last().is_some_and(|f| f.episode == *e) {
        return;
    }
    let value = readings.last().map_or(0.0, |(_, s)| s.temperature);
    failures.push(Failure { episode: e.clone(), detected_at: e.end, rule: "machine_stopped", value });
}

/// Times of the false alarms: one per `false_alarm_every` episodes, at random, a quarter of the
/// mean gap between episodes (10 min to a day) away from any episode and from each other, so
/// their windows are healthy but for the spike.
fn false_alarm_times(plan: &HistoryPlan, eps: &[Episode], rng: &mut ChaCha8Rng) -> Vec<i64> {
    if plan.false_alarm_every == 0 {
        return Vec::new();
    }
    let wanted = eps.len() / plan.false_alarm_every as usize;
    let clear = (plan.episode_every_secs / 4).clamp(600, 86_400);
    let mut out = Vec::with_capacity(wanted);
    // Bounded attempts: a plan with episodes everywhere gets fewer false alarms, not a hang.
    for _ in 0..wanted * 50 {
        if out.len() == wanted {
            break;
        }
        let at = rng.gen_range(plan.from..plan.to);
        let at = plan.from + (at - plan.from) / plan.step_secs * plan.step_secs;
        let near_episode = eps.iter().any(|e| at > e.start - clear && at < e.end + clear);
        let near_other = out.iter().any(|&o: &i64| (o - at).abs() < clear);
        if !near_episode && !near_other {
            out.push(at);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proact_store::taxonomy::fleet;

    fn plan() -> HistoryPlan {
        HistoryPlan {
            seed: 7,
            from: 1_790_000_000,
            to: 1_790_000_000 + 10 * 86_400,
            step_secs: 10,
            episode_secs: 60,
            episode_every_secs: 12 * 3600,
            false_alarm_every: 4,
            rules: RuleThresholds { temperature_warning: 80.0, vibration_warning: 11.0 },
        }
    }

    #[test]
    fn the_same_plan_gives_the_same_history() {
        let eq = &fleet()[0];
        let (a, b) = (machine_history(&plan(), eq, 0), machine_history(&plan(), eq, 0));
        assert_eq!(a.readings, b.readings);
        assert_eq!(a.failures, b.failures);
        assert_eq!(a.false_alarms, b.false_alarms);
        assert_eq!(a.readings.len() as i64, plan().readings_per_machine());
        let other = machine_history(&HistoryPlan { seed: 8, ..plan() }, eq, 0);
        assert_ne!(a.readings, other.readings);
    }

    #[test]
    fn every_episode_is_detected_once_at_or_after_its_start() {
        for (i, eq) in fleet().iter().enumerate() {
            let h = machine_history(&plan(), eq, i);
            assert!(h.failures.len() >= 10, "{}: {} episodes in 10 days", eq.id, h.failures.len());
            for f in &h.failures {
                assert!(f.episode.start <= f.detected_at && f.detected_at <= f.episode.end, "{f:?}");
                if f.rule == "temperature_warning" {
                    assert!(f.value > 80.0);
                }
            }
            let starts: Vec<i64> = h.failures.iter().map(|f| f.episode.start).collect();
            let mut unique = starts.clone();
            unique.dedup();
            assert_eq!(starts, unique, "{}: one failure per episode", eq.id);
        }
    }

    #[test]
    fn most_episodes_cross_a_rule_before_the_machine_stops() {
        let mut crossed = 0;
        let mut all = 0;
        for (i, eq) in fleet().iter().enumerate() {
            let h = machine_history(&plan(), eq, i);
            all += h.failures.len();
            crossed += h.failures.iter().filter(|f| f.rule != "machine_stopped").count();
        }
        assert!(crossed * 10 >= all * 7, "{crossed} of {all} caught by a rule");
    }

    #[test]
    fn false_alarms_are_spikes_far_from_failures() {
        let eq = &fleet()[6];
        let h = machine_history(&plan(), eq, 6);
        assert_eq!(h.false_alarms.len(), h.failures.len() / 4);
        for fa in &h.false_alarms {
            assert!(fa.value > 80.0);
            assert!(h.failures.iter().all(|f| (f.episode.start - fa.at).abs() >= 3 * 3600 - 60));
            let (_, s) = h.readings.iter().find(|(t, _)| *t == fa.at).unwrap();
            assert_eq!(s.temperature, fa.value);
            let (_, next) = h.readings.iter().find(|(t, _)| *t == fa.at + 10).unwrap();
            assert!(next.temperature < 75.0, "the spike is one reading: {next:?}");
        }
    }

    #[test]
    fn bad_plans_name_the_field() {
        let e = HistoryPlan { step_secs: 0, ..plan() }.validate().unwrap_err();
        assert!(e.to_string().starts_with("step_secs = 0"), "{e}");
        let e = HistoryPlan { episode_secs: 10, ..plan() }.validate().unwrap_err();
        assert!(e.to_string().contains("episode_secs"), "{e}");
        assert!(HistoryPlan { to: plan().from, ..plan() }.validate().is_err());
        assert!(plan().validate().is_ok());
    }
}
