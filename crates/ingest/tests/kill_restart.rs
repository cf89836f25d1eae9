//! Ack only after the write: ingest is SIGKILLed mid-stream (the real binary, as a child
//! process), restarted with the same client id, and every reading the publisher got a
//! PUBACK for must be in the streams. Redelivery may duplicate entries; downstream
//! deduplicates by (equipement_id, ts), so the check is on distinct pairs.

mod common;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use proact_testkit::{free_port, Mosquitto, Redis};

async fn spawn_ingest(mqtt: &Mosquitto, redis: &Redis, admin_port: u16) -> tokio::process::Child {
    let mut a = args(&mqtt.url(), &redis.url(), "ingest-kill", &[]);
    // Fixed admin port so the test can see readiness from outside.
    let i = a.iter().position(|x| x == "--admin-addr").unwrap();
    a[i + 1] = format!("127.0.0.1:{admin_port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proact-ingest"))
        .args(&a[1..])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn proact-ingest");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && http_get(addr, "/readyz").await.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ingest child not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_loses_nothing() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let admin_port = free_port().unwrap();
    let mut child = spawn_ingest(&mqtt, &redis, admin_port).await;

    let n = 30_000;
    let base = base_micros();
    let port = mqtt.port();
    let publisher = tokio::spawn(async move { publish(port, "sensor-kill", n, 20, 6000, base).await });

    // Kill once a good part is in the streams, while messages are in flight.
    let (_, before) = wait_for_distinct(&r, 5_000, Duration::from_secs(30)).await;
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait");
    assert!(!status.success(), "killed, not exited: {status:?}");
    let (_, at_kill) = (0, stream_contents(&r).await.1.len());
    assert!(before >= 5_000 && at_kill < n as usize, "the kill must land mid-stream ({at_kill} of {n} written)");

    // Messages keep arriving at the broker while ingest is down; its session queues them.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut child = spawn_ingest(&mqtt, &redis, admin_port).await;
    let stats = publisher.await.expect("publisher");
    assert!(stats.acked.load(Ordering::Relaxed) >= n);

    let (total, distinct) = wait_for_distinct(&r, n as usize, Duration::from_secs(60)).await;
    assert_eq!(distinct, n as usize, "every acked reading reaches the streams ({total} entries in all)");
    assert!(total >= distinct as u64);
    eprintln!(
        "killed at {at_kill}/{n}; {total} entries, {distinct} distinct ({} redelivered)",
        total - distinct as u64
    );
    child.start_kill().ok();
    let _ = child.wait().await;
}
