//! One channel's online detector: range, pattern novelty and likelihood over its readings.

use serde::{Deserialize, Serialize};

use crate::level::Level;
use crate::likelihood::Likelihood;
use crate::patterns::Patterns;
use crate::range::Range;
use crate::season::Season;
use crate::OnlineConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelDetector {
    range: Range,
    patterns: Patterns,
    likelihood: Likelihood,
    level: Level,
    #[serde(default)]
    season: Season,
    /// Width of a level, set once the range is known (the first `width_after` readings).
    width: Option<f64>,
    learned: u64,
    /// Consecutive readings scored at or above the threshold, up to the current one.
    flagged_run: u32,
    /// The extremes of the alarming readings not learned: they widen the range once the
    /// alarm is over, so a recurring spike is not an anomaly the next time.
    pending: Option<(f64, f64)>,
    /// Sum of the alarming readings not learned (their mean is the level adopted if the alarm
    /// outlasts the freeze).
    #[serde(default)]
    pending_sum: f64,
    last_ts: i64,
}

impl ChannelDetector {
    pub fn new(cfg: &OnlineConfig) -> Self {
        Self {
            range: Range::new(cfg.range_blocks as usize),
            patterns: Patterns::new(cfg.table_bits),
            likelihood: Likelihood::new(cfg.short_window as usize),
            level: Level::new(),
            season: Season::default(),
            width: None,
            learned: 0,
            flagged_run: 0,
            pending: None,
            pending_sum: 0.0,
            last_ts: i64::MIN,
        }
    }

    fn level(&self, value: f64) -> Option<i64> {
        // Far outside any level ever seen, every huge value is the same pattern: novel.
        self.width.map(|w| (value / w).floor().clamp(-1e15, 1e15) as i64)
    }

    /// Outside the recent range by more than the tolerance (any change of a constant channel).
    fn out_of_range(&self, value: f64, cfg: &OnlineConfig) -> bool {
        match self.range.bounds() {
            Some((lo, hi)) if hi > lo => {
                let tolerance = (hi - lo) * cfg.range_tolerance;
                value > hi + tolerance || value < lo - tolerance
            }
            Some((lo, _)) => (value - lo).abs() > 1e-9 * lo.abs().max(1.0),
            None => false,
        }
    }

    /// The score in [0, 1] of `value` at `ts_micros`, from what was learned before it.
    pub fn score(&self, ts_micros: i64, value: f64, cfg: &OnlineConfig) -> f64 {
        if self.learned < cfg.warmup {
            return 0.0;
        }
        if self.out_of_range(value, cfg) {
            return 1.0;
        }
        match self.level(value) {
            Some(level) => self.likelihood.score(self.raw(ts_micros, value, level, cfg), cfg.min_fitted),
            None => 0.0,
        }
    }

    /// The raw surprise of `value` (at `level`): its patterns' novelty, or its drift when larger.
    fn raw(&self, ts_micros: i64, value: f64, level: i64, cfg: &OnlineConfig) -> f64 {
        let mut raw = self.patterns.novelty(level, season(ts_micros, cfg), cfg.familiar_at);
        if cfg.drift_sigmas > 0.0 {
            raw = raw.max(self.level.surprise(value, cfg.drift_fast, cfg.drift_sigmas));
        }
        if cfg.context_strength <= 1.0 {
            let var = self.level.variance();
            raw = raw.max(self.season.surprise(ts_micros, value, var, cfg.context_strength, cfg.context_sigmas));
        }
        raw
    }

    /// Scores `value` (as [`Self::score`]), then learns from it.
    pub fn observe(&mut self, ts_micros: i64, value: f64, cfg: &OnlineConfig) -> f64 {
        let score = self.score(ts_micros, value, cfg);
        self.learn_scored(ts_micros, value, score, cfg);
        score
    }

    fn learn_scored(&mut self, ts_micros: i64, value: f64, score: f64, cfg: &OnlineConfig) {
        // The patterns are sequences in time: a late reading is scored, never learned; nor is
        // one at the time of the last learned (a checkpoint's last reading read again).
        if ts_micros <= self.last_ts || !value.is_finite() {
            return;
        }
        self.last_ts = ts_micros;
        // An anomaly is not learned while it is young: within `freeze_readings` it stays as
        // surprising as when it started; past them it is taken as the new normal.
        if score >= cfg.threshold {
            self.flagged_run = self.flagged_run.saturating_add(1);
            if self.flagged_run <= cfg.freeze_readings {
                let (lo, hi) = self.pending.unwrap_or((value, value));
                self.pending = Some((lo.min(value), hi.max(value)));
                self.pending_sum += value;
                return;
            }
            if cfg.adopt_level && self.flagged_run == cfg.freeze_readings + 1 {
                self.level.adopt((self.pending_sum + value) / f64::from(self.flagged_run));
            }
        } else {
            self.flagged_run = 0;
        }
        self.pending_sum = 0.0;
        if let Some((lo, hi)) = self.pending.take() {
            self.range.include(lo);
            self.range.include(hi);
        }
        self.learned += 1;
        self.range.learn(value, cfg.range_block_len);
        if self.learned >= cfg.width_after {
            if let Some((lo, hi)) = self.range.bounds().filter(|(lo, hi)| hi > lo) {
                // Levels as wide as the range's `levels`-th part; when the range has grown
                // past twice what they were cut for, they are cut again and the patterns,
                // counted in the old levels, start over.
                let width = (hi - lo) / f64::from(cfg.levels.max(1));
                match self.width {
                    None => self.width = Some(width),
                    Some(w) if width > 2.0 * w => {
                        self.width = Some(width);
                        self.patterns = Patterns::new(cfg.table_bits);
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(level) = self.level(value) {
            // Every pattern is novel at first: the first raw scores say nothing of the channel.
            // And a surprise on its way to an alarm (a drift) must not widen the distribution
            // that judges it: only calm readings are fitted, and the surprised stretches that
            // end within `transient_readings` (the channel's usual bursts).
            let calm = (self.learned >= cfg.likelihood_after).then_some(score < cfg.fit_below);
            let raw = self.raw(ts_micros, value, level, cfg);
            self.likelihood.learn(raw, calm, cfg.long_window, cfg.transient_readings);
            self.patterns.learn(level, season(ts_micros, cfg), cfg.decay_every);
        }
        self.level.learn(value, cfg.drift_fast, cfg.long_window);
        self.season.learn(ts_micros, value, self.level.variance());
    }

    /// Bytes of state (heap included).
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.range.heap_bytes()
            + self.patterns.heap_bytes()
            + self.likelihood.heap_bytes()
            + self.season.heap_bytes()
    }
}

/// The bucket of the season `ts_micros` falls in, if seasons are on.
fn season(ts_micros: i64, cfg: &OnlineConfig) -> Option<i64> {
    (cfg.season_micros > 0 && cfg.season_buckets > 0)
        .then(|| ts_micros.rem_euclid(cfg.season_micros) / (cfg.season_micros / i64::from(cfg.season_buckets)).max(1))
}
