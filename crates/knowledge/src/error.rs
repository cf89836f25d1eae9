//! The errors of the knowledge base. Each says what was wrong with the request or the data
//! and what to do; the gRPC and HTTP layers map them to a status in one place each.

use proact_dataprep::PrepError;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("the question is empty: write what you are looking for, e.g. \"fuel cooler leaking\"")]
    EmptyQuestion,
    #[error("the question is {len} bytes long, more than the {max} accepted: ask a shorter question")]
    QuestionTooLong { len: usize, max: usize },
    #[error("limit must be between 1 and {max}, got {got}")]
    BadLimit { got: usize, max: usize },
    #[error("{0}")]
    Data(#[from] PrepError),
    #[error("a record has no {what}: {detail}")]
    BadRecord { what: &'static str, detail: String },
    #[error("no alert `{0}`: check the alert id (it is the id shown on the dashboard)")]
    UnknownAlert(String),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("the knowledge base is unavailable: {0}")]
    Unavailable(String),
}
