//! Stream trimming: keeps the telemetry shards bounded (by length, by age, or both) without
//! ever removing an entry that a consumer group has not acknowledged yet.
//!
//! `XADD … MAXLEN` would cut blindly: when the archive falls behind, entries it never read
//! would vanish. Instead a periodic task computes, per shard, the *floor* below which every
//! group is done (the oldest pending entry of each group, and the first entry after its
//! last-delivered id, whichever is lower), and trims with `XTRIM MINID` to the lower of that
//! floor and the policy's cut. A shard with no consumer group is left alone: its readers
//! have not started yet, and a group created later starts from the beginning (`0`).
//!
//! Streams nobody reads through a group (the dead-letter stream, the model events) are cut
//! by their policy alone. Each round also reads Redis' memory use, so an operator is warned
//! (`ProActRedisMemoryHigh`) before a `noeviction` Redis refuses writes.

use std::time::Duration;

use fred::prelude::*;
use fred::types::streams::XCap;
use tokio_util::sync::CancellationToken;

/// What to keep per stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrimPolicy {
    /// Keep at most this many entries (`None`: no length cap).
    pub max_len: Option<u64>,
    /// Keep entries younger than this (`None`: no age cap). Age is the entry id's time.
    pub max_age: Option<Duration>,
    /// The stream has no consumer group by design: cut by the policy alone. Otherwise the
    /// groups decide what may go, and a stream without a group keeps everything.
    pub no_groups: bool,
}

impl TrimPolicy {
    pub fn is_off(&self) -> bool {
        self.max_len.is_none() && self.max_age.is_none()
    }
}

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(Self { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    /// The smallest id greater than this one.
    pub fn successor(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self { ms: self.ms + 1, seq: 0 },
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Entries the length cap may read per shard per round to find its cut: bounds the cost of
/// one round when a shard is far over its cap (later rounds finish the job).
const LENGTH_SCAN_LIMIT: u64 = 10_000;

/// Trims `key` once under `policy`; returns the number of entries removed.
pub async fn trim_once(client: &Client, key: &str, policy: TrimPolicy, now_ms: u64) -> Result<u64, Error> {
    if policy.is_off() {
        return Ok(0);
    }
    let floor = if policy.no_groups {
        None
    } else {
        match consumer_floor(client, key).await? {
            Some(f) => Some(f),
            None => return Ok(0),
        }
    };
    let mut cut: Option<EntryId> = None;
    if let Some(age) = policy.max_age {
        cut = Some(EntryId { ms: now_ms.saturating_sub(age.as_millis() as u64), seq: 0 });
    }
    if let Some(max_len) = policy.max_len {
        let len: u64 = client.xlen(key).await?;
        if len > max_len {
            let excess = (len - max_len).min(LENGTH_SCAN_LIMIT);
            let oldest: Vec<(String, Value)> = client.xrange(key, "-", "+", Some(excess)).await?;
            if let Some(last) = oldest.last().and_then(|(id, _)| EntryId::parse(id)) {
                cut = Some(cut.map_or(last.successor(), |c| c.max(last.successor())));
            }
        }
    }
    let Some(cut) = cut else { return Ok(0) };
    let cut = floor.map_or(cut, |f| cut.min(f));
    let removed: u64 = client.xtrim(key, XCap::try_from(("MINID", "=", cut.to_string()))?).await?;
    Ok(removed)
}

/// The lowest id any consumer group of `key` still needs; `None` when the stream has no group.
pub async fn consumer_floor(client: &Client, key: &str) -> Result<Option<EntryId>, Error> {
    let groups: Value = match client.xinfo_groups(key).await {
        Ok(v) => v,
        // A shard nobody has written to yet.
        Err(e) if e.details().contains("no such key") => return Ok(None),
        Err(e) => return Err(e),
    };
    let Value::Array(groups) = groups else { return Ok(None) };
    let mut floor: Option<EntryId> = None;
    for g in groups {
        let (name, last_delivered) = group_fields(&g);
        let (Some(name), Some(last_delivered)) = (name, last_delivered) else {
            // A reply we do not understand: the only safe answer is "trim nothing".
            return Ok(Some(EntryId { ms: 0, seq: 0 }));
        };
        let mut need = last_delivered.successor();
        // Summary form: [count, smallest id, greatest id, [[consumer, count]...]].
        let pending: Value = client.xpending(key, name.as_str(), ()).await?;
        if let Value::Array(p) = pending {
            let count = p.first().and_then(|v| v.as_u64()).unwrap_or(0);
            if count > 0 {
                match p.get(1).and_then(|v| v.as_string()).and_then(|s| EntryId::parse(&s)) {
                    Some(oldest) => need = need.min(oldest),
                    None => return Ok(Some(EntryId { ms: 0, seq: 0 })),
                }
            }
        }
        floor = Some(floor.map_or(need, |f| f.min(need)));
    }
    Ok(floor)
}

/// `name` and `last-delivered-id` from one `XINFO GROUPS` item (a map in RESP3, a flat
/// key/value array in RESP2).
fn group_fields(g: &Value) -> (Option<String>, Option<EntryId>) {
    let mut name = None;
    let mut last = None;
    let mut visit = |k: &str, v: &Value| match k {
        "name" => name = v.as_string(),
        "last-delivered-id" => last = v.as_string().and_then(|s| EntryId::parse(&s)),
        _ => {}
    };
    match g {
        Value::Array(kv) => {
            for pair in kv.chunks(2) {
                if let [k, v] = pair {
                    if let Some(k) = k.as_string() {
                        visit(&k, v);
                    }
                }
            }
        }
        Value::Map(m) => {
            for (k, v) in m.clone().inner().iter() {
                if let Some(k) = k.as_str() {
                    visit(k, v);
                }
            }
        }
        _ => {}
    }
    (name, last)
}

/// Redis' `used_memory` and `maxmemory` (0: no limit), from `INFO memory`.
pub async fn redis_memory(client: &Client) -> Result<(u64, u64), Error> {
    let info: String = client.info(Some(fred::types::InfoKind::Memory)).await?;
    let field =
        |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok());
    match (field("used_memory"), field("maxmemory")) {
        (Some(used), Some(max)) => Ok((used, max)),
        _ => Err(Error::new(fred::error::ErrorKind::Parse, "INFO memory has no used_memory/maxmemory")),
    }
}

/// Trims every stream by its policy every `every` until `shutdown`, and reports Redis'
/// memory use.
pub async fn run(client: Client, streams: Vec<(String, TrimPolicy)>, every: Duration, shutdown: CancellationToken) {
    let used = metrics::gauge!("proact_ingest_redis_used_memory_bytes");
    let max = metrics::gauge!("proact_ingest_redis_maxmemory_bytes");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now_ms = proact_proto::time::now_micros().max(0) as u64 / 1000;
        match redis_memory(&client).await {
            Ok((u, m)) => {
                used.set(u as f64);
                max.set(m as f64);
            }
            Err(e) => tracing::warn!(error = %e, "reading Redis' memory use failed; will retry"),
        }
        for (key, policy) in &streams {
            match trim_once(&client, key, *policy, now_ms).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("proact_ingest_trimmed_entries_total").increment(n);
                    tracing::debug!(stream = %key, removed = n, "trimmed");
                }
                Err(e) => tracing::warn!(stream = %key, error = %e, "trim failed; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_and_step() {
        let a = EntryId::parse("5-3").unwrap();
        assert!(a < EntryId::parse("5-4").unwrap());
        assert!(a < EntryId::parse("6-0").unwrap());
        assert_eq!(a.successor().to_string(), "5-4");
        assert_eq!(EntryId { ms: 1, seq: u64::MAX }.successor().to_string(), "2-0");
        assert_eq!(EntryId::parse("7"), Some(EntryId { ms: 7, seq: 0 }));
        assert_eq!(EntryId::parse("x-1"), None);
    }
}
