//! Normal-behaviour model: what "healthy" looks like for one equipment, learned without labels.
//!
//! Features are standardised with robust statistics (median, MAD) of failure-free history, then
//! scored by a shrunk Mahalanobis distance (or the RMS of robust z-scores). The alarm threshold
//! is a quantile of the training distances times a margin, so the false-alarm rate on healthy
//! data is known by construction. Score = d / (d + threshold): in [0, 1), 0.5 at the threshold.
//!
//! The in-sample quantile underestimates the distances of later healthy rows (the rows a model
//! scores are never the rows it was fitted on, and machines drift), so a fixed margin has to be
//! guessed. [`NormalBehaviourParams::fit_calibrated`] estimates it instead: fit on the earlier
//! rows, measure the distances of the last `holdout` rows, set the margin that gives the wanted
//! alarm rate on them, then refit on everything with that margin. It uses failure-free rows only.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Upper bound on features a normal-behaviour model uses; keeps scoring allocation-free.
pub const MAX_NB_FEATURES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum NbMethod {
    /// `sqrt(zᵀ Σ⁻¹ z / k)` with Σ shrunk toward the identity by `shrinkage` ∈ [0, 1].
    Mahalanobis { shrinkage: f64 },
    /// `sqrt(mean(z²))`: ignores correlations, robust with very little history.
    RobustZ,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalBehaviourParams {
    pub method: NbMethod,
    /// Feature indices used (None = all).
    pub features: Option<Vec<usize>>,
    /// Quantile of training distances used as the threshold base (e.g. 0.99).
    pub quantile: f64,
    /// Multiplier on that quantile (> 1 trades missed alarms for fewer false ones).
    pub margin: f64,
    /// |z| is clipped here before the distance, so one wild feature can't dominate.
    pub z_clip: f64,
}

impl Default for NormalBehaviourParams {
    fn default() -> Self {
        NormalBehaviourParams {
            method: NbMethod::Mahalanobis { shrinkage: 0.1 },
            features: None,
            quantile: 0.99,
            margin: 1.0,
            z_clip: 1e3,
        }
    }
}

/// A fitted normal-behaviour model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalBehaviourModel {
    pub params: NormalBehaviourParams,
    pub n_features: usize,
    pub features: Vec<usize>,
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
    /// Inverse of the shrunk correlation of z (k × k row-major); empty for `RobustZ`.
    pub precision: Vec<f64>,
    /// Distance at which the model alarms.
    pub threshold: f64,
}

impl NormalBehaviourParams {
    /// Fits on failure-free rows (row-major, `n_features` per row).
    pub fn fit(&self, rows: &[f64], n_features: usize) -> Result<NormalBehaviourModel, ModelError> {
        if n_features == 0 || rows.len() % n_features != 0 {
            return Err(ModelError::Data(format!("{} values are not rows of {n_features} features", rows.len())));
        }
        let n = rows.len() / n_features;
        let features = self.features.clone().unwrap_or_else(|| (0..n_features).collect());
        let k = features.len();
        if n < 8 || k == 0 || k > MAX_NB_FEATURES || features.iter().any(|&f| f >= n_features) {
            return Err(ModelError::Data(format!(
                "normal-behaviour model needs ≥ 8 rows and 1..={MAX_NB_FEATURES} valid features (got {n} rows, {k} features)"
            )));
        }
        if !(0.0..1.0).contains(&self.quantile) || self.margin <= 0.0 {
            return Err(ModelError::Params("quantile must be in [0, 1) and margin > 0".into()));
        }
        let mut center = Vec::with_capacity(k);
        let mut scale = Vec::with_capacity(k);
        let mut col = Vec::with_capacity(n);
        for &f in &features {
            col.clear();
            col.extend((0..n).map(|r| rows[r * n_features + f]));
            let med = median(&mut col);
            let mean = col.iter().sum::<f64>() / n as f64;
            let std = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            let mut dev: Vec<f64> = col.iter().map(|v| (v - med).abs()).collect();
            let mad = 1.4826 * median(&mut dev);
            // A MAD of 0 (discrete or mostly-constant signals) would make any change infinite;
            // fall back on the std, then on a tiny relative floor.
            center.push(med);
            scale.push(mad.max(std).max(1e-9 * (1.0 + med.abs())));
        }
        let mut model = NormalBehaviourModel {
            params: self.clone(),
            n_features,
            features,
            center,
            scale,
            precision: Vec::new(),
            threshold: 1.0,
        };
        if let NbMethod::Mahalanobis { shrinkage } = self.method {
            let a = shrinkage.clamp(0.0, 1.0);
            let mut cov = vec![0.0; k * k];
            let mut z = vec![0.0; k];
            for r in 0..n {
                model.standardise(&rows[r * n_features..(r + 1) * n_features], &mut z);
                for i in 0..k {
                    for j in 0..=i {
                        cov[i * k + j] += z[i] * z[j];
                    }
                }
            }
            for i in 0..k {
                for j in 0..=i {
                    let c = cov[i * k + j] / n as f64;
                    let v = (1.0 - a) * c + if i == j { a } else { 0.0 };
                    cov[i * k + j] = v;
                    cov[j * k + i] = v;
                }
                // Keeps the matrix positive definite when a feature never moved in training.
                cov[i * k + i] += 1e-6;
            }
            model.precision = invert_spd(&cov, k)
                .ok_or_else(|| ModelError::Data("covariance of the training features is singular".into()))?;
        }
        let mut d: Vec<f64> = (0..n).map(|r| model.distance(&rows[r * n_features..(r + 1) * n_features])).collect();
        d.sort_by(f64::total_cmp);
        let q = d[((n - 1) as f64 * self.quantile).round() as usize];
        model.threshold = (q * self.margin).max(1e-9);
        Ok(model)
    }
}

/// Distances of held-out healthy rows under a model fitted on the rows before them: what the
/// in-sample quantile becomes on data the model has not seen.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutCheck {
    /// The fitted (earlier) part's own `quantile` of distances (its threshold at margin 1).
    pub base: f64,
    /// Distances of the held-out rows, ascending.
    pub distances: Vec<f64>,
}

impl HoldoutCheck {
    /// Margin (on the in-sample quantile) at which a fraction `alarm_rate` of the held-out rows
    /// alarm (`distance ≥ base × margin`); at least one row alarms when `alarm_rate` > 0.
    pub fn margin_for(&self, alarm_rate: f64) -> Result<f64, ModelError> {
        if !(alarm_rate > 0.0 && alarm_rate < 1.0) {
            return Err(ModelError::Params(format!("alarm rate must be in (0, 1), got {alarm_rate}")));
        }
        let h = self.distances.len();
        // The ⌈α·h⌉-th largest distance: exactly that many held-out rows reach it (ties aside).
        let alarms = ((alarm_rate * h as f64).ceil() as usize).clamp(1, h);
        let t = self.distances[h - alarms];
        if !t.is_finite() {
            return Err(ModelError::Data("a held-out distance is not finite (NaN feature in training rows?)".into()));
        }
        let base = self.base.max(1e-9);
        let mut margin = (t / base).max(1e-9);
        // The division rounds; make sure base × margin does not land above that row's distance,
        // or it would not alarm.
        while base * margin > t && margin > 1e-9 {
            margin = f64::from_bits(margin.to_bits() - 1);
        }
        Ok(margin)
    }

    /// Fraction of held-out rows that alarm at `margin`.
    pub fn alarm_rate_at(&self, margin: f64) -> f64 {
        let t = (self.base.max(1e-9) * margin).max(1e-9);
        let n = self.distances.iter().filter(|&&d| d >= t).count();
        n as f64 / self.distances.len() as f64
    }
}

impl NormalBehaviourParams {
    /// Fits on all rows but the last `holdout` (with this quantile, margin 1) and measures the
    /// distances of those last rows. Both parts must be failure-free.
    pub fn holdout_check(&self, rows: &[f64], n_features: usize, holdout: usize) -> Result<HoldoutCheck, ModelError> {
        if n_features == 0 || rows.len() % n_features != 0 {
            return Err(ModelError::Data(format!("{} values are not rows of {n_features} features", rows.len())));
        }
        let n = rows.len() / n_features;
        if holdout == 0 || holdout >= n {
            return Err(ModelError::Params(format!("holdout must be in 1..{n} rows, got {holdout}")));
        }
        let split = (n - holdout) * n_features;
        let first = NormalBehaviourParams { margin: 1.0, ..self.clone() }.fit(&rows[..split], n_features)?;
        let mut distances: Vec<f64> = rows[split..].chunks_exact(n_features).map(|r| first.distance(r)).collect();
        distances.sort_by(f64::total_cmp);
        Ok(HoldoutCheck { base: first.threshold, distances })
    }

    /// Threshold calibrated on held-out healthy rows instead of a guessed margin: the margin is
    /// the one at which `alarm_rate` of the last `holdout` rows alarm under a model fitted on
    /// the rows before them; the model is then refitted on all rows with that margin (which
    /// replaces `self.margin` and is recorded in the returned model's params).
    pub fn fit_calibrated(
        &self,
        rows: &[f64],
        n_features: usize,
        holdout: usize,
        alarm_rate: f64,
    ) -> Result<NormalBehaviourModel, ModelError> {
        let margin = self.holdout_check(rows, n_features, holdout)?.margin_for(alarm_rate)?;
        NormalBehaviourParams { margin, ..self.clone() }.fit(rows, n_features)
    }
}

impl NormalBehaviourModel {
    fn standardise(&self, x: &[f64], z: &mut [f64]) {
        let clip = self.params.z_clip;
        for (i, &f) in self.features.iter().enumerate() {
            z[i] = ((x[f] - self.center[i]) / self.scale[i]).clamp(-clip, clip);
        }
    }

    /// Distance from normal for one feature vector; no allocation.
    pub fn distance(&self, x: &[f64]) -> f64 {
        let k = self.features.len();
        let mut buf = [0.0f64; MAX_NB_FEATURES];
        let z = &mut buf[..k];
        self.standardise(x, z);
        let d2 = if self.precision.is_empty() {
            z.iter().map(|v| v * v).sum::<f64>()
        } else {
            let mut s = 0.0;
            for i in 0..k {
                let row = &self.precision[i * k..(i + 1) * k];
                s += z[i] * row.iter().zip(z.iter()).map(|(p, zj)| p * zj).sum::<f64>();
            }
            s.max(0.0)
        };
        (d2 / k as f64).sqrt()
    }

    /// Anomaly score in [0, 1): 0.5 exactly at the calibrated threshold.
    pub fn score(&self, x: &[f64]) -> f64 {
        let d = self.distance(x);
        if d.is_nan() {
            // A NaN feature is "unknown", not "normal": surface it as maximally abnormal.
            return 1.0;
        }
        d / (d + self.threshold)
    }

    pub fn is_anomalous(&self, x: &[f64]) -> bool {
        self.distance(x) >= self.threshold
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Inverse of a symmetric positive-definite matrix by Cholesky; None if not SPD.
fn invert_spd(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum();
            if i == j {
                let v = a[i * k + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * k + i] = v.sqrt();
            } else {
                l[i * k + j] = (a[i * k + j] - s) / l[j * k + j];
            }
        }
    }
    // Solve L Lᵀ X = I column by column.
    let mut inv = vec![0.0; k * k];
    let mut y = vec![0.0; k];
    for c in 0..k {
        for i in 0..k {
            let b = if i == c { 1.0 } else { 0.0 };
            let s: f64 = (0..i).map(|p| l[i * k + p] * y[p]).sum();
            y[i] = (b - s) / l[i * k + i];
        }
        for i in (0..k).rev() {
            let s: f64 = (i + 1..k).map(|p| l[p * k + i] * inv[p * k + c]).sum();
            inv[i * k + c] = (y[i] - s) / l[i * k + i];
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-0.5, 0.5) (a linear congruential generator: no test dependency).
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Two features; from row `drift_from` on the first one drifts slowly upward, as a warming
    /// machine would.
    fn rows(n: usize, drift_from: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .flat_map(|i| {
                let drift = i.saturating_sub(drift_from) as f64 * 0.01;
                [noise(&mut s) + drift, noise(&mut s)]
            })
            .collect()
    }

    #[test]
    fn margin_for_gives_the_wanted_alarm_rate_on_the_holdout() {
        let check = HoldoutCheck { base: 2.0, distances: (1..=100).map(f64::from).collect() };
        // 5 % of 100 rows: the 5th largest distance, 96, i.e. margin 48 on a base of 2.
        assert_eq!(check.margin_for(0.05).unwrap(), 48.0);
        assert!((check.alarm_rate_at(48.0) - 0.05).abs() < 1e-12);
        // A rate below one row still alarms on the largest one.
        assert_eq!(check.margin_for(0.001).unwrap(), 50.0);
        assert!(check.margin_for(0.0).is_err());
        assert!(check.margin_for(1.0).is_err());
        assert!(check.margin_for(f64::NAN).is_err());
        // Distances and a base whose quotients round: the chosen row must still alarm.
        let mut seed = 5u64;
        for base in [0.3, 0.7, 1.1, 2.9] {
            let mut distances: Vec<f64> = (0..100).map(|_| 1.0 + noise(&mut seed)).collect();
            distances.sort_by(f64::total_cmp);
            let check = HoldoutCheck { base, distances };
            for (rate, rows) in [(0.01, 1), (0.02, 2), (0.05, 5), (0.1, 10)] {
                let m = check.margin_for(rate).unwrap();
                assert_eq!(check.alarm_rate_at(m), rows as f64 / 100.0, "base {base}, rate {rate}");
            }
        }
    }

    #[test]
    fn calibration_widens_the_threshold_when_later_rows_drift() {
        let params = NormalBehaviourParams { quantile: 0.99, ..Default::default() };
        let stationary = rows(400, usize::MAX, 1);
        let drifting = rows(400, 200, 1);
        let m_stat = params.fit_calibrated(&stationary, 2, 100, 0.01).unwrap();
        let m_drift = params.fit_calibrated(&drifting, 2, 100, 0.01).unwrap();
        // Out-of-sample distances of i.i.d. rows are close to the in-sample ones…
        assert!(m_stat.params.margin > 0.7 && m_stat.params.margin < 1.5, "{}", m_stat.params.margin);
        // …but a drift that goes on after the fitted rows needs a much wider margin.
        assert!(
            m_drift.params.margin > 1.5 * m_stat.params.margin,
            "{} vs {}",
            m_drift.params.margin,
            m_stat.params.margin
        );
        // The refitted model is the plain fit with that margin.
        let plain =
            NormalBehaviourParams { margin: m_drift.params.margin, ..params.clone() }.fit(&drifting, 2).unwrap();
        assert_eq!(plain, m_drift);
    }

    #[test]
    fn calibrated_threshold_predicts_the_alarm_rate_of_later_healthy_rows() {
        let params = NormalBehaviourParams::default();
        let all = rows(4_400, usize::MAX, 7);
        let (train, later) = all.split_at(400 * 2);
        let model = params.fit_calibrated(train, 2, 100, 0.05).unwrap();
        let alarms = later.chunks_exact(2).filter(|r| model.is_anomalous(r)).count();
        let rate = alarms as f64 / 4_000.0;
        assert!(rate > 0.01 && rate < 0.12, "alarm rate {rate} on 4,000 later healthy rows, wanted about 0.05");
    }

    #[test]
    fn holdout_check_refuses_bad_sizes() {
        let params = NormalBehaviourParams::default();
        let r = rows(50, usize::MAX, 3);
        assert!(params.holdout_check(&r, 2, 0).is_err());
        assert!(params.holdout_check(&r, 2, 50).is_err());
        assert!(params.holdout_check(&r, 2, 45).is_err(), "5 rows are too few to fit");
        assert!(params.holdout_check(&r[..99], 2, 10).is_err(), "not whole rows");
        assert!(params.holdout_check(&r, 2, 10).is_ok());
    }
}
