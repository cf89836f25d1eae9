//! Feature engineering for the trainer: one-hot encoded types plus numeric columns as a plain
//! matrix, the class label, and a deterministic, seeded, stratified 80/20 split.
//!
//! The trainer calls [`ai4i_features`] / [`amdec_features`] on a [`CleanTable`] (or
//! [`prepare_ai4i`] / [`prepare_amdec`] on a file) and then [`FeatureMatrix::split`]. The
//! feature names are part of the model's feature schema, so their order is fixed here.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::clean::{clean_file, CleanOptions, CleanTable, Cleaned};
use crate::error::{PrepError, Result};
use crate::report::{FeatureSummary, Report};
use crate::schema::Kind;

/// The seed of the held-out split, shared by every model so metrics compare.
pub const SPLIT_SEED: u64 = 42;
/// The held-out fraction.
pub const TEST_FRACTION: f64 = 0.2;

/// AI4I product quality variants, in one-hot order.
pub const AI4I_TYPES: [&str; 3] = ["L", "M", "H"];
/// AI4I numeric features, after the one-hot columns.
pub const AI4I_NUMERIC: [&str; 5] =
    ["air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm", "tool_wear_min"];
/// AMDEC criticality classes, in label order.
pub const CRITICALITY_CLASSES: [&str; 3] = ["low", "medium", "high"];

/// A feature matrix with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    /// Column names of `x`, e.g. `type_L`, `air_temperature_k`.
    pub names: Vec<String>,
    /// One row per sample.
    pub x: Vec<Vec<f64>>,
    /// Class index per sample, into `classes`.
    pub y: Vec<usize>,
    pub label: String,
    pub classes: Vec<String>,
}

/// Row indices of a train/test split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

impl FeatureMatrix {
    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> FeatureMatrix {
        FeatureMatrix {
            names: self.names.clone(),
            x: idx.iter().map(|&i| self.x[i].clone()).collect(),
            y: idx.iter().map(|&i| self.y[i]).collect(),
            label: self.label.clone(),
            classes: self.classes.clone(),
        }
    }

    /// The seeded, stratified 80/20 split: `(train, test)`.
    pub fn split(&self, seed: u64) -> (FeatureMatrix, FeatureMatrix) {
        let s = split_indices(self.x.len(), Some(&self.y), seed, TEST_FRACTION);
        (self.subset(&s.train), self.subset(&s.test))
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for &y in &self.y {
            c[y] += 1;
        }
        c
    }

    /// The summary written into a report.
    pub fn summary(&self, seed: u64) -> FeatureSummary {
        let s = split_indices(self.x.len(), Some(&self.y), seed, TEST_FRACTION);
        let mut test_counts = vec![0; self.classes.len()];
        for &i in &s.test {
            test_counts[self.y[i]] += 1;
        }
        FeatureSummary {
            features: self.names.clone(),
            label: self.label.clone(),
            classes: self.classes.clone(),
            class_counts: self.class_counts(),
            seed,
            stratified: true,
            train_rows: s.train.len(),
            test_rows: s.test.len(),
            test_class_counts: test_counts,
        }
    }
}

/// A deterministic split of `n` rows: the same `seed` gives the same rows on every machine
/// (ChaCha8). With labels, each class contributes `round(test_fraction × its size)` rows to
/// the test set, so a rare failure class is present on both sides.
pub fn split_indices(n: usize, labels: Option<&[usize]>, seed: u64, test_fraction: f64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups: Vec<Vec<usize>> = match labels {
        Some(y) => {
            let k = y.iter().copied().max().map_or(0, |m| m + 1);
            let mut g = vec![Vec::new(); k];
            for (i, &c) in y.iter().enumerate().take(n) {
                g[c].push(i);
            }
            g
        }
        None => vec![(0..n).collect()],
    };
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut g in groups {
        g.shuffle(&mut rng);
        let t = (g.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&g[..t]);
        train.extend_from_slice(&g[t..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Split { train, test }
}

/// One-hot encodes `value` over `categories` (all zeros for an unknown value).
pub fn one_hot(value: &str, categories: &[&str]) -> Vec<f64> {
    categories.iter().map(|c| if *c == value { 1.0 } else { 0.0 }).collect()
}

fn need(t: &CleanTable, column: &str, what: &str) -> Result<usize> {
    t.index(column).ok_or_else(|| PrepError::Features {
        path: format!("{} table", t.kind),
        detail: format!("no `{column}` column: cannot build the {what} features"),
    })
}

/// AI4I 2020: `type_L`, `type_M`, `type_H`, then [`AI4I_NUMERIC`]; label `machine_failure`
/// (classes `0`, `1`).
pub fn ai4i_features(t: &CleanTable) -> Result<FeatureMatrix> {
    let ty = need(t, "type", "AI4I")?;
    let label = need(t, "machine_failure", "AI4I")?;
    let num: Vec<usize> = AI4I_NUMERIC.iter().map(|c| need(t, c, "AI4I")).collect::<Result<_>>()?;
    let mut names: Vec<String> = AI4I_TYPES.iter().map(|c| format!("type_{c}")).collect();
    names.extend(AI4I_NUMERIC.iter().map(|c| c.to_string()));
    let mut x = Vec::with_capacity(t.len());
    let mut y = Vec::with_capacity(t.len());
    for row in &t.rows {
        let mut f = one_hot(row[ty].as_str().unwrap_or_default(), &AI4I_TYPES);
        f.extend(num.iter().map(|&i| row[i].as_f64().unwrap_or(0.0)));
        x.push(f);
        y.push(usize::from(row[label].as_i64().unwrap_or(0) != 0));
    }
    Ok(FeatureMatrix { names, x, y, label: "machine_failure".into(), classes: vec!["0".into(), "1".into()] })
}

/// AMDEC: one-hot `equipment_type_<code>` over the simulator's equipment types, then
/// `severity`, `occurrence`, `detection`; label `criticality` ([`CRITICALITY_CLASSES`]).
pub fn amdec_features(t: &CleanTable) -> Result<FeatureMatrix> {
    let types: Vec<&str> = proact_store::taxonomy::EquipmentType::ALL.iter().map(|t| t.code()).collect();
    let ty = need(t, "equipment_type", "AMDEC")?;
    let crit = need(t, "criticality", "AMDEC")?;
    let num: Vec<usize> =
        ["severity", "occurrence", "detection"].iter().map(|c| need(t, c, "AMDEC")).collect::<Result<_>>()?;
    let mut names: Vec<String> = types.iter().map(|c| format!("equipment_type_{c}")).collect();
    names.extend(["severity", "occurrence", "detection"].map(String::from));
    let mut x = Vec::with_capacity(t.len());
    let mut y = Vec::with_capacity(t.len());
    for (r, row) in t.rows.iter().enumerate() {
        let mut f = one_hot(row[ty].as_str().unwrap_or_default(), &types);
        f.extend(num.iter().map(|&i| row[i].as_f64().unwrap_or(0.0)));
        let class =
            row[crit].as_str().and_then(|c| CRITICALITY_CLASSES.iter().position(|k| *k == c)).ok_or_else(|| {
                PrepError::Features {
                    path: format!("amdec table, line {}", t.lines[r]),
                    detail: format!("criticality {:?} is not one of {CRITICALITY_CLASSES:?}", row[crit]),
                }
            })?;
        x.push(f);
        y.push(class);
    }
    Ok(FeatureMatrix {
        names,
        x,
        y,
        label: "criticality".into(),
        classes: CRITICALITY_CLASSES.map(String::from).to_vec(),
    })
}

/// Cleans an AI4I file and builds its features; the report carries the split summary.
pub fn prepare_ai4i(path: &Path) -> Result<(FeatureMatrix, Report)> {
    prepare(path, Kind::Ai4i, ai4i_features)
}

/// Cleans an AMDEC file (e.g. `data/AMDEC_clean.csv`) and builds its features.
pub fn prepare_amdec(path: &Path) -> Result<(FeatureMatrix, Report)> {
    prepare(path, Kind::Amdec, amdec_features)
}

fn prepare(path: &Path, kind: Kind, f: fn(&CleanTable) -> Result<FeatureMatrix>) -> Result<(FeatureMatrix, Report)> {
    let Cleaned { table, mut report } = clean_file(path, kind, &CleanOptions::default())?;
    let m = f(&table).map_err(|e| match e {
        PrepError::Features { detail, .. } => PrepError::Features { path: path.display().to_string(), detail },
        other => other,
    })?;
    report.features = Some(m.summary(SPLIT_SEED));
    Ok((m, report))
}

/// The feature builder of a kind, if it has one.
pub fn features_for(kind: Kind) -> Option<fn(&CleanTable) -> Result<FeatureMatrix>> {
    match kind {
        Kind::Ai4i => Some(ai4i_features),
        Kind::Amdec => Some(amdec_features),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_stratified_and_complete() {
        let y: Vec<usize> = (0..1000).map(|i| usize::from(i % 25 == 0)).collect();
        let a = split_indices(1000, Some(&y), 7, 0.2);
        assert_eq!(a, split_indices(1000, Some(&y), 7, 0.2));
        assert_ne!(a, split_indices(1000, Some(&y), 8, 0.2));
        assert_eq!(a.test.len(), 200);
        assert_eq!(a.test.iter().filter(|&&i| y[i] == 1).count(), 8); // 20 % of 40
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn one_hot_marks_one_category() {
        assert_eq!(one_hot("M", &AI4I_TYPES), vec![0.0, 1.0, 0.0]);
        assert_eq!(one_hot("X", &AI4I_TYPES), vec![0.0, 0.0, 0.0]);
    }
}
