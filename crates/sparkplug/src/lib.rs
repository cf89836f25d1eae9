//! Sparkplug B, the industrial MQTT standard (Eclipse Sparkplug 3.0), for ProAct's ingest:
//! edge nodes publish protobuf payloads on `spBv1.0/{group}/{type}/{edge node}[/{device}]`,
//! declare their metrics (names, datatypes, aliases) in birth certificates (NBIRTH, DBIRTH),
//! then report by exception (NDATA, DDATA) with aliases only, and are declared gone by death
//! certificates (NDEATH, the MQTT will; DDEATH).
//!
//! This crate holds what that takes, without any I/O: the payload schema
//! ([`pb`], generated from `proto/sparkplug_b.proto`), topic parsing ([`topic`]), a
//! [`Tracker`] of each edge node's session that turns messages into ProAct readings
//! (`proact.v1.Telemetry`) and equipment status changes (`proact.v1.EquipmentStatus`), and
//! an encoder ([`encode`]) for tests, benchmarks and the rebirth request. `crates/ingest`
//! (its `sparkplug` module) feeds it what the broker delivers; `docs/sparkplug.md` is the
//! operator's side (topics, mapping rules, settings).

pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/org.eclipse.tahu.protobuf.rs"));
}

pub mod encode;
mod error;
pub mod session;
pub mod topic;
pub mod value;

pub use error::{Error, ErrorKind};
pub use session::{Decoded, IdRule, Limits, Mapping, SeqGap, Skip, Tracker};
pub use topic::{MessageType, Topic};
