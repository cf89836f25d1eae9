//! The one way a service builds a dead letter: every field a sender controls is clipped, so
//! that a hostile message costs the dead-letter stream a few KiB at most, whatever its topic,
//! payload or the detail its rejection quotes.

use crate::v1::{DeadLetter, RejectReason};

/// Bytes of the payload kept (its head; `payload_truncated` says when it was longer).
pub const PAYLOAD_LIMIT: usize = 4096;
/// Bytes of the topic (or stream position) kept.
pub const TOPIC_LIMIT: usize = 256;
/// Bytes of the detail kept.
pub const DETAIL_LIMIT: usize = 1024;

/// A dead letter from `source` for `payload` received on `topic`, rejected for `reason`.
pub fn dead_letter(
    source: &str,
    topic: &str,
    reason: RejectReason,
    detail: &str,
    payload: &[u8],
    at_micros: i64,
) -> DeadLetter {
    DeadLetter {
        source: source.to_string(),
        topic: clip(topic, TOPIC_LIMIT),
        reason: reason as i32,
        detail: clip(detail, DETAIL_LIMIT),
        payload: payload[..payload.len().min(PAYLOAD_LIMIT)].to_vec(),
        payload_truncated: payload.len() > PAYLOAD_LIMIT,
        at_micros,
    }
}

/// `s` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_a_sender_controls_is_bounded() {
        let topic = format!("sensors/{}/telemetry", "é".repeat(10_000));
        let detail = "x".repeat(100_000);
        let d = dead_letter("ingest", &topic, RejectReason::InvalidJson, &detail, &[7u8; 100_000], 1);
        assert!(d.topic.len() <= TOPIC_LIMIT && d.topic.ends_with('…'), "{}", d.topic.len());
        assert!(d.detail.len() <= DETAIL_LIMIT && d.detail.ends_with('…'));
        assert_eq!(d.payload.len(), PAYLOAD_LIMIT);
        assert!(d.payload_truncated);
        let small = dead_letter("ingest", "t", RejectReason::InvalidJson, "why", b"{", 1);
        assert_eq!((small.topic.as_str(), small.detail.as_str(), small.payload_truncated), ("t", "why", false));
    }
}
