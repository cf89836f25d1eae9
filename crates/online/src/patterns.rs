//! Pattern novelty: how often the channel has shown the current short sequence of levels.
//!
//! Values are quantised into levels; the current level alone, the last two, the last three and
//! the level at this time of the season (a bucket of the day: a level usual at night may be
//! novel at noon) are each counted in one hashed table of saturating counters (a sketch: a collision can only
//! make a pattern look more familiar, never less). A pattern seen often is familiar; a new
//! level, a new transition or a new shape is novel. The counts are halved at a fixed rate so
//! that what the channel stopped doing is forgotten and a new regime becomes familiar. This is
//! the role sequence memory plays in HTM and contexts in CAD-OSE, in a few kilobytes and
//! constant time per reading.

use serde::{Deserialize, Serialize};

/// Orders counted: the level, the last two levels, the last three.
pub const ORDERS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patterns {
    counts: Vec<u16>,
    /// The previous levels, most recent first (`None` before there were any).
    previous: [Option<i64>; ORDERS - 1],
    /// Learned since the counts were last halved.
    since_decay: u32,
}

fn mix(h: u64, x: i64) -> u64 {
    (h ^ x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(27)
}

impl Patterns {
    pub fn new(table_bits: u8) -> Self {
        Self { counts: vec![0; 1usize << table_bits.clamp(4, 20)], previous: [None; ORDERS - 1], since_decay: 0 }
    }

    /// Table slots of the patterns ending with `level`: one per order that has enough
    /// history, and the level at this time of the season when there is one.
    fn slots(&self, level: i64, season: Option<i64>) -> [Option<usize>; ORDERS + 1] {
        let mask = self.counts.len() as u64 - 1;
        let slot = |h: u64| ((h ^ (h >> 29)) & mask) as usize;
        let mut out = [None; ORDERS + 1];
        let mut h = mix(0, level);
        out[0] = Some(slot(h));
        for (order, p) in self.previous.iter().enumerate() {
            let Some(p) = p else { break };
            h = mix(h ^ (order as u64 + 1) << 56, *p);
            out[order + 1] = Some(slot(h));
        }
        out[ORDERS] = season.map(|s| slot(mix(mix(0xA5A5 << 48, s), level)));
        out
    }

    /// Novelty in [0, 1] of the patterns ending with `level` (at `season`): the mean over the
    /// patterns of `1 - min(count, familiar) / familiar`; an order without history counts as
    /// novel.
    pub fn novelty(&self, level: i64, season: Option<i64>, familiar_at: u16) -> f64 {
        let full = f64::from(familiar_at.max(1));
        let mut familiar = 0.0;
        for slot in self.slots(level, season).into_iter().flatten() {
            familiar += f64::from(self.counts[slot]).min(full) / full;
        }
        1.0 - familiar / (ORDERS + usize::from(season.is_some())) as f64
    }

    /// Counts the patterns ending with `level` (at `season`), then halves every count each
    /// `decay_every` readings learned.
    pub fn learn(&mut self, level: i64, season: Option<i64>, decay_every: u32) {
        for slot in self.slots(level, season).into_iter().flatten() {
            self.counts[slot] = self.counts[slot].saturating_add(1);
        }
        self.previous.rotate_right(1);
        self.previous[0] = Some(level);
        self.since_decay += 1;
        if self.since_decay >= decay_every.max(1) {
            self.since_decay = 0;
            for c in &mut self.counts {
                *c /= 2;
            }
        }
    }

    /// Bytes of state on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.counts.len() * std::mem::size_of::<u16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_cycle_becomes_familiar_and_a_new_shape_is_novel() {
        let mut p = Patterns::new(12);
        let cycle = [0, 1, 2, 3, 2, 1];
        assert_eq!(p.novelty(0, None, 4), 1.0);
        for i in 0..60 {
            p.learn(cycle[i % cycle.len()], None, 10_000);
        }
        // Next in the cycle after ...2, 1 is 0: every order familiar.
        assert_eq!(p.novelty(0, None, 4), 0.0);
        // A known level after an unknown transition: only the first order is familiar.
        let n = p.novelty(3, None, 4);
        assert!(n > 0.6 && n < 0.7, "{n}");
        assert_eq!(p.novelty(9, None, 4), 1.0);
    }

    #[test]
    fn what_stopped_happening_is_forgotten() {
        let mut p = Patterns::new(10);
        for _ in 0..20 {
            p.learn(5, None, 100);
        }
        assert_eq!(p.novelty(5, None, 4), 0.0);
        for _ in 0..1000 {
            p.learn(7, None, 100);
        }
        assert_eq!(p.novelty(5, None, 4), 1.0);
    }
}
