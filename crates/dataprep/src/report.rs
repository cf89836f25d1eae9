//! The report every cleaning run produces: what was read, kept, imputed and dropped, and
//! for each drop or doubt the file and line, so a maintenance planner can fix the export.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::schema::Kind;

/// A header column and the canonical column it was mapped to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnMap {
    pub raw: String,
    pub canonical: String,
}

/// A dropped row, or a doubtful cell that was kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    pub file: String,
    /// 1-based line in the input file (the header is line 1).
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
}

/// An AMDEC row whose stated RPN is not S × O × D. The row is kept with the computed RPN;
/// the stated one is kept in `rpn_stated_mismatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpnMismatch {
    pub file: String,
    pub line: u64,
    pub failure_mode: String,
    pub severity: i64,
    pub occurrence: i64,
    pub detection: i64,
    pub stated: i64,
    pub computed: i64,
}

/// Summary of the feature matrix and the train/test split, when one was built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureSummary {
    pub features: Vec<String>,
    pub label: String,
    pub classes: Vec<String>,
    pub class_counts: Vec<usize>,
    pub seed: u64,
    pub stratified: bool,
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_class_counts: Vec<usize>,
}

/// The report of one cleaning run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub file: String,
    pub kind: Kind,
    pub encoding: &'static str,
    pub delimiter: &'static str,
    pub columns: Vec<ColumnMap>,
    pub ignored_columns: Vec<String>,
    pub rows_read: usize,
    pub rows_kept: usize,
    /// Kept rows with at least one imputed cell.
    pub rows_imputed: usize,
    pub rows_dropped: usize,
    pub cells_imputed: BTreeMap<String, usize>,
    /// The mean each imputed column was filled with.
    pub imputed_with: BTreeMap<String, f64>,
    pub forward_filled: BTreeMap<String, usize>,
    /// Cells computed from other columns (RPN, duration, end date, criticality class).
    pub derived: BTreeMap<String, usize>,
    pub rpn_computed: usize,
    pub rpn_mismatches: Vec<RpnMismatch>,
    pub drops: Vec<Issue>,
    pub warnings: Vec<Issue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureSummary>,
}

impl Report {
    pub(crate) fn new(file: &str, kind: Kind, encoding: &'static str, delimiter: &'static str) -> Self {
        Report {
            file: file.to_string(),
            kind,
            encoding,
            delimiter,
            columns: Vec::new(),
            ignored_columns: Vec::new(),
            rows_read: 0,
            rows_kept: 0,
            rows_imputed: 0,
            rows_dropped: 0,
            cells_imputed: BTreeMap::new(),
            imputed_with: BTreeMap::new(),
            forward_filled: BTreeMap::new(),
            derived: BTreeMap::new(),
            rpn_computed: 0,
            rpn_mismatches: Vec::new(),
            drops: Vec::new(),
            warnings: Vec::new(),
            features: None,
        }
    }

    pub(crate) fn drop_row(&mut self, line: u64, column: Option<&str>, reason: String) {
        self.rows_dropped += 1;
        self.drops.push(Issue { file: self.file.clone(), line, column: column.map(str::to_string), reason });
    }

    pub(crate) fn warn(&mut self, line: u64, column: &str, reason: String) {
        self.warnings.push(Issue { file: self.file.clone(), line, column: Some(column.to_string()), reason });
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        writeln!(f, "{} ({}): encoding {}, delimiter `{}`", self.file, self.kind, self.encoding, self.delimiter)?;
        writeln!(
            f,
            "  rows read {}, kept {}, imputed {}, dropped {}",
            self.rows_read, self.rows_kept, self.rows_imputed, self.rows_dropped
        )?;
        let mapped: Vec<String> = self
            .columns
            .iter()
            .map(|c| if c.raw == c.canonical { c.raw.clone() } else { format!("{} → {}", c.raw, c.canonical) })
            .collect();
        writeln!(f, "  columns: {}", mapped.join(", "))?;
        if !self.ignored_columns.is_empty() {
            writeln!(f, "  ignored columns: {}", self.ignored_columns.join(", "))?;
        }
        writeln!(f, "  cells imputed: {}", counts(&self.cells_imputed))?;
        writeln!(f, "  forward-filled (merged cells): {}", counts(&self.forward_filled))?;
        writeln!(f, "  derived: {}", counts(&self.derived))?;
        if self.kind == Kind::Amdec {
            writeln!(
                f,
                "  RPN computed where missing: {}, stated RPN disagreeing: {}",
                self.rpn_computed,
                self.rpn_mismatches.len()
            )?;
            for m in &self.rpn_mismatches {
                writeln!(
                    f,
                    "    {}:{} `{}`: S {} × O {} × D {} = {}, stated {}",
                    m.file, m.line, m.failure_mode, m.severity, m.occurrence, m.detection, m.computed, m.stated
                )?;
            }
        }
        for (what, list) in [("dropped", &self.drops), ("warning", &self.warnings)] {
            for i in list.iter().take(SHOWN) {
                let col = i.column.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
                writeln!(f, "  {what} {}:{}{col}: {}", i.file, i.line, i.reason)?;
            }
            if list.len() > SHOWN {
                writeln!(f, "  … and {} more {what} lines (see the JSON report)", list.len() - SHOWN)?;
            }
        }
        if let Some(s) = &self.features {
            writeln!(f, "  features ({}): {}", s.features.len(), s.features.join(", "))?;
            writeln!(
                f,
                "  label `{}` classes {:?} counts {:?}; split seed {} {}: train {}, test {} (test counts {:?})",
                s.label,
                s.classes,
                s.class_counts,
                s.seed,
                if s.stratified { "stratified" } else { "not stratified" },
                s.train_rows,
                s.test_rows,
                s.test_class_counts
            )?;
        }
        Ok(())
    }
}
