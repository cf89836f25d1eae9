//! Contextual expectation: the channel's usual value at this phase of its period (this half
//! hour of the day, this hour of the week), learned online, and how far a reading is from it.
//!
//! A value can be normal in itself and abnormal at its time: a daily peak that does not come,
//! a night level at noon. The level patterns see that only weakly (a known level is familiar
//! whatever the hour), so each candidate period keeps a profile: per bucket of its phase, a
//! running mean and variance of the values. Whether the channel has that period at all is read
//! from the learned history, never assumed: the share of the channel's variance the bucket
//! means explain (an R² over the buckets seen). A channel without a period (noise, a load with
//! no daily shape) has a small share and gets no contextual surprise; the period explaining
//! most of it, if it explains at least `season_strength`, judges.

use serde::{Deserialize, Serialize};

/// Candidate periods, µs of event time, and buckets per period: the day by half hours, the
/// week by hours.
const PERIODS: [(i64, usize); 2] = [(86_400_000_000, 48), (7 * 86_400_000_000, 168)];

/// Per-bucket memory, in readings of that bucket: old days fade so a slowly changing daily
/// shape is followed.
const BUCKET_MEMORY: f32 = 32.0;

/// Readings a bucket needs before it judges (two visits of the bucket at 5-minute sampling
/// and half-hour buckets; more at a faster sampling).
const BUCKET_READY: u16 = 8;

/// Readings learned between two computations of a period's strength.
const STRENGTH_EVERY: u32 = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    /// Per bucket: readings learned (saturating), running mean and variance.
    count: Vec<u16>,
    mean: Vec<f32>,
    var: Vec<f32>,
    /// Time (µs) of the first reading learned.
    first_ts: i64,
    /// The period's strength (see [`Profile::strength`]), recomputed every
    /// `STRENGTH_EVERY` readings learned: it moves slowly, and scoring stays O(1).
    strength: f32,
}

impl Profile {
    fn new(buckets: usize) -> Self {
        Self {
            count: vec![0; buckets],
            mean: vec![0.0; buckets],
            var: vec![0.0; buckets],
            first_ts: i64::MIN,
            strength: 0.0,
        }
    }

    fn bucket(&self, ts_micros: i64, period: i64) -> usize {
        let n = self.count.len() as i64;
        (ts_micros.rem_euclid(period) / (period / n).max(1)) as usize
    }

    /// Share of `total_var` the bucket means explain: 1 − mean within-bucket variance ÷ total
    /// variance, over the buckets ready; 0 before two periods were seen.
    fn strength(&self, ts_micros: i64, period: i64, total_var: f64) -> f64 {
        if self.first_ts == i64::MIN || ts_micros - self.first_ts < 2 * period || total_var <= 0.0 {
            return 0.0;
        }
        let (mut within, mut ready) = (0.0, 0usize);
        for (c, v) in self.count.iter().zip(&self.var) {
            if *c >= BUCKET_READY {
                within += f64::from(*v);
                ready += 1;
            }
        }
        // A period most of whose buckets are unknown (irregular or sparse sampling) says nothing.
        if ready * 4 < self.count.len() * 3 {
            return 0.0;
        }
        (1.0 - within / ready as f64 / total_var).max(0.0)
    }

    fn learn(&mut self, ts_micros: i64, period: i64, value: f64) {
        if self.first_ts == i64::MIN {
            self.first_ts = ts_micros;
        }
        let b = self.bucket(ts_micros, period);
        self.count[b] = self.count[b].saturating_add(1);
        let alpha = 1.0 / f32::from(self.count[b]).min(BUCKET_MEMORY);
        let delta = value as f32 - self.mean[b];
        self.mean[b] += alpha * delta;
        self.var[b] = (1.0 - alpha) * (self.var[b] + alpha * delta * delta);
    }

    fn heap_bytes(&self) -> usize {
        self.count.len() * (std::mem::size_of::<u16>() + 2 * std::mem::size_of::<f32>())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Season {
    profiles: Vec<Profile>,
    since_strength: u32,
}

impl Default for Season {
    fn default() -> Self {
        Self { profiles: PERIODS.iter().map(|&(_, n)| Profile::new(n)).collect(), since_strength: 0 }
    }
}

impl Season {
    /// How far `value` is from the usual value at this phase of the channel's strongest
    /// period, in that bucket's standard deviations divided by `sigmas`, at most 1; 0 when no
    /// period explains `strength` of the channel's variance `total_var`.
    pub fn surprise(&self, ts_micros: i64, value: f64, total_var: f64, strength: f64, sigmas: f64) -> f64 {
        let best = self
            .profiles
            .iter()
            .zip(PERIODS)
            .map(|(p, (period, _))| (f64::from(p.strength), p, period))
            .filter(|(s, _, _)| *s >= strength)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, p, period)) = best else { return 0.0 };
        let b = p.bucket(ts_micros, period);
        if p.count[b] < BUCKET_READY {
            return 0.0;
        }
        // A bucket that was flat so far must not turn the tiniest move into a full surprise:
        // its spread is at least a small share of the channel's.
        let spread = f64::from(p.var[b]).max(0.01 * total_var).sqrt();
        ((value - f64::from(p.mean[b])).abs() / spread / sigmas).min(1.0)
    }

    /// Learns `value` at `ts_micros`; `total_var` is the channel's variance, against which
    /// the periods' strengths are measured.
    pub fn learn(&mut self, ts_micros: i64, value: f64, total_var: f64) {
        self.since_strength += 1;
        let refresh = self.since_strength >= STRENGTH_EVERY;
        if refresh {
            self.since_strength = 0;
        }
        for (p, (period, _)) in self.profiles.iter_mut().zip(PERIODS) {
            p.learn(ts_micros, period, value);
            if refresh {
                p.strength = p.strength(ts_micros, period, total_var) as f32;
            }
        }
    }

    /// Bytes of state on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.profiles.iter().map(Profile::heap_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;
    const STEP: i64 = 300_000_000;

    fn daily(ts: i64) -> f64 {
        10.0 * (ts as f64 / (24 * HOUR) as f64 * std::f64::consts::TAU).sin()
    }

    #[test]
    fn a_daily_shape_is_found_and_a_normal_value_at_the_wrong_hour_is_a_surprise() {
        let mut s = Season::default();
        let total_var = 50.0;
        for i in 0..(3 * 288) {
            let ts = i * STEP;
            s.learn(ts, daily(ts) + if i % 2 == 0 { 0.3 } else { -0.3 }, total_var);
        }
        let ts = 3 * 288 * STEP + 6 * HOUR; // the daily peak
        assert!(s.surprise(ts, daily(ts), total_var, 0.5, 4.0) < 0.2);
        // The night's level at the peak's hour: a value seen every day, at the wrong time.
        assert_eq!(s.surprise(ts, -10.0, total_var, 0.5, 4.0), 1.0);
    }

    #[test]
    fn a_channel_without_a_period_gets_no_contextual_surprise() {
        let mut s = Season::default();
        let mut x = 1u64;
        for i in 0..(4 * 288) {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            s.learn(i * STEP, (x >> 40) as f64 / (1u64 << 24) as f64, 1.0 / 12.0);
        }
        // Uniform noise on [0, 1): variance 1/12, no share of it explained by the hour.
        assert_eq!(s.surprise(4 * 288 * STEP, 0.99, 1.0 / 12.0, 0.5, 4.0), 0.0);
    }

    #[test]
    fn nothing_judges_before_two_periods_were_seen() {
        let mut s = Season::default();
        for i in 0..288 {
            s.learn(i * STEP, daily(i * STEP), 50.0);
        }
        assert_eq!(s.surprise(288 * STEP + 6 * HOUR, -10.0, 50.0, 0.5, 4.0), 0.0);
    }
}
