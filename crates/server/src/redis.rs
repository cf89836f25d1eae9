//! Redis connections and the stream helpers every service uses.
//!
//! A blocking `XREADGROUP` holds its connection, so a consumer reads with one client and
//! writes (acks, adds) with another: [`connect`] is cheap to call twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

pub use fred::prelude::Client as RedisClient;

/// How long [`connect`] keeps trying a Redis that does not answer yet, unless the service's
/// `PROACT_REDIS_CONNECT_TIMEOUT_SECS` says otherwise.
pub const DEFAULT_CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Connects to `url` (one Redis or a Redis Cluster: [`crate::redis_url`]) as
/// [`connect_within`] does, for up to [`DEFAULT_CONNECT_PATIENCE`].
pub async fn connect(url: &str) -> Result<Client, Error> {
    connect_within(url, DEFAULT_CONNECT_PATIENCE).await
}

/// Connects to `url` (one Redis or a Redis Cluster: [`crate::redis_url`]), then retries
/// forever with exponential backoff (100 ms to 5 s) on loss. `rediss://` and
/// `rediss-cluster://` speak TLS, verifying the server against `sslrootcert=PATH` in the URL
/// or the system's CAs.
///
/// A Redis that cannot be reached yet (down, restarting, or a cluster whose master just died
/// and whose replica is not promoted yet, `CLUSTERDOWN`) is tried again with backoff for up to
/// `patience`: a service started during a failover waits it out instead of exiting. What no
/// wait can mend fails at once: a URL of the wrong kind is refused with a message naming
/// `PROACT_REDIS_URL` (`redis://` to a node of a cluster, where every command on another
/// node's slots would fail with `MOVED`; `redis-cluster://` to a Redis without cluster
/// support), as are a bad URL, a TLS setting or certificate the server does not pass, and
/// refused credentials.
pub async fn connect_within(url: &str, patience: Duration) -> Result<Client, Error> {
    let target = crate::redis_url::parse(url)
        .map_err(|e| Error::new(fred::error::ErrorKind::Config, format!("PROACT_REDIS_URL: {e}")))?;
    let mut config = target.config;
    if target.tls {
        let tls = crate::tls::client_config(target.root_cert.as_deref())
            .map_err(|e| Error::new(fred::error::ErrorKind::Tls, e.to_string()))?;
        config.tls = Some(fred::types::config::TlsConnector::from(tls).into());
    }
    let started = std::time::Instant::now();
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let e = match connect_once(&config, target.cluster).await {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        let waited = started.elapsed();
        if !transient(&e) {
            return Err(e);
        }
        if waited + backoff.peek() > patience {
            // A proxy whose backend is down resets connections too, so a reset is tried again;
            // but a clear connection to a TLS-only port gets the same answer every time.
            let hint = if !target.tls && e.details().contains("ConnectionReset") {
                " (a TLS-only port resets clear connections: rediss:// for TLS)"
            } else {
                ""
            };
            return Err(Error::new(
                e.kind().clone(),
                format!(
                    "Redis not reachable after {} s (PROACT_REDIS_CONNECT_TIMEOUT_SECS): {}{hint}",
                    waited.as_secs(),
                    e.details()
                ),
            ));
        }
        tracing::warn!(error = %e, waited_ms = waited.as_millis() as u64, "Redis not reachable yet; retrying");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One connection attempt with a client of its own (a failed `init` leaves nothing running).
async fn connect_once(config: &fred::types::config::Config, cluster: bool) -> Result<Client, Error> {
    let client = Builder::from_config(config.clone())
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            c.internal_command_timeout = Duration::from_secs(5);
            // Commands in flight when a connection drops are retried on the new one.
            c.max_command_attempts = 6;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build()?;
    if let Err(e) = client.init().await {
        if cluster && e.details().contains("cluster support disabled") {
            return Err(Error::new(
                fred::error::ErrorKind::Config,
                "PROACT_REDIS_URL is a redis-cluster:// URL but the server is not a Redis Cluster \
                 (cluster support disabled): use redis://host:port",
            ));
        }
        return Err(e);
    }
    if !cluster {
        let info: Result<String, Error> = client.info(Some(fred::types::InfoKind::Cluster)).await;
        let enabled = match info {
            Ok(info) => info.lines().any(|l| l.trim() == "cluster_enabled:1"),
            Err(e) => {
                let _ = client.quit().await;
                return Err(e);
            }
        };
        if enabled {
            let _ = client.quit().await;
            return Err(Error::new(
                fred::error::ErrorKind::Config,
                "PROACT_REDIS_URL names a node of a Redis Cluster with redis://: \
                 use redis-cluster://host:port[,host:port…] (rediss-cluster:// for TLS)",
            ));
        }
    }
    Ok(client)
}

/// Whether a failed connection attempt may succeed if tried again: the server is down or not
/// answering, loading its data, or a cluster is between a master's death and its replica's
/// promotion. Configuration, credentials and certificates are not: trying again cannot help.
pub fn transient(e: &Error) -> bool {
    use fred::error::ErrorKind as K;
    let details = e.details();
    // A certificate refused during the handshake reaches us as an IO error.
    if details.to_ascii_lowercase().contains("certificate") {
        return false;
    }
    match e.kind() {
        K::IO | K::Timeout | K::Canceled | K::Cluster | K::Routing | K::Backpressure => true,
        // The client checks each node's `cluster_state`: not `ok` while a master's slots have
        // no live node (after its death, before its replica's promotion).
        K::Protocol => details.contains("cluster state"),
        K::Unknown => ["CLUSTERDOWN", "LOADING", "MASTERDOWN", "TRYAGAIN"].iter().any(|p| details.starts_with(p)),
        _ => false,
    }
}

/// Creates consumer group `group` on stream `key` (and the stream) if missing, starting
/// from the beginning of the stream so nothing already written is skipped.
pub async fn ensure_group(client: &Client, key: &str, group: &str) -> Result<(), Error> {
    let r: Result<(), Error> = client.xgroup_create(key, group, "0", true).await;
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.details().contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// `PING`, for readiness checks.
pub async fn ping(client: &Client) -> bool {
    let r: Result<String, Error> = client.ping(None).await;
    r.is_ok()
}

/// One entry read from a stream: where it is, and its protobuf payload (field `p`, `b` for a
/// telemetry entry carrying a batch of readings, or `s` for an equipment status in a telemetry
/// shard: docs/adr/0006-equipment-status-entries.md).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub key: String,
    pub id: String,
    /// `None` when the entry has no payload field (it is still acked, after a dead letter).
    pub payload: Option<bytes::Bytes>,
    /// The field the payload came from: [`PAYLOAD_FIELD`], [`BATCH_FIELD`] or [`STATUS_FIELD`].
    pub field: &'static str,
}

impl StreamEntry {
    /// An entry with a single message in field `p`.
    pub fn single(key: String, id: String, payload: Option<bytes::Bytes>) -> Self {
        Self { key, id, payload, field: PAYLOAD_FIELD }
    }
}

/// Reads up to `count` new entries per key for `consumer` of `group`, blocking up to
/// `block_ms` when there are none. Entries come key by key, in stream order.
pub async fn read_group(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    count: u64,
    block_ms: u64,
) -> Result<Vec<StreamEntry>, Error> {
    let ids: Vec<&str> = keys.iter().map(|_| ">").collect();
    read_group_ids(client, group, consumer, keys, &ids, count, Some(block_ms)).await
}

/// Reads this consumer's own pending entries (delivered, not acked) from the start: what a
/// restarted consumer must finish before taking new ones.
pub async fn read_own_pending(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    count: u64,
) -> Result<Vec<StreamEntry>, Error> {
    let ids: Vec<&str> = keys.iter().map(|_| "0").collect();
    read_group_ids(client, group, consumer, keys, &ids, count, None).await
}

/// Reads this consumer's own pending entries of each of `keys` after the id at the same place
/// in `after` (`0` for the start): the next page of a pending list read page by page.
pub async fn read_own_pending_after(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    after: &[String],
    count: u64,
) -> Result<Vec<StreamEntry>, Error> {
    let ids: Vec<&str> = after.iter().map(String::as_str).collect();
    read_group_ids(client, group, consumer, keys, &ids, count, None).await
}

async fn read_group_ids(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    ids: &[&str],
    count: u64,
    block_ms: Option<u64>,
) -> Result<Vec<StreamEntry>, Error> {
    let replies = xreadgroup_raw(client, group, consumer, keys, ids, count, block_ms).await?;
    let mut out: Vec<StreamEntry> = replies.into_iter().flat_map(parse_xread).collect();
    // The caller's key order (entries of one key stay in stream order): shard processing is
    // deterministic whatever order the reply or the cluster's nodes gave the keys in.
    out.sort_by_key(|e| keys.iter().position(|k| *k == e.key).unwrap_or(usize::MAX));
    Ok(out)
}

/// Longest a blocking read waits on one hash slot's keys before the next slot's turn, on a
/// Redis Cluster (see [`xreadgroup_raw`]).
pub const CLUSTER_BLOCK_SLICE_MS: u64 = 10;

/// Whose turn it is to block, among a cluster read's slots.
static BLOCK_TURN: AtomicUsize = AtomicUsize::new(0);

/// `XREADGROUP` of `keys` from `ids` (`>` for new entries, an id for pending ones), at most
/// `count` per key, as the raw replies of the calls made (each one `XREADGROUP` reply).
///
/// On one Redis that is one call, blocking up to `block_ms`. On a cluster one call cannot
/// read keys of several hash slots (`CROSSSLOT`), and a blocking call holds the whole client
/// until it returns: so the keys are grouped by slot and the groups read without blocking, in
/// one pipeline (each call goes to its slot's node: one round trip); only when nothing came
/// does it block, on one slot's keys at a time, in turn, at most [`CLUSTER_BLOCK_SLICE_MS`]
/// each, until `block_ms` passed. Under load the first read returns entries and nothing
/// blocks; idle, an entry on a slot not being waited on is seen within one slice.
pub async fn xreadgroup_raw<I: AsRef<str>>(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    ids: &[I],
    count: u64,
    block_ms: Option<u64>,
) -> Result<Vec<Value>, Error> {
    use fred::types::streams::XID;
    use fred::types::Key;
    let mut slots: std::collections::BTreeMap<u16, (Vec<Key>, Vec<XID>)> = std::collections::BTreeMap::new();
    for (key, id) in keys.iter().zip(ids) {
        let slot = if client.is_clustered() { fred::util::redis_keyslot(key.as_bytes()) } else { 0 };
        let (k, i) = slots.entry(slot).or_default();
        k.push(key.as_str().into());
        i.push(id.as_ref().into());
    }
    let slots: Vec<(Vec<Key>, Vec<XID>)> = slots.into_values().collect();
    if slots.len() <= 1 {
        let Some((keys, ids)) = slots.into_iter().next() else { return Ok(Vec::new()) };
        let raw: Value = client.xreadgroup(group, consumer, Some(count), block_ms, false, keys, ids).await?;
        return Ok(vec![raw]);
    }
    let deadline = block_ms.map(|ms| std::time::Instant::now() + Duration::from_millis(ms));
    loop {
        let pipeline = client.pipeline();
        for (keys, ids) in &slots {
            let _: () =
                pipeline.xreadgroup(group, consumer, Some(count), None, false, keys.clone(), ids.clone()).await?;
        }
        let replies: Vec<Value> = pipeline.all().await?;
        if replies.iter().any(|r| !r.is_null()) {
            return Ok(replies);
        }
        let Some(deadline) = deadline else { return Ok(Vec::new()) };
        let left = deadline.saturating_duration_since(std::time::Instant::now()).as_millis() as u64;
        if left == 0 {
            return Ok(Vec::new());
        }
        let (keys, ids) = &slots[BLOCK_TURN.fetch_add(1, Ordering::Relaxed) % slots.len()];
        let block = left.min(CLUSTER_BLOCK_SLICE_MS);
        let raw: Value =
            client.xreadgroup(group, consumer, Some(count), Some(block), false, keys.clone(), ids.clone()).await?;
        if !raw.is_null() {
            return Ok(vec![raw]);
        }
    }
}

/// Converts an `XREAD`/`XREADGROUP` reply; a blocking read that timed out replies nil,
/// which is an empty response, not an error.
pub fn xread_response(
    raw: Value,
) -> Result<fred::types::streams::XReadResponse<String, String, String, bytes::Bytes>, Error> {
    if raw.is_null() {
        return Ok(Default::default());
    }
    raw.into_xread_response()
}

/// The payload field of every ProAct stream entry (mirrors `proact_proto::streams`).
pub const PAYLOAD_FIELD: &str = "p";
/// The payload field of a telemetry entry carrying a batch of readings (mirrors
/// `proact_proto::streams`).
pub const BATCH_FIELD: &str = "b";
/// The field of a telemetry shard's status entries (mirrors `proact_proto::streams`).
pub const STATUS_FIELD: &str = "s";

/// The payload field a field name is, if it is one.
fn payload_field(name: &[u8]) -> Option<&'static str> {
    [PAYLOAD_FIELD, BATCH_FIELD, STATUS_FIELD].into_iter().find(|f| f.as_bytes() == name)
}

/// Acknowledges `entries` for `group`, one `XACK` per stream key, pipelined.
pub async fn ack(client: &Client, group: &str, entries: &[StreamEntry]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut by_key: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for e in entries {
        by_key.entry(e.key.as_str()).or_default().push(e.id.as_str());
    }
    let pipeline = client.pipeline();
    for (key, ids) in by_key {
        let ids: Vec<fred::types::streams::XID> = ids.into_iter().map(Into::into).collect();
        let _: () = pipeline.xack(key, group, ids).await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}

/// Takes over entries another consumer of `group` has held unacked for `min_idle_ms`
/// (a crashed replica), up to `count` per key. They are delivered to `consumer` afresh.
pub async fn claim_stale(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    min_idle_ms: u64,
    count: u64,
) -> Result<Vec<StreamEntry>, Error> {
    let mut out = Vec::new();
    for key in keys {
        // XAUTOCLAIM's reply: [next-cursor, [[id, [field, value, ...]], ...], (deleted ids on Redis 7)].
        let reply: Value =
            client.xautoclaim(key.as_str(), group, consumer, min_idle_ms, "0-0", Some(count), false).await?;
        let Value::Array(parts) = reply else { continue };
        let Some(Value::Array(entries)) = parts.get(1) else { continue };
        for entry in entries {
            let Value::Array(pair) = entry else { continue };
            let (Some(id), fields) = (pair.first().and_then(|v| v.as_string()), pair.get(1)) else { continue };
            let (mut payload, mut field) = (None, PAYLOAD_FIELD);
            if let Some(Value::Array(fv)) = fields {
                for kv in fv.chunks(2) {
                    if let (2, Some(f)) = (kv.len(), value_bytes(&kv[0]).and_then(payload_field)) {
                        payload = kv[1].as_bytes().map(bytes::Bytes::copy_from_slice);
                        field = f;
                    }
                }
            }
            out.push(StreamEntry { key: key.clone(), id, payload, field });
        }
    }
    Ok(out)
}

/// One consumer group of a stream, as `XINFO GROUPS` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    /// Entries delivered to the group's consumers and not acknowledged yet.
    pub pending: u64,
    /// Entries not delivered to the group yet (Redis 7+; `None` when Redis cannot tell).
    pub lag: Option<u64>,
    pub last_delivered: String,
}

/// The consumer groups of stream `key` (none if the stream does not exist yet).
pub async fn groups(client: &Client, key: &str) -> Result<Vec<GroupInfo>, Error> {
    let v: Result<Value, Error> = client.xinfo_groups(key).await;
    let v = match v {
        Ok(v) => v,
        Err(e) if e.details().contains("no such key") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let Value::Array(groups) = v else { return Ok(Vec::new()) };
    Ok(groups.into_iter().filter_map(parse_group).collect())
}

fn parse_group(g: Value) -> Option<GroupInfo> {
    // RESP2 gives a flat array of names and values, RESP3 a map.
    let pairs: Vec<(String, Value)> = match g {
        Value::Array(f) => {
            let mut it = f.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k.as_string()?, v));
            }
            out
        }
        Value::Map(m) => m.inner().into_iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v)).collect(),
        _ => return None,
    };
    let mut info = GroupInfo::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => info.name = v.as_string()?,
            "pending" => info.pending = v.as_u64().unwrap_or(0),
            "lag" => info.lag = v.as_u64(),
            "last-delivered-id" => info.last_delivered = v.as_string().unwrap_or_default(),
            _ => {}
        }
    }
    Some(info)
}

/// Reports, every `every` until `shutdown`, how far consumer group `group` is behind on each
/// of `keys`: gauges `{prefix}_stream_lag_entries` (not yet delivered) and
/// `{prefix}_stream_pending_entries` (delivered, not acknowledged), labelled by stream.
pub async fn watch_lag(
    client: Client,
    prefix: &'static str,
    group: String,
    keys: Vec<String>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let lag_name = format!("{prefix}_stream_lag_entries");
    let pending_name = format!("{prefix}_stream_pending_entries");
    while !shutdown.is_cancelled() {
        for key in &keys {
            // A gauge is not worth waiting for once shutdown began (Redis may be gone).
            let Some(read) = crate::shutdown::bounded_after(&shutdown, Duration::ZERO, groups(&client, key)).await
            else {
                return;
            };
            match read {
                Ok(gs) => {
                    if let Some(g) = gs.into_iter().find(|g| g.name == group) {
                        let labels = [("stream", key.clone()), ("group", group.clone())];
                        if let Some(lag) = g.lag {
                            metrics::gauge!(lag_name.clone(), &labels).set(lag as f64);
                        }
                        metrics::gauge!(pending_name.clone(), &labels).set(g.pending as f64);
                    }
                }
                Err(e) => tracing::debug!(error = %e, stream = %key, "XINFO GROUPS failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn value_str(v: &Value) -> Option<String> {
    std::str::from_utf8(value_bytes(v)?).ok().map(str::to_string)
}

fn value_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.inner().as_ref()),
        Value::Bytes(b) => Some(b.as_ref()),
        _ => None,
    }
}

/// Parses an `XREAD`/`XREADGROUP` reply (RESP2 arrays or RESP3 maps; nil when nothing came).
/// On the hot path: no intermediate maps, one allocation per entry for its id.
pub fn parse_xread(raw: Value) -> Vec<StreamEntry> {
    let per_key: Vec<(String, Value)> = match raw {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((value_str(&kv[0])?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.inner().into_iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v))).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (key, entries) in per_key {
        let Value::Array(entries) = entries else { continue };
        out.reserve(entries.len());
        for entry in entries {
            let Value::Array(mut pair) = entry else { continue };
            if pair.is_empty() {
                continue;
            }
            let fields = if pair.len() > 1 { pair.pop() } else { None };
            let Some(id) = value_str(&pair[0]) else { continue };
            let (mut payload, mut field) = (None, PAYLOAD_FIELD);
            match fields {
                Some(Value::Array(fv)) => {
                    let mut it = fv.into_iter();
                    while let (Some(f), Some(v)) = (it.next(), it.next()) {
                        if let Some(name) = value_bytes(&f).and_then(payload_field) {
                            payload = bytes_of(v);
                            field = name;
                        }
                    }
                }
                Some(Value::Map(m)) => {
                    for (f, v) in m.inner() {
                        if let Some(name) = payload_field(f.as_bytes()) {
                            payload = bytes_of(v);
                            field = name;
                        }
                    }
                }
                // A pending entry deleted from the stream (trimmed) comes back with nil fields.
                _ => {}
            }
            out.push(StreamEntry { key: key.clone(), id, payload, field });
        }
    }
    out
}

fn bytes_of(v: Value) -> Option<bytes::Bytes> {
    match v {
        Value::String(s) => Some(s.inner().clone()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}
