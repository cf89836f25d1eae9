//! Online anomaly detection, per equipment and channel: every reading is scored against what
//! the channel did before it, then learned from. It sits in the detector's scoring loop
//! (`proact-anomaly-detector`'s engine, live and in `replay`), beside the weekly-trained
//! models, and needs no training run: it adapts to drift, to a new level after a while and to
//! recurring shapes (daily cycles, duty cycles), while an anomaly it sees is not learned while
//! it is young.
//!
//! Per channel ([`ChannelDetector`]):
//! - **range**: a value outside the recent minimum–maximum by more than a tolerance scores 1
//!   (a spike, a flat channel that moves);
//! - **pattern novelty**: the value is quantised into levels; how often the current level, the
//!   last two and the last three were seen gives a raw surprise in [0, 1];
//! - **contextual surprise**: the distance of the value from the channel's usual value at this
//!   phase of its period (half hour of the day, hour of the week), when its learned history
//!   shows that period: a normal value at an abnormal time;
//! - **anomaly likelihood**: the mean of the last raw surprises against its long-term
//!   distribution, a tail probability on a log scale (HTM's post-processing), so the score
//!   means "unusual for this channel", whatever its noise; the distribution learns the calm
//!   readings and the channel's usual bursts, never a lasting surprise (a drift).
//!
//! The score of an equipment is the highest of its channels'. Its state is a few kilobytes
//! per channel (measured by [`EquipmentDetector::size_bytes`]), bounded whatever the history
//! (fixed but for a surprised stretch held for the likelihood, at most `transient_readings`
//! short-term means), and serialisable, so it can be checkpointed and resumed.
//!
//! Scoring never changes state and never sees a reading before it is scored: `score` takes
//! `&self`, and [`EquipmentDetector::observe`] is `score` then `learn`.

#![forbid(unsafe_code)]

mod channel;
mod level;
mod likelihood;
mod patterns;
mod range;
mod season;

pub use channel::ChannelDetector;
use serde::{Deserialize, Serialize};

/// Parameters of the online detectors. They count readings, not seconds, so one setting
/// serves a sensor sampled every second and a metric sampled every five minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineConfig {
    /// A score at or above this raises an alarm (0.5: a tail probability of 1e-5).
    pub threshold: f64,
    /// Readings learned before any score but 0.
    pub warmup: u64,
    /// Readings learned before the width of a level is set from their range.
    pub width_after: u64,
    /// Levels across the range seen in the first `width_after` readings.
    pub levels: u32,
    /// Fraction of the range a value may lie outside it before it scores 1.
    pub range_tolerance: f64,
    /// The range is kept over `range_blocks × range_block_len` readings.
    pub range_blocks: u32,
    pub range_block_len: u32,
    /// log2 of the pattern table's slots.
    pub table_bits: u8,
    /// A pattern seen this many times is fully familiar (less often, partly novel).
    pub familiar_at: u16,
    /// Pattern counts halve every this many readings learned.
    pub decay_every: u32,
    /// Raw surprises averaged into the short-term mean.
    pub short_window: u32,
    /// Effective length of the long-term distribution of the short-term means.
    pub long_window: u64,
    /// Readings learned before their raw scores enter the long-term distribution.
    pub likelihood_after: u64,
    /// Short-term means learned into it before the likelihood scores.
    pub min_fitted: u64,
    /// Only readings scoring below this are fitted into the long-term distribution at once.
    pub fit_below: f64,
    /// A stretch of readings scoring at or above `fit_below` that ends within this many
    /// readings (a burst) is fitted once it ends; a longer one (a drift) never is. 0: never.
    pub transient_readings: u32,
    /// Consecutive alarming readings not learned; the next ones are (the new normal).
    pub freeze_readings: u32,
    /// A recent mean (over about `drift_fast` readings) this many long-term standard
    /// deviations from the long-term mean is a full surprise; 0 turns the drift measure off.
    pub drift_sigmas: f64,
    pub drift_fast: u32,
    /// The season's length (µs of event time; 0: no season) and its buckets: a level is also
    /// counted as a pattern of its bucket (the hour of the day by default).
    pub season_micros: i64,
    pub season_buckets: u32,
    /// The contextual surprise judges when a period (day, week) explains at least this share
    /// of the channel's variance (above 1: off); a value this many of its bucket's standard
    /// deviations from the bucket's mean is a full surprise.
    pub context_strength: f64,
    pub context_sigmas: f64,
    /// When an alarm has lasted past `freeze_readings`, its level is adopted at once as the
    /// long-term one (rather than over `long_window` readings). Off by default: on NAB's
    /// tuning part a burst that outlasts the freeze is more often transient than a new level,
    /// and adopting it makes its end a new alarm (EVAL.md).
    pub adopt_level: bool,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            warmup: 64,
            width_after: 64,
            levels: 20,
            range_tolerance: 0.1,
            range_blocks: 64,
            range_block_len: 64,
            table_bits: 12,
            familiar_at: 4,
            decay_every: 4096,
            short_window: 10,
            long_window: 2000,
            likelihood_after: 200,
            min_fitted: 100,
            fit_below: 0.25,
            transient_readings: 60,
            freeze_readings: 10,
            drift_sigmas: 3.0,
            drift_fast: 20,
            season_micros: 86_400_000_000,
            season_buckets: 24,
            context_strength: 0.5,
            context_sigmas: 4.0,
            adopt_level: false,
        }
    }
}

/// The online detectors of one equipment, one per channel in the order the caller gives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EquipmentDetector {
    channels: Vec<ChannelDetector>,
}

/// An equipment's score and the channel that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub score: f64,
    /// Index of the highest-scoring channel (`None` when no channel has a value).
    pub channel: Option<usize>,
}

impl EquipmentDetector {
    /// Scores one reading's channel values (NaN: the channel is absent from this reading).
    pub fn score(&self, ts_micros: i64, values: &[f64], cfg: &OnlineConfig) -> Verdict {
        let mut v = Verdict { score: 0.0, channel: None };
        for (i, &x) in values.iter().enumerate() {
            if x.is_finite() {
                let s = self.channels.get(i).map_or(0.0, |c| c.score(ts_micros, x, cfg));
                if v.channel.is_none() || s > v.score {
                    v = Verdict { score: s, channel: Some(i) };
                }
            }
        }
        v
    }

    /// Learns from one reading (scoring it first for the freeze of young anomalies).
    pub fn learn(&mut self, ts_micros: i64, values: &[f64], cfg: &OnlineConfig) {
        self.observe(ts_micros, values, cfg);
    }

    /// [`Self::score`] then [`Self::learn`], computing each channel's score once.
    pub fn observe(&mut self, ts_micros: i64, values: &[f64], cfg: &OnlineConfig) -> Verdict {
        if self.channels.len() < values.len() {
            self.channels.resize_with(values.len(), || ChannelDetector::new(cfg));
        }
        let mut v = Verdict { score: 0.0, channel: None };
        for (i, (&x, c)) in values.iter().zip(&mut self.channels).enumerate() {
            if x.is_finite() {
                let s = c.observe(ts_micros, x, cfg);
                if v.channel.is_none() || s > v.score {
                    v = Verdict { score: s, channel: Some(i) };
                }
            }
        }
        v
    }

    /// Bytes of state, heap included.
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.channels.iter().map(ChannelDetector::size_bytes).sum::<usize>()
    }
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere), enough for tail probabilities down to 1e-10.
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests;
