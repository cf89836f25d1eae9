//! `just bench gateway` driver: delivery latency from the alerts-stream write to WebSocket
//! receipt, with many clients, against a real Redis and PostgreSQL (test kit) and the
//! gateway in-process on its own runtime.
//!
//! Each alert carries its write time in its id (`B-<seq>-<micros>`, stamped just before the
//! `XADD`); every client records `receipt - write` for every alert. Scenarios run one after
//! the other in one process, with the floor first: one reader of the stream straight from
//! Redis (`XREAD BLOCK`), which is what the gateway itself cannot beat.
//!
//! Usage: `ws_bench [--clients 1000] [--rate 1000] [--seconds 10] [--gateway-threads 2]`.
//! Prints a table and one JSON line per scenario.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use futures::StreamExt;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::time::now_micros;
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind, AlertState, Severity};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, clap::Parser)]
struct Args {
    /// WebSocket clients of the main scenario.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Alerts per second written to the stream.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Worker threads of the gateway's runtime (the clients get their own runtime).
    #[arg(long, default_value_t = 2)]
    gateway_threads: usize,
}

#[derive(Debug, Default)]
struct Outcome {
    name: String,
    clients: usize,
    rate: u64,
    /// Alerts per second actually written.
    achieved: f64,
    sent: u64,
    latencies_us: Vec<u32>,
    per_client: Vec<u64>,
    evicted: u64,
    /// CPU seconds of the gateway's and the clients' threads during the scenario.
    cpu_gateway_s: f64,
    cpu_clients_s: f64,
}

/// CPU seconds (user + system) of this process's threads, by thread name (Linux `/proc`).
fn cpu_by_thread_name() -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let ticks: f64 =
            fields.get(11..13).map(|f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()).unwrap_or(0.0);
        *out.entry(comm).or_insert(0.0) += ticks / 100.0; // USER_HZ
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-clients")
        .enable_all()
        .build()?;
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.gateway_threads)
        .thread_name("gateway")
        .enable_all()
        .build()?;
    clients_rt.block_on(async {
        let (redis, pg) = tokio::join!(proact_testkit::Redis::start(), proact_testkit::Postgres::start());
        let (redis, pg) = (redis?, pg?);
        let writer = proact_server::redis::connect(&redis.url()).await?;
        let mut outcomes = vec![floor(&redis.url(), &writer, &args).await?];
        // The same load through gateways that differ only in their linger, then a tenth of
        // the alerts, then a tenth of the clients: side by side in one run.
        let scenarios = [
            (args.clients, args.rate, 0),
            (args.clients, args.rate, 2),
            (args.clients, args.rate / 10, 2),
            (args.clients / 10, args.rate, 2),
        ];
        for (clients, rate, linger) in scenarios {
            let (http, shutdown, task) = start_gateway(&gateway_rt, &redis.url(), &pg.url(), linger).await?;
            let before = cpu_by_thread_name();
            let mut o = websockets(http, &writer, clients, rate, args.seconds).await?;
            let after = cpu_by_thread_name();
            let used = |n: &str| after.get(n).copied().unwrap_or(0.0) - before.get(n).copied().unwrap_or(0.0);
            o.cpu_gateway_s = used("gateway");
            o.cpu_clients_s = used("bench-clients");
            o.name = format!("gateway /ws/alerts, linger {linger} ms");
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

/// Writes `rate` alerts per second for `seconds`, each stamped just before its `XADD`, on a
/// thread of its own: the clients' runtime is saturated by design, the offered rate must not
/// be. Returns how many were written and the rate actually achieved.
async fn publish(writer: &Client, rate: u64, seconds: u64, seq0: u64) -> anyhow::Result<(u64, f64)> {
    let writer = writer.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let r = rt.block_on(async move {
            let total = rate * seconds;
            let start = Instant::now();
            for i in 0..total {
                // Paced on the schedule, not on the previous write.
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let _: String =
                    writer.xadd(ALERTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, alert_event(seq0 + i))).await?;
            }
            Ok::<_, anyhow::Error>((total, total as f64 / start.elapsed().as_secs_f64()))
        });
        let _ = tx.send(r);
    });
    rx.await?
}

/// The write time stamped in an alert id `B-<seq>-<micros>` inside a JSON text.
fn stamped(text: &str) -> Option<i64> {
    let i = text.find("\"alert_id\":\"B-")? + 14;
    let rest = &text[i..];
    let end = rest.find('"')?;
    rest[..end].rsplit('-').next()?.parse().ok()
}

/// One reader straight from the stream: the floor under any delivery through the gateway.
async fn floor(redis_url: &str, writer: &Client, args: &Args) -> anyhow::Result<Outcome> {
    let reader = proact_server::redis::connect(redis_url).await?;
    let last: Vec<(String, HashMap<String, Bytes>)> = writer.xrevrange(ALERTS_STREAM, "+", "-", Some(1)).await?;
    let mut from = last.first().map(|e| e.0.clone()).unwrap_or_else(|| "0-0".into());
    let expected = args.rate * args.seconds;
    let read = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(expected as usize);
        while (lat.len() as u64) < expected {
            let r: Value = match reader.xread(Some(512), Some(2000), ALERTS_STREAM, from.as_str()).await {
                Ok(v) => v,
                Err(_) => break,
            };
            let Ok(resp) = proact_server::redis::xread_response(r) else { break };
            let Some(entries) = resp.get(ALERTS_STREAM) else { continue };
            let now = now_micros();
            for (id, f) in entries {
                from = id.clone();
                if let Some(a) =
                    f.get(PAYLOAD_FIELD).and_then(|p| AlertEvent::decode(p.as_ref()).ok()).and_then(|e| e.alert)
                {
                    let t: i64 = a.alert_id.rsplit('-').next().and_then(|x| x.parse().ok()).unwrap_or(now);
                    lat.push((now - t).clamp(0, u32::MAX as i64) as u32);
                }
            }
        }
        lat
    });
    let (sent, achieved) = publish(writer, args.rate, args.seconds, 0).await?;
    let lat = tokio::time::timeout(Duration::from_secs(30), read).await??;
    let n = lat.len() as u64;
    Ok(Outcome {
        name: "redis XREAD (floor)".into(),
        achieved,
        clients: 1,
        rate: args.rate,
        sent,
        latencies_us: lat,
        per_client: vec![n],
        evicted: 0,
        ..Default::default()
    })
}

async fn websockets(
    http: std::net::SocketAddr,
    writer: &Client,
    clients: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Outcome> {
    static SEQ: AtomicU64 = AtomicU64::new(1_000_000_000);
    let expected = rate * seconds;
    let evicted = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws/alerts")).await?;
        sockets.push(ws);
    }
    let mut tasks = Vec::with_capacity(clients);
    for mut ws in sockets {
        let evicted = evicted.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(expected as usize);
            while (lat.len() as u64) < expected {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Some(at) = stamped(&t) {
                            lat.push((now_micros() - at).clamp(0, u32::MAX as i64) as u32);
                        }
                    }
                    Ok(Some(Ok(Message::Close(c)))) => {
                        if c.is_some_and(|c| u16::from(c.code) == 4008) {
                            evicted.fetch_add(1, Ordering::Relaxed);
                        }
                        break;
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            let _ = ws.close(None).await;
            lat
        }));
    }
    // Every client is subscribed once the gateway counts them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seq0 = SEQ.fetch_add(expected, Ordering::Relaxed);
    let t1 = Instant::now();
    let (sent, achieved) = publish(writer, rate, seconds, seq0).await?;
    let t2 = Instant::now();
    let mut all = Vec::with_capacity((expected as usize) * clients);
    let mut per_client = Vec::with_capacity(clients);
    for t in tasks {
        let lat = t.await?;
        per_client.push(lat.len() as u64);
        all.extend(lat);
    }
    eprintln!(
        "phases: connect+subscribe {:.1} s, publish {:.1} s, drain {:.1} s",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        t2.elapsed().as_secs_f64()
    );
    Ok(Outcome {
        name: "gateway /ws/alerts".into(),
        achieved,
        clients,
        rate,
        sent,
        latencies_us: all,
        per_client,
        evicted: evicted.load(Ordering::Relaxed),
        ..Default::default()
    })
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn print_report(outcomes: &[Outcome]) {
    let floor_p99 = outcomes.first().map(|o| {
        let mut l = o.latencies_us.clone();
        l.sort_unstable();
        pct(&l, 0.99)
    });
    println!(
        "| scenario | clients | alerts/s (achieved) | deliveries | p50 ms | p99 ms | p99.9 ms | max ms | p99 / floor | per-client min / max | evicted | CPU s gateway / clients |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|");
    for o in outcomes {
        let mut l = o.latencies_us.clone();
        l.sort_unstable();
        let (min, max) =
            (o.per_client.iter().min().copied().unwrap_or(0), o.per_client.iter().max().copied().unwrap_or(0));
        let ratio = floor_p99.map(|f| pct(&l, 0.99) / f).unwrap_or(f64::NAN);
        println!(
            "| {} | {} | {} ({:.0}) | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}× | {} / {} (of {}) | {} | {:.1} / {:.1} |",
            o.name,
            o.clients,
            o.rate,
            o.achieved,
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.99),
            pct(&l, 0.999),
            pct(&l, 1.0),
            ratio,
            min,
            max,
            o.sent,
            o.evicted,
            o.cpu_gateway_s,
            o.cpu_clients_s
        );
        eprintln!(
            "{}",
            serde_json::json!({
                "scenario": o.name, "clients": o.clients, "rate": o.rate, "achieved_rate": o.achieved, "sent": o.sent, "deliveries": l.len(),
                "p50_ms": pct(&l, 0.5), "p99_ms": pct(&l, 0.99), "p999_ms": pct(&l, 0.999), "max_ms": pct(&l, 1.0),
                "per_client_min": min, "per_client_max": max, "evicted": o.evicted,
            })
        );
    }
}
