//! Why a Sparkplug message was refused: a stable kind (for metrics and the dead-letter
//! reason) and a detail for humans naming the metric, alias or field at fault.

/// What was wrong with a message, in stable terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The topic is not a Sparkplug B topic (`spBv1.0/{group}/{type}/{node}[/{device}]`).
    BadTopic,
    /// The payload is not a Sparkplug B protobuf payload.
    Undecodable,
    /// Data, or a device's birth or death, from an edge node (or device) with no session:
    /// its birth certificate was not received.
    NoSession,
    /// A metric named by an alias its birth certificate did not declare (or declared twice).
    UnknownAlias,
    /// A metric's value does not match its datatype, or the datatype is not one of the
    /// specification's.
    WrongType,
    /// A field the specification requires is missing (a birth metric's name or datatype, a
    /// timestamp).
    MissingField,
    /// A timestamp that cannot be a time (past the year 9999).
    AbsurdTimestamp,
    /// More metrics, devices or edge nodes than the tracker's limits allow.
    TooLarge,
}

impl ErrorKind {
    /// The stable label, for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadTopic => "bad_topic",
            Self::Undecodable => "undecodable_payload",
            Self::NoSession => "no_session",
            Self::UnknownAlias => "unknown_alias",
            Self::WrongType => "wrong_type",
            Self::MissingField => "missing_field",
            Self::AbsurdTimestamp => "absurd_timestamp",
            Self::TooLarge => "oversize",
        }
    }
}

/// A refused message: its kind and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Error {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }

    /// Whether the edge node's rebirth would cure it (its session is unknown here, or
    /// out of step with what it sends): the specification's remedy is an NCMD with
    /// `Node Control/Rebirth`.
    pub fn wants_rebirth(&self) -> bool {
        matches!(self.kind, ErrorKind::NoSession | ErrorKind::UnknownAlias)
    }
}
