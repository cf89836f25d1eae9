//! Building Sparkplug B payloads: what an edge node would send (for tests, the fuzz seeds
//! and the benchmark's load), and the one message ProAct itself may publish, the rebirth
//! request (`Node Control/Rebirth` in an NCMD).

use prost::Message;

use crate::pb::payload::metric::Value as Raw;
use crate::pb::payload::Metric;
use crate::pb::{DataType, Payload};

/// Name of the birth metric that pairs an NBIRTH with its NDEATH.
pub const BD_SEQ: &str = "bdSeq";
/// Name of the node control metric that asks an edge node for new birth certificates.
pub const REBIRTH: &str = "Node Control/Rebirth";

/// A Double metric with its name and alias, as a birth certificate declares it.
pub fn birth_metric(name: &str, alias: u64, value: f64) -> Metric {
    Metric {
        name: Some(name.to_string()),
        alias: Some(alias),
        datatype: Some(DataType::Double as u32),
        value: Some(Raw::DoubleValue(value)),
        ..Default::default()
    }
}

/// A Double metric named by its alias only, as report-by-exception data sends it.
pub fn data_metric(alias: u64, value: f64) -> Metric {
    Metric { alias: Some(alias), value: Some(Raw::DoubleValue(value)), ..Default::default() }
}

/// The `bdSeq` metric of an NBIRTH or NDEATH.
pub fn bd_seq_metric(bd_seq: u64) -> Metric {
    Metric {
        name: Some(BD_SEQ.to_string()),
        datatype: Some(DataType::Int64 as u32),
        value: Some(Raw::LongValue(bd_seq)),
        ..Default::default()
    }
}

/// A payload of `metrics`, encoded.
pub fn payload(timestamp_ms: Option<u64>, seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload { timestamp: timestamp_ms, metrics, seq, ..Default::default() }.encode_to_vec()
}

/// An NBIRTH: `bdSeq`, then each `(name, alias, value)` as a Double metric.
pub fn encode_nbirth(bd_seq: u64, seq: u8, timestamp_ms: u64, metrics: &[(&str, u64, f64)]) -> Vec<u8> {
    let mut all = vec![bd_seq_metric(bd_seq)];
    all.extend(metrics.iter().map(|&(n, a, v)| birth_metric(n, a, v)));
    payload(Some(timestamp_ms), Some(u64::from(seq)), all)
}

/// An NDEATH (the edge node's MQTT will): `bdSeq` only, no sequence number.
pub fn encode_ndeath(bd_seq: u64) -> Vec<u8> {
    payload(None, None, vec![bd_seq_metric(bd_seq)])
}

/// A DBIRTH: each `(name, alias, value)` as a Double metric.
pub fn encode_dbirth(seq: u8, timestamp_ms: u64, metrics: &[(&str, u64, f64)]) -> Vec<u8> {
    payload(Some(timestamp_ms), Some(u64::from(seq)), metrics.iter().map(|&(n, a, v)| birth_metric(n, a, v)).collect())
}

/// A DDATA (or NDATA): each `(alias, value)`, stamped by the payload's timestamp.
pub fn encode_ddata(seq: u8, timestamp_ms: u64, metrics: &[(u64, f64)]) -> Vec<u8> {
    payload(Some(timestamp_ms), Some(u64::from(seq)), metrics.iter().map(|&(a, v)| data_metric(a, v)).collect())
}

/// A DDEATH.
pub fn encode_ddeath(seq: u8, timestamp_ms: u64) -> Vec<u8> {
    payload(Some(timestamp_ms), Some(u64::from(seq)), Vec::new())
}

/// The NCMD payload that asks an edge node to publish its births again.
pub fn encode_rebirth_request(timestamp_ms: u64) -> Vec<u8> {
    let rebirth = Metric {
        name: Some(REBIRTH.to_string()),
        timestamp: Some(timestamp_ms),
        datatype: Some(DataType::Boolean as u32),
        value: Some(Raw::BooleanValue(true)),
        ..Default::default()
    };
    payload(Some(timestamp_ms), None, vec![rebirth])
}
