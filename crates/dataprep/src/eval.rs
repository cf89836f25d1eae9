//! The run on real data (`just eval`): the cleaner on a real FMEA table, a real work-order
//! log and AI4I 2020, read from the shared datasets directory (never copied into the repo),
//! with each report printed and written as JSON.

use std::path::{Path, PathBuf};

use crate::clean::{clean_file, write_file, CleanOptions};
use crate::error::{PrepError, Result};
use crate::features::{ai4i_features, SPLIT_SEED};
use crate::report::Report;
use crate::schema::Kind;

/// The real datasets: report name, path under the datasets directory (a directory means
/// its first CSV file), kind.
pub const DATASETS: [(&str, &str, Kind); 3] = [
    ("uwa_mining_truck_fmea", "UWA_mining_truck_FMEA/fmea_dataset_combined.csv", Kind::Amdec),
    ("uwa_excavator_mwo", "UWA_excavator_MWO", Kind::Mwo),
    ("ai4i2020", "AI4I2020/ai4i2020.csv", Kind::Ai4i),
];

/// Cleans each real dataset, writes `<out>/<name>.clean.csv` and `<out>/<name>.report.json`,
/// and returns the reports.
pub fn eval(datasets: &Path, out: &Path) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for (name, rel, kind) in DATASETS {
        let path = resolve(&datasets.join(rel))?;
        let cleaned = clean_file(&path, kind, &CleanOptions::default())?;
        let mut report = cleaned.report;
        if kind == Kind::Ai4i {
            report.features = Some(ai4i_features(&cleaned.table)?.summary(SPLIT_SEED));
        }
        cleaned.table.write(&out.join(format!("{name}.clean.csv")))?;
        write_file(&out.join(format!("{name}.report.json")), report.to_json().as_bytes())?;
        reports.push(report);
    }
    Ok(reports)
}

fn resolve(p: &Path) -> Result<PathBuf> {
    if !p.is_dir() {
        return Ok(p.to_path_buf());
    }
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|error| PrepError::Read { path: p.to_path_buf(), error })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
        .collect();
    csvs.sort();
    csvs.into_iter().next().ok_or_else(|| PrepError::Read {
        path: p.to_path_buf(),
        error: std::io::Error::new(std::io::ErrorKind::NotFound, "no .csv file in this directory"),
    })
}
