//! The JSON shape of alerts on the WebSocket and the HTTP API.

use chrono::{DateTime, SecondsFormat, Utc};
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind, AlertState, Severity};
use serde_json::{json, Value};

fn rfc3339(micros: i64) -> Value {
    if micros <= 0 {
        return Value::Null;
    }
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

pub fn severity(s: i32) -> &'static str {
    match Severity::try_from(s).unwrap_or(Severity::Unspecified) {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
        Severity::Unspecified => "unspecified",
    }
}

pub fn state(s: i32) -> &'static str {
    match AlertState::try_from(s).unwrap_or(AlertState::Unspecified) {
        AlertState::Open => "open",
        AlertState::Acknowledged => "acknowledged",
        AlertState::Cleared => "cleared",
        AlertState::Unspecified => "unspecified",
    }
}

pub fn kind(k: i32) -> &'static str {
    match AlertEventKind::try_from(k).unwrap_or(AlertEventKind::Unspecified) {
        AlertEventKind::Raised => "raised",
        AlertEventKind::Escalated => "escalated",
        AlertEventKind::Acknowledged => "acknowledged",
        AlertEventKind::Assigned => "assigned",
        AlertEventKind::Cleared => "cleared",
        AlertEventKind::Updated => "updated",
        AlertEventKind::Unspecified => "unspecified",
    }
}

/// An alert as the page and the JSON API show it, with its priority (0–100) and band (P1–P4).
pub fn alert(a: &Alert, priority: f64) -> Value {
    json!({
        "priority": (priority * 10.0).round() / 10.0,
        "priority_band": proact_maintenance::priority::band(priority),
        "alert_id": a.alert_id,
        "equipement_id": a.equipement_id,
        "start": rfc3339(a.start_micros),
        "end": rfc3339(a.end_micros),
        "severity": severity(a.severity),
        "score": a.score,
        "reason": a.reason,
        "rule": a.rule,
        "model_version": a.model_version,
        "trace_id": a.trace_id,
        "state": state(a.state),
        "updated": rfc3339(a.updated_micros),
        "acknowledged_by": a.acknowledged_by,
        "comment": a.comment,
        "assigned_to": a.assigned_to,
        "value": a.value,
    })
}

pub fn event(e: &AlertEvent, crit: &crate::criticality::Criticality) -> Value {
    json!({
        "type": "alert",
        "event_id": e.event_id,
        "kind": kind(e.kind),
        "alert": e.alert.as_ref().map(|a| alert(a, crit.priority(a))).unwrap_or(Value::Null),
    })
}
