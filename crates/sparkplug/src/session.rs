//! Edge-node sessions, as a Sparkplug host application keeps them, and what their messages
//! mean for ProAct.
//!
//! An NBIRTH opens an edge node's session: it declares the node's metrics (name, datatype,
//! optional alias) with their current values, its `bdSeq` (which its NDEATH will repeat) and
//! its first `seq`. A DBIRTH does the same for one device of the node. NDATA and DDATA then
//! report by exception: only the metrics that changed, often by alias alone. So a reading is
//! rebuilt from the session: every metric's last known value, updated by the message, at the
//! message's (or the metric's) timestamp. Every message of a node but the NDEATH carries
//! `seq`, one more than the previous one modulo 256: a gap means messages were lost, which
//! the specification answers with a rebirth request. An NDEATH whose `bdSeq` is not the
//! current session's is the will of an older connection, delivered late: it is ignored.
//!
//! A message is checked whole before it changes the session: one bad metric refuses the
//! message and leaves the last known values as they were.

use std::collections::{BTreeMap, HashMap};

use proact_proto::v1::{EquipmentStatus, Telemetry};
use prost::Message;

use crate::encode::BD_SEQ;
use crate::error::{Error, ErrorKind};
use crate::pb::payload::metric::Value as Raw;
use crate::pb::payload::Metric;
use crate::pb::Payload;
use crate::topic::{self, MessageType, Topic};
use crate::value::{self, Value};

/// The `source` of what this crate produces.
pub const SOURCE: &str = "sparkplug";

/// Latest millisecond timestamp accepted (9999-12-31T23:59:59.999Z): past it a time is not
/// representable downstream. The reception window is the caller's to check.
const MAX_TIMESTAMP_MS: u64 = 253_402_300_799_999;

/// How a Sparkplug device (or edge node) becomes a ProAct equipment id. The result must
/// still be a valid id (1-64 of `A-Z a-z 0-9 . _ -`), which the caller checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdRule {
    /// The device id (the edge node id for the node's own metrics): ids unique plant-wide.
    #[default]
    Device,
    /// `{edge node}.{device}` (the node id alone for its own metrics).
    NodeDevice,
    /// `{group}.{edge node}.{device}` (`{group}.{edge node}` for the node's own metrics).
    GroupNodeDevice,
}

impl std::str::FromStr for IdRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "device" => Ok(Self::Device),
            "node.device" => Ok(Self::NodeDevice),
            "group.node.device" => Ok(Self::GroupNodeDevice),
            _ => Err(format!("{s:?} is not one of device, node.device, group.node.device")),
        }
    }
}

/// Where a metric's value goes in a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Temperature,
    Vibration,
    /// An extra measurement, under this name.
    Extra(String),
    /// `bdSeq`, `Node Control/…`, `Device Control/…`: the protocol's, not a measurement.
    Control,
}

/// How metrics and ids map onto ProAct readings.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub id_rule: IdRule,
    /// Metric name → reading field (`temperature`, `vibration`, or an extra field's name).
    /// A metric not listed goes to `temperature`/`vibration` when the last `/` segment of its
    /// name is that word (any case), else to an extra field under its full name.
    pub names: HashMap<String, String>,
}

impl Mapping {
    /// Parses `metric=field,metric=field`; spaces around each name are not part of it (inner
    /// ones are: `Motor/Winding T=temperature`).
    pub fn parse_names(s: &str) -> Result<HashMap<String, String>, String> {
        let mut out = HashMap::new();
        for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
            match pair.split_once('=') {
                Some((metric, field)) if !metric.trim().is_empty() && !field.trim().is_empty() => {
                    out.insert(metric.trim().to_string(), field.trim().to_string());
                }
                _ => return Err(format!("{pair:?} is not metric=field")),
            }
        }
        Ok(out)
    }

    fn channel(&self, name: &str) -> Channel {
        if name == BD_SEQ || name.starts_with("Node Control/") || name.starts_with("Device Control/") {
            return Channel::Control;
        }
        let target = self.names.get(name).map_or_else(|| name.rsplit('/').next().unwrap_or(name), String::as_str);
        if target.eq_ignore_ascii_case("temperature") {
            Channel::Temperature
        } else if target.eq_ignore_ascii_case("vibration") {
            Channel::Vibration
        } else {
            Channel::Extra(self.names.get(name).cloned().unwrap_or_else(|| name.to_string()))
        }
    }

    /// The equipment id of a topic's device, or of its edge node.
    pub fn equipment(&self, t: &Topic<'_>) -> String {
        let (g, n) = (t.group, t.edge_node);
        match (self.id_rule, t.device) {
            (IdRule::Device, Some(d)) => d.to_string(),
            (IdRule::Device | IdRule::NodeDevice, None) => n.to_string(),
            (IdRule::NodeDevice, Some(d)) => format!("{n}.{d}"),
            (IdRule::GroupNodeDevice, Some(d)) => format!("{g}.{n}.{d}"),
            (IdRule::GroupNodeDevice, None) => format!("{g}.{n}"),
        }
    }
}

/// Bounds on what the tracker keeps, so that a misbehaving (or hostile) publisher cannot
/// grow it without end.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_nodes: usize,
    pub max_devices_per_node: usize,
    pub max_metrics_per_birth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_nodes: 10_000, max_devices_per_node: 1_000, max_metrics_per_birth: 1_000 }
    }
}

/// Why a metric (or a reading) was left out of what a message produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// `is_null`, or no value.
    Null,
    /// NaN or infinite.
    NonFinite,
    /// Text, boolean, bytes, dataset, template, array: not a measurement.
    NotNumeric,
    /// `is_transient`: the specification says not to store it.
    Transient,
    /// A reading with no known temperature or vibration (ProAct's readings need both).
    Incomplete,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::NonFinite => "non_finite",
            Self::NotNumeric => "not_numeric",
            Self::Transient => "transient",
            Self::Incomplete => "incomplete",
        }
    }
}

/// A `seq` that is not one more than the previous one: messages were lost in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGap {
    pub expected: u8,
    pub got: u8,
}

/// What one message produced.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// In event-time order.
    pub readings: Vec<Telemetry>,
    pub statuses: Vec<EquipmentStatus>,
    pub skipped: BTreeMap<Skip, u32>,
    pub seq_gap: Option<SeqGap>,
    /// The message means nothing for ProAct (a command, a host's state, a stale or unknown
    /// death), and why.
    pub ignored: Option<&'static str>,
}

impl Decoded {
    fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }
}

#[derive(Debug)]
struct Def {
    name: String,
    datatype: u32,
    channel: Channel,
}

/// The metrics a birth declared, and their last known values.
#[derive(Debug, Default)]
struct Metrics {
    defs: Vec<Def>,
    by_alias: HashMap<u64, usize>,
    by_name: HashMap<String, usize>,
    current: Vec<Option<f64>>,
}

impl Metrics {
    /// The declarations of a birth certificate, one per metric in its order.
    fn declare(birth: &[Metric], mapping: &Mapping, limits: &Limits) -> Result<Self, Error> {
        if birth.len() > limits.max_metrics_per_birth {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("birth certificate of {} metrics, at most {}", birth.len(), limits.max_metrics_per_birth),
            ));
        }
        let mut out = Self::default();
        for (i, m) in birth.iter().enumerate() {
            let Some(name) = m.name.clone() else {
                return Err(Error::new(ErrorKind::MissingField, format!("birth metric #{i} has no name")));
            };
            let Some(datatype) = m.datatype else {
                return Err(Error::new(ErrorKind::MissingField, format!("birth metric {name:?} has no datatype")));
            };
            if let Some(alias) = m.alias {
                if let Some(&other) = out.by_alias.get(&alias) {
                    return Err(Error::new(
                        ErrorKind::UnknownAlias,
                        format!("alias {alias} declared twice, for {:?} and {name:?}", out.defs[other].name),
                    ));
                }
                out.by_alias.insert(alias, i);
            }
            out.by_name.insert(name.clone(), i);
            out.defs.push(Def { channel: mapping.channel(&name), name, datatype });
        }
        out.current = vec![None; out.defs.len()];
        Ok(out)
    }

    /// Whether these metrics make an equipment of their owner: an edge node that is only a
    /// gateway for its devices has no online/offline of its own worth an alarm.
    fn measures(&self) -> bool {
        self.defs.iter().any(|d| matches!(d.channel, Channel::Temperature | Channel::Vibration))
    }

    /// The declaration a data metric refers to, by name or else by alias.
    fn resolve(&self, m: &Metric) -> Result<usize, Error> {
        match (&m.name, m.alias) {
            (Some(name), _) => self.by_name.get(name).copied().ok_or_else(|| {
                Error::new(
                    ErrorKind::UnknownAlias,
                    format!("metric {name:?} was not declared in the birth certificate"),
                )
            }),
            (None, Some(alias)) => self.by_alias.get(&alias).copied().ok_or_else(|| {
                Error::new(ErrorKind::UnknownAlias, format!("alias {alias} was not declared in the birth certificate"))
            }),
            (None, None) => Err(Error::new(ErrorKind::MissingField, "a metric has neither name nor alias")),
        }
    }
}

#[derive(Debug)]
struct Node {
    bd_seq: Option<u64>,
    seq: Option<u8>,
    metrics: Metrics,
    /// Devices born in this session (a DDEATH removes its device).
    devices: HashMap<String, Metrics>,
}

/// The sessions of every edge node heard from, keyed by group then node id.
#[derive(Debug, Default)]
pub struct Tracker {
    mapping: Mapping,
    limits: Limits,
    groups: HashMap<String, HashMap<String, Node>>,
    nodes: usize,
}

impl Tracker {
    pub fn new(mapping: Mapping, limits: Limits) -> Self {
        Self { mapping, limits, ..Default::default() }
    }

    /// Edge nodes with a session.
    pub fn sessions(&self) -> usize {
        self.nodes
    }

    /// Handles one message received at `now_micros`: what it produced, or why it is refused
    /// (then the sessions are as they were, but for a `seq` it carried, which is noted).
    pub fn handle(&mut self, topic: &str, payload: &[u8], now_micros: i64) -> Result<Decoded, Error> {
        let t = topic::parse(topic)?;
        let mut out = Decoded::default();
        if matches!(t.kind, MessageType::NCmd | MessageType::DCmd | MessageType::State) {
            out.ignored = Some("a command or a host application's state");
            return Ok(out);
        }
        let p = Payload::decode(payload)
            .map_err(|e| Error::new(ErrorKind::Undecodable, format!("not a Sparkplug B payload: {e}")))?;
        if let Some(seq) = p.seq.filter(|&s| s > 255) {
            return Err(Error::new(ErrorKind::WrongType, format!("seq {seq} is not 0-255")));
        }
        match t.kind {
            MessageType::NBirth => self.nbirth(&t, &p, now_micros, &mut out)?,
            MessageType::NDeath => self.ndeath(&t, &p, now_micros, &mut out),
            _ => self.in_session(&t, &p, now_micros, &mut out)?,
        }
        Ok(out)
    }

    fn nbirth(&mut self, t: &Topic<'_>, p: &Payload, now: i64, out: &mut Decoded) -> Result<(), Error> {
        // A new birth ends the previous session whatever follows: if this one is refused,
        // data until the next birth has no session (and asks for one).
        if self.remove_node(t.group, t.edge_node).is_some() {
            self.nodes -= 1;
        }
        if self.nodes >= self.limits.max_nodes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("{} edge nodes have a session already, at most {}", self.nodes, self.limits.max_nodes),
            ));
        }
        let mut metrics = Metrics::declare(&p.metrics, &self.mapping, &self.limits)?;
        let equipment = self.mapping.equipment(t);
        apply(&mut metrics, p, true, &equipment, now, out)?;
        if metrics.measures() {
            out.statuses.push(status(equipment, true, now, "Sparkplug NBIRTH".into()));
        }
        let node = Node { bd_seq: bd_seq(p), seq: p.seq.map(|s| s as u8), metrics, devices: HashMap::new() };
        self.groups.entry(t.group.to_string()).or_default().insert(t.edge_node.to_string(), node);
        self.nodes += 1;
        Ok(())
    }

    fn ndeath(&mut self, t: &Topic<'_>, p: &Payload, now: i64, out: &mut Decoded) {
        let Some(nodes) = self.groups.get(t.group) else {
            out.ignored = Some("the NDEATH of an edge node with no session");
            return;
        };
        let Some(node) = nodes.get(t.edge_node) else {
            out.ignored = Some("the NDEATH of an edge node with no session");
            return;
        };
        if let (Some(current), Some(dead)) = (node.bd_seq, bd_seq(p)) {
            if current != dead {
                out.ignored = Some("a stale NDEATH (its bdSeq is an older session's)");
                return;
            }
        }
        let node = self.remove_node(t.group, t.edge_node).expect("looked up above");
        self.nodes -= 1;
        let reason = format!("Sparkplug NDEATH of edge node {}/{}", t.group, t.edge_node);
        let mut devices: Vec<&String> = node.devices.keys().collect();
        devices.sort();
        for d in devices {
            let device = Topic { device: Some(d), ..*t };
            out.statuses.push(status(self.mapping.equipment(&device), false, now, reason.clone()));
        }
        if node.metrics.measures() {
            out.statuses.push(status(self.mapping.equipment(t), false, now, reason));
        }
    }

    /// Removes a node's session, and its group's map once empty (so that groups come and go
    /// with their nodes, within the node limit).
    fn remove_node(&mut self, group: &str, node: &str) -> Option<Node> {
        let nodes = self.groups.get_mut(group)?;
        let removed = nodes.remove(node);
        if nodes.is_empty() {
            self.groups.remove(group);
        }
        removed
    }

    /// DBIRTH, DDEATH, NDATA, DDATA: in the session of their edge node.
    fn in_session(&mut self, t: &Topic<'_>, p: &Payload, now: i64, out: &mut Decoded) -> Result<(), Error> {
        let no_session = || {
            Error::new(
                ErrorKind::NoSession,
                format!("{} from edge node {}/{} before its NBIRTH", t.kind.as_str(), t.group, t.edge_node),
            )
        };
        let node = self.groups.get_mut(t.group).and_then(|n| n.get_mut(t.edge_node)).ok_or_else(no_session)?;
        if let Some(got) = p.seq.map(|s| s as u8) {
            if let Some(expected) = node.seq.map(|s| s.wrapping_add(1)).filter(|&e| e != got) {
                out.seq_gap = Some(SeqGap { expected, got });
            }
            node.seq = Some(got);
        }
        let equipment = self.mapping.equipment(t);
        let device = t.device.unwrap_or_default();
        match t.kind {
            MessageType::NData => apply(&mut node.metrics, p, false, &equipment, now, out)?,
            MessageType::DData => {
                let metrics = node.devices.get_mut(device).ok_or_else(|| {
                    Error::new(
                        ErrorKind::NoSession,
                        format!(
                            "DDATA from device {device:?} of edge node {}/{} before its DBIRTH",
                            t.group, t.edge_node
                        ),
                    )
                })?;
                apply(metrics, p, false, &equipment, now, out)?;
            }
            MessageType::DBirth => {
                if !node.devices.contains_key(device) && node.devices.len() >= self.limits.max_devices_per_node {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        format!(
                            "edge node has {} devices born, at most {}",
                            node.devices.len(),
                            self.limits.max_devices_per_node
                        ),
                    ));
                }
                let mut metrics = Metrics::declare(&p.metrics, &self.mapping, &self.limits)?;
                apply(&mut metrics, p, true, &equipment, now, out)?;
                node.devices.insert(device.to_string(), metrics);
                out.statuses.push(status(equipment, true, now, "Sparkplug DBIRTH".into()));
            }
            MessageType::DDeath => {
                if node.devices.remove(device).is_some() {
                    out.statuses.push(status(equipment, false, now, "Sparkplug DDEATH".into()));
                } else {
                    out.ignored = Some("the DDEATH of a device with no DBIRTH");
                }
            }
            _ => unreachable!("births, deaths and commands are handled by the caller"),
        }
        Ok(())
    }
}

/// The `bdSeq` metric of an NBIRTH or NDEATH, if it has one.
fn bd_seq(p: &Payload) -> Option<u64> {
    p.metrics.iter().find(|m| m.name.as_deref() == Some(BD_SEQ)).and_then(|m| match m.value {
        Some(Raw::LongValue(v)) => Some(v),
        Some(Raw::IntValue(v)) => Some(u64::from(v)),
        _ => None,
    })
}

fn micros(ms: u64) -> Result<i64, Error> {
    if ms > MAX_TIMESTAMP_MS {
        return Err(Error::new(ErrorKind::AbsurdTimestamp, format!("timestamp {ms} ms is past the year 9999")));
    }
    Ok(ms as i64 * 1000)
}

fn status(equipement_id: String, online: bool, now: i64, reason: String) -> EquipmentStatus {
    EquipmentStatus { equipement_id, online, at_micros: now, reason, received_micros: now, source: SOURCE.into() }
}

/// One metric of a message, checked.
struct Checked {
    index: usize,
    value: Option<f64>,
    ts: i64,
    historical: bool,
}

/// Checks every metric of `p` against `metrics`, then applies them and emits the readings.
/// In a birth the metrics are the declarations themselves, in order.
fn apply(
    metrics: &mut Metrics,
    p: &Payload,
    birth: bool,
    equipment: &str,
    now: i64,
    out: &mut Decoded,
) -> Result<(), Error> {
    let mut checked = Vec::with_capacity(p.metrics.len());
    for (i, m) in p.metrics.iter().enumerate() {
        let index = if birth { i } else { metrics.resolve(m)? };
        let def = &metrics.defs[index];
        if def.channel == Channel::Control {
            continue;
        }
        if m.is_transient == Some(true) {
            out.skip(Skip::Transient);
            continue;
        }
        let datatype = match m.datatype {
            Some(d) if d != def.datatype => {
                return Err(Error::new(
                    ErrorKind::WrongType,
                    format!("metric {:?} has datatype {d}, its birth certificate said {}", def.name, def.datatype),
                ))
            }
            _ => def.datatype,
        };
        let value = match value::read(m, datatype, &def.name)? {
            Value::Number(v) => Some(v),
            Value::Null => {
                out.skip(Skip::Null);
                None
            }
            Value::Skipped("non_finite") => {
                out.skip(Skip::NonFinite);
                None
            }
            Value::Skipped(_) => {
                out.skip(Skip::NotNumeric);
                None
            }
        };
        let Some(ms) = m.timestamp.or(p.timestamp) else {
            return Err(Error::new(
                ErrorKind::MissingField,
                format!("metric {:?} has no timestamp, nor has its payload", def.name),
            ));
        };
        checked.push(Checked { index, value, ts: micros(ms)?, historical: m.is_historical == Some(true) });
    }
    // Historical values are readings of their own time, laid over the current state without
    // changing it; current ones move the state, one reading per timestamp.
    let mut historical: BTreeMap<i64, Vec<&Checked>> = BTreeMap::new();
    let mut live: BTreeMap<i64, Vec<&Checked>> = BTreeMap::new();
    for c in &checked {
        if c.historical { &mut historical } else { &mut live }.entry(c.ts).or_default().push(c);
    }
    let mut readings = Vec::new();
    for (ts, group) in historical {
        let mut values = metrics.current.clone();
        group.iter().for_each(|c| values[c.index] = c.value);
        readings.extend(reading(&metrics.defs, &values, ts, equipment, now, out));
    }
    for (ts, group) in live {
        group.iter().for_each(|c| metrics.current[c.index] = c.value);
        readings.extend(reading(&metrics.defs, &metrics.current, ts, equipment, now, out));
    }
    readings.sort_by_key(|t| t.ts_micros);
    out.readings.extend(readings);
    Ok(())
}

/// The reading of `equipment` at `ts` from every metric's value then, if it has a
/// temperature and a vibration.
fn reading(
    defs: &[Def],
    values: &[Option<f64>],
    ts: i64,
    equipment: &str,
    now: i64,
    out: &mut Decoded,
) -> Option<Telemetry> {
    let (mut temperature, mut vibration) = (None, None);
    let mut extra = HashMap::new();
    for (def, value) in defs.iter().zip(values) {
        let Some(v) = *value else { continue };
        match &def.channel {
            Channel::Temperature => temperature = Some(v),
            Channel::Vibration => vibration = Some(v),
            Channel::Extra(name) => {
                extra.insert(name.clone(), v);
            }
            Channel::Control => {}
        }
    }
    let (Some(temperature), Some(vibration)) = (temperature, vibration) else {
        out.skip(Skip::Incomplete);
        return None;
    };
    Some(Telemetry {
        equipement_id: equipment.to_string(),
        ts_micros: ts,
        temperature,
        vibration,
        extra,
        received_micros: now,
        source: SOURCE.into(),
        trace_context: HashMap::new(),
    })
}
