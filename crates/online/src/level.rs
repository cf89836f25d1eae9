//! Level drift: how far the channel's recent mean has moved from its long-term mean, in
//! long-term standard deviations. A slow drift makes no new pattern fast enough for the
//! novelty to notice it, and stays inside a range that follows it; this does not.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    fast: f64,
    slow: f64,
    var: f64,
    learned: u64,
}

impl Level {
    pub fn new() -> Self {
        Self { fast: 0.0, slow: 0.0, var: 0.0, learned: 0 }
    }

    /// The recent mean's distance from the long-term mean with `value` in, in standard
    /// deviations divided by `sigmas`, at most 1.
    pub fn surprise(&self, value: f64, fast_window: u32, sigmas: f64) -> f64 {
        if self.learned < 2 || self.var <= 0.0 {
            return 0.0;
        }
        let fast = self.fast + (value - self.fast) / f64::from(fast_window.max(1));
        ((fast - self.slow).abs() / self.var.sqrt() / sigmas).min(1.0)
    }

    /// The long-term variance of the values.
    pub fn variance(&self) -> f64 {
        self.var
    }

    /// Takes `level` as both the recent and the long-term mean: the channel has moved to a
    /// new level that is now normal, and its distance from the old one is no longer news.
    pub fn adopt(&mut self, level: f64) {
        (self.fast, self.slow) = (level, level);
    }

    pub fn learn(&mut self, value: f64, fast_window: u32, slow_window: u64) {
        self.learned += 1;
        if self.learned == 1 {
            (self.fast, self.slow) = (value, value);
            return;
        }
        self.fast += (value - self.fast) / f64::from(fast_window.max(1));
        let alpha = 1.0 / (self.learned.min(slow_window.max(1))) as f64;
        let delta = value - self.slow;
        self.slow += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
    }
}
