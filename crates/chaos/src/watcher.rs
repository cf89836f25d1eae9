//! The maintenance team's dashboard, reduced to what matters here: one `/ws/alerts` client
//! that records every alert event it is sent and, whenever the gateway goes away, comes back
//! with `after=<the last event id it saw>` (docs/gateway.md), as the page does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// One alert event as the client received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub event_id: String,
    pub kind: String,
    pub alert_id: String,
    pub equipement_id: String,
    /// The episode's start (the first abnormal reading's timestamp), micros.
    pub start_micros: i64,
    pub rule: String,
}

#[derive(Debug, Default)]
pub struct Seen {
    pub events: Vec<Delivered>,
    /// Resume point: the last event id received (`0-0` before any).
    pub last_id: String,
    pub connections: u64,
    /// Messages that were not alert events or heartbeats, or did not parse.
    pub unexpected: Vec<String>,
}

pub type SharedSeen = Arc<Mutex<Seen>>;

pub async fn run(gateway: SocketAddr, seen: SharedSeen, stop: CancellationToken) {
    seen.lock().unwrap().last_id = "0-0".into();
    while !stop.is_cancelled() {
        let after = seen.lock().unwrap().last_id.clone();
        let url = format!("ws://{gateway}/ws/alerts?after={after}");
        let ws = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio_tungstenite::connect_async(url) => r,
        };
        let Ok((mut ws, _)) = ws else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        seen.lock().unwrap().connections += 1;
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = ws.next() => m,
            };
            match msg {
                Some(Ok(Message::Text(t))) => record(&seen, t.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn record(seen: &SharedSeen, text: &str) {
    let mut s = seen.lock().unwrap();
    match parse(text) {
        Ok(Some(d)) => {
            s.last_id = d.event_id.clone();
            s.events.push(d);
        }
        Ok(None) => {}
        Err(why) => s.unexpected.push(format!("{why}: {text}")),
    }
}

/// An alert event, `None` for a heartbeat.
pub fn parse(text: &str) -> Result<Option<Delivered>, &'static str> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| "not JSON")?;
    match v["type"].as_str() {
        Some("heartbeat") => return Ok(None),
        Some("alert") => {}
        _ => return Err("unknown message type"),
    }
    let a = &v["alert"];
    let start = a["start"].as_str().ok_or("alert without a start")?;
    let start = chrono::DateTime::parse_from_rfc3339(start).map_err(|_| "start is not RFC 3339")?;
    let s = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_string();
    let d = Delivered {
        event_id: s(&v["event_id"]),
        kind: s(&v["kind"]),
        alert_id: s(&a["alert_id"]),
        equipement_id: s(&a["equipement_id"]),
        start_micros: start.timestamp_micros(),
        rule: s(&a["rule"]),
    };
    if d.event_id.is_empty() || d.alert_id.is_empty() {
        return Err("alert event without an event_id or alert_id");
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateway_messages() {
        assert_eq!(parse(r#"{"type":"heartbeat"}"#), Ok(None));
        let d = parse(
            r#"{"type":"alert","event_id":"17-0","kind":"raised","alert":{"alert_id":"CHAOS-01-5","equipement_id":"CHAOS-01","start":"2026-12-01T08:00:00.005Z","rule":"temperature_critical"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((d.event_id.as_str(), d.kind.as_str(), d.equipement_id.as_str()), ("17-0", "raised", "CHAOS-01"));
        assert_eq!(d.start_micros % 1_000_000, 5_000);
        assert!(parse(r#"{"type":"alert","alert":{}}"#).is_err());
        assert!(parse("nope").is_err());
    }
}
