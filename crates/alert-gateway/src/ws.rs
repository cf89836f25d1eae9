//! One `/ws/alerts` client: what it missed after its resume point, then the live feed,
//! heartbeats while idle, and eviction when it cannot keep up.
//!
//! A client never slows the others down: the feed's broadcast ring does not wait for
//! anyone, and each client's task writes to its own socket. A client is cut off with close
//! code 4008 and a reason when it falls more than its queue (the ring) behind, or when its
//! socket accepts nothing for the write timeout (a peer that stopped reading: its TCP
//! buffers are full). It then reconnects with `after=<last event_id>` and misses nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::broadcast;

use crate::feed::{Batch, StreamId, Subscription, SubscriptionError};
use crate::http::Shared;

/// Close code of an evicted client (in the 4000-4999 range left to applications).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Frames written per flush when a client has a backlog: one syscall for many alerts.
const BATCH: usize = 256;

const HEARTBEAT: Utf8Bytes = Utf8Bytes::from_static(r#"{"type":"heartbeat"}"#);

struct Connected<'a>(&'a Shared);

impl<'a> Connected<'a> {
    fn new(s: &'a Shared) -> Self {
        s.clients.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("proact_gateway_ws_clients").increment(1.0);
        Self(s)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("proact_gateway_ws_clients").decrement(1.0);
    }
}

enum End {
    /// The peer closed, or the socket failed.
    Gone,
    Shutdown,
    Evict(String),
}

/// Serves one upgraded socket until it closes, is evicted, or the gateway shuts down.
pub async fn serve(shared: Arc<Shared>, socket: WebSocket, rx: broadcast::Receiver<Batch>, after: Option<StreamId>) {
    let _connected = Connected::new(&shared);
    let (mut sink, mut incoming) = socket.split();
    let mut sub = Subscription::new(rx, shared.redis.clone(), after);
    let mut heartbeat = tokio::time::interval(shared.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let write_timeout = shared.write_timeout;
    // Counted locally, published now and then: a metrics update per delivery costs more
    // than the delivery itself with thousands of clients.
    let mut sent: u64 = 0;
    let mut wrote_since_tick = false;
    let end = loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break End::Shutdown,
            next = sub.next() => match next {
                Ok(Some(first)) => {
                    let mut batch = vec![first];
                    let mut lagged = None;
                    while batch.len() < BATCH {
                        match sub.try_next() {
                            Some(Ok(f)) => batch.push(f),
                            Some(Err(e)) => {
                                lagged = Some(e);
                                break;
                            }
                            None => break,
                        }
                    }
                    let n = batch.len() as u64;
                    if let Err(e) = write(&mut sink, batch.into_iter().map(|f| f.text.clone()), write_timeout).await {
                        break e;
                    }
                    sent += n;
                    wrote_since_tick = true;
                    if let Some(e) = lagged {
                        break evict_reason(e);
                    }
                }
                Ok(None) => break End::Shutdown,
                Err(e) => break evict_reason(e),
            },
            _ = heartbeat.tick() => {
                metrics::counter!("proact_gateway_ws_messages_total").increment(std::mem::take(&mut sent));
                // Only idle connections need one (a timer reset per write would cost more).
                if !std::mem::take(&mut wrote_since_tick) {
                    if let Err(e) = write(&mut sink, std::iter::once(HEARTBEAT), write_timeout).await {
                        break e;
                    }
                }
            }
            msg = incoming.next() => match msg {
                // The page sends nothing; pings are answered by the protocol layer.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break End::Gone,
                Some(Ok(_)) => {}
            },
        }
    };
    metrics::counter!("proact_gateway_ws_messages_total").increment(sent);
    match end {
        End::Gone => {}
        End::Shutdown => close(&mut sink, 1001, "gateway shutting down".into()).await,
        End::Evict(reason) => {
            metrics::counter!("proact_gateway_ws_evicted_total").increment(1);
            tracing::info!(%reason, "websocket client evicted");
            close(&mut sink, CLOSE_TOO_SLOW, reason).await;
        }
    }
}

fn evict_reason(e: SubscriptionError) -> End {
    match e {
        SubscriptionError::Lagged(n) => {
            End::Evict(format!("too slow: {n} alerts behind; reconnect with after=<last event_id>"))
        }
        // Not the client's fault, but it cannot be served: let it come back.
        SubscriptionError::Replay(e) => {
            tracing::warn!(error = %e, "replay failed");
            End::Evict("replay failed; reconnect with after=<last event_id>".into())
        }
    }
}

async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    texts: impl Iterator<Item = Utf8Bytes>,
    timeout: Duration,
) -> Result<(), End> {
    let io = async {
        for t in texts {
            sink.feed(Message::Text(t)).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Evict(format!(
            "not reading: nothing written for {} s; reconnect with after=<last event_id>",
            timeout.as_secs_f64()
        ))),
    }
}

/// Best effort: a peer that stopped reading may never take the close frame.
async fn close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: String) {
    // Close reasons are limited to 123 bytes by the protocol.
    let mut reason = reason;
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
}
