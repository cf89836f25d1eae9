//! What becomes of a candidate's alarms after the normal-behaviour model: combined with the
//! online detector's verdict on the same row, then filtered by a persistence rule. Both are
//! causal, as in a stream: row `i`'s alarm depends on rows up to `i`, never on a later one.

use proact_online::{EquipmentDetector, OnlineConfig};

/// How the trained model's alarm and the online detector's are combined on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(super) enum Combine {
    /// The trained model alone (the online detector is not consulted).
    ModelOnly,
    /// An alarm when either alarms.
    Either,
    /// An alarm when both alarm.
    Both,
}

impl Combine {
    /// Whether the online detector's verdict counts at all.
    pub fn uses_online(self) -> bool {
        self != Combine::ModelOnly
    }

    fn apply(self, model: bool, online: bool) -> bool {
        match self {
            Combine::ModelOnly => model,
            Combine::Either => model || online,
            Combine::Both => model && online,
        }
    }
}

impl std::fmt::Display for Combine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Combine::ModelOnly => "model alone",
            Combine::Either => "model or online",
            Combine::Both => "model and online",
        })
    }
}

/// A row alarms when at least `k` of the last `n` rows (itself included) alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Persist {
    pub k: usize,
    pub n: usize,
}

impl Persist {
    /// 1 of 1: every alarm stands alone.
    pub const NONE: Persist = Persist { k: 1, n: 1 };

    /// The rule over a whole series of raw alarms, in one pass (a running count of the last
    /// `n`).
    pub fn apply(self, raw: &[bool]) -> Vec<bool> {
        let n = self.n.max(1);
        let mut count = 0usize;
        raw.iter()
            .enumerate()
            .map(|(i, &a)| {
                count += usize::from(a);
                if i >= n {
                    count -= usize::from(raw[i - n]);
                }
                count >= self.k
            })
            .collect()
    }
}

impl std::fmt::Display for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Persist::NONE {
            f.write_str("no persistence")
        } else {
            write!(f, "{} of the last {} rows", self.k, self.n)
        }
    }
}

/// The online detector's alarm on every row of one series (`values` row-major, `channels` per
/// row; only the channels in `keep` are given to it). Each row is scored from the rows before
/// it, then learned, so the verdict on row `i` never saw row `i` or a later one.
pub(super) fn online_alarms(
    ts_ms: &[i64],
    values: &[f64],
    channels: usize,
    keep: &[usize],
    cfg: &OnlineConfig,
) -> Vec<bool> {
    let mut detector = EquipmentDetector::default();
    let mut row = vec![0.0; keep.len()];
    ts_ms
        .iter()
        .enumerate()
        .map(|(r, &ts)| {
            for (x, &c) in row.iter_mut().zip(keep) {
                *x = values[r * channels + c];
            }
            detector.observe(ts.saturating_mul(1000), &row, cfg).score >= cfg.threshold
        })
        .collect()
}

/// [`online_alarms`] when one of `combines` consults them; otherwise no row alarms (and the
/// detector is not run: the trained model alone never reads its verdict).
pub(super) fn online_alarms_for(
    combines: &[Combine],
    ts_ms: &[i64],
    values: &[f64],
    channels: usize,
    keep: &[usize],
    cfg: &OnlineConfig,
) -> Vec<bool> {
    if combines.iter().any(|c| c.uses_online()) {
        online_alarms(ts_ms, values, channels, keep, cfg)
    } else {
        vec![false; ts_ms.len()]
    }
}

/// Every row's final alarm: the model's (distance at or above `threshold`) combined with the
/// online detector's, then the persistence rule.
pub(super) fn alarms(
    distances: &[f64],
    threshold: f64,
    online: &[bool],
    combine: Combine,
    persist: Persist,
) -> Vec<bool> {
    let raw: Vec<bool> = distances.iter().zip(online).map(|(&d, &o)| combine.apply(d >= threshold, o)).collect();
    if persist == Persist::NONE {
        raw
    } else {
        persist.apply(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn k_of_n_counts_the_row_and_the_ones_before_it() {
        let p = Persist { k: 2, n: 3 };
        assert_eq!(p.apply(&bits("1010011000")), bits("0010001100"));
        assert_eq!(Persist::NONE.apply(&bits("0110")), bits("0110"));
        // A majority of 3 of 5 drops a lone alarm and fills a one-row gap.
        let m = Persist { k: 3, n: 5 };
        assert_eq!(m.apply(&bits("0010000000")), bits("0000000000"));
        assert_eq!(m.apply(&bits("1110111000")), bits("0011111110"));
    }

    #[test]
    fn persistence_never_looks_ahead() {
        let raw = bits("0110101110010011101");
        for p in [Persist { k: 2, n: 3 }, Persist { k: 3, n: 5 }, Persist { k: 8, n: 15 }] {
            let whole = p.apply(&raw);
            for i in 0..raw.len() {
                // What row i gets from the rows up to it is what it gets from the whole series,
                // whatever comes after.
                let mut flipped = raw.clone();
                for b in &mut flipped[i + 1..] {
                    *b = !*b;
                }
                assert_eq!(p.apply(&raw[..=i]), whole[..=i], "{p} at {i}");
                assert_eq!(p.apply(&flipped)[..=i], whole[..=i], "{p} at {i}");
            }
        }
    }

    #[test]
    fn combination_is_row_by_row() {
        let d = [0.5, 2.0, 0.5, 2.0];
        let on = bits("0011");
        assert_eq!(alarms(&d, 1.0, &on, Combine::ModelOnly, Persist::NONE), bits("0101"));
        assert_eq!(alarms(&d, 1.0, &on, Combine::Either, Persist::NONE), bits("0111"));
        assert_eq!(alarms(&d, 1.0, &on, Combine::Both, Persist::NONE), bits("0001"));
        assert_eq!(alarms(&d, 1.0, &on, Combine::Either, Persist { k: 2, n: 2 }), bits("0011"));
    }

    #[test]
    fn the_online_verdict_on_a_row_never_saw_it_or_a_later_one() {
        let cfg = OnlineConfig::default();
        let rows = 600;
        let ts: Vec<i64> = (0..rows as i64).map(|i| 1_600_000_000_000 + 1000 * i).collect();
        // Two channels of a smooth cycle; the second steps far away at row 500.
        let mut values = Vec::new();
        for i in 0..rows {
            let x = (i as f64 / 7.0).sin();
            values.push(x);
            values.push(if i < 500 { x.cos() } else { 50.0 });
        }
        let both = online_alarms(&ts, &values, 2, &[0, 1], &cfg);
        assert!(both[500], "the step is an alarm on its own row");
        // Cut after row 500: the verdicts up to it are the same.
        let cut = online_alarms(&ts[..501], &values[..1002], 2, &[0, 1], &cfg);
        assert_eq!(cut, both[..501]);
        // A channel left out is not seen at all: the first channel alone, as its own series.
        let first: Vec<f64> = values.iter().step_by(2).copied().collect();
        assert_eq!(online_alarms(&ts, &values, 2, &[0], &cfg), online_alarms(&ts, &first, 1, &[0], &cfg));
    }
}
