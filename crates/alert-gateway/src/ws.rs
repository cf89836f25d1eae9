//! One `/ws/alerts` client: what it missed after its resume point, then the live feed,
//! heartbeats while idle, and eviction when it cannot keep up.
//!
//! A client never slows the others down: the feed's broadcast ring does not wait for
//! anyone, and each client's task writes to its own socket. A client is cut off with close
//! code 4008 and a reason when it falls more than its queue (the ring) behind, or when its
//! socket accepts nothing for the write timeout (a peer that stopped reading: its TCP
//! buffers are full). It then reconnects with `after=<last event_id>` and misses nothing.
//!
//! What is written is the feed's shared frames (`wsframe`): a client that is up to date
//! costs one write of a batch's bytes; one that is behind gets what it missed gathered into
//! one write too. The socket is the upgraded HTTP connection itself (see `http`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::broadcast;

use crate::feed::{FeedBatch, StreamId, Subscription, SubscriptionError};
use crate::state::GatewayState;
use crate::wsframe::{self, FrameError};

/// Close code of an evicted client (in the 4000-4999 range left to applications).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Bytes gathered into one write when a client has a backlog: one syscall for many alerts.
const GATHER_BYTES: usize = 256 * 1024;
/// Largest frame accepted from a client (the page sends only control frames).
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;
const READ_BUFFER: usize = 4 * 1024;

const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;

struct Connected<'a>(&'a GatewayState);

impl<'a> Connected<'a> {
    fn new(s: &'a GatewayState) -> Self {
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
    /// The socket failed or the peer went away without a close frame.
    Gone,
    /// The peer sent a close frame (with this code): answer it.
    PeerClosed(Option<u16>),
    Shutdown,
    Evict(String),
    Protocol(FrameError),
}

/// Serves one upgraded connection until it closes, is evicted, or the gateway shuts down.
pub async fn serve<S>(
    shared: Arc<GatewayState>,
    socket: S,
    rx: broadcast::Receiver<Arc<FeedBatch>>,
    after: Option<StreamId>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let _connected = Connected::new(&shared);
    let (mut reader, mut writer) = tokio::io::split(socket);
    let mut read_buf = BytesMut::with_capacity(READ_BUFFER);
    let mut fragments = wsframe::Fragments::default();
    let mut sub = Subscription::new(rx, shared.redis.clone(), after, shared.crit.clone());
    let mut notices = shared.notices.subscribe();
    let mut heartbeat = tokio::time::interval(shared.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let heartbeat_frame = wsframe::text(HEARTBEAT);
    let write_timeout = shared.write_timeout;
    // Counted locally, published now and then: a metrics update per delivery costs more
    // than the delivery itself with thousands of clients.
    let mut sent: u64 = 0;
    let mut wrote_since_tick = false;
    // One registration with the shutdown token for the connection's life, not one per wake-up
    // (with thousands of clients woken per batch, that lock would be contended).
    let cancelled = shared.shutdown.cancelled();
    tokio::pin!(cancelled);
    let end = 'serve: loop {
        tokio::select! {
            _ = &mut cancelled => break End::Shutdown,
            next = sub.next_wire() => match next {
                Ok(Some(first)) => {
                    let (bytes, n, lagged) = gather(&mut sub, first);
                    if let Err(e) = write(&mut writer, &bytes, write_timeout).await {
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
            notice = notices.recv() => {
                let frame = match notice {
                    Ok(frame) => frame,
                    Err(broadcast::error::RecvError::Lagged(_)) => crate::notices::resync_frame(),
                    Err(broadcast::error::RecvError::Closed) => break End::Shutdown,
                };
                if let Err(e) = write(&mut writer, &frame, write_timeout).await {
                    break e;
                }
                wrote_since_tick = true;
            }
            _ = heartbeat.tick() => {
                metrics::counter!("proact_gateway_ws_messages_total").increment(std::mem::take(&mut sent));
                // Only idle connections need one (a timer reset per write would cost more).
                if !std::mem::take(&mut wrote_since_tick) {
                    if let Err(e) = write(&mut writer, &heartbeat_frame, write_timeout).await {
                        break e;
                    }
                }
            }
            read = reader.read_buf(&mut read_buf) => {
                match read {
                    Ok(0) | Err(_) => break End::Gone,
                    Ok(_) => {}
                }
                loop {
                    match wsframe::decode_client(&mut read_buf, MAX_CLIENT_FRAME) {
                        Ok(None) => break,
                        Err(e) => break 'serve End::Protocol(e),
                        Ok(Some(f)) if fragments.check(&f).is_err() => {
                            break 'serve End::Protocol(wsframe::FrameError::Continuation)
                        }
                        Ok(Some(f)) => match f.opcode {
                            wsframe::OP_PING => {
                                if let Err(e) = write(&mut writer, &wsframe::pong(&f.payload), write_timeout).await {
                                    break 'serve e;
                                }
                            }
                            wsframe::OP_CLOSE => break 'serve End::PeerClosed(f.close_code()),
                            // The page sends no data; pongs answer nothing we asked.
                            _ => {}
                        },
                    }
                }
                if read_buf.capacity() - read_buf.len() < READ_BUFFER / 4 {
                    read_buf.reserve(READ_BUFFER);
                }
            }
        }
    };
    metrics::counter!("proact_gateway_ws_messages_total").increment(sent);
    match end {
        End::Gone => {}
        End::PeerClosed(code) => send_and_shut(&mut writer, &wsframe::close_reply(code)).await,
        End::Shutdown => close(&mut writer, 1001, "gateway shutting down").await,
        End::Evict(reason) => {
            metrics::counter!("proact_gateway_ws_evicted_total").increment(1);
            tracing::info!(%reason, "websocket client evicted");
            close(&mut writer, CLOSE_TOO_SLOW, &reason).await;
        }
        End::Protocol(e) => {
            tracing::info!(error = %e, "websocket client broke the protocol");
            close(&mut writer, e.code(), &e.to_string()).await;
        }
    }
}

/// `first` and whatever else is ready now, up to [`GATHER_BYTES`]: the bytes to write, the
/// number of events in them, and the error that ended the gathering, if any. An up-to-date
/// client gets the batch's shared bytes as they are; only a backlog is copied, into one buffer.
fn gather(sub: &mut Subscription, first: crate::feed::Wire) -> (Bytes, u64, Option<SubscriptionError>) {
    let mut n = first.events as u64;
    let mut more: Option<BytesMut> = None;
    let mut lagged = None;
    while more.as_ref().map_or(first.bytes.len(), |b| b.len()) < GATHER_BYTES {
        match sub.try_next_wire() {
            Some(Ok(w)) => {
                let buf = more.get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(2 * (first.bytes.len() + w.bytes.len()));
                    b.extend_from_slice(&first.bytes);
                    b
                });
                buf.extend_from_slice(&w.bytes);
                n += w.events as u64;
            }
            Some(Err(e)) => {
                lagged = Some(e);
                break;
            }
            None => break,
        }
    }
    (more.map_or(first.bytes, BytesMut::freeze), n, lagged)
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

async fn write<S: AsyncWrite>(writer: &mut WriteHalf<S>, bytes: &[u8], timeout: Duration) -> Result<(), End> {
    match tokio::time::timeout(timeout, writer.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Evict(format!(
            "not reading: nothing written for {} s; reconnect with after=<last event_id>",
            timeout.as_secs_f64()
        ))),
    }
}

/// Best effort: a peer that stopped reading may never take the close frame.
async fn close<S: AsyncWrite>(writer: &mut WriteHalf<S>, code: u16, reason: &str) {
    send_and_shut(writer, &wsframe::close(code, reason)).await;
}

async fn send_and_shut<S: AsyncWrite>(writer: &mut WriteHalf<S>, frame: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        writer.write_all(frame).await?;
        writer.shutdown().await
    })
    .await;
}
