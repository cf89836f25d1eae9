//! Shard leases: which detector replica owns which telemetry shard.
//!
//! Each equipment's rolling state must live in exactly one replica, so replicas do not share
//! a consumer group's entries freely: they take leases on whole shards, kept in Redis with a
//! TTL and renewed by a heartbeat. Every replica also heartbeats its own presence; the fair
//! share is `ceil(shards / live replicas)`. A replica above its share releases shards, one
//! below takes free ones, and a dead replica's leases expire so the survivors take them over
//! within one TTL. More replicas than shards is fine: the extra ones stand by.
//!
//! Renewal and release are compare-and-act scripts (only the holder may extend or drop a
//! lease), so a replica that paused past its TTL cannot take a shard back from its new owner.
//!
//! Key names depend on the deployment ([`KeyLayout`]): on a Redis Cluster every key a script
//! touches must hash to one slot, and the publish script (see [`crate::publish`]) touches the
//! alerts stream together with the shard's lease and episode records.

use std::collections::BTreeSet;

use fred::prelude::*;
use fred::types::CustomCommand;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

const REPLICAS_KEY: &str = "proact:detector:replicas";

/// How the detector names its keys (leases, episode and seen records, dedupe keys).
///
/// On one Redis each shard's keys carry the shard as hash tag (`proact:detector:lease:{3}`),
/// as they always did: a single-node deployment's keys are never renamed under it. On a
/// Redis Cluster the publish script appends to the alerts stream (one key, one slot) under
/// the shard's lease, so every detector key carries the alerts stream's name as hash tag
/// (`{proact:alerts}:detector:lease:3`) and lives in that stream's slot: one script, one
/// slot. The shards' telemetry streams, where the volume is, stay spread over the masters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    Single,
    Cluster,
}

impl KeyLayout {
    /// The layout for the deployment `client` is connected to.
    pub fn of(client: &impl ClientLike) -> Self {
        if client.is_clustered() {
            KeyLayout::Cluster
        } else {
            KeyLayout::Single
        }
    }

    /// `shard`'s key of `kind` (`lease`, `episodes`, `seen`) in this layout.
    pub fn shard_key(self, kind: &str, shard: u32) -> String {
        match self {
            KeyLayout::Single => format!("proact:detector:{kind}:{{{shard}}}"),
            KeyLayout::Cluster => format!("{{{}}}:detector:{kind}:{shard}", proact_proto::streams::ALERTS_STREAM),
        }
    }

    /// A key that is not a shard's (a dedupe key): on a cluster, in the alerts stream's slot.
    pub fn key(self, name: &str) -> String {
        match self {
            KeyLayout::Single => format!("proact:{name}"),
            KeyLayout::Cluster => format!("{{{}}}:{name}", proact_proto::streams::ALERTS_STREAM),
        }
    }
}

/// The lease key of `shard` on one Redis (see [`KeyLayout`]).
pub fn lease_key(shard: u32) -> String {
    KeyLayout::Single.shard_key("lease", shard)
}

/// `EVAL script numkeys key…`: routed on a cluster by its first key, argument 2.
pub fn eval_command() -> CustomCommand {
    CustomCommand::new_static("EVAL", fred::types::ClusterHash::Offset(2), false)
}

/// What an alert event is published under: the lease of the equipment's shard must still be
/// this replica's, checked by Redis in the same script that appends the event. A replica
/// that paused past its TTL (GC, SIGSTOP, a slow disk) and lost the shard to another one
/// therefore publishes nothing for it, even before its next heartbeat notices.
#[derive(Debug, Clone)]
pub struct Fence {
    pub replica: String,
    pub shards: u32,
}

impl Fence {
    pub fn shard_of(&self, equipement_id: &str) -> u32 {
        proact_proto::streams::shard_for(equipement_id, self.shards)
    }
}

/// What changed at a heartbeat.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    pub gained: Vec<u32>,
    pub lost: Vec<u32>,
}

/// This replica's leases.
pub struct Leases {
    client: Client,
    layout: KeyLayout,
    replica: String,
    shards: u32,
    ttl_ms: u64,
    owned: BTreeSet<u32>,
    /// Shards gained and lost since the last heartbeat that returned: a heartbeat failing
    /// mid-way keeps what it changed for the next one to report.
    unreported_gained: BTreeSet<u32>,
    unreported_lost: BTreeSet<u32>,
}

impl Leases {
    pub fn new(client: Client, replica: impl Into<String>, shards: u32, ttl_ms: u64) -> Self {
        Self {
            layout: KeyLayout::of(&client),
            client,
            replica: replica.into(),
            shards,
            ttl_ms,
            owned: BTreeSet::new(),
            unreported_gained: BTreeSet::new(),
            unreported_lost: BTreeSet::new(),
        }
    }

    pub fn owned(&self) -> Vec<u32> {
        self.owned.iter().copied().collect()
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Renews, rebalances and acquires; call well within the TTL (a third of it). The change
    /// includes what a failed heartbeat before it changed: a shard lost then gained again is
    /// in both lists (drop its state, then take it over), one gained then lost only in `lost`.
    pub async fn heartbeat(&mut self, now_ms: i64) -> Result<Change, Error> {
        Ok(self.heartbeat_with(now_ms, Vec::new()).await?.0)
    }

    /// As [`Leases::heartbeat`], also running the EVAL calls `also` (argument lists) in the
    /// renewals' pipeline, after them: the writes a shard owner fences with its lease (see
    /// [`crate::seen`]) cost no round trip of their own. Returns their replies, in order; an
    /// error of one of them is its own, not the heartbeat's.
    pub async fn heartbeat_with(
        &mut self,
        now_ms: i64,
        also: Vec<Vec<Value>>,
    ) -> Result<(Change, Vec<Result<Value, Error>>), Error> {
        // Presence, the count of live replicas for the fair share, and the renewals, in one
        // round trip: the heartbeat runs on the scoring task, and while it waits no reading
        // is read (see `shard_pending` in the library for what that measured).
        let pipeline = self.client.pipeline();
        let _: () =
            pipeline.zadd(REPLICAS_KEY, None, None, false, false, (now_ms as f64, self.replica.as_str())).await?;
        let stale = (now_ms - self.ttl_ms as i64) as f64;
        let _: () = pipeline.zremrangebyscore(REPLICAS_KEY, f64::NEG_INFINITY, stale).await?;
        let _: () = pipeline.zcard(REPLICAS_KEY).await?;
        let owned = self.owned();
        for &shard in &owned {
            let args = vec![
                RENEW.to_string(),
                "1".into(),
                self.layout.shard_key("lease", shard),
                self.replica.clone(),
                self.ttl_ms.to_string(),
            ];
            let _: () = pipeline.custom(eval_command(), args).await?;
        }
        let also_count = also.len();
        for args in also {
            let _: () = pipeline.custom(eval_command(), args).await?;
        }
        let mut replies = pipeline.try_all::<Value>().await;
        let ours = 3 + owned.len();
        if replies.len() != ours + also_count {
            // The pipeline failed as a whole (connection lost, timeout): one error for all.
            return Err(replies
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| Error::new(ErrorKind::Unknown, "lease heartbeat: fewer replies than commands")));
        }
        let also_replies = replies.split_off(ours);
        let replies: Vec<Value> = replies.into_iter().collect::<Result<_, _>>()?;
        let integer = |i: usize| {
            replies.get(i).and_then(Value::as_i64).ok_or_else(|| {
                Error::new(ErrorKind::Parse, format!("lease heartbeat: reply {i} is not an integer: {replies:?}"))
            })
        };
        let live = integer(2)?;
        let fair = self.shards.div_ceil(live.max(1) as u32) as usize;
        for (i, shard) in owned.into_iter().enumerate() {
            if integer(3 + i)? == 0 {
                self.owned.remove(&shard);
                self.unreported_lost.insert(shard);
            }
        }
        while self.owned.len() > fair {
            let shard = *self.owned.iter().next_back().expect("non-empty");
            let _: i64 = self
                .client
                .eval(RELEASE, vec![self.layout.shard_key("lease", shard)], vec![self.replica.clone()])
                .await?;
            self.owned.remove(&shard);
            self.unreported_lost.insert(shard);
        }
        // Start the scan at a replica-specific offset so replicas starting together do not
        // all race for shard 0 first.
        let offset = proact_proto::streams::shard_for(&self.replica, self.shards);
        for i in 0..self.shards {
            if self.owned.len() >= fair {
                break;
            }
            let shard = (offset + i) % self.shards;
            if self.owned.contains(&shard) {
                continue;
            }
            let set: Option<String> = self
                .client
                .set(
                    self.layout.shard_key("lease", shard),
                    self.replica.as_str(),
                    Some(Expiration::PX(self.ttl_ms as i64)),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            if set.is_some() {
                self.owned.insert(shard);
                self.unreported_gained.insert(shard);
            }
        }
        let gained = std::mem::take(&mut self.unreported_gained).into_iter().filter(|s| self.owned.contains(s));
        let lost = std::mem::take(&mut self.unreported_lost);
        Ok((Change { gained: gained.collect(), lost: lost.into_iter().collect() }, also_replies))
    }

    /// Gives `shard` up (one this replica gained but could not take over): it is no longer
    /// owned here at once, and its lease is released if Redis answers, else it expires. Either
    /// way a later heartbeat can gain it again.
    pub async fn release(&mut self, shard: u32) -> Result<(), Error> {
        if !self.owned.remove(&shard) {
            return Ok(());
        }
        let _: i64 =
            self.client.eval(RELEASE, vec![self.layout.shard_key("lease", shard)], vec![self.replica.clone()]).await?;
        Ok(())
    }

    /// Releases every lease (on shutdown, after the last batch was acked) so others take
    /// over at once instead of after a TTL.
    pub async fn release_all(&mut self) -> Result<(), Error> {
        for shard in std::mem::take(&mut self.owned) {
            let _: i64 = self
                .client
                .eval(RELEASE, vec![self.layout.shard_key("lease", shard)], vec![self.replica.clone()])
                .await?;
        }
        let _: i64 = self.client.zrem(REPLICAS_KEY, self.replica.as_str()).await?;
        Ok(())
    }
}
