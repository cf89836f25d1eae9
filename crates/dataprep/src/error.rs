//! The errors of the data-preparation library. Each message names the file and says what
//! to do, because the person reading it is usually holding a spreadsheet export.

use std::path::PathBuf;

/// Everything that can stop a preparation run (bad rows do not: they go to the report).
#[derive(Debug, thiserror::Error)]
// I/O and connection causes are part of the message rather than a `source`, so that a
// caller printing only the top error still sees them and `{:#}` does not repeat them.
pub enum PrepError {
    #[error("cannot read {path}: {error}; check that the file exists and is readable")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {path}: {error}; check that the directory exists and is writable")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{path} is empty: expected a CSV export with a header row")]
    Empty { path: String },
    #[error("{path}: not valid CSV ({detail}); export the sheet as CSV (comma or semicolon separated)")]
    Csv { path: String, detail: String },
    #[error(
        "{path}: no column of the header is known for a {kind} file (header: {header}); \
         check --kind, or map your column names with --aliases FILE (lines `kind,canonical,alias`, \
         canonical names: {expected})"
    )]
    NoKnownColumn { path: String, kind: &'static str, header: String, expected: String },
    #[error(
        "{path}: required column `{column}` of a {kind} file is missing (known names: {known}); \
         add the export's name for it with --aliases FILE (line `{kind},{column},<your header>`)"
    )]
    MissingColumn { path: String, kind: &'static str, column: &'static str, known: String },
    #[error("alias file {path}, line {line}: {detail}")]
    Alias { path: String, line: u64, detail: String },
    #[error("{path}: {detail}")]
    Features { path: String, detail: String },
    #[error("unknown dataset kind `{0}`; expected one of amdec, gmao, workload, ai4i, mwo")]
    UnknownKind(String),
    /// The cause is a `source` here: tokio-postgres keeps its detail ("connection refused")
    /// in its own source chain, which only a chain printer shows.
    #[error("cannot connect to PostgreSQL at {url}; is it running? set --database-url or PROACT_DATABASE_URL")]
    Connect {
        url: String,
        #[source]
        error: proact_server::db::DbError,
    },
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] proact_store::schema::MigrationError),
    #[error("{0}")]
    Store(#[from] proact_store::StoreError),
    #[error("loading {table} from {path}: {detail}")]
    Load { table: &'static str, path: String, detail: String },
}

pub type Result<T, E = PrepError> = std::result::Result<T, E>;
