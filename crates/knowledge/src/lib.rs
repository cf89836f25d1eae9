//! The knowledge base of the maintenance copilot: every AMDEC / FMEA row, GMAO intervention
//! and work order, searchable by a question typed in French or English, each answer cited
//! (source, row or intervention id, fields matched).
//!
//! Where it sits: rows come in through the data preparation's cleaner (`proact-dataprep`),
//! from files ([`record::load_amdec`], [`record::load_interventions`]) or from the reference
//! tables; [`KnowledgeBase`] indexes them in memory (tantivy) and answers [`KnowledgeBase::search`];
//! the trainer's CLI (`proact-trainer knowledge search`), the gateway's JSON routes and the
//! gRPC `Knowledge` service are thin layers over it. `docs/knowledge.md` explains the choices
//! and `proact-knowledge-eval` measures them.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod answer;
pub mod briefing;
pub mod cli;
pub mod db;
pub mod error;
pub mod eval;
pub mod index;
pub mod lexicon;
pub mod question;
pub mod record;
pub mod service;

pub use answer::{AggregateAnswer, Answer, Hit};
pub use error::KnowledgeError;
pub use index::{KnowledgeBase, Scope};
pub use record::{load_amdec, load_interventions, Record, RowRef, Source};
