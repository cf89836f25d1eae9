//! Sparkplug B intake: what the broker delivers under `spBv1.0/…` goes through the edge
//! nodes' sessions (`proact-sparkplug`) instead of the JSON contract. Readings come out
//! validated like every other reading (`validate::check_telemetry`, the allow-list) and
//! go through the same sink; births and deaths come out as `EquipmentStatus` entries in the
//! equipment's shard, after the readings that preceded them (docs/adr/0006); every refused
//! message, or refused reading of a message, goes to the dead-letter stream with source
//! `sparkplug` and its reason.
//!
//! Sessions live in this process: an edge node's messages must all reach the same replica,
//! in order. So the Sparkplug filters are plain subscriptions (never the shared one), and
//! one replica (or one per disjoint set of groups) subscribes to them: docs/sparkplug.md.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proact_proto::v1::{DeadLetter, EquipmentStatus, RejectReason, Telemetry};
use proact_server::config::ConfigError;
use proact_sparkplug::{ErrorKind, IdRule, Limits as SessionLimits, Mapping, Tracker};

use crate::security::AllowSnapshot;
use crate::sink::dead_letter;
use crate::validate::{check_telemetry, oversize, reason_label, valid_id, Limits, Rejection};

/// The `source` of Sparkplug readings and dead letters.
pub const SOURCE: &str = "sparkplug";

/// How often, at most, one edge node is asked for a rebirth.
const REBIRTH_EVERY: Duration = Duration::from_secs(30);

/// Sparkplug settings, from `PROACT_INGEST_SPARKPLUG*`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The MQTT topic filters subscribed to (plain subscriptions).
    pub filters: Vec<String>,
    pub mapping: Mapping,
    /// Publish an NCMD `Node Control/Rebirth` when a node's session is unknown or broken.
    pub rebirth: bool,
}

impl Settings {
    /// `None` when Sparkplug is off. `groups`: `off`, `all` (`spBv1.0/#`) or a comma list of
    /// group ids (`spBv1.0/{group}/#` each).
    pub fn parse(groups: &str, id_rule: &str, metrics: &str, rebirth: bool) -> Result<Option<Self>, ConfigError> {
        let filters: Vec<String> = match groups.trim() {
            "off" | "" => return Ok(None),
            "all" => vec![format!("{}/#", proact_sparkplug::topic::NAMESPACE)],
            list => list
                .split(',')
                .map(str::trim)
                .map(|g| {
                    if g.is_empty() || g.contains(['/', '+', '#']) {
                        Err(ConfigError::new(
                            "PROACT_INGEST_SPARKPLUG",
                            groups,
                            "must be off, all, or a comma-separated list of Sparkplug group ids (no / + #)",
                        ))
                    } else {
                        Ok(format!("{}/{g}/#", proact_sparkplug::topic::NAMESPACE))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let id_rule: IdRule =
            id_rule.parse().map_err(|e: String| ConfigError::new("PROACT_INGEST_SPARKPLUG_ID", id_rule, &e))?;
        let names = Mapping::parse_names(metrics)
            .map_err(|e| ConfigError::new("PROACT_INGEST_SPARKPLUG_METRICS", metrics, &e))?;
        Ok(Some(Self { filters, mapping: Mapping { id_rule, names }, rebirth }))
    }
}

/// What a batch of messages produced, in the order it must be written.
#[derive(Default)]
pub struct Outputs {
    pub accepted: Vec<Telemetry>,
    /// Each status with the number of `accepted` readings written before it.
    pub statuses: Vec<(usize, EquipmentStatus)>,
    pub dead: Vec<DeadLetter>,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.accepted.clear();
        self.statuses.clear();
        self.dead.clear();
    }
}

/// A rebirth request to publish: topic and payload.
pub struct Rebirth {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The Sparkplug side of the MQTT writer: the sessions, and when each node was last asked
/// for a rebirth.
pub struct Intake {
    tracker: Tracker,
    rebirth: bool,
    asked: HashMap<(String, String), Instant>,
}

impl Intake {
    pub fn new(settings: &Settings) -> Self {
        Self {
            tracker: Tracker::new(settings.mapping.clone(), SessionLimits::default()),
            rebirth: settings.rebirth,
            asked: HashMap::new(),
        }
    }

    /// Handles one message (its payload cut to the dead letter's head when `oversize`);
    /// returns the rebirth request to publish, if one is due.
    #[allow(clippy::too_many_arguments)]
    pub fn take(
        &mut self,
        topic: &str,
        payload: &[u8],
        oversize_len: Option<usize>,
        limits: &Limits,
        allow: &AllowSnapshot,
        now: i64,
        out: &mut Outputs,
    ) -> Option<Rebirth> {
        let reject = |r: &Rejection, out: &mut Outputs| {
            metrics::counter!("proact_ingest_rejected_total", "reason" => reason_label(r.reason)).increment(1);
            tracing::debug!(topic, reason = reason_label(r.reason), detail = %r.detail, "sparkplug message rejected");
            out.dead.push(dead_letter(SOURCE, topic, r, payload, now));
        };
        if let Some(len) = oversize_len {
            reject(&oversize(len, limits), out);
            return None;
        }
        let decoded = match self.tracker.handle(topic, payload, now) {
            Ok(d) => d,
            Err(e) => {
                reject(&Rejection { reason: reject_reason(e.kind), detail: e.detail.clone() }, out);
                return e.wants_rebirth().then(|| self.ask_rebirth(topic, now)).flatten();
            }
        };
        metrics::gauge!("proact_ingest_sparkplug_sessions").set(self.tracker.sessions() as f64);
        for (skip, n) in &decoded.skipped {
            metrics::counter!("proact_ingest_sparkplug_skipped_total", "reason" => skip.label())
                .increment(u64::from(*n));
        }
        if let Some(why) = decoded.ignored {
            metrics::counter!("proact_ingest_sparkplug_ignored_total").increment(1);
            tracing::debug!(topic, why, "sparkplug message ignored");
        }
        // A birth's status goes before its reading, a death's has none: the status goes
        // where the message started.
        let at = out.accepted.len();
        for t in decoded.readings {
            match check_telemetry(&t, limits, now).and_then(|()| allow.check(&t.equipement_id)) {
                Ok(()) => out.accepted.push(t),
                Err(r) => reject(&r, out),
            }
        }
        for s in decoded.statuses {
            let checked = if valid_id(&s.equipement_id) {
                allow.check(&s.equipement_id)
            } else {
                Err(Rejection {
                    reason: RejectReason::InvalidId,
                    detail: format!(
                        "equipment id {:?} (from the Sparkplug ids, PROACT_INGEST_SPARKPLUG_ID) is not 1-64 of A-Z a-z 0-9 . _ -",
                        s.equipement_id
                    ),
                })
            };
            match checked {
                Ok(()) => {
                    let online = if s.online { "true" } else { "false" };
                    metrics::counter!("proact_ingest_sparkplug_status_total", "online" => online).increment(1);
                    out.statuses.push((at, s));
                }
                Err(r) => reject(&r, out),
            }
        }
        let gap = decoded.seq_gap?;
        metrics::counter!("proact_ingest_sparkplug_seq_gaps_total").increment(1);
        tracing::warn!(
            topic,
            expected = gap.expected,
            got = gap.got,
            "sparkplug seq gap: messages of this edge node were lost"
        );
        self.ask_rebirth(topic, now)
    }

    /// The rebirth request for `topic`'s edge node, unless off or asked recently (counted
    /// either way, so a dashboard sees sessions out of step when ingest may not publish).
    fn ask_rebirth(&mut self, topic: &str, now: i64) -> Option<Rebirth> {
        let t = proact_sparkplug::topic::parse(topic).ok()?;
        if !self.rebirth {
            metrics::counter!("proact_ingest_sparkplug_rebirths_total", "outcome" => "not_configured").increment(1);
            return None;
        }
        let key = (t.group.to_string(), t.edge_node.to_string());
        let at = Instant::now();
        if self.asked.get(&key).is_some_and(|last| at.duration_since(*last) < REBIRTH_EVERY) {
            return None;
        }
        if self.asked.len() >= SessionLimits::default().max_nodes {
            self.asked.retain(|_, last| at.duration_since(*last) < REBIRTH_EVERY);
        }
        self.asked.insert(key, at);
        metrics::counter!("proact_ingest_sparkplug_rebirths_total", "outcome" => "requested").increment(1);
        tracing::info!(group = t.group, edge_node = t.edge_node, "asking a sparkplug edge node for its births");
        Some(Rebirth {
            topic: format!("{}/{}/NCMD/{}", proact_sparkplug::topic::NAMESPACE, t.group, t.edge_node),
            payload: proact_sparkplug::encode::encode_rebirth_request((now / 1000) as u64),
        })
    }
}

/// The dead-letter reason of a refused Sparkplug message.
pub fn reject_reason(kind: ErrorKind) -> RejectReason {
    match kind {
        ErrorKind::BadTopic => RejectReason::BadTopic,
        ErrorKind::Undecodable => RejectReason::UndecodablePayload,
        ErrorKind::NoSession => RejectReason::NoSession,
        ErrorKind::UnknownAlias => RejectReason::UnknownAlias,
        ErrorKind::WrongType => RejectReason::WrongType,
        ErrorKind::MissingField => RejectReason::MissingField,
        ErrorKind::AbsurdTimestamp => RejectReason::AbsurdTimestamp,
        ErrorKind::TooLarge => RejectReason::Oversize,
    }
}

/// One fuzzing step, shared by the libFuzzer target (`crates/ingest/fuzz`, `sparkplug`) and
/// the stable corpus-replay test: a session is opened (NBIRTH, DBIRTH), then the first byte
/// picks a message type and the rest is its payload. Panics if decoding panics, or if what
/// it accepts breaks the reading contract.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use proact_sparkplug::encode::{encode_dbirth, encode_nbirth};
    const TOPICS: [&str; 6] = [
        "spBv1.0/G/DDATA/N/PUMP-01",
        "spBv1.0/G/DDATA/N/PUMP-01",
        "spBv1.0/G/DBIRTH/N/PUMP-01",
        "spBv1.0/G/NDATA/N",
        "spBv1.0/G/NBIRTH/N",
        "spBv1.0/G/NDEATH/N",
    ];
    let now = 1_710_928_800_000_000; // 2024-03-20T10:00:00Z
    let ms = (now / 1000) as u64;
    let settings = Settings { filters: Vec::new(), mapping: Mapping::default(), rebirth: true };
    let mut intake = Intake::new(&settings);
    let limits = Limits { max_payload_bytes: 4096, ..Default::default() };
    let allow = crate::security::Allowlist::default().snapshot();
    let mut out = Outputs::default();
    intake.take(TOPICS[4], &encode_nbirth(1, 0, ms, &[]), None, &limits, &allow, now, &mut out);
    let birth = encode_dbirth(1, ms, &[("Temperature", 1, 70.0), ("Vibration", 2, 2.0), ("Pressure", 3, 4.0)]);
    intake.take(TOPICS[2], &birth, None, &limits, &allow, now, &mut out);
    assert_eq!((out.accepted.len(), out.dead.len()), (1, 0), "the fixed session opens");
    out.clear();
    let (topic, payload) = match data.split_first() {
        Some((t, rest)) => (TOPICS[*t as usize % TOPICS.len()], rest),
        None => (TOPICS[0], data),
    };
    intake.take(topic, payload, None, &limits, &allow, now, &mut out);
    for t in &out.accepted {
        assert!(check_telemetry(t, &limits, now).is_ok(), "what Sparkplug accepts, gRPC accepts");
        assert_eq!(t.source, SOURCE);
    }
    for (at, s) in &out.statuses {
        assert!(*at <= out.accepted.len() && valid_id(&s.equipement_id));
    }
    for d in &out.dead {
        assert!(d.reason != RejectReason::Unspecified as i32 && !d.detail.is_empty() && d.source == SOURCE);
    }
}
