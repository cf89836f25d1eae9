//! The cleaning pipeline: decode, map the header, forward-fill merged cells, type every cell
//! (dates to ISO 8601 UTC), drop rows missing a critical value, derive what can be computed
//! (RPN, durations), impute numeric gaps with the column mean, and report all of it.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use crate::aliases::Aliases;
use crate::error::{PrepError, Result};
use crate::parse;
use crate::read;
use crate::report::{ColumnMap, Report, RpnMismatch};
use crate::schema::{ColumnSpec, Kind, Need, Ty};

/// One typed cell of a clean table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Int(i64),
    Float(f64),
    Date(DateTime<Utc>),
}

impl Cell {
    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }

    /// The numeric value of an `Int` or `Float` cell.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(x) => Some(*x),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_date(&self) -> Option<DateTime<Utc>> {
        match self {
            Cell::Date(d) => Some(*d),
            _ => None,
        }
    }

    /// The cell as written in a clean CSV.
    pub fn render(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(x) => parse::format_float(*x),
            Cell::Date(d) => parse::format_date(d),
        }
    }
}

/// A clean dataset: canonical columns, typed cells, and each row's line in the input file.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanTable {
    pub kind: Kind,
    pub columns: Vec<&'static ColumnSpec>,
    pub rows: Vec<Vec<Cell>>,
    /// 1-based input line of each row.
    pub lines: Vec<u64>,
}

impl CleanTable {
    pub fn index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == column)
    }

    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.name).collect()
    }

    /// The cell of `row` in `column`, `Empty` when the table has no such column.
    pub fn cell(&self, row: usize, column: &str) -> &Cell {
        self.index(column).map_or(&Cell::Empty, |i| &self.rows[row][i])
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as UTF-8 CSV, `,`-separated, LF line endings, canonical header.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
        w.write_record(self.columns.iter().map(|c| c.name)).expect("writing to memory");
        for row in &self.rows {
            w.write_record(row.iter().map(Cell::render)).expect("writing to memory");
        }
        w.into_inner().expect("writing to memory")
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_file(path, &self.to_csv())
    }
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| PrepError::Write { path: dir.to_path_buf(), error })?;
    }
    std::fs::write(path, bytes).map_err(|error| PrepError::Write { path: path.to_path_buf(), error })
}

/// Options of a cleaning run.
#[derive(Debug, Clone, Default)]
pub struct CleanOptions {
    pub aliases: Aliases,
}

/// The result of a cleaning run.
#[derive(Debug, Clone)]
pub struct Cleaned {
    pub table: CleanTable,
    pub report: Report,
}

/// Cleans the file at `path` as a dataset of `kind`.
pub fn clean_file(path: &Path, kind: Kind, opts: &CleanOptions) -> Result<Cleaned> {
    let bytes = std::fs::read(path).map_err(|error| PrepError::Read { path: path.to_path_buf(), error })?;
    clean_bytes(&bytes, &path.display().to_string(), kind, opts)
}

/// Cleans the bytes of a CSV export; `source` names it in the report and errors.
pub fn clean_bytes(bytes: &[u8], source: &str, kind: Kind, opts: &CleanOptions) -> Result<Cleaned> {
    let (text, encoding) = read::decode(bytes);
    if text.trim().is_empty() {
        return Err(PrepError::Empty { path: source.to_string() });
    }
    let delimiter = read::detect_delimiter(&text);
    let mut report = Report::new(source, kind, encoding, read::delimiter_name(delimiter));
    let csv_err = |e: csv::Error| PrepError::Csv { path: source.to_string(), detail: e.to_string() };

    let mut rdr =
        csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(text.as_bytes());
    let header = rdr.headers().map_err(csv_err)?.clone();

    // Header → canonical columns. `source_of[c]` is the input field of output column c.
    let mut mapped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, raw) in header.iter().enumerate() {
        let shown = if raw.trim().is_empty() { "(unnamed)".to_string() } else { raw.trim().to_string() };
        match opts.aliases.header(kind, raw) {
            Some(c) if !mapped.contains_key(c) => {
                mapped.insert(c, i);
                report.columns.push(ColumnMap { raw: shown, canonical: c.to_string() });
            }
            Some(c) => report.ignored_columns.push(format!("{shown} (second column for {c})")),
            None => report.ignored_columns.push(shown),
        }
    }
    if mapped.is_empty() {
        return Err(PrepError::NoKnownColumn {
            path: source.to_string(),
            kind: kind.name(),
            header: header.iter().collect::<Vec<_>>().join(" | "),
            expected: kind.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
        });
    }
    for spec in kind.columns() {
        if spec.need == Need::Required && !mapped.contains_key(spec.name) {
            return Err(PrepError::MissingColumn {
                path: source.to_string(),
                kind: kind.name(),
                column: spec.name,
                known: opts.aliases.names_of(kind, spec.name).join(", "),
            });
        }
    }
    let columns: Vec<&'static ColumnSpec> =
        kind.columns().iter().filter(|c| c.derived || mapped.contains_key(c.name)).collect();
    let source_of: Vec<Option<usize>> = columns.iter().map(|c| mapped.get(c.name).copied()).collect();

    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    let mut previous: Vec<Option<String>> = vec![None; columns.len()];
    let mut record = csv::StringRecord::new();
    let mut lines_seen = LineCounter { text: text.as_bytes(), upto: 0, newlines: 0 };
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(e)),
        }
        let line = lines_seen.line_at(record.position().map_or(0, |p| p.byte() as usize));
        report.rows_read += 1;
        if record.iter().all(|f| f.trim().is_empty()) {
            report.drop_row(line, None, "empty row".into());
            continue;
        }
        if record.len() > header.len() && record.iter().skip(header.len()).any(|f| !f.trim().is_empty()) {
            report.drop_row(line, None, format!("{} fields but the header has {}", record.len(), header.len()));
            continue;
        }
        let mut raw: Vec<Option<String>> = source_of
            .iter()
            .map(|s| s.and_then(|i| record.get(i)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string))
            .collect();
        forward_fill(&columns, &mut raw, &mut previous, &mut report);
        for (c, spec) in columns.iter().enumerate() {
            if let Some(v) = raw[c].as_deref() {
                if opts.aliases.has_values(kind, spec.name) {
                    match opts.aliases.value(kind, spec.name, v) {
                        Some(canon) => raw[c] = Some(canon.to_string()),
                        None => report.warn(line, spec.name, format!("unknown value `{v}`, kept as is")),
                    }
                }
            }
        }
        if let Some(row) = type_row(&columns, raw, line, &mut report) {
            rows.push(row);
            lines.push(line);
        }
    }

    let mut table = CleanTable { kind, columns, rows, lines };
    derive(&mut table, &mut report);
    let imputed_rows = impute(&mut table, &mut report);
    report.rows_kept = table.rows.len();
    report.rows_imputed = imputed_rows;
    Ok(Cleaned { table, report })
}

/// Physical line numbers from record byte offsets. The csv crate's own line count is one
/// short after a CRLF header, and reports must point at the line an editor shows.
struct LineCounter<'a> {
    text: &'a [u8],
    upto: usize,
    newlines: u64,
}

impl LineCounter<'_> {
    /// The 1-based line of the record at `byte`. The offset may point at the `\n` ending the
    /// previous record, so that byte is counted as before the record.
    fn line_at(&mut self, byte: usize) -> u64 {
        let end = (byte + 1).min(self.text.len());
        if end > self.upto {
            self.newlines += self.text[self.upto..end].iter().filter(|b| **b == b'\n').count() as u64;
            self.upto = end;
        }
        self.newlines + 1
    }
}

/// Fills the blank cells a merged block left, respecting the hierarchy: a row that starts a
/// new block at some level (a non-blank cell there) inherits the outer levels only, so a new
/// component never inherits the previous component's failure mode.
fn forward_fill(
    columns: &[&ColumnSpec],
    raw: &mut [Option<String>],
    previous: &mut [Option<String>],
    report: &mut Report,
) {
    let start =
        columns.iter().zip(raw.iter()).filter_map(|(c, v)| c.merged.filter(|_| v.is_some())).min().unwrap_or(u8::MAX);
    for (c, spec) in columns.iter().enumerate() {
        let Some(level) = spec.merged else { continue };
        if level < start && raw[c].is_none() && previous[c].is_some() {
            raw[c] = previous[c].clone();
            *report.forward_filled.entry(spec.name.to_string()).or_default() += 1;
        }
        previous[c] = raw[c].clone();
    }
}

/// Types every cell; `None` (and a drop in the report) when a critical value is missing or
/// unreadable.
fn type_row(columns: &[&ColumnSpec], raw: Vec<Option<String>>, line: u64, report: &mut Report) -> Option<Vec<Cell>> {
    let mut row = Vec::with_capacity(columns.len());
    for (spec, v) in columns.iter().zip(raw) {
        let critical = matches!(spec.need, Need::Required | Need::KeyIfPresent);
        let Some(v) = v else {
            if critical {
                report.drop_row(line, Some(spec.name), format!("missing critical value `{}`", spec.name));
                return None;
            }
            row.push(Cell::Empty);
            continue;
        };
        let cell = match spec.ty {
            Ty::Text => Some(Cell::Text(v.clone())),
            Ty::Int => parse::integer(&v).map(Cell::Int),
            Ty::Float => parse::number(&v).map(Cell::Float),
            Ty::Date => parse::date(&v).map(Cell::Date),
        };
        match cell {
            Some(c) => row.push(c),
            None if critical => {
                report.drop_row(
                    line,
                    Some(spec.name),
                    format!("`{}`: cannot read `{v}` as {}", spec.name, ty_name(spec.ty)),
                );
                return None;
            }
            None => {
                report.warn(line, spec.name, format!("cannot read `{v}` as {}, treated as missing", ty_name(spec.ty)));
                row.push(Cell::Empty);
            }
        }
    }
    Some(row)
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Text => "text",
        Ty::Int => "an integer",
        Ty::Float => "a number",
        Ty::Date => "a date",
    }
}

/// The criticality class of an RPN on the 1–10 AMDEC scale. Thresholds are documented in
/// docs/data.md; they split the sample fleet's modes into three populated classes.
pub fn criticality_class(rpn: i64) -> &'static str {
    match rpn {
        r if r >= i64::from(proact_store::reference::RPN_HIGH) => "high",
        r if r >= i64::from(proact_store::reference::RPN_MEDIUM) => "medium",
        _ => "low",
    }
}

/// Computes what other columns determine. Runs before imputation, so that a value that can
/// be computed exactly is never replaced by a mean.
fn derive(t: &mut CleanTable, report: &mut Report) {
    match t.kind {
        Kind::Amdec => {
            let (s, o, d) = (t.index("severity"), t.index("occurrence"), t.index("detection"));
            let (Some(s), Some(o), Some(d)) = (s, o, d) else { return };
            let rpn = t.index("rpn").expect("rpn is derived");
            let stated_col = t.index("rpn_stated_mismatch").expect("derived");
            let crit = t.index("criticality");
            let fm = t.index("failure_mode");
            for (r, row) in t.rows.iter_mut().enumerate() {
                let (sv, ov, dv) =
                    (row[s].as_i64().unwrap_or(0), row[o].as_i64().unwrap_or(0), row[d].as_i64().unwrap_or(0));
                // Out-of-scale values (a typo, a column shifted) can overflow: keep the row
                // and what it states, and say so, instead of aborting the whole import.
                let Some(computed) = sv.checked_mul(ov).and_then(|x| x.checked_mul(dv)) else {
                    let why = format!("severity {sv} × occurrence {ov} × detection {dv} is too large to compute");
                    report.warn(t.lines[r], "rpn", why);
                    continue;
                };
                match row[rpn].as_i64() {
                    None => {
                        report.rpn_computed += 1;
                        bump(report, "rpn");
                    }
                    Some(stated) if stated != computed => {
                        report.rpn_mismatches.push(RpnMismatch {
                            file: report.file.clone(),
                            line: t.lines[r],
                            failure_mode: fm.and_then(|i| row[i].as_str()).unwrap_or_default().to_string(),
                            severity: sv,
                            occurrence: ov,
                            detection: dv,
                            stated,
                            computed,
                        });
                        row[stated_col] = Cell::Int(stated);
                    }
                    Some(_) => {}
                }
                row[rpn] = Cell::Int(computed);
                if let Some(c) = crit {
                    if row[c].is_empty() {
                        row[c] = Cell::Text(criticality_class(computed).to_string());
                        bump(report, "criticality");
                    }
                }
            }
        }
        Kind::Gmao => {
            let (Some(start), Some(end)) = (t.index("started_at"), t.index("ended_at")) else { return };
            let Some(dur) = t.index("duration_h") else { return };
            for (r, row) in t.rows.iter_mut().enumerate() {
                match (row[start].as_date(), row[end].as_date(), row[dur].as_f64()) {
                    (Some(a), Some(b), None) if b >= a => {
                        row[dur] = Cell::Float(round(((b - a).num_seconds() as f64) / 3600.0, 2));
                        bump(report, "duration_h");
                    }
                    (Some(a), None, Some(h)) => {
                        // A duration past the calendar (1e12 h) gives no end date: left empty.
                        let ended =
                            Duration::try_seconds((h * 3600.0).round() as i64).and_then(|d| a.checked_add_signed(d));
                        match ended {
                            Some(b) => {
                                row[end] = Cell::Date(b);
                                bump(report, "ended_at");
                            }
                            None => report.warn(
                                t.lines[r],
                                "ended_at",
                                format!("started_at + duration_h {h} is not a date; left empty"),
                            ),
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Fills numeric gaps with the column mean over the kept rows. Returns how many rows got at
/// least one imputed cell.
fn impute(t: &mut CleanTable, report: &mut Report) -> usize {
    let mut touched = vec![false; t.rows.len()];
    for (c, spec) in t.columns.iter().enumerate() {
        if spec.derived || spec.need != Need::Optional || !matches!(spec.ty, Ty::Int | Ty::Float) {
            continue;
        }
        let values: Vec<f64> = t.rows.iter().filter_map(|r| r[c].as_f64()).collect();
        let gaps = t.rows.len() - values.len();
        if gaps == 0 {
            continue;
        }
        if values.is_empty() {
            report.warn(0, spec.name, "every value is missing: nothing to impute from, left empty".into());
            continue;
        }
        // The sum of large finite values can overflow to infinity: then divide first.
        let n = values.len() as f64;
        let sum = values.iter().sum::<f64>();
        let mean = if sum.is_finite() { sum / n } else { values.iter().map(|x| x / n).sum::<f64>() };
        if !mean.is_finite() {
            report.warn(0, spec.name, "the values are too large to average: nothing imputed".into());
            continue;
        }
        let fill = match spec.ty {
            Ty::Int => Cell::Int(mean.round() as i64),
            _ => Cell::Float(round(mean, 4)),
        };
        for (r, row) in t.rows.iter_mut().enumerate() {
            if row[c].is_empty() {
                row[c] = fill.clone();
                touched[r] = true;
            }
        }
        report.cells_imputed.insert(spec.name.to_string(), gaps);
        report.imputed_with.insert(spec.name.to_string(), fill.as_f64().unwrap_or(mean));
    }
    touched.into_iter().filter(|t| *t).count()
}

/// One fuzzing step, shared by the libFuzzer target (`crates/dataprep/fuzz`) and the stable
/// corpus-replay test: the first byte picks the kind of export, the rest is the file. Panics
/// if cleaning panics or returns a table that breaks what the loaders rely on: every row as
/// wide as the header, finite numbers, one input line per row, and a clean CSV that cleans
/// again to as many rows.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let (kind, bytes) = match data.split_first() {
        Some((k, rest)) => (Kind::ALL[*k as usize % Kind::ALL.len()], rest),
        None => (Kind::Amdec, data),
    };
    let opts = CleanOptions::default();
    let Ok(Cleaned { table, report }) = clean_bytes(bytes, "fuzz.csv", kind, &opts) else { return };
    assert_eq!(table.rows.len(), table.lines.len());
    assert_eq!(report.rows_kept, table.rows.len());
    assert!(table.lines.windows(2).all(|w| w[0] <= w[1]), "rows keep their input order");
    for row in &table.rows {
        assert_eq!(row.len(), table.columns.len());
        for cell in row {
            match cell {
                Cell::Float(x) => assert!(x.is_finite(), "non-finite float {x}"),
                Cell::Text(t) => assert!(!t.trim().is_empty(), "blank text is Empty"),
                _ => {}
            }
        }
    }
    let again = clean_bytes(&table.to_csv(), "fuzz-clean.csv", kind, &opts).expect("a clean CSV cleans again");
    assert_eq!(again.table.rows.len(), table.rows.len(), "cleaning a clean CSV keeps every row");
}

fn bump(report: &mut Report, column: &str) {
    *report.derived.entry(column.to_string()).or_default() += 1;
}

pub(crate) fn round(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    let scaled = x * p;
    // So large that it has no decimals to round (and scaling it would overflow).
    if !scaled.is_finite() {
        return x;
    }
    scaled.round() / p
}
