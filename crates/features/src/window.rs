//! Per-equipment rolling window on event time with O(1) amortised updates.

use std::collections::VecDeque;

use crate::{FeatureError, FeatureSchema, FeatureVector, STATS};

/// Bounds of a window and how late an event may arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Samples older than `newest - max_span_ms` (event time) leave the window.
    pub max_span_ms: i64,
    /// Hard cap on retained samples, so memory is bounded whatever the sampling rate.
    pub max_len: usize,
    /// An event older than the newest seen minus this is not placed ([`Placement::TooLate`]).
    pub tolerance_ms: i64,
}

impl Default for WindowConfig {
    /// One minute of history at up to 10 Hz, 5 s of allowed lateness.
    fn default() -> Self {
        WindowConfig { max_span_ms: 60_000, max_len: 600, tolerance_ms: 5_000 }
    }
}

/// What [`Window::push`] did with an event. Only `Appended` and `Reordered` changed the window.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Newest so far: appended at the end.
    Appended,
    /// Out of order but within tolerance: inserted at its event-time position.
    Reordered { behind_ms: i64 },
    /// A sample with the same event time is already in the window (at-least-once redelivery):
    /// ignored, so a replayed event never counts twice.
    Duplicate,
    /// Older than the tolerance (or than everything a full window holds): not placed. The
    /// caller counts these; they never reach the features.
    TooLate { behind_ms: i64 },
    /// A value was missing (non-finite) and there was no earlier sample to carry it from.
    Incomplete,
}

impl Placement {
    /// True when the event is now part of the window.
    pub fn accepted(self) -> bool {
        matches!(self, Placement::Appended | Placement::Reordered { .. })
    }
}

/// Counters of what a window refused, for the detector's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub reordered: u64,
    pub too_late: u64,
    pub duplicates: u64,
    pub incomplete: u64,
}

/// Rolling window over one equipment's telemetry, ordered by event time.
///
/// Running sums (centred on an anchor to keep precision) give mean, std and slope in O(1);
/// monotonic deques give min/max in O(1) amortised for in-order events. An out-of-order insert
/// rebuilds the deques (O(len)), which is fine because late events are rare. All buffers are
/// sized at construction, so pushing never allocates.
#[derive(Debug, Clone)]
pub struct Window {
    cfg: WindowConfig,
    c: usize,
    ts: VecDeque<i64>,
    /// Row-major values, `c` per sample, in the same order as `ts`.
    vals: VecDeque<f64>,
    watermark: Option<i64>,
    // Running sums of t (seconds since `t0`) and x - x0 per channel. Centring keeps the
    // variance formula E[x²] - E[x]² from cancelling catastrophically on large offsets.
    t0: i64,
    x0: Vec<f64>,
    st: f64,
    stt: f64,
    sx: Vec<f64>,
    sxx: Vec<f64>,
    stx: Vec<f64>,
    minq: Vec<VecDeque<(i64, f64)>>,
    maxq: Vec<VecDeque<(i64, f64)>>,
    /// Updates since the sums were last recomputed; bounds floating-point drift.
    ops: usize,
    scratch: Vec<f64>,
    stats: WindowStats,
}

impl Window {
    /// An empty window for `schema`'s channels.
    pub fn new(schema: &FeatureSchema, cfg: WindowConfig) -> Self {
        Self::with_channels(schema.channels().len(), cfg)
    }

    /// An empty window over `channels` values per sample.
    pub fn with_channels(channels: usize, cfg: WindowConfig) -> Self {
        let cfg = WindowConfig { max_len: cfg.max_len.max(1), ..cfg };
        let cap = cfg.max_len + 1;
        Window {
            cfg,
            c: channels,
            ts: VecDeque::with_capacity(cap),
            vals: VecDeque::with_capacity(cap * channels),
            watermark: None,
            t0: 0,
            x0: vec![0.0; channels],
            st: 0.0,
            stt: 0.0,
            sx: vec![0.0; channels],
            sxx: vec![0.0; channels],
            stx: vec![0.0; channels],
            minq: (0..channels).map(|_| VecDeque::with_capacity(cap)).collect(),
            maxq: (0..channels).map(|_| VecDeque::with_capacity(cap)).collect(),
            ops: 0,
            scratch: vec![0.0; channels],
            stats: WindowStats::default(),
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// Samples currently held (never more than `max_len`).
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Newest event time seen (ms), including events that were later evicted.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Oldest and newest event times held.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        Some((*self.ts.front()?, *self.ts.back()?))
    }

    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Places one event (`ts_ms` event time in ms, `values` in schema channel order).
    ///
    /// A non-finite value means "not measured in this message": the previous sample's value is
    /// carried forward so a sensor that sometimes omits a field does not poison the sums.
    pub fn push(&mut self, ts_ms: i64, values: &[f64]) -> Result<Placement, FeatureError> {
        if values.len() != self.c {
            return Err(FeatureError::ChannelCount { expected: self.c, got: values.len() });
        }
        if let Some(wm) = self.watermark {
            if ts_ms < wm.saturating_sub(self.cfg.tolerance_ms) {
                self.stats.too_late += 1;
                return Ok(Placement::TooLate { behind_ms: wm.saturating_sub(ts_ms) });
            }
        }
        let len = self.ts.len();
        let pos = match self.ts.back() {
            None => 0,
            Some(&back) if ts_ms > back => len,
            Some(_) => match self.ts.binary_search(&ts_ms) {
                Ok(_) => {
                    self.stats.duplicates += 1;
                    return Ok(Placement::Duplicate);
                }
                Err(p) => p,
            },
        };
        if pos == 0 && len > 0 {
            let back = self.ts[len - 1];
            // It would be evicted at once (older than the span, or the oldest of a full window).
            if back - ts_ms > self.cfg.max_span_ms || len >= self.cfg.max_len {
                self.stats.too_late += 1;
                return Ok(Placement::TooLate { behind_ms: back - ts_ms });
            }
        }
        // Fill missing values from the neighbouring sample (the one before, else the one after).
        let donor = if pos > 0 {
            Some(pos - 1)
        } else if len > 0 {
            Some(0)
        } else {
            None
        };
        for (ch, &v) in values.iter().enumerate() {
            self.scratch[ch] = if v.is_finite() {
                v
            } else {
                match donor {
                    Some(r) => self.vals[r * self.c + ch],
                    None => {
                        self.stats.incomplete += 1;
                        return Ok(Placement::Incomplete);
                    }
                }
            };
        }
        if len == 0 {
            self.t0 = ts_ms;
            self.x0.copy_from_slice(&self.scratch);
            self.ops = 0;
        }

        let appended = pos == len;
        if appended {
            self.ts.push_back(ts_ms);
            for ch in 0..self.c {
                let v = self.scratch[ch];
                self.vals.push_back(v);
                push_mono(&mut self.minq[ch], ts_ms, v, |back, v| back >= v);
                push_mono(&mut self.maxq[ch], ts_ms, v, |back, v| back <= v);
            }
        } else {
            self.ts.insert(pos, ts_ms);
            for ch in 0..self.c {
                self.vals.insert(pos * self.c + ch, self.scratch[ch]);
            }
        }
        self.add_sums(ts_ms, 1.0);
        self.watermark = Some(self.watermark.map_or(ts_ms, |w| w.max(ts_ms)));

        self.evict();
        if !appended {
            self.rebuild_extrema();
            self.stats.reordered += 1;
        }
        self.ops += 1;
        if self.ops > 2 * self.cfg.max_len + 16 {
            self.recompute_sums();
        }
        let newest = self.ts[self.ts.len() - 1];
        Ok(if appended { Placement::Appended } else { Placement::Reordered { behind_ms: newest - ts_ms } })
    }

    /// Drops every sample; the watermark is kept so late events stay late after a reset.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.vals.clear();
        self.minq.iter_mut().for_each(VecDeque::clear);
        self.maxq.iter_mut().for_each(VecDeque::clear);
        self.recompute_sums();
    }

    fn evict(&mut self) {
        loop {
            let (Some(&front), Some(&back)) = (self.ts.front(), self.ts.back()) else { return };
            if self.ts.len() <= self.cfg.max_len && back - front <= self.cfg.max_span_ms {
                return;
            }
            for ch in 0..self.c {
                self.scratch[ch] = self.vals[ch];
            }
            self.add_sums(front, -1.0);
            self.ts.pop_front();
            for ch in 0..self.c {
                self.vals.pop_front();
                if self.minq[ch].front().is_some_and(|&(t, _)| t == front) {
                    self.minq[ch].pop_front();
                }
                if self.maxq[ch].front().is_some_and(|&(t, _)| t == front) {
                    self.maxq[ch].pop_front();
                }
            }
        }
    }

    /// Adds (`sign` = 1) or removes (-1) the sample in `scratch` at time `ts_ms`.
    fn add_sums(&mut self, ts_ms: i64, sign: f64) {
        let t = (ts_ms - self.t0) as f64 / 1000.0;
        self.st += sign * t;
        self.stt += sign * t * t;
        for ch in 0..self.c {
            let x = self.scratch[ch] - self.x0[ch];
            self.sx[ch] += sign * x;
            self.sxx[ch] += sign * x * x;
            self.stx[ch] += sign * t * x;
        }
    }

    /// Re-anchors on the oldest sample and sums from scratch; amortised O(1) because it runs
    /// once every ~2·max_len updates.
    fn recompute_sums(&mut self) {
        self.ops = 0;
        self.st = 0.0;
        self.stt = 0.0;
        self.sx.iter_mut().for_each(|v| *v = 0.0);
        self.sxx.iter_mut().for_each(|v| *v = 0.0);
        self.stx.iter_mut().for_each(|v| *v = 0.0);
        let Some(&t0) = self.ts.front() else { return };
        self.t0 = t0;
        for ch in 0..self.c {
            self.x0[ch] = self.vals[ch];
        }
        for (i, &ts) in self.ts.iter().enumerate() {
            let t = (ts - self.t0) as f64 / 1000.0;
            self.st += t;
            self.stt += t * t;
            for ch in 0..self.c {
                let x = self.vals[i * self.c + ch] - self.x0[ch];
                self.sx[ch] += x;
                self.sxx[ch] += x * x;
                self.stx[ch] += t * x;
            }
        }
    }

    fn rebuild_extrema(&mut self) {
        for ch in 0..self.c {
            self.minq[ch].clear();
            self.maxq[ch].clear();
            for (i, &ts) in self.ts.iter().enumerate() {
                let v = self.vals[i * self.c + ch];
                push_mono(&mut self.minq[ch], ts, v, |back, v| back >= v);
                push_mono(&mut self.maxq[ch], ts, v, |back, v| back <= v);
            }
        }
    }

    /// Writes the features of the current window into `out` (resized once to the schema
    /// length, then reused: no allocation per event).
    pub fn features_into(&self, out: &mut FeatureVector) -> Result<(), FeatureError> {
        let n_feat = self.c * STATS.len();
        if out.values.len() != n_feat {
            out.values.resize(n_feat, 0.0);
        }
        self.write_features(&mut out.values)
    }

    /// Same as [`Window::features_into`] into a plain slice of `channels × STATS.len()` values.
    pub fn write_features(&self, out: &mut [f64]) -> Result<(), FeatureError> {
        let n_feat = self.c * STATS.len();
        if out.len() != n_feat {
            return Err(FeatureError::ChannelCount { expected: n_feat, got: out.len() });
        }
        let len = self.ts.len();
        if len == 0 {
            return Err(FeatureError::EmptyWindow);
        }
        let n = len as f64;
        let denom_t = n * self.stt - self.st * self.st;
        for ch in 0..self.c {
            let last = self.vals[(len - 1) * self.c + ch];
            let mean_c = self.sx[ch] / n;
            // One sample has no spread and is its own mean. The running sums would say otherwise
            // by the rounding left from large values that passed through since they were last
            // recomputed, and a model that saw an exact 0 in training reads that as a huge change
            // (series sampled more sparsely than the window span hold one sample at a time).
            let (mean, std) = if len == 1 {
                (last, 0.0)
            } else {
                (self.x0[ch] + mean_c, (self.sxx[ch] / n - mean_c * mean_c).max(0.0).sqrt())
            };
            let prev = if len > 1 { self.vals[(len - 2) * self.c + ch] } else { last };
            let slope =
                if len > 1 && denom_t > 1e-12 { (n * self.stx[ch] - self.st * self.sx[ch]) / denom_t } else { 0.0 };
            // A window flat up to rounding has no meaningful z-score.
            let z = if std > 1e-9 * (1.0 + mean.abs()) { (last - mean) / std } else { 0.0 };
            let min = self.minq[ch].front().map_or(last, |&(_, v)| v);
            let max = self.maxq[ch].front().map_or(last, |&(_, v)| v);
            let o = &mut out[ch * STATS.len()..(ch + 1) * STATS.len()];
            o.copy_from_slice(&[last, mean, std, min, max, slope, last - prev, z]);
        }
        Ok(())
    }
}

fn push_mono(q: &mut VecDeque<(i64, f64)>, ts: i64, v: f64, dominated: impl Fn(f64, f64) -> bool) {
    while q.back().is_some_and(|&(_, b)| dominated(b, v)) {
        q.pop_back();
    }
    q.push_back((ts, v));
}

/// Features of the window (allocates the vector; use [`Window::features_into`] on hot paths).
pub fn features(window: &Window) -> Result<FeatureVector, FeatureError> {
    let mut fv = FeatureVector::default();
    window.features_into(&mut fv)?;
    Ok(fv)
}
