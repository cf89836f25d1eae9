//! ProAct's contracts: the `proact.v1` protobuf messages and gRPC services generated from
//! `proto/` (the single schema source), and the Redis stream layout every service shares:
//! key names and the shard function that maps an equipment to its telemetry stream.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("proact.v1");
}

pub mod dead_letter;
pub mod streams;
pub mod time;

pub use prost::Message;
