//! `just bench gateway` driver: delivery latency from the alerts-stream write to WebSocket
//! receipt, with many clients, against a real Redis and PostgreSQL (test kit) and the
//! gateway in-process on its own runtime.
//!
//! Each alert carries its write time in its id (`B-<seq>-<micros>`, stamped just before the
//! `XADD`); every client records `receipt - write` for every alert and checks that it got
//! every alert once, in order (consecutive `seq`). Scenarios run one after the other in one
//! run, the floor first: one reader of the stream straight from Redis (`XREAD BLOCK`), which
//! is what the gateway itself cannot beat.
//!
//! So that the bench measures the gateway rather than itself, the clients run in a separate
//! process (this example again, `--clients-only`): real WebSocket handshakes, then a minimal
//! frame reader (header, payload, the alert's id) instead of a WebSocket library's message
//! handling. The publisher has its own thread, runtime and Redis connection, pipelines its
//! `XADD`s on the offered schedule, and reports the rate it achieved and how late it ran.
//!
//! Usage: `ws_bench [--clients 1000] [--rate 1000] [--seconds 10] [--lingers 0,2,5]
//! [--gateway-threads 2] [--client-threads 2]`. Prints a table and one JSON line per scenario
//! (stderr).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use clap::Parser;
use fred::prelude::*;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind, AlertState, Severity};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, clap::Parser)]
struct Args {
    /// WebSocket clients of the main scenarios.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Alerts per second written to the stream (offered rate).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Feed lingers (ms) of the main scenarios, side by side.
    #[arg(long, value_delimiter = ',', default_value = "0,2,5")]
    lingers: Vec<u64>,
    /// Worker threads of the gateway's runtime.
    #[arg(long, default_value_t = 2)]
    gateway_threads: usize,
    /// Worker threads of the clients' process.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Internal: run only the clients (the child process), against `--url`.
    #[arg(long, hide = true)]
    clients_only: bool,
    #[arg(long, hide = true)]
    url: Option<String>,
    /// Internal: alerts each client must receive, and the `seq` of the first.
    #[arg(long, hide = true, default_value_t = 0)]
    expect: u64,
    #[arg(long, hide = true, default_value_t = 0)]
    seq0: u64,
}

/// What the clients' process reports (one JSON line on its stdout).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ClientsReport {
    clients: usize,
    deliveries: u64,
    per_client_min: u64,
    per_client_max: u64,
    /// Clients that got every alert, in order, once.
    complete: usize,
    /// Alerts received out of order, twice, or after a gap (all clients).
    out_of_order: u64,
    evicted: u64,
    /// Reads that returned data, all clients: about one per gateway write (fewer if a
    /// client was late and one read took several writes).
    reads: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// The worst single client's p99: a starved client shows here.
    worst_client_p99_ms: f64,
    cpu_s: f64,
}

#[derive(Debug, Default)]
struct Outcome {
    name: String,
    rate: u64,
    published: Published,
    clients: ClientsReport,
    cpu_gateway_s: f64,
    /// Of which in the kernel.
    cpu_gateway_sys_s: f64,
    cpu_redis_s: f64,
    cpu_publisher_s: f64,
    load: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Published {
    sent: u64,
    achieved: f64,
    /// How far behind its schedule the publisher ever was, ms.
    max_late_ms: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients_only {
        return clients_main(&args);
    }
    anyhow::ensure!(
        args.rate > 0 && args.seconds > 0 && args.clients > 0,
        "--clients, --rate and --seconds must be > 0"
    );
    let main_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("bench-main").enable_all().build()?;
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.gateway_threads)
        .thread_name("gateway")
        .enable_all()
        .build()?;
    main_rt.block_on(async {
        let (redis, pg) = tokio::join!(proact_testkit::Redis::start(), proact_testkit::Postgres::start());
        let (redis, pg) = (redis?, pg?);
        let redis_pid = pid_of("redis-server", &format!(":{}", redis.port()));
        let cpu_redis = || redis_pid.map(process_cpu_s).unwrap_or(f64::NAN);
        let mut outcomes = vec![floor(&redis.url(), &args).await?];
        // The main load at each linger, then the same clients at a tenth of the alerts, then a
        // tenth of the clients at the full rate.
        let mut scenarios: Vec<(usize, u64, u64)> =
            args.lingers.iter().map(|&l| (args.clients, args.rate, l)).collect();
        scenarios.push((args.clients, (args.rate / 10).max(1), 2));
        scenarios.push(((args.clients / 10).max(1), args.rate, 2));
        for (clients, rate, linger) in scenarios {
            let (http, shutdown, task) = start_gateway(&gateway_rt, &redis.url(), &pg.url(), linger).await?;
            let load = loadavg();
            let mut o = websockets(http, &redis.url(), clients, rate, &args, || {
                (user_sys_by_thread_name().get("gateway").copied().unwrap_or_default(), cpu_redis())
            })
            .await?;
            o.name = format!("gateway /ws/alerts, linger {linger} ms");
            o.load = load;
            outcomes.push(o);
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        print_report(&outcomes);
        Ok::<_, anyhow::Error>(())
    })?;
    gateway_rt.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

type GatewayTask = tokio::task::JoinHandle<anyhow::Result<()>>;

/// A gateway on its own runtime, against the bench's Redis and PostgreSQL.
async fn start_gateway(
    rt: &tokio::runtime::Runtime,
    redis_url: &str,
    pg_url: &str,
    linger_ms: u64,
) -> anyhow::Result<(std::net::SocketAddr, tokio_util::sync::CancellationToken, GatewayTask)> {
    let config = proact_alert_gateway::Config::try_parse_from([
        "proact-alert-gateway",
        "--redis-url",
        redis_url,
        "--database-url",
        pg_url,
        "--admin-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--archive-grpc-url",
        "http://127.0.0.1:9",
        "--registry-grpc-url",
        "http://127.0.0.1:9",
        "--linger-ms",
        &linger_ms.to_string(),
    ])?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let s = shutdown.clone();
    let (http, task) = rt
        .spawn(async move {
            let app = proact_alert_gateway::App::build(config).await?;
            let http = app.http_addr();
            Ok::<_, anyhow::Error>((http, tokio::spawn(app.run_until_stopped(s))))
        })
        .await??;
    // The feed pins its start position at the stream's end before the load starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((http, shutdown, task))
}

fn alert_event(seq: u64) -> Bytes {
    let now = now_micros();
    let alert = Alert {
        alert_id: format!("B-{seq}-{now}"),
        equipement_id: format!("PUMP-{:02}", seq % 12),
        start_micros: now,
        severity: Severity::Critical as i32,
        score: 1.0,
        reason: "temperature 95.2 °C > 90.0 °C".into(),
        rule: "temperature_critical".into(),
        model_version: "bench".into(),
        state: AlertState::Open as i32,
        updated_micros: now,
        value: 95.2,
        ..Default::default()
    };
    let ev = AlertEvent { kind: AlertEventKind::Raised as i32, alert: Some(alert), ..Default::default() };
    Bytes::from(ev.encode_to_vec())
}

/// Writes `rate` alerts per second for `seconds` on a thread, runtime and Redis connection of
/// its own (nothing else on the machine may slow its schedule but the CPU itself). Each alert
/// is stamped when it is due and sent without waiting for the replies of earlier ones (they
/// are pipelined on the connection), so a slow reply does not hold back the next alert.
async fn publish(redis_url: &str, rate: u64, seconds: u64, seq0: u64) -> anyhow::Result<Published> {
    let url = redis_url.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("publisher".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let r = rt.block_on(async move {
            let writer = proact_server::redis::connect(&url).await?;
            let total = rate * seconds;
            let due = |i: u64| Duration::from_secs_f64(i as f64 / rate as f64);
            let mut inflight = FuturesUnordered::new();
            let (mut issued, mut done, mut max_late) = (0u64, 0u64, Duration::ZERO);
            let start = Instant::now();
            while done < total {
                let now = start.elapsed();
                while issued < total && due(issued) <= now {
                    max_late = max_late.max(now - due(issued));
                    let (w, payload) = (writer.clone(), alert_event(seq0 + issued));
                    inflight.push(async move {
                        w.xadd::<String, _, _, _, _>(ALERTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, payload))
                            .await
                    });
                    issued += 1;
                }
                let next = start + due(issued);
                tokio::select! {
                    Some(r) = inflight.next() => {
                        r?;
                        done += 1;
                    }
                    _ = tokio::time::sleep_until(next.into()), if issued < total => {}
                }
            }
            let achieved = total as f64 / start.elapsed().as_secs_f64();
            Ok::<_, anyhow::Error>(Published { sent: total, achieved, max_late_ms: max_late.as_secs_f64() * 1e3 })
        });
        let _ = tx.send(r);
    })?;
    rx.await?
}

/// One reader straight from the stream: the floor under any delivery through the gateway.
async fn floor(redis_url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let reader = proact_server::redis::connect(redis_url).await?;
    let last: Vec<(String, HashMap<String, Bytes>)> = reader.xrevrange(ALERTS_STREAM, "+", "-", Some(1)).await?;
    let mut from = last.first().map(|e| e.0.clone()).unwrap_or_else(|| "0-0".into());
    let expected = args.rate * args.seconds;
    let load = loadavg();
    let read = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(expected as usize);
        let mut order = Order::new(0);
        let mut reads = 0u64;
        while (lat.len() as u64) < expected {
            let r: Value = match reader.xread(Some(512), Some(2000), ALERTS_STREAM, from.as_str()).await {
                Ok(v) => v,
                Err(_) => break,
            };
            let Ok(resp) = proact_server::redis::xread_response(r) else { break };
            let Some(entries) = resp.get(ALERTS_STREAM) else { continue };
            let now = now_micros();
            reads += 1;
            for (id, f) in entries {
                from = id.clone();
                if let Some(a) =
                    f.get(PAYLOAD_FIELD).and_then(|p| AlertEvent::decode(p.as_ref()).ok()).and_then(|e| e.alert)
                {
                    if let Some((seq, at)) = stamp(a.alert_id.as_bytes()) {
                        order.see(seq);
                        lat.push((now - at).clamp(0, u32::MAX as i64) as u32);
                    }
                }
            }
        }
        (lat, order.out_of_order, reads)
    });
    let published = publish(redis_url, args.rate, args.seconds, 0).await?;
    let (lat, out_of_order, reads) = tokio::time::timeout(Duration::from_secs(30), read).await??;
    let n = lat.len() as u64;
    let mut clients = summarize(vec![lat], expected, 0.0);
    (clients.out_of_order, clients.reads) = (out_of_order, reads);
    clients.complete = usize::from(n == expected && out_of_order == 0);
    Ok(Outcome {
        name: "redis XREAD (floor)".into(),
        rate: args.rate,
        published,
        clients,
        load,
        cpu_gateway_s: f64::NAN,
        cpu_gateway_sys_s: f64::NAN,
        cpu_redis_s: f64::NAN,
        cpu_publisher_s: f64::NAN,
    })
}

/// One scenario through a gateway: the clients' process connects, the publisher writes, the
/// clients report. `cpu` samples (gateway, redis) CPU seconds around the load.
async fn websockets(
    http: std::net::SocketAddr,
    redis_url: &str,
    clients: usize,
    rate: u64,
    args: &Args,
    cpu: impl Fn() -> ((f64, f64), f64),
) -> anyhow::Result<Outcome> {
    static SEQ: AtomicU64 = AtomicU64::new(1_000_000_000);
    let expected = rate * args.seconds;
    let seq0 = SEQ.fetch_add(expected, Ordering::Relaxed);
    let t0 = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--clients-only", "--url", &format!("ws://{http}/ws/alerts")])
        .args(["--clients", &clients.to_string(), "--client-threads", &args.client_threads.to_string()])
        .args(["--expect", &expected.to_string(), "--seq0", &seq0.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in lines.by_ref().map_while(Result::ok) {
            if lines_tx.send(l).is_err() {
                break;
            }
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(120), lines_rx.recv()).await;
    anyhow::ensure!(
        matches!(ready, Ok(Some(ref l)) if l == "ready"),
        "the clients' process did not get ready: {ready:?}"
    );
    let t1 = Instant::now();
    let (gw0, redis0) = cpu();
    let pub0 = cpu_by_thread_name().get("publisher").copied().unwrap_or(0.0);
    let published = publish(redis_url, rate, args.seconds, seq0).await?;
    let pub1 = cpu_by_thread_name().get("publisher").copied().unwrap_or(0.0);
    let t2 = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(300), lines_rx.recv()).await?;
    let (gw1, redis1) = cpu();
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    anyhow::ensure!(status.success(), "the clients' process failed: {status}");
    let report: ClientsReport = serde_json::from_str(&report.unwrap_or_default())?;
    eprintln!(
        "phases: connect {:.1} s, publish {:.1} s, drain {:.1} s",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        t2.elapsed().as_secs_f64()
    );
    Ok(Outcome {
        name: String::new(),
        rate,
        published,
        clients: report,
        cpu_gateway_s: (gw1.0 + gw1.1) - (gw0.0 + gw0.1),
        cpu_gateway_sys_s: gw1.1 - gw0.1,
        cpu_redis_s: redis1 - redis0,
        cpu_publisher_s: pub1 - pub0,
        load: String::new(),
    })
}

// ---------------------------------------------------------------------------------------
// The clients' process.

/// Where the clients are in the stream: each alert once, in order (consecutive `seq`).
struct Order {
    next: u64,
    out_of_order: u64,
}

impl Order {
    fn new(seq0: u64) -> Self {
        Self { next: seq0, out_of_order: 0 }
    }

    fn see(&mut self, seq: u64) {
        if seq != self.next {
            self.out_of_order += 1;
        }
        self.next = seq + 1;
    }
}

/// `(seq, write time in µs)` from the first alert id `B-<seq>-<micros>` in `text`.
fn stamp(text: &[u8]) -> Option<(u64, i64)> {
    const KEY: &[u8] = b"B-";
    let i = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &text[i..];
    let end = rest.iter().position(|b| !(b.is_ascii_digit() || *b == b'-')).unwrap_or(rest.len());
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    let (seq, at) = id.split_once('-')?;
    Some((seq.parse().ok()?, at.parse().ok()?))
}

fn clients_main(args: &Args) -> anyhow::Result<()> {
    let url = args.url.clone().ok_or_else(|| anyhow::anyhow!("--clients-only needs --url ws://host:port/path"))?;
    let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow::anyhow!("--url must be ws://host:port/path"))?;
    let (host, path) =
        rest.split_once('/').map(|(h, p)| (h.to_string(), format!("/{p}"))).unwrap_or((rest.into(), "/".into()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("bench-clients")
        .enable_all()
        .build()?;
    let (expect, seq0) = (args.expect, args.seq0);
    let report = rt.block_on(async move {
        let mut sockets = Vec::with_capacity(args.clients);
        for _ in 0..args.clients {
            sockets.push(handshake(&host, &path).await?);
        }
        let cpu0 = process_cpu_s(std::process::id());
        let tasks: Vec<_> =
            sockets.into_iter().map(|(tcp, buf)| tokio::spawn(client(tcp, buf, expect, seq0))).collect();
        println!("ready");
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await?);
        }
        let cpu = process_cpu_s(std::process::id()) - cpu0;
        let evicted = results.iter().filter(|r| r.evicted).count() as u64;
        let out_of_order: u64 = results.iter().map(|r| r.out_of_order).sum();
        let reads: u64 = results.iter().map(|r| r.reads).sum();
        let complete = results.iter().filter(|r| r.out_of_order == 0 && r.lat.len() as u64 == expect).count();
        let mut report = summarize(results.into_iter().map(|r| r.lat).collect(), expect, cpu);
        (report.evicted, report.out_of_order, report.complete, report.reads) = (evicted, out_of_order, complete, reads);
        Ok::<_, anyhow::Error>(report)
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// A real WebSocket opening handshake over a fresh TCP connection; returns the socket and
/// any bytes that came after the response's head.
async fn handshake(host: &str, path: &str) -> anyhow::Result<(tokio::net::TcpStream, BytesMut)> {
    // A fixed key is valid (the server must not care), and its answer is known: RFC 6455 §1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut tcp = tokio::net::TcpStream::connect(host).await?;
    tcp.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let head_end = loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("connection closed during the handshake");
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(KEY.as_bytes()).to_ascii_lowercase();
    anyhow::ensure!(
        head.starts_with("http/1.1 101") && head.contains(&format!("sec-websocket-accept: {accept}")),
        "not a WebSocket handshake answer: {head}"
    );
    buf.advance(head_end);
    Ok((tcp, buf))
}

struct ClientResult {
    lat: Vec<u32>,
    reads: u64,
    out_of_order: u64,
    evicted: bool,
}

/// Reads frames until `expect` alerts arrived, the server closed, or nothing came for 10 s.
/// Every frame read in one `read` is stamped with that read's time (they arrived together).
async fn client(mut tcp: tokio::net::TcpStream, mut buf: BytesMut, expect: u64, seq0: u64) -> ClientResult {
    let mut r = ClientResult { lat: Vec::with_capacity(expect as usize), reads: 0, out_of_order: 0, evicted: false };
    let mut order = Order::new(seq0);
    'read: while (r.lat.len() as u64) < expect {
        let now = now_micros();
        loop {
            if buf.len() < 2 {
                break;
            }
            let (b0, b1) = (buf[0], buf[1]);
            let (len, header) = match b1 & 0x7F {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8")) as usize, 10),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if b1 & 0x80 != 0 || buf.len() < header + len {
                // A masked server frame is a protocol error; otherwise wait for the rest.
                if b1 & 0x80 != 0 {
                    break 'read;
                }
                buf.reserve(header + len);
                break;
            }
            let payload = &buf[header..header + len];
            match b0 & 0x0F {
                0x1 => {
                    if let Some((seq, at)) = stamp(payload) {
                        order.see(seq);
                        r.lat.push((now - at).clamp(0, u32::MAX as i64) as u32);
                    }
                }
                0x8 => {
                    r.evicted = payload.len() >= 2 && u16::from_be_bytes([payload[0], payload[1]]) == 4008;
                    break 'read;
                }
                _ => {}
            }
            buf.advance(header + len);
        }
        if (r.lat.len() as u64) >= expect {
            break;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match tokio::time::timeout(Duration::from_secs(10), tcp.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => r.reads += 1,
            _ => break,
        }
    }
    r.out_of_order = order.out_of_order;
    r
}

fn summarize(per_client: Vec<Vec<u32>>, _expect: u64, cpu_s: f64) -> ClientsReport {
    let counts: Vec<u64> = per_client.iter().map(|l| l.len() as u64).collect();
    let mut worst_p99 = 0.0f64;
    let mut all = Vec::with_capacity(counts.iter().sum::<u64>() as usize);
    for mut l in per_client {
        l.sort_unstable();
        worst_p99 = worst_p99.max(pct(&l, 0.99));
        all.extend(l);
    }
    all.sort_unstable();
    ClientsReport {
        clients: counts.len(),
        deliveries: all.len() as u64,
        per_client_min: counts.iter().min().copied().unwrap_or(0),
        per_client_max: counts.iter().max().copied().unwrap_or(0),
        p50_ms: pct(&all, 0.5),
        p99_ms: pct(&all, 0.99),
        p999_ms: pct(&all, 0.999),
        max_ms: pct(&all, 1.0),
        worst_client_p99_ms: worst_p99,
        cpu_s,
        ..Default::default()
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

// ---------------------------------------------------------------------------------------
// CPU and load (Linux `/proc`).

/// (utime, stime) of a `stat` line, in seconds.
fn stat_user_sys_s(stat: &str) -> (f64, f64) {
    // Fields after the parenthesised name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let f = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) / 100.0; // USER_HZ
    (f(11), f(12))
}

fn stat_cpu_s(stat: &str) -> f64 {
    let (u, s) = stat_user_sys_s(stat);
    u + s
}

fn process_cpu_s(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| stat_cpu_s(&s)).unwrap_or(f64::NAN)
}

/// CPU seconds of this process's threads, by thread name.
fn cpu_by_thread_name() -> HashMap<String, f64> {
    user_sys_by_thread_name().into_iter().map(|(k, (u, s))| (k, u + s)).collect()
}

/// (user, system) CPU seconds of this process's threads, by thread name.
fn user_sys_by_thread_name() -> HashMap<String, (f64, f64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let (u, s) = stat_user_sys_s(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default());
        let e = out.entry(comm).or_insert((0.0, 0.0));
        (e.0, e.1) = (e.0 + u, e.1 + s);
    }
    out
}

/// The process whose command line starts with `name` and contains `needle` (the bench's own
/// Redis, which shows `redis-server 127.0.0.1:<port>`).
fn pid_of(name: &str, needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains(name) && cmd.contains(needle)).then_some(pid)
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn print_report(outcomes: &[Outcome]) {
    let floor_p99 = outcomes.first().map(|o| o.clients.p99_ms).unwrap_or(f64::NAN);
    println!(
        "| scenario | clients | alerts/s offered (achieved, max late ms) | deliveries | p50 ms | p99 ms | p99.9 ms | max ms | p99 / floor | worst client p99 ms | per-client min / max (of) | complete / out of order / evicted | alerts per read | CPU s gateway (sys) / clients / redis / publisher | CPU µs per delivery gateway / clients | load before |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|---|");
    for o in outcomes {
        let c = &o.clients;
        println!(
            "| {} | {} | {} ({:.0}, {:.1}) | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}× | {:.2} | {} / {} ({}) | {} / {} / {} | {:.1} | {:.1} ({:.1}) / {:.1} / {:.1} / {:.1} | {:.2} / {:.2} | {} |",
            o.name,
            c.clients,
            o.rate,
            o.published.achieved,
            o.published.max_late_ms,
            c.deliveries,
            c.p50_ms,
            c.p99_ms,
            c.p999_ms,
            c.max_ms,
            c.p99_ms / floor_p99,
            c.worst_client_p99_ms,
            c.per_client_min,
            c.per_client_max,
            o.published.sent,
            c.complete,
            c.out_of_order,
            c.evicted,
            c.deliveries as f64 / c.reads as f64,
            o.cpu_gateway_s,
            o.cpu_gateway_sys_s,
            c.cpu_s,
            o.cpu_redis_s,
            o.cpu_publisher_s,
            o.cpu_gateway_s * 1e6 / c.deliveries as f64,
            c.cpu_s * 1e6 / c.deliveries as f64,
            o.load,
        );
        eprintln!(
            "{}",
            serde_json::json!({
                "scenario": o.name, "rate": o.rate, "achieved_rate": o.published.achieved,
                "publisher_max_late_ms": o.published.max_late_ms, "sent": o.published.sent,
                "clients": c, "cpu_gateway_s": o.cpu_gateway_s, "cpu_gateway_sys_s": o.cpu_gateway_sys_s, "cpu_redis_s": o.cpu_redis_s,
                "cpu_publisher_s": o.cpu_publisher_s, "load_before": o.load,
            })
        );
    }
}
