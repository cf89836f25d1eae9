//! The channel's recent range: minimum and maximum over the last readings, kept per block so
//! that old extremes leave it after a bounded time without storing the readings themselves.

use serde::{Deserialize, Serialize};

/// A block without readings; finite, so that the state serialises to JSON (which has no
/// infinities).
const EMPTY: (f64, f64) = (f64::MAX, f64::MIN);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// (min, max) of each block, oldest overwritten first; the block at `current` is filling.
    blocks: Vec<(f64, f64)>,
    current: u16,
    in_current: u32,
    /// Blocks holding readings (the ring is full once it reaches its length).
    filled: u16,
}

impl Range {
    pub fn new(blocks: usize) -> Self {
        let blocks = blocks.clamp(1, u16::MAX as usize);
        Self { blocks: vec![EMPTY; blocks], current: 0, in_current: 0, filled: 0 }
    }

    /// (min, max) of the readings learned over the last `blocks × block_len` or so; `None`
    /// before the first.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        let (lo, hi) = self.blocks[..self.filled as usize]
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(a, b)| (lo.min(a), hi.max(b)));
        (lo <= hi).then_some((lo, hi))
    }

    /// Widens the block filling now to `value` without counting it as a reading.
    pub fn include(&mut self, value: f64) {
        let b = &mut self.blocks[self.current as usize];
        *b = (b.0.min(value), b.1.max(value));
        self.filled = self.filled.max(self.current + 1);
    }

    pub fn learn(&mut self, value: f64, block_len: u32) {
        if self.in_current >= block_len.max(1) {
            self.current = ((self.current as usize + 1) % self.blocks.len()) as u16;
            self.blocks[self.current as usize] = EMPTY;
            self.in_current = 0;
        }
        let b = &mut self.blocks[self.current as usize];
        *b = (b.0.min(value), b.1.max(value));
        self.in_current += 1;
        self.filled = self.filled.max(self.current + 1);
    }

    /// Bytes of state on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<(f64, f64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extreme_leaves_the_range_after_the_ring_turned() {
        let mut r = Range::new(4);
        assert_eq!(r.bounds(), None);
        r.learn(100.0, 10);
        for _ in 0..39 {
            r.learn(1.0, 10);
        }
        assert_eq!(r.bounds(), Some((1.0, 100.0)));
        r.learn(2.0, 10);
        assert_eq!(r.bounds(), Some((1.0, 2.0)));
    }
}
