//! Redis connections and the stream helpers every service uses.
//!
//! A blocking `XREADGROUP` holds its connection, so a consumer reads with one client and
//! writes (acks, adds) with another: [`connect`] is cheap to call twice.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{Config as FredConfig, ReconnectPolicy};

pub use fred::prelude::Client as RedisClient;

/// Connects to `url`, retrying forever with exponential backoff (100 ms to 5 s) on loss.
/// Returns once the first connection is up, or the first connection error. `rediss://`
/// speaks TLS, verifying the server against `sslrootcert=PATH` in the URL or the system's CAs.
pub async fn connect(url: &str) -> Result<Client, Error> {
    let (url, root) = crate::tls::take_root_cert(url);
    let mut config = FredConfig::from_url(&url)?;
    if url.starts_with("rediss") {
        let tls = crate::tls::client_config(root.as_deref())
            .map_err(|e| Error::new(fred::error::ErrorKind::Tls, e.to_string()))?;
        config.tls = Some(fred::types::config::TlsConnector::from(tls).into());
    } else if root.is_some() {
        return Err(Error::new(fred::error::ErrorKind::Config, "sslrootcert is set but the URL is not rediss://"));
    }
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            c.internal_command_timeout = Duration::from_secs(5);
            // Commands in flight when a connection drops are retried on the new one.
            c.max_command_attempts = 6;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build()?;
    client.init().await?;
    Ok(client)
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

/// One entry read from a stream: where it is, and its protobuf payload (field `p`).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub key: String,
    pub id: String,
    /// `None` when the entry has no payload field (it is still acked, after a dead letter).
    pub payload: Option<bytes::Bytes>,
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

async fn read_group_ids(
    client: &Client,
    group: &str,
    consumer: &str,
    keys: &[String],
    ids: &[&str],
    count: u64,
    block_ms: Option<u64>,
) -> Result<Vec<StreamEntry>, Error> {
    use fred::types::streams::XReadResponse;
    let keys_v: Vec<fred::types::Key> = keys.iter().map(|k| k.as_str().into()).collect();
    let ids_v: Vec<fred::types::streams::XID> = ids.iter().map(|i| (*i).into()).collect();
    let raw: Value = client.xreadgroup(group, consumer, Some(count), block_ms, false, keys_v, ids_v).await?;
    let resp: XReadResponse<String, String, String, bytes::Bytes> = xread_response(raw)?;
    let mut out = Vec::new();
    // Keep the caller's key order so shard processing is deterministic.
    for key in keys {
        if let Some(entries) = resp.get(key) {
            for (id, mut fields) in entries.iter().cloned() {
                out.push(StreamEntry { key: key.clone(), id, payload: fields.remove(crate::redis::PAYLOAD_FIELD) });
            }
        }
    }
    Ok(out)
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
            let mut payload = None;
            if let Some(Value::Array(fv)) = fields {
                for kv in fv.chunks(2) {
                    if kv.len() == 2 && kv[0].as_str().as_deref() == Some(PAYLOAD_FIELD) {
                        payload = kv[1].as_bytes().map(bytes::Bytes::copy_from_slice);
                    }
                }
            }
            out.push(StreamEntry { key: key.clone(), id, payload });
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
