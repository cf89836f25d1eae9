//! A QoS 1 sensor that knows exactly which of its messages the broker acknowledged.
//!
//! Written on rumqttc's packet codec rather than its event loop: the event loop assigns
//! packet ids itself and reports a PUBACK by packet id only, so after a reconnect (when it
//! resends, or drops, what was in flight) an ack cannot be tied to a message for certain.
//! Here the publisher owns the packet ids: id `p` is given to one message at a time and
//! only reused after that message's PUBACK, so each PUBACK names exactly one message.
//! Like a real sensor it keeps publishing on schedule while the broker is away (the
//! readings wait in its backlog) and resends whatever was in flight when it reconnects.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet, PubAck, Publish};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rumqttc::ConnectReturnCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::plan::Plan;

/// Packet ids in use at once (Mosquitto's per-client window is 1000 in the test kit).
const WINDOW: u16 = 500;
const MAX_PACKET: usize = 1 << 20;

/// What the publisher did, message by message.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Messages sent at least once: readings `0..sent`.
    pub sent: u64,
    /// `acked[i]`: the broker sent a PUBACK for reading `i`.
    pub acked: Vec<bool>,
    pub acked_count: u64,
    /// Messages sent again after a reconnect (same reading, DUP flag).
    pub resent: u64,
    pub connections: u64,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

pub struct Publisher {
    pub plan: Arc<Plan>,
    pub broker: SocketAddr,
    pub rate: u32,
    pub client_id: String,
    /// Cancelled: stop taking new readings, finish what was sent, disconnect.
    pub stop: CancellationToken,
    /// How long to keep trying to get the last messages acknowledged after `stop`.
    pub drain: Duration,
}

/// State carried across connections.
struct Outbox {
    started: Instant,
    /// Readings due so far: the schedule stops growing it at `stop`.
    due_cap: Option<u64>,
    next: u64,
    /// Packet id → reading in flight.
    inflight: BTreeMap<u16, u64>,
    free: Vec<u16>,
    /// Set at `stop`: past it, what is still unacknowledged stays so.
    drain_until: Option<Instant>,
}

impl Publisher {
    pub async fn run(self, ledger: SharedLedger) {
        let mut out = Outbox {
            started: Instant::now(),
            due_cap: None,
            next: 0,
            inflight: BTreeMap::new(),
            free: (1..=WINDOW).rev().collect(),
            drain_until: None,
        };
        loop {
            self.check_stop(&mut out);
            if out.done() {
                break;
            }
            if out.drain_until.is_some_and(|d| Instant::now() > d) {
                eprintln!("publisher: {} messages still unacknowledged after the drain; giving up", out.inflight.len());
                break;
            }
            match TcpStream::connect(self.broker).await {
                Ok(stream) => {
                    ledger.lock().unwrap().connections += 1;
                    if let Err(e) = self.session(stream, &mut out, &ledger).await {
                        eprintln!("publisher: connection lost ({e}); reconnecting");
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// At `stop`: no reading is due after this moment, and the drain's clock starts.
    fn check_stop(&self, out: &mut Outbox) {
        if self.stop.is_cancelled() && out.due_cap.is_none() {
            out.due_cap = Some(out.due(self.rate));
            out.drain_until = Some(Instant::now() + self.drain);
        }
    }

    async fn session(&self, mut stream: TcpStream, out: &mut Outbox, ledger: &SharedLedger) -> anyhow::Result<()> {
        stream.set_nodelay(true)?;
        let mut connect = Connect::new(self.client_id.clone());
        connect.keep_alive = 30;
        let mut wbuf = BytesMut::new();
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        Packet::Connect(connect).write(&mut wbuf, MAX_PACKET)?;
        stream.write_all(&wbuf).await?;
        wbuf.clear();
        match tokio::time::timeout(Duration::from_secs(5), read_packet(&mut stream, &mut rbuf)).await?? {
            Packet::ConnAck(ConnAck { code: ConnectReturnCode::Success, .. }) => {}
            other => anyhow::bail!("broker refused the connection: {other:?}"),
        }
        // A new (clean) session on the broker's side: whatever was in flight is sent again.
        for (&pkid, &i) in &out.inflight {
            self.encode(i, pkid, true, &mut wbuf)?;
        }
        ledger.lock().unwrap().resent += out.inflight.len() as u64;
        let mut last_write = Instant::now();
        loop {
            self.check_stop(out);
            let due = out.due_cap.unwrap_or_else(|| out.due(self.rate));
            let mut sent_now = 0;
            while out.next < due {
                let Some(pkid) = out.free.pop() else { break };
                self.encode(out.next, pkid, false, &mut wbuf)?;
                out.inflight.insert(pkid, out.next);
                out.next += 1;
                sent_now += 1;
            }
            if sent_now > 0 {
                ledger.lock().unwrap().sent = out.next;
            }
            if wbuf.is_empty() && last_write.elapsed() > Duration::from_secs(10) {
                Packet::PingReq.write(&mut wbuf, MAX_PACKET)?;
            }
            if !wbuf.is_empty() {
                stream.write_all(&wbuf).await?;
                wbuf.clear();
                last_write = Instant::now();
            }
            if out.done() {
                Packet::Disconnect.write(&mut wbuf, MAX_PACKET)?;
                let _ = stream.write_all(&wbuf).await;
                return Ok(());
            }
            if out.drain_until.is_some_and(|d| Instant::now() > d) {
                return Ok(());
            }
            // Wake for the next due reading (if it can go out), or for what the broker sends.
            let can_send = !out.free.is_empty() && out.due_cap.is_none_or(|cap| out.next < cap);
            let wait = if can_send { out.until_next(self.rate) } else { Duration::MAX }.min(Duration::from_millis(20));
            tokio::select! {
                r = stream.read_buf(&mut rbuf) => {
                    if r? == 0 {
                        anyhow::bail!("broker closed the connection");
                    }
                    let mut l = ledger.lock().unwrap();
                    loop {
                        match Packet::read(&mut rbuf, MAX_PACKET) {
                            Ok(Packet::PubAck(PubAck { pkid })) => {
                                // An ack for an id not in flight (a late ack from before a
                                // reconnect, already resent and acked) names no message.
                                if let Some(i) = out.inflight.remove(&pkid) {
                                    out.free.push(pkid);
                                    let i = i as usize;
                                    if l.acked.len() <= i {
                                        l.acked.resize(i + 1, false);
                                    }
                                    if !l.acked[i] {
                                        l.acked[i] = true;
                                        l.acked_count += 1;
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(CodecError::InsufficientBytes(_)) => break,
                            Err(e) => anyhow::bail!("bad packet from the broker: {e}"),
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn encode(&self, i: u64, pkid: u16, dup: bool, buf: &mut BytesMut) -> anyhow::Result<()> {
        let (topic, payload) = self.plan.message(i);
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p.dup = dup;
        Packet::Publish(p).write(buf, MAX_PACKET)?;
        Ok(())
    }
}

impl Outbox {
    /// Everything due was sent and acknowledged, and nothing more will be due.
    fn done(&self) -> bool {
        self.due_cap.is_some_and(|cap| self.next >= cap) && self.inflight.is_empty()
    }

    /// Readings due by now on the schedule (`rate` per second from the start).
    fn due(&self, rate: u32) -> u64 {
        (self.started.elapsed().as_micros() as u64 * rate as u64) / 1_000_000
    }

    fn until_next(&self, rate: u32) -> Duration {
        let next_at = Duration::from_micros((self.next + 1) * 1_000_000 / rate.max(1) as u64);
        next_at.saturating_sub(self.started.elapsed())
    }
}

async fn read_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => anyhow::bail!("bad packet from the broker: {e}"),
        }
        if stream.read_buf(buf).await? == 0 {
            anyhow::bail!("broker closed the connection");
        }
    }
}
