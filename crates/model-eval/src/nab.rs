//! NAB (Numenta Anomaly Benchmark) scoring, written from the published rules (README and
//! paper of numenta/NAB, summarised in `NAB_dev/SOURCE.md`) so that any detector's per-row
//! output can be scored the way the published detectors were.
//!
//! - The first 15 % of a file (at most 750 rows) is probationary: not scored at all.
//! - A detection inside a labelled window is worth the scaled sigmoid of its position: the
//!   window's first row is worth `A_TP`, its last almost nothing. Only the best (earliest)
//!   detection of a window counts; a window without one costs `A_FN`.
//! - A detection outside every window costs `A_FP` times the scaled sigmoid of its distance
//!   past the end of the preceding window (in window lengths): right after a window it costs
//!   almost nothing, three lengths later the full `A_FP`. Before any window it costs `A_FP`.
//! - The raw score of a corpus is the sum over its files; it is normalised between the null
//!   detector (never fires: `-A_FN` per window) and the perfect one (fires on the first row of
//!   every window: `A_TP` per window) to 0..100.
//! - The threshold turning scores into detections is one value for the whole corpus; NAB
//!   chooses it per detector and profile by sweeping it over the corpus ([`sweep`]).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime};

#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("{file}: {detail}")]
    Input { file: String, detail: String },
}

fn input_err(file: &str, detail: impl Into<String>) -> NabError {
    NabError::Input { file: file.to_string(), detail: detail.into() }
}

/// The weights of one NAB application profile (`config/profiles.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// Reward of a window's earliest possible detection (`A_TP`).
    pub tp: f64,
    /// Largest cost of one detection outside the windows (`A_FP`).
    pub fp: f64,
    /// Cost of a window nobody detected (`A_FN`).
    pub fn_: f64,
}

/// NAB's profile names, in the order they are reported.
pub const PROFILE_NAMES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

impl Profile {
    /// The three profiles as NAB publishes them (standard, reward low FP, reward low FN).
    pub fn published() -> Vec<Profile> {
        let p = |name: &str, tp, fp, fn_| Profile { name: name.to_string(), tp, fp, fn_ };
        vec![
            p(PROFILE_NAMES[0], 1.0, 0.11, 1.0),
            p(PROFILE_NAMES[1], 1.0, 0.22, 1.0),
            p(PROFILE_NAMES[2], 1.0, 0.11, 2.0),
        ]
    }

    /// Null and perfect raw scores over `windows` windows: the two ends of the 0..100 scale.
    pub fn bounds(&self, windows: usize) -> (f64, f64) {
        (-self.fn_ * windows as f64, self.tp * windows as f64)
    }

    /// `100 × (raw − null) / (perfect − null)`.
    pub fn normalise(&self, raw: f64, windows: usize) -> f64 {
        let (null, perfect) = self.bounds(windows);
        if perfect == null {
            return 0.0;
        }
        100.0 * (raw - null) / (perfect - null)
    }
}

/// Reads `config/profiles.json` (`{"name": {"CostMatrix": {"tpWeight", "fpWeight", "fnWeight"}}}`),
/// in the order of [`PROFILE_NAMES`].
pub fn load_profiles(path: &Path) -> Result<Vec<Profile>, NabError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| input_err(&file, e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| input_err(&file, e.to_string()))?;
    PROFILE_NAMES
        .iter()
        .map(|name| {
            let m = &json[name]["CostMatrix"];
            let w = |key: &str| {
                m[key].as_f64().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                    input_err(
                        &file,
                        format!("profile {name:?}: CostMatrix.{key} is missing or not a non-negative number"),
                    )
                })
            };
            Ok(Profile { name: name.to_string(), tp: w("tpWeight")?, fp: w("fpWeight")?, fn_: w("fnWeight")? })
        })
        .collect()
}

/// Rows of a file of `rows` rows that are probationary (never scored): 15 %, at most 750.
pub fn probation_rows(rows: usize) -> usize {
    ((0.15 * rows as f64).floor() as usize).min(750)
}

/// NAB's scaled sigmoid: 1 far before 0 (≈ 0.987 at −1), 0 at 0, −1 beyond 3.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Where a row stands for the scorer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    /// In the probationary period: its detections count for nothing.
    Probation,
    /// In window `id` (of the file), at `position` ∈ [−1, 0): −1 is its first row.
    Window { id: usize, position: f64 },
    /// Outside every window; `after` is the distance past the end of the preceding window in
    /// window lengths, `None` before the first window.
    Outside { after: Option<f64> },
}

/// One file's rows placed against its labelled windows.
#[derive(Debug, Clone)]
pub struct LabelledFile {
    pub name: String,
    places: Vec<Place>,
    /// Windows with at least one scored row (after the probation).
    windows: usize,
    /// First row of each window (probationary rows included).
    window_starts: Vec<usize>,
}

impl LabelledFile {
    /// Places the rows of a file (event times `ts`, non-decreasing) against its windows
    /// (inclusive `[start, end]` times, in order, not overlapping). A window covers the rows
    /// whose time lies in it; one that covers no row is refused, as are unordered inputs.
    pub fn new(name: &str, ts: &[i64], windows: &[(i64, i64)]) -> Result<Self, NabError> {
        if let Some(i) = ts.windows(2).position(|w| w[1] < w[0]) {
            return Err(input_err(name, format!("row {} is older than the row before it", i + 1)));
        }
        let mut bounds = Vec::with_capacity(windows.len());
        for (k, &(start, end)) in windows.iter().enumerate() {
            if end < start || (k > 0 && start <= windows[k - 1].1) {
                return Err(input_err(name, format!("window {k} is reversed or overlaps the one before it")));
            }
            let s = ts.partition_point(|&t| t < start);
            // The window ends at the first row carrying its end time (NAB's rule when the
            // end time repeats, as around a clock change), else at the last row before it.
            let e = ts.partition_point(|&t| t < end);
            let e = if e < ts.len() && ts[e] == end { e } else { e.wrapping_sub(1) };
            if e == usize::MAX || s > e {
                return Err(input_err(name, format!("window {k} covers no row")));
            }
            bounds.push((s, e));
        }
        let probation = probation_rows(ts.len());
        let mut places = Vec::with_capacity(ts.len());
        let mut next = 0;
        let mut previous: Option<(usize, usize)> = None;
        for i in 0..ts.len() {
            let place = match bounds.get(next) {
                Some(&(s, e)) if i >= s => {
                    let width = (e - s + 1) as f64;
                    let p = Place::Window { id: next, position: -((e - i + 1) as f64) / width };
                    if i == e {
                        previous = Some((s, e));
                        next += 1;
                    }
                    p
                }
                _ => Place::Outside { after: previous.map(|(s, e)| (i - e) as f64 / ((e - s) as f64).max(1.0)) },
            };
            places.push(if i < probation { Place::Probation } else { place });
        }
        let counted = bounds.iter().filter(|&&(_, e)| e >= probation).count();
        Ok(Self {
            name: name.to_string(),
            places,
            windows: counted,
            window_starts: bounds.iter().map(|b| b.0).collect(),
        })
    }

    pub fn rows(&self) -> usize {
        self.places.len()
    }

    /// Windows that are scored (not entirely probationary).
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// First row of each labelled window.
    pub fn window_starts(&self) -> &[usize] {
        &self.window_starts
    }

    pub fn place(&self, row: usize) -> Place {
        self.places[row]
    }

    /// What a detection at `row` is worth under `profile` (positive in a window, negative
    /// outside); `None` in the probation.
    pub fn detection_value(&self, row: usize, profile: &Profile) -> Option<f64> {
        match self.places[row] {
            Place::Probation => None,
            Place::Window { position, .. } => Some(profile.tp * scaled_sigmoid(position) / scaled_sigmoid(-1.0)),
            Place::Outside { after: None } => Some(-profile.fp),
            Place::Outside { after: Some(d) } => Some(profile.fp * scaled_sigmoid(d)),
        }
    }

    /// Scores a set of detections (row indices, any order, repeats ignored).
    pub fn score_detections(&self, rows: impl IntoIterator<Item = usize>, profile: &Profile) -> Outcome {
        let mut best: HashMap<usize, f64> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut out = Outcome::default();
        for row in rows {
            if row >= self.places.len() || !seen.insert(row) {
                continue;
            }
            let Some(v) = self.detection_value(row, profile) else { continue };
            match self.places[row] {
                Place::Window { id, .. } => {
                    let b = best.entry(id).or_insert(f64::NEG_INFINITY);
                    *b = b.max(v);
                }
                _ => {
                    out.fp += 1;
                    out.raw += v;
                }
            }
        }
        out.tp = best.len();
        out.fn_ = self.windows - out.tp;
        out.raw += best.values().sum::<f64>() - profile.fn_ * out.fn_ as f64;
        out.windows = self.windows;
        out
    }
}

/// A scoring's result over a file or a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub raw: f64,
    /// Windows detected.
    pub tp: usize,
    /// Windows missed.
    pub fn_: usize,
    /// Detections outside every window.
    pub fp: usize,
    /// Scored windows.
    pub windows: usize,
}

impl Outcome {
    pub fn add(&mut self, o: &Outcome) {
        self.raw += o.raw;
        self.tp += o.tp;
        self.fn_ += o.fn_;
        self.fp += o.fp;
        self.windows += o.windows;
    }

    pub fn normalised(&self, profile: &Profile) -> f64 {
        profile.normalise(self.raw, self.windows)
    }
}

/// The best threshold of a sweep and what it scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// Rows whose score is ≥ this are detections (`+∞`: none is).
    pub threshold: f64,
    pub outcome: Outcome,
    pub score: f64,
}

/// The rows where `scores` crosses `threshold` from below (the first row too when it is at or
/// above it): one detection per alarm of a score that stays high while an anomaly lasts.
pub fn crossings(scores: &[f64], threshold: f64) -> impl Iterator<Item = usize> + '_ {
    (0..scores.len()).filter(move |&i| scores[i] >= threshold && (i == 0 || scores[i - 1] < threshold))
}

/// NAB's threshold optimisation for a score that is a level rather than a spike: a detection
/// where the score crosses the threshold ([`crossings`]), the threshold tried at every
/// hundredth in (0, 1] and the best kept (the lowest on ties). Scores are in [0, 1].
pub fn sweep_crossings(files: &[(&LabelledFile, &[f64])], profile: &Profile) -> Result<Sweep, NabError> {
    let windows: usize = files.iter().map(|(f, _)| f.windows()).sum();
    let none = Outcome { raw: -profile.fn_ * windows as f64, fn_: windows, windows, ..Default::default() };
    let mut best = Sweep { threshold: f64::INFINITY, outcome: none, score: profile.normalise(none.raw, windows) };
    for step in 1..=100 {
        let threshold = f64::from(step) / 100.0;
        let mut total = Outcome::default();
        for (f, scores) in files {
            if scores.len() != f.rows() {
                return Err(input_err(&f.name, format!("{} scores for {} rows", scores.len(), f.rows())));
            }
            total.add(&f.score_detections(crossings(scores, threshold), profile));
        }
        let score = total.normalised(profile);
        if score > best.score {
            best = Sweep { threshold, outcome: total, score };
        }
    }
    Ok(best)
}

/// NAB's threshold optimisation: the one threshold over the whole corpus (every row whose
/// score is ≥ it is a detection) that maximises the summed raw score. On ties the highest
/// threshold wins. `files` pairs each file with one score per row; a NaN score is an error.
pub fn sweep(files: &[(&LabelledFile, &[f64])], profile: &Profile) -> Result<Sweep, NabError> {
    let mut points: Vec<(f64, usize, f64)> = Vec::new(); // (score, corpus window or usize::MAX, value)
    let mut offset = 0;
    let mut windows = 0;
    for (f, scores) in files {
        if scores.len() != f.rows() {
            return Err(input_err(&f.name, format!("{} scores for {} rows", scores.len(), f.rows())));
        }
        for (row, &s) in scores.iter().enumerate() {
            if s.is_nan() {
                return Err(input_err(&f.name, format!("row {row}: the score is NaN")));
            }
            let Some(v) = f.detection_value(row, profile) else { continue };
            let w = match f.place(row) {
                Place::Window { id, .. } => offset + id,
                _ => usize::MAX,
            };
            points.push((s, w, v));
        }
        offset += f.window_starts().len();
        windows += f.windows();
    }
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best_in: HashMap<usize, f64> = HashMap::new();
    let mut current = Outcome { raw: -profile.fn_ * windows as f64, fn_: windows, windows, ..Default::default() };
    let mut best = Sweep { threshold: f64::INFINITY, outcome: current, score: profile.normalise(current.raw, windows) };
    let mut i = 0;
    while i < points.len() {
        let threshold = points[i].0;
        while i < points.len() && points[i].0 == threshold {
            let (_, w, v) = points[i];
            if w == usize::MAX {
                current.fp += 1;
                current.raw += v;
            } else {
                match best_in.get_mut(&w) {
                    None => {
                        best_in.insert(w, v);
                        current.tp += 1;
                        current.fn_ -= 1;
                        current.raw += v + profile.fn_;
                    }
                    Some(b) if v > *b => {
                        current.raw += v - *b;
                        *b = v;
                    }
                    Some(_) => {}
                }
            }
            i += 1;
        }
        if current.raw > best.outcome.raw {
            best = Sweep { threshold, outcome: current, score: profile.normalise(current.raw, windows) };
        }
    }
    Ok(best)
}

/// Parses the times NAB and the replay write: `YYYY-MM-DD HH:MM:SS[.ffffff]` (naive, read as
/// UTC) or RFC 3339; microseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc().timestamp_micros())
}

/// Reads `labels/combined_windows.json`: `{"family/file.csv": [["start", "end"], …]}`.
pub fn load_windows(path: &Path) -> Result<HashMap<String, Vec<(i64, i64)>>, NabError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| input_err(&file, e.to_string()))?;
    let json: HashMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| input_err(&file, e.to_string()))?;
    json.into_iter()
        .map(|(name, ws)| {
            let ws = ws
                .iter()
                .map(|w| match w.as_slice() {
                    [s, e] => match (parse_time(s), parse_time(e)) {
                        (Some(s), Some(e)) => Ok((s, e)),
                        _ => Err(input_err(&file, format!("{name}: window {w:?} has a time that is not a date"))),
                    },
                    _ => Err(input_err(&file, format!("{name}: window {w:?} is not [start, end]"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name, ws))
        })
        .collect()
}

/// A CSV's timestamp column and the numeric columns asked for, by header name.
pub struct Columns {
    pub ts: Vec<i64>,
    pub values: Vec<Vec<f64>>,
}

/// Reads `timestamp` and `columns` from a comma-separated file with a header; a missing column,
/// a bad time or a value that is not a number is an error naming the file and line.
pub fn read_columns(path: &Path, columns: &[&str]) -> Result<Columns, NabError> {
    let file = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).map_err(|e| input_err(&file, e.to_string()))?;
    let headers = rdr.headers().map_err(|e| input_err(&file, e.to_string()))?.clone();
    let find = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
            input_err(
                &file,
                format!("no column {name:?}; columns are {}", headers.iter().collect::<Vec<_>>().join(", ")),
            )
        })
    };
    let ts_col = find("timestamp")?;
    let cols = columns.iter().map(|c| find(c)).collect::<Result<Vec<_>, _>>()?;
    let mut out = Columns { ts: Vec::new(), values: vec![Vec::new(); cols.len()] };
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| input_err(&format!("{file}:{line}"), e.to_string()))?;
        let ts = rec.get(ts_col).and_then(parse_time).ok_or_else(|| {
            input_err(&format!("{file}:{line}"), format!("timestamp {:?} is not a date", rec.get(ts_col).unwrap_or("")))
        })?;
        out.ts.push(ts);
        for (k, &c) in cols.iter().enumerate() {
            let v = rec.get(c).and_then(|v| v.trim().parse::<f64>().ok()).ok_or_else(|| {
                input_err(&format!("{file}:{line}"), format!("column {:?} is not a number", columns[k]))
            })?;
            out.values[k].push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> Profile {
        Profile::published().remove(0)
    }

    /// 100 rows at t = 0..100 (probation: rows 0..15), one window on rows 40..=49.
    fn file() -> LabelledFile {
        let ts: Vec<i64> = (0..100).collect();
        LabelledFile::new("f", &ts, &[(40, 49)]).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probation_rows(100), 15);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(5000), 750);
        assert_eq!(probation_rows(15_902), 750);
    }

    #[test]
    fn the_sigmoid_has_nab_values() {
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert!(close(scaled_sigmoid(-1.0), 2.0 / (1.0 + (-5.0f64).exp()) - 1.0));
        assert_eq!(scaled_sigmoid(3.0001), -1.0);
        assert!(scaled_sigmoid(3.0) > -1.0);
    }

    #[test]
    fn first_detection_in_a_window_counts_and_later_ones_add_nothing() {
        let f = file();
        let p = standard();
        let first = f.score_detections([40], &p);
        assert!(close(first.raw, 1.0), "the window's first row is worth A_TP: {first:?}");
        let both = f.score_detections([40, 45, 49], &p);
        assert_eq!(both, first);
        let late = f.score_detections([45], &p);
        assert!(late.raw > 0.0 && late.raw < first.raw, "{late:?}");
        assert_eq!((late.tp, late.fn_, late.fp), (1, 0, 0));
    }

    #[test]
    fn window_edges_are_inside() {
        let f = file();
        assert_eq!(f.place(39), Place::Outside { after: None });
        assert_eq!(f.place(40), Place::Window { id: 0, position: -1.0 });
        assert_eq!(f.place(49), Place::Window { id: 0, position: -0.1 });
        assert_eq!(f.place(50), Place::Outside { after: Some(1.0 / 9.0) });
        let last = f.score_detections([49], &standard());
        assert!(last.raw > 0.0, "the last row of a window is a (poor) true positive");
    }

    #[test]
    fn detections_outside_windows_cost_by_distance() {
        let f = file();
        let p = standard();
        let before = f.score_detections([20], &p);
        assert!(close(before.raw, -1.0 - 0.11), "missed window plus a full A_FP: {before:?}");
        let just_after = f.score_detections([40, 50], &p);
        let far_after = f.score_detections([40, 90], &p);
        assert!(just_after.raw > far_after.raw);
        assert!(just_after.raw < 1.0, "a false positive right after the window still costs something");
        assert!(close(far_after.raw, 1.0 - 0.11), "beyond three window lengths: the full A_FP");
        assert_eq!(far_after.fp, 1);
    }

    #[test]
    fn probation_detections_count_for_nothing() {
        let f = file();
        assert_eq!(f.place(14), Place::Probation);
        assert_eq!(f.score_detections([0, 14], &standard()), f.score_detections([], &standard()));
    }

    #[test]
    fn null_is_zero_and_perfect_is_hundred() {
        let f = file();
        for p in Profile::published() {
            assert!(close(f.score_detections([], &p).normalised(&p), 0.0));
            assert!(close(f.score_detections([40], &p).normalised(&p), 100.0));
        }
        let low_fn = &Profile::published()[2];
        assert!(close(f.score_detections([], low_fn).raw, -2.0));
    }

    #[test]
    fn sweep_picks_the_best_single_threshold() {
        let f = file();
        let p = standard();
        let mut scores = vec![0.1; 100];
        scores[42] = 0.8; // an early detection in the window
        scores[20] = 0.9; // a false positive above it
        scores[95] = 0.5;
        let s = sweep(&[(&f, &scores)], &p).unwrap();
        assert_eq!(s.threshold, 0.8, "0.9 alone costs a false positive and finds nothing; 0.5 adds one");
        let expected = f.score_detections([20, 42], &p);
        assert!(close(s.outcome.raw, expected.raw), "{s:?} vs {expected:?}");
        assert_eq!((s.outcome.tp, s.outcome.fp, s.outcome.fn_), (1, 1, 0));
        // Nothing above: the null score.
        let s = sweep(&[(&f, &[0.0; 100])], &p).unwrap();
        assert!(s.outcome.raw >= -1.0);
    }

    #[test]
    fn a_repeated_end_time_ends_the_window_at_its_first_row() {
        let ts = [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
        let f = LabelledFile::new("dst", &ts, &[(2, 3)]).unwrap();
        assert_eq!(f.place(3), Place::Window { id: 0, position: -0.5 });
        assert!(matches!(f.place(4), Place::Outside { after: Some(_) }));
    }

    #[test]
    fn bad_windows_are_refused() {
        let ts: Vec<i64> = (0..10).collect();
        assert!(LabelledFile::new("f", &ts, &[(5, 3)]).is_err());
        assert!(LabelledFile::new("f", &ts, &[(1, 4), (3, 6)]).is_err());
        assert!(LabelledFile::new("f", &ts, &[(20, 30)]).unwrap_err().to_string().contains("covers no row"));
        assert!(LabelledFile::new("f", &[2, 1], &[]).is_err());
    }

    #[test]
    fn a_level_score_is_one_detection_per_crossing() {
        let scores = [0.6, 0.7, 0.2, 0.1, 0.5, 0.9, 0.9, 0.4, 0.55];
        assert_eq!(crossings(&scores, 0.5).collect::<Vec<_>>(), [0, 4, 8]);
        assert_eq!(crossings(&scores, 0.8).collect::<Vec<_>>(), [5]);
        assert_eq!(crossings(&scores, 0.95).count(), 0);
    }
}
