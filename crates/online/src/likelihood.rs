//! The anomaly likelihood: how unusual the recent surprise is for this channel.
//!
//! A raw surprise score alone alarms all the time on a noisy channel and never on a quiet one.
//! As in HTM's published post-processing (Ahmad et al. 2017), the mean of the last few raw
//! scores is compared with the long-term distribution of that mean (a normal fitted on an
//! exponentially weighted history): the alarm is the tail probability, so "unusual for this
//! channel" rather than "large". The result is put on HTM's log scale, where 0.5 is a tail
//! probability of 1e-5.

use serde::{Deserialize, Serialize};

/// Floors of the long-term distribution, as in HTM's estimator: a channel whose raw scores sat
/// at zero for a while must not read the first small surprise as a ten-sigma event.
const MEAN_FLOOR: f64 = 0.03;
const VARIANCE_FLOOR: f64 = 0.0003;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    /// The last raw scores (a ring).
    recent: Vec<f32>,
    next: u16,
    /// Raw scores learned (the ring is full once it reaches its length).
    learned: u64,
    mean: f64,
    var: f64,
    /// Short-term means learned into the long-term distribution.
    fitted: u64,
    /// Short-term means of a surprised stretch still under way, fitted once it ends within
    /// the transient length (a burst the channel has now and then), dropped if it lasts
    /// longer (a drift, a new level: it must not widen the distribution that judges it).
    #[serde(default)]
    pending: Vec<f32>,
    /// The current surprised stretch outlasted the transient length.
    #[serde(default)]
    sustained: bool,
}

impl Likelihood {
    pub fn new(short_window: usize) -> Self {
        Self {
            recent: vec![0.0; short_window.max(1)],
            next: 0,
            learned: 0,
            mean: 0.0,
            var: 0.0,
            fitted: 0,
            pending: Vec::new(),
            sustained: false,
        }
    }

    /// Mean of the last raw scores with `raw` in place of the oldest.
    fn short_mean_with(&self, raw: f64) -> f64 {
        let n = self.recent.len();
        let have = (self.learned as usize).min(n);
        if have < n {
            let sum: f64 = self.recent[..have].iter().map(|&x| f64::from(x)).sum::<f64>() + raw;
            return sum / (have + 1) as f64;
        }
        let oldest = self.recent[self.next as usize];
        let sum: f64 = self.recent.iter().map(|&x| f64::from(x)).sum::<f64>() - f64::from(oldest) + raw;
        sum / n as f64
    }

    /// The log-scaled likelihood in [0, 1] of the reading whose raw score is `raw`, or 0 while
    /// fewer than `min_fitted` short-term means have been learned.
    pub fn score(&self, raw: f64, min_fitted: u64) -> f64 {
        if self.fitted < min_fitted {
            return 0.0;
        }
        let avg = self.short_mean_with(raw);
        let mean = self.mean.max(MEAN_FLOOR);
        let std = self.var.max(VARIANCE_FLOOR).sqrt();
        // Only more surprise than usual is anomalous: a stretch that is more predictable than
        // the channel's history is not an alarm.
        let tail = if avg <= mean { 0.5 } else { 0.5 * crate::erfc((avg - mean) / (std * std::f64::consts::SQRT_2)) };
        log_scale(tail)
    }

    /// Learns the raw score of a reading. `calm` says how the reading was judged: `None`
    /// while the channel is too young for its surprise to mean anything (not fitted);
    /// `Some(true)`: calm, its short-term mean enters the long-term distribution (a running
    /// mean and variance over the first `long_window` means, exponentially weighted after),
    /// after those of the surprised stretch it ends if that lasted at most `transient`
    /// readings; `Some(false)`: surprised, held until the stretch ends.
    pub fn learn(&mut self, raw: f64, calm: Option<bool>, long_window: u64, transient: u32) {
        let avg = self.short_mean_with(raw);
        self.recent[self.next as usize] = raw as f32;
        self.next = ((self.next as usize + 1) % self.recent.len()) as u16;
        self.learned += 1;
        if self.learned < self.recent.len() as u64 {
            return;
        }
        match calm {
            None => {}
            Some(true) => {
                // The burst is over and was short: it is the channel's, and enters whole.
                for held in std::mem::take(&mut self.pending) {
                    self.fit(f64::from(held), long_window, false);
                }
                self.sustained = false;
                self.fit(avg, long_window, true);
            }
            Some(false) if self.sustained => {}
            Some(false) if self.pending.len() < transient as usize => self.pending.push(avg as f32),
            Some(false) => {
                self.pending.clear();
                self.sustained = true;
            }
        }
    }

    /// Fits one short-term mean; `winsorise`: as it comes (a calm reading), its step is
    /// bounded, so that a surprise on its way is not explained away by its own first readings.
    /// A burst held until it ended is fitted whole: it is over, and it is what the channel
    /// does now and then; bounded, a burst far in the tail would stay an alarm however often
    /// it came.
    fn fit(&mut self, avg: f64, long_window: u64, winsorise: bool) {
        self.fitted += 1;
        let alpha = 1.0 / (self.fitted.min(long_window.max(1))) as f64;
        let bound = 3.0 * self.var.max(VARIANCE_FLOOR).sqrt();
        let delta = if self.fitted > 1 && winsorise { (avg - self.mean).clamp(-bound, bound) } else { avg - self.mean };
        self.mean += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
    }
}

impl Likelihood {
    /// Bytes of state on the heap.
    pub fn heap_bytes(&self) -> usize {
        (self.recent.len() + self.pending.capacity()) * std::mem::size_of::<f32>()
    }
}

/// HTM's log scale: 0 for a tail probability of 1, 0.5 for 1e-5, 1 for 1e-10 and below.
fn log_scale(tail: f64) -> f64 {
    ((tail + 1e-10).ln() / (1e-10f64).ln()).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usual_level_of_surprise_scores_low_and_a_jump_scores_high() {
        let mut l = Likelihood::new(10);
        for i in 0..2000 {
            l.learn(0.3 + 0.05 * ((i % 7) as f64 / 7.0), Some(true), 5000, 0);
        }
        assert!(l.score(0.32, 100) < 0.1);
        // One fully surprising reading moves the short mean by 0.07: not yet unusual.
        assert!(l.score(1.0, 100) < 0.5);
        for _ in 0..5 {
            l.learn(1.0, Some(true), 5000, 0);
        }
        assert!(l.score(1.0, 100) > 0.5);
    }

    /// Calm raw scores spread over [0, 0.5), and every 200 readings a burst of three fully
    /// surprising ones; each reading judged calm as the detector judges it (score below
    /// 0.25). The scores of the bursts' third readings.
    fn bursts(transient: u32) -> Vec<f64> {
        let mut l = Likelihood::new(10);
        let mut at_bursts = Vec::new();
        let mut x = 7u64;
        for i in 0..6000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let calm = 0.5 * (x >> 11) as f64 / (1u64 << 53) as f64;
            let raw = if i % 200 < 3 { 1.0 } else { calm };
            let score = l.score(raw, 100);
            if i % 200 == 2 && i > 1000 {
                at_bursts.push(score);
            }
            l.learn(raw, Some(score < 0.25), 2000, transient);
        }
        at_bursts
    }

    #[test]
    fn a_burst_the_channel_has_now_and_then_stops_alarming() {
        let alarms = |scores: &[f64]| scores.iter().filter(|&&s| s >= 0.5).count();
        // Each burst, once over, is fitted whole (winsorised, 8 of the 25 would still alarm).
        let fitted = bursts(60);
        assert!(alarms(&fitted) * 10 <= fitted.len(), "the bursts are usual now: {fitted:?}");
        // Fitting calm readings only, most still alarm, however often they came.
        let calm_only = bursts(0);
        assert!(alarms(&calm_only) * 4 >= calm_only.len() * 3, "{calm_only:?}");
    }

    #[test]
    fn a_surprise_that_lasts_past_the_transient_length_is_never_fitted() {
        let mut l = Likelihood::new(10);
        for i in 0..2000 {
            l.learn(0.1 + 0.02 * f64::from(i % 5), Some(true), 2000, 60);
        }
        let before = l.fitted;
        for _ in 0..61 {
            l.learn(0.8, Some(false), 2000, 60);
        }
        l.learn(0.1, Some(true), 2000, 60);
        assert_eq!(l.fitted, before + 1, "only the calm reading that ends the stretch");
        // A shorter stretch is fitted when it ends, in order, before the calm reading.
        for _ in 0..30 {
            l.learn(0.8, Some(false), 2000, 60);
        }
        assert_eq!(l.fitted, before + 1, "held while it lasts");
        l.learn(0.1, Some(true), 2000, 60);
        assert_eq!(l.fitted, before + 32);
        // Readings too young to judge are never fitted.
        l.learn(0.1, None, 2000, 60);
        assert_eq!(l.fitted, before + 32);
    }

    #[test]
    fn the_log_scale_puts_a_tail_of_1e_minus_5_at_one_half() {
        assert!((log_scale(1e-5) - 0.5).abs() < 1e-4);
        assert_eq!(log_scale(1.0), 0.0);
        assert_eq!(log_scale(0.0), 1.0);
    }
}
