//! Sparkplug B topics: `spBv1.0/{group_id}/{message_type}/{edge_node_id}[/{device_id}]`, and
//! the host application's `spBv1.0/STATE/{host_id}` (Sparkplug 3.0; 2.2 put STATE under a
//! group, which is accepted too).

use crate::error::{Error, ErrorKind};

/// The namespace element of every Sparkplug B topic.
pub const NAMESPACE: &str = "spBv1.0";

/// The message types of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
    State,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NBirth => "NBIRTH",
            Self::NDeath => "NDEATH",
            Self::DBirth => "DBIRTH",
            Self::DDeath => "DDEATH",
            Self::NData => "NDATA",
            Self::DData => "DDATA",
            Self::NCmd => "NCMD",
            Self::DCmd => "DCMD",
            Self::State => "STATE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NBIRTH" => Self::NBirth,
            "NDEATH" => Self::NDeath,
            "DBIRTH" => Self::DBirth,
            "DDEATH" => Self::DDeath,
            "NDATA" => Self::NData,
            "DDATA" => Self::DData,
            "NCMD" => Self::NCmd,
            "DCMD" => Self::DCmd,
            "STATE" => Self::State,
            _ => return None,
        })
    }

    /// Whether its topic names a device.
    pub fn is_device(self) -> bool {
        matches!(self, Self::DBirth | Self::DDeath | Self::DData | Self::DCmd)
    }
}

/// A parsed topic. For STATE, `edge_node` holds the host application's id and `group` is
/// empty (Sparkplug 3.0) or the group it was published under (2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    pub group: &'a str,
    pub kind: MessageType,
    pub edge_node: &'a str,
    pub device: Option<&'a str>,
}

/// Whether `topic` is in the Sparkplug B namespace (what ingest dispatches on).
pub fn is_sparkplug(topic: &str) -> bool {
    topic.strip_prefix(NAMESPACE).is_some_and(|rest| rest.starts_with('/'))
}

/// Parses a Sparkplug B topic; an id must be non-empty and free of MQTT wildcards.
pub fn parse(topic: &str) -> Result<Topic<'_>, Error> {
    let bad = |why: &str| Error::new(ErrorKind::BadTopic, format!("topic {topic:?} {why}"));
    let parts: Vec<&str> = topic.split('/').collect();
    if parts.first() != Some(&NAMESPACE) {
        return Err(bad("is not in the spBv1.0 namespace"));
    }
    if let Some(bad_id) = parts.iter().skip(1).find(|p| p.is_empty() || p.contains(['+', '#'])) {
        return Err(bad(&format!("has an empty or wildcard element {bad_id:?}")));
    }
    match parts[1..] {
        ["STATE", host] => Ok(Topic { group: "", kind: MessageType::State, edge_node: host, device: None }),
        [group, "STATE", host] => Ok(Topic { group, kind: MessageType::State, edge_node: host, device: None }),
        [group, kind, node] | [group, kind, node, _] => {
            let kind = MessageType::parse(kind).ok_or_else(|| bad(&format!("has an unknown message type {kind:?}")))?;
            let device = parts.get(4).copied();
            match (kind.is_device(), device) {
                (true, None) => Err(bad(&format!("lacks the device id a {} needs", kind.as_str()))),
                (false, Some(_)) => Err(bad(&format!("has a device id, which a {} has not", kind.as_str()))),
                _ => Ok(Topic { group, kind, edge_node: node, device }),
            }
        }
        _ => Err(bad("is not spBv1.0/{group}/{type}/{edge node}[/{device}]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_of_the_specification() {
        let t = parse("spBv1.0/Plant1/DDATA/Edge2/PUMP-01").unwrap();
        assert_eq!((t.group, t.kind, t.edge_node, t.device), ("Plant1", MessageType::DData, "Edge2", Some("PUMP-01")));
        let t = parse("spBv1.0/Plant1/NBIRTH/Edge2").unwrap();
        assert_eq!((t.kind, t.device), (MessageType::NBirth, None));
        assert_eq!(parse("spBv1.0/STATE/scada-1").unwrap().kind, MessageType::State);
        assert_eq!(parse("spBv1.0/Plant1/STATE/scada-1").unwrap().kind, MessageType::State);
        for bad in [
            "spAv1.0/G/NDATA/N",
            "spBv1.0/G/NDATA",
            "spBv1.0/G/DDATA/N",
            "spBv1.0/G/NDATA/N/D",
            "spBv1.0/G/XDATA/N",
            "spBv1.0//NDATA/N",
            "spBv1.0/G/NDATA/+",
            "spBv1.0/G/DDATA/N/D/extra",
            "sensors/P/telemetry",
        ] {
            assert_eq!(parse(bad).unwrap_err().kind, ErrorKind::BadTopic, "{bad}");
        }
        assert!(is_sparkplug("spBv1.0/G/NDATA/N"));
        assert!(!is_sparkplug("spBv1.0x/G") && !is_sparkplug("sensors/spBv1.0/telemetry"));
    }
}
