//! Loading the clean reference datasets into PostgreSQL (tables of migration
//! `crates/store/migrations/0002_reference.sql`). Every row is an upsert on the table's
//! natural key that only writes when a value differs, so re-running the load changes nothing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::clean::{clean_file, Cell, CleanOptions};
use crate::error::{PrepError, Result};
use crate::generate::{AMDEC_CLEAN, GMAO_CLEAN, WORKLOAD_CLEAN};
use crate::schema::{Kind, Ty};

/// The reference tables: file in the data directory, kind, table, natural key.
pub const TABLES: [(&str, Kind, &str, &[&str]); 3] = [
    (AMDEC_CLEAN, Kind::Amdec, "amdec", &["equipement_id", "failure_mode_code"]),
    (GMAO_CLEAN, Kind::Gmao, "gmao_interventions", &["intervention_id"]),
    (WORKLOAD_CLEAN, Kind::Workload, "workload", &["technician_id", "period_start"]),
];

/// The outcome of loading one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSummary {
    pub table: &'static str,
    pub file: PathBuf,
    /// Rows in the file.
    pub rows: usize,
    /// Rows inserted or changed by this run (0 when re-run on the same files).
    pub written: u64,
    /// Rows in the table afterwards.
    pub table_rows: i64,
}

/// Connects to `url` and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Result<Client> {
    // TLS as the URL asks (`sslmode`, `sslrootcert=`), like every service.
    proact_server::db::connect(url).await.map_err(|error| PrepError::Connect { url: redact(url), error })
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            match user.split_once(':') {
                Some((name, _)) => format!("{}{name}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Applies the migrations, then upserts the three clean files of `data` in one transaction.
pub async fn load_dir(client: &mut Client, data: &Path) -> Result<Vec<LoadSummary>> {
    proact_store::schema::migrate(client).await?;
    let tx = client.transaction().await?;
    let mut out = Vec::new();
    for (file, kind, table, keys) in TABLES {
        let path = data.join(file);
        let cleaned = clean_file(&path, kind, &CleanOptions::default())?;
        let load_err = |detail: String| PrepError::Load { table, path: path.display().to_string(), detail };
        if cleaned.report.rows_dropped > 0 {
            return Err(load_err(format!(
                "{} rows are not clean (first: line {}: {}); regenerate with `proact-prepare generate` or clean the file first",
                cleaned.report.rows_dropped, cleaned.report.drops[0].line, cleaned.report.drops[0].reason
            )));
        }
        let t = &cleaned.table;
        for k in keys {
            if t.index(k).is_none() {
                return Err(load_err(format!("the key column `{k}` is missing")));
            }
        }
        let rows =
            t.rows.iter().map(|row| t.columns.iter().zip(row).map(|(spec, cell)| sql_value(spec.ty, cell)).collect());
        let written = proact_store::reference::upsert_rows(&tx, table, &t.column_names(), keys, rows).await?;
        let table_rows = proact_store::reference::count_rows(&tx, table).await?;
        tracing::info!(table, rows = t.len(), written, table_rows, "reference table loaded");
        out.push(LoadSummary { table, file: path.clone(), rows: t.len(), written, table_rows });
    }
    tx.commit().await?;
    Ok(out)
}

fn sql_value(ty: Ty, cell: &Cell) -> Box<dyn ToSql + Sync + Send> {
    match ty {
        Ty::Text => Box::new(cell.as_str().map(str::to_string)),
        Ty::Int => Box::new(cell.as_i64().and_then(|i| i32::try_from(i).ok())),
        Ty::Float => Box::new(cell.as_f64()),
        Ty::Date => Box::new(cell.as_date() as Option<DateTime<Utc>>),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("postgres://proact@127.0.0.1:5432/proact"), "postgres://proact@127.0.0.1:5432/proact");
    }
}
