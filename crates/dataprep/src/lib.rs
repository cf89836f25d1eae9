//! Batch data preparation for ProAct, the side of the pipeline that does not stream.
//!
//! Where it sits: historical exports (AMDEC/FMEA tables, the GMAO intervention history,
//! technicians' workload, public datasets such as AI4I 2020) come in as messy CSV files;
//! this crate cleans them ([`clean`]), turns them into feature matrices with a seeded 80/20
//! split for the trainer ([`features`]), and loads the reference tables into PostgreSQL
//! ([`load`]) next to the telemetry the archive service writes. It also generates the
//! committed sample data in `data/` ([`generate`]) from the simulator's fleet, so archived
//! telemetry plus the intervention history yield training labels.
//!
//! The binary `proact-prepare` exposes it: `generate`, `clean`, `load`, `eval`.

pub mod aliases;
pub mod clean;
pub mod error;
pub mod eval;
pub mod features;
pub mod generate;
pub mod load;
pub mod parse;
pub mod read;
pub mod report;
pub mod schema;

pub use aliases::Aliases;
pub use clean::{clean_bytes, clean_file, Cell, CleanOptions, CleanTable, Cleaned};
pub use error::PrepError;
pub use features::{ai4i_features, amdec_features, prepare_ai4i, prepare_amdec, FeatureMatrix, Split, SPLIT_SEED};
pub use report::Report;
pub use schema::Kind;
