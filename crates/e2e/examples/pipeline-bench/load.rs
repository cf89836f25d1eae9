//! The load: sensors publishing seed-shaped readings at QoS 1 at a fixed rate (one JSON
//! object per message, JSON arrays of several readings of one equipment, or Sparkplug B DDATA
//! of several readings of one device), a few of them hot now and then, and a dashboard client
//! timing each hot reading's alert.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use proact_proto::time::now_micros;
use proact_sparkplug::encode::{data_metric, payload};
use proact_sparkplug::pb::payload::Metric;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What one step publishes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Readings per second.
    pub rate: u64,
    /// Readings per MQTT message: 1 is a JSON object, more a JSON array of that many
    /// consecutive readings of one equipment.
    pub per_message: usize,
    /// Sparkplug B instead of JSON: each connection is an edge node (`NBIRTH`, then a `DBIRTH`
    /// per device, each birth a reading), each message a `DDATA` of `per_message` readings.
    pub sparkplug: bool,
    pub secs: f64,
    /// Publisher connections; readings of one equipment always go over the same one.
    pub publishers: usize,
    /// Equipment ids `EQ-0000` …; a multiple of `publishers`.
    pub equipment: usize,
    /// `EQ-0000` … `EQ-{hot-1}` each send a reading above 90 °C every `hot_period`.
    pub hot: usize,
    pub hot_period: Duration,
}

/// What a step published, as acknowledged by the broker, in readings (a message acked is
/// all of its readings acked).
#[derive(Debug, Default)]
pub struct Published {
    pub sent: u64,
    pub acked: u64,
    pub hot: u64,
    /// First publish to the last publish.
    pub secs: f64,
    pub errors: Vec<String>,
}

/// `(equipement_id, event time µs)` of a hot reading → wall-clock µs just before its publish.
pub type Key = (String, i64);

/// Hot readings in flight and the latencies of those whose alert arrived.
#[derive(Default)]
pub struct AlertBook {
    sent: Mutex<HashMap<Key, i64>>,
    latencies_ms: Mutex<Vec<f64>>,
    /// Publish → the alert appended to its stream (the event id's millisecond, Redis's clock
    /// on this machine): splits the latency into the path up to the detector's publish and the
    /// gateway's part.
    to_stream_ms: Mutex<Vec<f64>>,
    /// Every timed alert.
    records: Mutex<Vec<Timed>>,
}

/// One hot reading whose alert arrived.
struct Timed {
    key: Key,
    published_us: i64,
    /// Appended to the alerts stream (its id's millisecond).
    appended_ms: Option<i64>,
    received_us: i64,
}

impl AlertBook {
    /// Forgets everything: a step measures only its own hot readings.
    pub fn reset(&self) {
        self.sent.lock().unwrap().clear();
        self.latencies_ms.lock().unwrap().clear();
        self.to_stream_ms.lock().unwrap().clear();
        self.records.lock().unwrap().clear();
    }

    fn published(&self, key: Key, at_micros: i64) {
        self.sent.lock().unwrap().insert(key, at_micros);
    }

    fn received(&self, key: &Key, at_micros: i64, appended_ms: Option<i64>) {
        if let Some(sent) = self.sent.lock().unwrap().remove(key) {
            self.latencies_ms.lock().unwrap().push((at_micros - sent) as f64 / 1000.0);
            let timed = Timed { key: key.clone(), published_us: sent, appended_ms, received_us: at_micros };
            self.records.lock().unwrap().push(timed);
            if let Some(ms) = appended_ms {
                // The id has whole milliseconds: half a millisecond is the unbiased midpoint.
                self.to_stream_ms.lock().unwrap().push((ms * 1000 + 500 - sent) as f64 / 1000.0);
            }
        }
    }

    /// Hot readings still without their alert.
    pub fn waiting(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    pub fn latencies_ms(&self) -> Vec<f64> {
        self.latencies_ms.lock().unwrap().clone()
    }

    pub fn to_stream_ms(&self) -> Vec<f64> {
        self.to_stream_ms.lock().unwrap().clone()
    }

    /// The step's timed alerts as CSV (equipment, reading time µs, published µs, appended ms,
    /// received µs), for finding when and where the slow ones lost their time.
    /// `ingested` gives, where known, when ingest took each hot reading in (its row's
    /// `received_at`, µs).
    pub fn records_csv(&self, ingested: &HashMap<Key, i64>) -> String {
        let mut out = String::from("equipement_id,reading_us,published_us,ingested_us,appended_ms,received_us\n");
        for t in self.records.lock().unwrap().iter() {
            let appended = t.appended_ms.map(|a| a.to_string()).unwrap_or_default();
            let ingested = ingested.get(&t.key).map(|a| a.to_string()).unwrap_or_default();
            let (sent, received) = (t.published_us, t.received_us);
            out.push_str(&format!("{},{},{sent},{ingested},{appended},{received}\n", t.key.0, t.key.1));
        }
        out
    }

    /// The hot readings whose alert was timed.
    pub fn timed_keys(&self) -> Vec<Key> {
        self.records.lock().unwrap().iter().map(|r| r.key.clone()).collect()
    }
}

/// A dashboard client reading alerts on a thread of its own, so that receipt times are not
/// delayed by the publishers' tasks; it stops when dropped.
pub struct Listener {
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Reads `/ws/alerts` (or the Python design's socket) until dropped, timing every alert that
/// answers a hot reading of the book.
pub fn listen_alerts(url: String, book: Arc<AlertBook>) -> anyhow::Result<Listener> {
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let token = stop.clone();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        rt.block_on(async move {
            let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((ws, _)) => ws,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("{url}: {e}")));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            loop {
                let msg = tokio::select! {
                    _ = token.cancelled() => break,
                    m = ws.next() => m,
                };
                let Some(Ok(msg)) = msg else { break };
                let at = now_micros();
                let WsMessage::Text(text) = msg else { continue };
                if let Some((key, appended_ms)) = alert_key(&text) {
                    book.received(&key, at, appended_ms);
                }
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).map_err(|_| anyhow::anyhow!("WebSocket client did not start"))??;
    Ok(Listener { stop })
}

/// The hot reading an alert frame answers, and when the alert was appended to its stream (ms)
/// where the frame says: ProAct's `raised` events carry the reading's time in `alert_id`
/// (`{equipement_id}-{µs}`) and their stream id in `event_id`; the Python design echoes the
/// reading's timestamp.
fn alert_key(text: &str) -> Option<(Key, Option<i64>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["type"] != "alert" {
        return None;
    }
    if v["kind"] == "raised" {
        let id = v["alert"]["equipement_id"].as_str()?;
        let micros = v["alert"]["alert_id"].as_str()?.strip_prefix(id)?.strip_prefix('-')?.parse().ok()?;
        let appended_ms = v["event_id"].as_str().and_then(|e| e.split('-').next()?.parse().ok());
        return Some(((id.to_string(), micros), appended_ms));
    }
    let id = v["equipement_id"].as_str()?;
    let ts = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
    Some(((id.to_string(), ts.timestamp_micros()), None))
}

/// The normal readings of equipment `e` at `ts_micros`: independent draws, uniform over
/// 60-75 °C and 1.5-7.5 mm/s, a function of the equipment and the event time alone. Stationary
/// noise is what the online detector learns fastest: a pattern that restarts with each step
/// or variant made it alarm at every start and hold episodes open, which turned the hot
/// readings' alerts into escalations of those episodes (not counted here).
fn normal_signal(e: usize, ts_micros: i64) -> (f64, f64) {
    let mut z = (e as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ts_micros as u64;
    let mut next = || {
        // splitmix64
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) as f64 / u64::MAX as f64
    };
    (60.0 + 15.0 * next(), 1.5 + 6.0 * next())
}

/// One reading as the contract's JSON object, appended to `out`.
fn reading_json(out: &mut String, id: &str, ts_micros: i64, temperature: f64, vibration: f64) {
    use std::fmt::Write;
    let ts = chrono::DateTime::from_timestamp_micros(ts_micros).expect("a valid time").format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let _ = write!(
        out,
        r#"{{"equipement_id":"{id}","temperature":{temperature:.1},"vibration":{vibration:.1},"timestamp":"{ts}"}}"#
    );
}

/// Publishes `plan` to the broker on `port` and returns once every message is acked (or
/// 30 s after the last publish). Event times are the wall clock at publish, strictly
/// increasing per equipment, so every reading is a distinct row.
/// `progress` counts publishes as they are made.
pub async fn publish(port: u16, tag: &str, plan: &Plan, book: Arc<AlertBook>, progress: Arc<AtomicU64>) -> Published {
    assert!(plan.equipment % plan.publishers == 0 && plan.hot <= plan.equipment);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..plan.publishers {
        let (plan, book, tag, progress) = (plan.clone(), book.clone(), tag.to_string(), progress.clone());
        tasks.push(tokio::spawn(async move { one_connection(port, &tag, p, &plan, &book, &progress, start).await }));
    }
    let mut out = Published::default();
    for t in tasks {
        match t.await {
            Ok(r) => {
                out.sent += r.sent;
                out.acked += r.acked;
                out.hot += r.hot;
                out.secs = out.secs.max(r.secs);
                out.errors.extend(r.errors);
            }
            Err(e) => out.errors.push(format!("publisher task: {e}")),
        }
    }
    out
}

async fn one_connection(
    port: u16,
    tag: &str,
    p: usize,
    plan: &Plan,
    book: &AlertBook,
    progress: &AtomicU64,
    start: Instant,
) -> Published {
    let mut opts = MqttOptions::new(format!("bench-{tag}-{p}"), "127.0.0.1", port);
    opts.set_inflight(1000).set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(opts, 4096);
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (s, d) = (sent.clone(), done.clone());
    let acks = tokio::spawn(async move {
        let mut acked = 0u64;
        let mut error = None;
        let mut deadline = None;
        loop {
            if d.load(Ordering::Acquire) {
                if acked >= s.load(Ordering::Acquire) {
                    break;
                }
                let dl = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                if Instant::now() > dl {
                    error =
                        Some(format!("{} publishes unacked 30 s after the last", s.load(Ordering::Acquire) - acked));
                    break;
                }
            }
            match tokio::time::timeout(Duration::from_millis(50), ev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => {
                    error = Some(format!("publisher connection failed: {e}"));
                    break;
                }
            }
        }
        (acked, error)
    });

    // This connection's share of the rate and its equipment: ids ≡ p (mod publishers).
    let mine: Vec<usize> = (p..plan.equipment).step_by(plan.publishers).collect();
    let ids: Vec<String> = mine.iter().map(|e| format!("EQ-{e:04}")).collect();
    // Messages per second and in all; each carries `n` readings.
    let n = plan.per_message.max(1);
    let rate = plan.rate as f64 / plan.publishers as f64 / n as f64;
    let total = (rate * plan.secs).round() as u64;
    let period = plan.hot_period.as_micros() as i64;
    let t0 = now_micros();
    // Hot equipment are staggered over the period so alerts come evenly.
    let mut next_hot: Vec<i64> =
        mine.iter().map(|&e| if e < plan.hot { t0 + period * e as i64 / plan.hot as i64 } else { i64::MAX }).collect();
    let mut last_ts = vec![0i64; mine.len()];
    let (mut k, mut hot) = (0u64, 0u64);
    let mut first = None;
    let node = format!("bench-{tag}-{p}");
    let mut spb = if plan.sparkplug {
        match births(&client, &node, &ids, &mine, &mut last_ts).await {
            Ok(spb) => Some(spb),
            Err(e) => return Published { errors: vec![format!("births: {e}")], ..Default::default() },
        }
    } else {
        None
    };
    // Births are messages (and readings) of their own, ahead of the load.
    let (birth_msgs, birth_readings) = spb.as_ref().map_or((0, 0), |s| (s.messages, s.readings));
    sent.store(birth_msgs, Ordering::Release);
    progress.fetch_add(birth_readings, Ordering::Relaxed);
    // The step lasts `secs` whatever happens: a publisher that cannot keep up sends less.
    let deadline = start + Duration::from_secs_f64(plan.secs);
    while k < total && Instant::now() < deadline {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while k < due {
            let j = (k as usize) % mine.len();
            let mut body = String::with_capacity(110 * n + 2);
            let mut metrics = Vec::new();
            if n > 1 && spb.is_none() {
                body.push('[');
            }
            for r in 0..n {
                let now = now_micros();
                // 1 ms apart at least: the detector's window keys readings by millisecond (and
                // Sparkplug times are milliseconds).
                let now = if spb.is_some() { now - now % 1000 } else { now };
                let ts = now.max(last_ts[j] + 1000);
                last_ts[j] = ts;
                let is_hot = ts >= next_hot[j];
                let (normal, vibration) = normal_signal(mine[j], ts);
                let temperature = if is_hot { 95.0 } else { normal };
                if spb.is_some() {
                    let ms = Some((ts / 1000) as u64);
                    metrics.push(Metric { timestamp: ms, ..data_metric(TEMPERATURE_ALIAS, temperature) });
                    metrics.push(Metric { timestamp: ms, ..data_metric(VIBRATION_ALIAS, vibration) });
                } else {
                    if r > 0 {
                        body.push(',');
                    }
                    reading_json(&mut body, &ids[j], ts, temperature, vibration);
                }
                if is_hot {
                    next_hot[j] = (next_hot[j] + period).max(ts + period / 2);
                    book.published((ids[j].clone(), ts), now_micros());
                    hot += 1;
                }
            }
            let (topic, body) = match spb.as_mut() {
                Some(s) => {
                    let body = payload(Some((now_micros() / 1000) as u64), Some(s.next_seq()), metrics);
                    (format!("spBv1.0/{SPARKPLUG_GROUP}/DDATA/{node}/{}", ids[j]), bytes::Bytes::from(body))
                }
                None => {
                    if n > 1 {
                        body.push(']');
                    }
                    (format!("sensors/{}/telemetry", ids[j]), bytes::Bytes::from(body))
                }
            };
            first.get_or_insert_with(Instant::now);
            if let Err(e) = client.publish_bytes(topic, QoS::AtLeastOnce, false, body).await {
                done.store(true, Ordering::Release);
                let _ = acks.await;
                let sent = birth_readings + k * n as u64;
                return Published { sent, hot, errors: vec![format!("publish: {e}")], ..Default::default() };
            }
            k += 1;
            sent.store(birth_msgs + k, Ordering::Release);
            progress.fetch_add(n as u64, Ordering::Relaxed);
            if k % 64 == 0 {
                // The channel to the event loop rarely makes us wait: let the ack task run.
                tokio::task::yield_now().await;
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    done.store(true, Ordering::Release);
    let (acked, error) = acks.await.unwrap_or((0, Some("ack task panicked".into())));
    let _ = client.disconnect().await;
    let n = n as u64;
    // A connection's messages are acked in order: its births first.
    let acked = match acked.checked_sub(birth_msgs) {
        Some(data) => birth_readings + data * n,
        None => acked.saturating_sub(1).min(birth_readings),
    };
    Published { sent: birth_readings + k * n, acked, hot, secs, errors: error.into_iter().collect() }
}

/// The Sparkplug group the load publishes in.
const SPARKPLUG_GROUP: &str = "Bench";
/// The device metrics' aliases, declared in each DBIRTH.
const TEMPERATURE_ALIAS: u64 = 1;
const VIBRATION_ALIAS: u64 = 2;

/// One edge node's side of its Sparkplug session.
struct EdgeNode {
    /// The `seq` of its last message.
    seq: u8,
    /// Birth messages sent, and the readings they carry (one per device).
    messages: u64,
    readings: u64,
}

impl EdgeNode {
    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        u64::from(self.seq)
    }
}

/// Publishes `node`'s NBIRTH and a DBIRTH per device of `ids` (a reading each, whose time goes
/// in `last_ts`), the session every DDATA after them refers to.
async fn births(
    client: &AsyncClient,
    node: &str,
    ids: &[String],
    mine: &[usize],
    last_ts: &mut [i64],
) -> anyhow::Result<EdgeNode> {
    use proact_sparkplug::encode::{encode_dbirth, encode_nbirth};
    let at_ms = (now_micros() / 1000) as u64;
    let nbirth = encode_nbirth(0, 0, at_ms, &[]);
    client.publish(format!("spBv1.0/{SPARKPLUG_GROUP}/NBIRTH/{node}"), QoS::AtLeastOnce, false, nbirth).await?;
    let mut edge = EdgeNode { seq: 0, messages: 1, readings: 0 };
    for ((id, ts), &e) in ids.iter().zip(last_ts.iter_mut()).zip(mine) {
        let (temperature, vibration) = normal_signal(e, at_ms as i64 * 1000);
        let metrics = [("temperature", TEMPERATURE_ALIAS, temperature), ("vibration", VIBRATION_ALIAS, vibration)];
        let dbirth = encode_dbirth(edge.next_seq() as u8, at_ms, &metrics);
        client
            .publish(format!("spBv1.0/{SPARKPLUG_GROUP}/DBIRTH/{node}/{id}"), QoS::AtLeastOnce, false, dbirth)
            .await?;
        *ts = at_ms as i64 * 1000;
        edge.messages += 1;
        edge.readings += 1;
    }
    Ok(edge)
}
