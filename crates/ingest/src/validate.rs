//! Validation of readings against the MQTT contract (DESIGN.md): what is accepted becomes a
//! `Telemetry` message, anything else a rejection with a stable reason code and a detail
//! for humans. No input can make it panic (see the fuzz target).
//!
//! A payload is one reading (a JSON object) or several (a JSON array of such objects, at
//! most [`Limits::max_array`]): each element is validated alone, so a bad one is refused
//! with its index while the others are kept (docs/adr/0005-json-arrays-on-mqtt.md).

use std::borrow::Cow;

use chrono::DateTime;
use proact_proto::v1::{RejectReason, Telemetry};

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Limits the validator applies; defaults suit the contract.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// Most measurement fields per reading.
    pub max_fields: usize,
    /// Most readings in a payload that is a JSON array.
    pub max_array: usize,
    /// Oldest accepted event time, microseconds since the epoch, whatever the back-fill window.
    pub min_ts_micros: i64,
    /// How far after the time ingest received it an event time may be, in microseconds: a
    /// sensor clock ahead by more is refused, so a reading dated tomorrow cannot push the
    /// detector's event time ahead and make it drop every real reading as late.
    pub max_future_micros: i64,
    /// How far before the time ingest received it an event time may be (the back-fill
    /// window), in microseconds: older readings would each create a partition of their own.
    pub max_past_micros: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 16 * 1024,
            max_fields: 64,
            max_array: DEFAULT_MAX_ARRAY,
            // 2000-01-01T00:00:00Z
            min_ts_micros: 946_684_800_000_000,
            max_future_micros: DEFAULT_MAX_FUTURE_SECS as i64 * 1_000_000,
            max_past_micros: DEFAULT_BACKFILL_DAYS as i64 * 86_400 * 1_000_000,
        }
    }
}

/// Default of `PROACT_INGEST_MAX_FUTURE_SECS`.
pub const DEFAULT_MAX_FUTURE_SECS: u64 = 300;
/// Default of `PROACT_INGEST_BACKFILL_DAYS`.
pub const DEFAULT_BACKFILL_DAYS: u64 = 90;
/// Default of `PROACT_INGEST_MAX_ARRAY`: far more than a payload under the default size
/// limit can hold (a reading takes about 90 bytes of JSON).
pub const DEFAULT_MAX_ARRAY: usize = 1000;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// The stable label of a reason, for metrics and logs.
pub fn reason_label(r: RejectReason) -> &'static str {
    match r {
        RejectReason::Unspecified => "unspecified",
        RejectReason::InvalidJson => "invalid_json",
        RejectReason::NotAnObject => "not_an_object",
        RejectReason::MissingField => "missing_field",
        RejectReason::InvalidId => "invalid_id",
        RejectReason::IdMismatch => "id_mismatch",
        RejectReason::NonFinite => "non_finite",
        RejectReason::NotNumeric => "not_numeric",
        RejectReason::BadTimestamp => "bad_timestamp",
        RejectReason::AbsurdTimestamp => "absurd_timestamp",
        RejectReason::Oversize => "oversize",
        RejectReason::BadTopic => "bad_topic",
        RejectReason::UnknownEquipment => "unknown_equipment",
        RejectReason::UndecodableEntry => "undecodable_entry",
        RejectReason::InvalidFieldName => "invalid_field_name",
        RejectReason::UndecodablePayload => "undecodable_payload",
        RejectReason::NoSession => "no_session",
        RejectReason::UnknownAlias => "unknown_alias",
        RejectReason::WrongType => "wrong_type",
        RejectReason::PastRetention => "past_retention",
    }
}

/// `true` if `id` is 1-64 characters of `A-Z a-z 0-9 . _ -`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The equipment id in a topic `sensors/{id}/telemetry`.
pub fn topic_id(topic: &str) -> Result<&str, Rejection> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("sensors"), Some(id), Some("telemetry"), None) if valid_id(id) => Ok(id),
        (Some("sensors"), Some(id), Some("telemetry"), None) => {
            Err(Rejection::new(RejectReason::InvalidId, format!("topic id {id:?} is not 1-64 of A-Z a-z 0-9 . _ -")))
        }
        _ => Err(Rejection::new(RejectReason::BadTopic, format!("topic {topic:?} is not sensors/{{id}}/telemetry"))),
    }
}

/// The rejection of a payload of `len` bytes, over the limit.
pub fn oversize(len: usize, limits: &Limits) -> Rejection {
    Rejection::new(RejectReason::Oversize, format!("payload of {len} bytes exceeds {} bytes", limits.max_payload_bytes))
}

/// Validates an MQTT message that holds one reading (a JSON object) or several (a JSON array
/// of objects), calling `each` in order with every reading's index in the array (`None` for
/// an object), its bytes and what validation made of it; a bad element's rejection names its
/// index. `Err`: an array refused whole (not JSON, empty, more than `max_array` readings, a
/// bad topic, over the size limit).
pub fn parse_mqtt_payload<'a>(
    topic: &str,
    payload: &'a [u8],
    limits: &Limits,
    now_micros: i64,
    mut each: impl FnMut(Option<usize>, &'a [u8], Result<Telemetry, Rejection>),
) -> Result<(), Rejection> {
    if first_non_blank(payload) != Some(b'[') {
        each(None, payload, parse_mqtt(topic, payload, limits, now_micros));
        return Ok(());
    }
    if payload.len() > limits.max_payload_bytes {
        return Err(oversize(payload.len(), limits));
    }
    topic_id(topic)?;
    // Element boundaries only (the size limit bounds this vector); each element is then
    // parsed on its own, so one bad element costs only itself.
    let elements: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(payload).map_err(|e| json_error(payload, &e))?;
    if elements.is_empty() {
        return Err(Rejection::new(RejectReason::NotAnObject, "payload is an empty array: no reading in it"));
    }
    if elements.len() > limits.max_array {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!("array of {} readings, at most {} (PROACT_INGEST_MAX_ARRAY)", elements.len(), limits.max_array),
        ));
    }
    for (i, raw) in elements.into_iter().enumerate() {
        let bytes = raw.get().as_bytes();
        let parsed = parse_mqtt(topic, bytes, limits, now_micros)
            .map_err(|r| Rejection::new(r.reason, format!("array element {i}: {}", r.detail)));
        each(Some(i), bytes, parsed);
    }
    Ok(())
}

/// The first byte of `payload` that is not JSON whitespace.
fn first_non_blank(payload: &[u8]) -> Option<u8> {
    payload.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Validates one reading (a JSON object); `now_micros` is the reference for absurd timestamps.
///
/// The payload is read in one pass into borrowed strings and numbers (no `serde_json::Value`
/// tree): on the hot path the only allocations are the ones the `Telemetry` keeps.
pub fn parse_mqtt(topic: &str, payload: &[u8], limits: &Limits, now_micros: i64) -> Result<Telemetry, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(oversize(payload.len(), limits));
    }
    let topic_id = topic_id(topic)?;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let top = serde::Deserializer::deserialize_any(&mut de, TopVisitor { max_fields: limits.max_fields })
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| json_error(payload, &e))?;
    let Top::Object(r) = top else {
        return Err(Rejection::new(RejectReason::NotAnObject, "payload is JSON but not an object"));
    };
    if r.fields > limits.max_fields + 2 {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!("{} fields, at most {}", r.fields, limits.max_fields),
        ));
    }
    let id = match &r.id {
        None => return Err(Rejection::new(RejectReason::MissingField, "equipement_id is missing")),
        Some(Val::Str(s)) if valid_id(s) => s.as_ref(),
        Some(v) => {
            return Err(Rejection::new(
                RejectReason::InvalidId,
                format!("equipement_id {v} is not 1-64 of A-Z a-z 0-9 . _ -"),
            ))
        }
    };
    if id != topic_id {
        return Err(Rejection::new(
            RejectReason::IdMismatch,
            format!("payload id {id:?} differs from topic id {topic_id:?}"),
        ));
    }
    let ts_micros = match &r.timestamp {
        None => return Err(Rejection::new(RejectReason::MissingField, "timestamp is missing")),
        Some(Val::Str(s)) => parse_timestamp(s)?,
        Some(v) => {
            return Err(Rejection::new(RejectReason::BadTimestamp, format!("timestamp {v} is not an RFC 3339 string")))
        }
    };
    check_ts(ts_micros, limits, now_micros)?;
    if let Some((k, v)) = &r.not_numeric {
        return Err(Rejection::new(RejectReason::NotNumeric, format!("{k} is {} not a number", v.kind())));
    }
    if let Some(k) = &r.bad_name {
        return Err(field_name(k).expect_err("a bad name is refused"));
    }
    let (Some(temperature), Some(vibration)) = (r.temperature, r.vibration) else {
        let which = if r.temperature.is_none() { "temperature" } else { "vibration" };
        return Err(Rejection::new(RejectReason::MissingField, format!("{which} is missing")));
    };
    let mut t = Telemetry {
        equipement_id: id.to_string(),
        ts_micros,
        temperature,
        vibration,
        source: "mqtt".into(),
        ..Default::default()
    };
    for (k, x) in r.extra {
        t.extra.insert(k.into_owned(), x);
    }
    Ok(t)
}

/// What the top level of a payload was.
enum Top<'de> {
    Object(Reading<'de>),
    NotObject,
}

/// A payload object read in one pass. Problems are noted, not raised, so that the reasons
/// keep their order of precedence (id, then timestamp, then measurements) whatever the
/// order of the keys.
#[derive(Default)]
struct Reading<'de> {
    fields: usize,
    id: Option<Val<'de>>,
    timestamp: Option<Val<'de>>,
    temperature: Option<f64>,
    vibration: Option<f64>,
    extra: Vec<(Cow<'de, str>, f64)>,
    not_numeric: Option<(Cow<'de, str>, Val<'de>)>,
    bad_name: Option<Cow<'de, str>>,
}

/// One JSON value, as far as the contract cares.
enum Val<'de> {
    Num(f64),
    Str(Cow<'de, str>),
    Other(&'static str),
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Val::Num(_) => "a number",
            Val::Str(_) => "a string",
            Val::Other(k) => k,
        }
    }
}

impl std::fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Num(x) => write!(f, "{x}"),
            Val::Str(s) => write!(f, "{:?}", clip(s, 80)),
            Val::Other(k) => f.write_str(k),
        }
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    &s[..end]
}

struct TopVisitor {
    max_fields: usize,
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = Reading::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            r.fields += 1;
            let v = map.next_value::<ValSeed<'de>>()?.0;
            match k.as_ref() {
                "equipement_id" => r.id = Some(v),
                "timestamp" => r.timestamp = Some(v),
                _ => match v {
                    Val::Num(x) => match k.as_ref() {
                        "temperature" => r.temperature = Some(x),
                        "vibration" => r.vibration = Some(x),
                        name if field_name(name).is_err() => {
                            r.bad_name.get_or_insert(k);
                        }
                        // Past the limit the count alone decides (Oversize): keep memory bounded.
                        _ if r.extra.len() < self.max_fields => match r.extra.iter_mut().find(|(n, _)| *n == k) {
                            Some(slot) => slot.1 = x,
                            None => r.extra.push((k, x)),
                        },
                        _ => {}
                    },
                    other => {
                        r.not_numeric.get_or_insert((k, other));
                    }
                },
            }
        }
        Ok(Top::Object(r))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Read it through so that invalid JSON further on is still reported as such.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::NotObject)
    }
}

/// An object key, borrowed from the payload unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A value: numbers and strings kept, anything else named and skipped.
struct ValSeed<'de>(Val<'de>);

impl<'de> Deserialize<'de> for ValSeed<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor).map(ValSeed)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Val::Num(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Val::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Val::Num(v as f64))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Val::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Val::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Val::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Val::Other("an object"))
    }
}

/// Validates a reading that arrived already structured (gRPC).
pub fn check_telemetry(t: &Telemetry, limits: &Limits, now_micros: i64) -> Result<(), Rejection> {
    if !valid_id(&t.equipement_id) {
        return Err(Rejection::new(
            RejectReason::InvalidId,
            format!("equipement_id {:?} is not 1-64 of A-Z a-z 0-9 . _ -", t.equipement_id),
        ));
    }
    check_ts(t.ts_micros, limits, now_micros)?;
    if !t.temperature.is_finite() || !t.vibration.is_finite() {
        return Err(Rejection::new(RejectReason::NonFinite, "temperature or vibration is not finite"));
    }
    if t.extra.len() > limits.max_fields {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!("{} fields, at most {}", t.extra.len(), limits.max_fields),
        ));
    }
    for (k, v) in &t.extra {
        field_name(k)?;
        if !v.is_finite() {
            return Err(Rejection::new(RejectReason::NonFinite, format!("{k} is not finite")));
        }
    }
    Ok(())
}

fn parse_timestamp(s: &str) -> Result<i64, Rejection> {
    let dt = DateTime::parse_from_rfc3339(s).map_err(|e| {
        Rejection::new(RejectReason::BadTimestamp, format!("timestamp {s:?} is not RFC 3339 with an offset or Z: {e}"))
    })?;
    Ok(dt.timestamp_micros())
}

/// The name of an extra measurement: 1 to 64 bytes of printable characters. A control
/// character (a NUL above all) would make PostgreSQL refuse the whole row later.
fn field_name(k: &str) -> Result<(), Rejection> {
    if k.is_empty() || k.len() > 64 {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!("field name {:?} is empty or longer than 64 bytes", clip(k, 80)),
        ));
    }
    if k.chars().any(char::is_control) {
        return Err(Rejection::new(
            RejectReason::InvalidFieldName,
            format!("field name {:?} has a control character", clip(k, 80)),
        ));
    }
    Ok(())
}

/// `now` is when ingest received the reading: both bounds are relative to it.
fn check_ts(ts: i64, limits: &Limits, now: i64) -> Result<(), Rejection> {
    if ts < limits.min_ts_micros {
        return Err(Rejection::new(RejectReason::AbsurdTimestamp, "timestamp is before 2000-01-01"));
    }
    if ts > now.saturating_add(limits.max_future_micros) {
        return Err(Rejection::new(
            RejectReason::AbsurdTimestamp,
            format!(
                "timestamp is {} s after its reception, at most {} s allowed (PROACT_INGEST_MAX_FUTURE_SECS): is the sensor's clock right?",
                (ts - now) / 1_000_000,
                limits.max_future_micros / 1_000_000
            ),
        ));
    }
    if ts < now.saturating_sub(limits.max_past_micros) {
        return Err(Rejection::new(
            RejectReason::AbsurdTimestamp,
            format!(
                "timestamp is {} days before its reception, past the back-fill window of {} days (PROACT_INGEST_BACKFILL_DAYS)",
                (now - ts) / 86_400_000_000,
                limits.max_past_micros / 86_400_000_000
            ),
        ));
    }
    Ok(())
}

fn json_error(payload: &[u8], e: &serde_json::Error) -> Rejection {
    // serde_json refuses NaN/Infinity literals and numbers beyond f64: the contract names
    // those non-finite, which tells the sensor's owner more than "invalid JSON".
    let text = String::from_utf8_lossy(&payload[..payload.len().min(4096)]);
    let msg = e.to_string();
    if msg.contains("out of range") || text.contains("NaN") || text.contains("Infinity") {
        Rejection::new(RejectReason::NonFinite, format!("a value is NaN or infinite: {msg}"))
    } else {
        Rejection::new(RejectReason::InvalidJson, msg)
    }
}

/// One fuzzing step, shared by the libFuzzer target (`crates/ingest/fuzz`) and the stable
/// corpus-replay test: the first byte picks a topic (a valid one most of the time), the rest
/// is the payload (an object or an array of them). Panics if the parser panics or breaks an
/// invariant of what it accepts.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    const TOPICS: [&str; 6] = [
        "sensors/PUMP-01/telemetry",
        "sensors/PUMP-01/telemetry",
        "sensors/PUMP-01/telemetry",
        "sensors/a b/telemetry",
        "sensors/PUMP-01",
        "sensors//telemetry",
    ];
    let (topic, payload) = match data.split_first() {
        Some((t, rest)) => (TOPICS[*t as usize % TOPICS.len()], rest),
        None => (TOPICS[0], data),
    };
    let limits = Limits { max_payload_bytes: 4096, max_array: 16, ..Default::default() };
    let now = 1_710_928_800_000_000; // 2024-03-20T10:00:00Z
    let mut seen = 0;
    let whole = parse_mqtt_payload(topic, payload, &limits, now, |index, raw, parsed| {
        match index {
            Some(i) => assert_eq!(i, seen, "elements in order"),
            None => assert!(seen == 0 && raw == payload, "an object is the whole payload"),
        }
        if let (Some(i), Err(r)) = (index, &parsed) {
            assert!(r.detail.starts_with(&format!("array element {i}: ")), "{}", r.detail);
        }
        seen += 1;
        check_parsed(topic, payload, &limits, now, parsed);
    });
    assert!(seen <= limits.max_array, "at most max_array readings");
    if let Err(r) = whole {
        assert_eq!(seen, 0, "an array refused whole yields no reading");
        assert!(r.reason != RejectReason::Unspecified && !r.detail.is_empty());
    }
}

/// The invariants of one reading's validation (see [`fuzz_one`]).
fn check_parsed(topic: &str, payload: &[u8], limits: &Limits, now: i64, parsed: Result<Telemetry, Rejection>) {
    match parsed {
        Ok(t) => {
            assert!(payload.len() <= limits.max_payload_bytes);
            assert_eq!(Ok(t.equipement_id.as_str()), topic_id(topic).map_err(|_| ()), "id bound to the topic");
            assert!(valid_id(&t.equipement_id));
            assert!(t.temperature.is_finite() && t.vibration.is_finite());
            assert!(t.extra.values().all(|v| v.is_finite()));
            assert!(t.extra.len() <= limits.max_fields);
            assert!(t.extra.keys().all(|k| !k.is_empty() && k.len() <= 64));
            assert!(t.ts_micros >= limits.min_ts_micros && t.ts_micros <= now + limits.max_future_micros);
            assert!(check_telemetry(&t, limits, now).is_ok(), "what MQTT accepts, gRPC accepts");
        }
        Err(r) => assert!(r.reason != RejectReason::Unspecified && !r.detail.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_710_928_800_000_000; // 2024-03-20T10:00:00Z
    const TOPIC: &str = "sensors/PUMP-01/telemetry";

    fn parse(payload: &str) -> Result<Telemetry, Rejection> {
        parse_mqtt(TOPIC, payload.as_bytes(), &Limits::default(), NOW)
    }

    fn reason(payload: &str) -> RejectReason {
        parse(payload).unwrap_err().reason
    }

    #[test]
    fn seed_example_is_accepted() {
        let t = parse(
            r#"{"equipement_id":"PUMP-01","temperature":85.4,"vibration":12.3,"timestamp":"2024-03-20T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(t.equipement_id, "PUMP-01");
        assert_eq!(t.ts_micros, NOW);
        assert_eq!(t.temperature, 85.4);
        assert_eq!(t.vibration, 12.3);
        assert!(t.extra.is_empty());
    }

    #[test]
    fn extra_numeric_fields_are_kept_and_offsets_applied() {
        let t = parse(r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"pressure":4.2,"current":30,"timestamp":"2024-03-20T12:00:00+02:00"}"#).unwrap();
        assert_eq!(t.extra.get("pressure"), Some(&4.2));
        assert_eq!(t.extra.get("current"), Some(&30.0));
        assert_eq!(t.ts_micros, NOW);
    }

    #[test]
    fn each_malformation_has_its_reason() {
        let cases = [
            ("not json", RejectReason::InvalidJson),
            ("[1,2]", RejectReason::NotAnObject),
            (r#"{"temperature":1,"vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#, RejectReason::MissingField),
            (
                r#"{"equipement_id":"PUMP-01","vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::MissingField,
            ),
            (r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2}"#, RejectReason::MissingField),
            (
                r#"{"equipement_id":"PUMP-02","temperature":1,"vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::IdMismatch,
            ),
            (
                r#"{"equipement_id":"bad id!","temperature":1,"vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::InvalidId,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":NaN,"vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::NonFinite,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1e999,"vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::NonFinite,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":"hot","vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::NotNumeric,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":null,"timestamp":"2024-03-20T10:00:00Z"}"#,
                RejectReason::NotNumeric,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":"20/03/2024 10:00"}"#,
                RejectReason::BadTimestamp,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":"2024-03-20T10:00:00"}"#,
                RejectReason::BadTimestamp,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":1710928800}"#,
                RejectReason::BadTimestamp,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":"1970-01-01T00:00:00Z"}"#,
                RejectReason::AbsurdTimestamp,
            ),
            (
                r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":"2099-01-01T00:00:00Z"}"#,
                RejectReason::AbsurdTimestamp,
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(reason(payload), want, "payload {payload}");
        }
    }

    #[test]
    fn oversize_and_bad_topics() {
        let big = format!(r#"{{"equipement_id":"PUMP-01","pad":"{}"}}"#, "x".repeat(20_000));
        assert_eq!(reason(&big), RejectReason::Oversize);
        let ok = br#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":"2024-03-20T10:00:00Z"}"#;
        let l = Limits::default();
        assert_eq!(parse_mqtt("sensors/PUMP-01", ok, &l, NOW).unwrap_err().reason, RejectReason::BadTopic);
        assert_eq!(parse_mqtt("other/PUMP-01/telemetry", ok, &l, NOW).unwrap_err().reason, RejectReason::BadTopic);
        assert_eq!(parse_mqtt("sensors/a b/telemetry", ok, &l, NOW).unwrap_err().reason, RejectReason::InvalidId);
    }

    #[test]
    fn event_time_is_bounded_around_the_reception_time() {
        let l = Limits::default();
        let at = |offset_secs: i64| {
            let t = chrono::DateTime::from_timestamp_micros(NOW + offset_secs * 1_000_000).unwrap();
            let p = format!(
                r#"{{"equipement_id":"PUMP-01","temperature":1,"vibration":2,"timestamp":"{}"}}"#,
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            parse_mqtt("sensors/PUMP-01/telemetry", p.as_bytes(), &l, NOW)
        };
        assert!(at(300).is_ok(), "five minutes ahead is a clock's drift");
        let ahead = at(301).unwrap_err();
        assert_eq!(ahead.reason, RejectReason::AbsurdTimestamp);
        assert!(ahead.detail.contains("PROACT_INGEST_MAX_FUTURE_SECS"), "{}", ahead.detail);
        assert_eq!(at(23 * 3600).unwrap_err().reason, RejectReason::AbsurdTimestamp, "a day ahead is refused");
        assert!(at(-89 * 86_400).is_ok(), "inside the back-fill window");
        let old = at(-91 * 86_400).unwrap_err();
        assert_eq!(old.reason, RejectReason::AbsurdTimestamp);
        assert!(old.detail.contains("PROACT_INGEST_BACKFILL_DAYS"), "{}", old.detail);
        let grpc = Telemetry { equipement_id: "P".into(), ts_micros: NOW + 3_600_000_000, ..Default::default() };
        assert_eq!(check_telemetry(&grpc, &l, NOW).unwrap_err().reason, RejectReason::AbsurdTimestamp);
    }

    #[test]
    fn field_names_are_printable() {
        let p = "{\"equipement_id\":\"PUMP-01\",\"temperature\":1,\"vibration\":2,\"pres\\u0000sure\":3,\"timestamp\":\"2024-03-20T10:00:00Z\"}";
        let r = parse_mqtt("sensors/PUMP-01/telemetry", p.as_bytes(), &Limits::default(), NOW).unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidFieldName, "{}", r.detail);
        let mut t = Telemetry { equipement_id: "P".into(), ts_micros: NOW, ..Default::default() };
        t.extra.insert("tab\there".into(), 1.0);
        assert_eq!(check_telemetry(&t, &Limits::default(), NOW).unwrap_err().reason, RejectReason::InvalidFieldName);
        t.extra.clear();
        t.extra.insert("débit_m³/h".into(), 1.0);
        assert!(check_telemetry(&t, &Limits::default(), NOW).is_ok(), "printable non-ASCII is fine");
    }

    #[test]
    fn id_rules() {
        assert!(valid_id("A"));
        assert!(valid_id(&"a".repeat(64)));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id(""));
        assert!(!valid_id("é"));
        assert!(valid_id("line-1.pump_02"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic sweep; the fuzz target explores further.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"{}[]\",:0123456789.eE-+ntrufalsNIy\\"[(x % 34) as usize]
                })
                .collect();
            let _ = parse_mqtt(TOPIC, &bytes, &Limits::default(), NOW);
            fuzz_one(&bytes);
        }
    }

    /// One reading of a payload: its index, its raw JSON, its validation.
    type Parsed = (Option<usize>, String, Result<Telemetry, Rejection>);

    /// Every reading of a payload.
    fn parse_all(payload: &str, limits: &Limits) -> Result<Vec<Parsed>, Rejection> {
        let mut out = Vec::new();
        parse_mqtt_payload(TOPIC, payload.as_bytes(), limits, NOW, |i, raw, r| {
            out.push((i, String::from_utf8_lossy(raw).into_owned(), r))
        })?;
        Ok(out)
    }

    const GOOD: &str =
        r#"{"equipement_id":"PUMP-01","temperature":85.4,"vibration":12.3,"timestamp":"2024-03-20T10:00:00Z"}"#;

    #[test]
    fn an_object_payload_is_one_reading_as_before() {
        let all = parse_all(GOOD, &Limits::default()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].0, all[0].1.as_str()), (None, GOOD));
        assert_eq!(all[0].2.as_ref().unwrap().temperature, 85.4);
        // A bad object is still refused through the same path, with the payload as its bytes.
        let all = parse_all("{", &Limits::default()).unwrap();
        assert_eq!(all[0].2.as_ref().unwrap_err().reason, RejectReason::InvalidJson);
    }

    #[test]
    fn an_array_keeps_its_good_elements_and_names_the_bad_ones() {
        let bad_id = GOOD.replace("PUMP-01", "PUMP-02");
        let no_ts = r#"{"equipement_id":"PUMP-01","temperature":1,"vibration":2}"#;
        let later = GOOD.replace("10:00:00Z", "10:00:01Z");
        let payload = format!(" [ {GOOD},{bad_id}, 7, {no_ts},\n{later} ] ");
        let all = parse_all(&payload, &Limits::default()).unwrap();
        assert_eq!(all.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), (0..5).map(Some).collect::<Vec<_>>());
        let ok: Vec<i64> = all.iter().filter_map(|(_, _, r)| r.as_ref().ok()).map(|t| t.ts_micros).collect();
        assert_eq!(ok, vec![NOW, NOW + 1_000_000], "good elements kept, in order");
        let refused: Vec<(RejectReason, &str, &str)> = all
            .iter()
            .filter_map(|(_, raw, r)| r.as_ref().err().map(|e| (e.reason, raw.as_str(), e.detail.as_str())))
            .collect();
        assert_eq!(refused[0].0, RejectReason::IdMismatch);
        assert_eq!(refused[0].1, bad_id, "a bad element is dead-lettered alone, as sent");
        assert!(refused[0].2.starts_with("array element 1: payload id"), "{}", refused[0].2);
        assert_eq!((refused[1].0, refused[1].1), (RejectReason::NotAnObject, "7"));
        assert!(refused[1].2.starts_with("array element 2: "));
        assert_eq!(refused[2].0, RejectReason::MissingField);
        assert!(refused[2].2.starts_with("array element 3: timestamp is missing"));
    }

    #[test]
    fn an_array_is_refused_whole_when_too_long_empty_unreadable_or_oversize() {
        let limits = Limits { max_array: 3, ..Default::default() };
        let four = format!("[{GOOD},{GOOD},{GOOD},{GOOD}]");
        let e = parse_all(&four, &limits).unwrap_err();
        assert_eq!(e.reason, RejectReason::Oversize);
        assert!(e.detail.contains("array of 4 readings, at most 3 (PROACT_INGEST_MAX_ARRAY)"), "{}", e.detail);
        assert_eq!(parse_all(&format!("[{GOOD},{GOOD},{GOOD}]"), &limits).unwrap().len(), 3);
        assert_eq!(parse_all("[]", &limits).unwrap_err().reason, RejectReason::NotAnObject);
        assert_eq!(parse_all(&format!("[{GOOD},"), &limits).unwrap_err().reason, RejectReason::InvalidJson);
        assert_eq!(parse_all("[{\"temperature\":NaN}]", &limits).unwrap_err().reason, RejectReason::NonFinite);
        // The size limit is on the whole payload, whatever each element weighs.
        let small = Limits { max_payload_bytes: GOOD.len() * 2, ..Default::default() };
        assert_eq!(parse_all(&format!("[{GOOD},{GOOD}]"), &small).unwrap_err().reason, RejectReason::Oversize);
        let mut whole = Vec::new();
        let r = parse_mqtt_payload("sensors/a b/telemetry", format!("[{GOOD}]").as_bytes(), &limits, NOW, |i, _, _| {
            whole.push(i)
        });
        assert_eq!(r.unwrap_err().reason, RejectReason::InvalidId);
        assert!(whole.is_empty());
    }
}
