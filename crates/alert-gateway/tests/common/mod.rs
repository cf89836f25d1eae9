//! A gateway in-process against real Redis and PostgreSQL, plus small clients (raw HTTP,
//! WebSocket, gRPC) and a stand-in for the detector that writes to the alerts stream.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use futures::StreamExt;
use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{Alert, AlertEvent, AlertEventKind, AlertState, Severity};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-0123456789";

pub struct Servers {
    pub redis: proact_testkit::Redis,
    pub postgres: proact_testkit::Postgres,
}

impl Servers {
    pub async fn start() -> Self {
        let (redis, postgres) = tokio::join!(proact_testkit::Redis::start(), proact_testkit::Postgres::start());
        Self { redis: redis.expect("redis starts"), postgres: postgres.expect("postgres starts") }
    }

    pub async fn redis_client(&self) -> Client {
        proact_server::redis::connect(&self.redis.url()).await.expect("redis client")
    }

    pub async fn pg(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.postgres.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c
    }
}

pub struct Gateway {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// Starts a gateway; `extra` flags are appended (e.g. `--token`, `--client-queue`).
    pub async fn start(servers: &Servers, extra: &[&str]) -> Self {
        let mut args = vec![
            "proact-alert-gateway".to_string(),
            "--redis-url".into(),
            servers.redis.url(),
            "--database-url".into(),
            servers.postgres.url(),
            "--admin-addr".into(),
            "127.0.0.1:0".into(),
            "--grpc-addr".into(),
            "127.0.0.1:0".into(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            // Nothing listens on the discard port: no archive or registry in these tests.
            "--archive-grpc-url".into(),
            "http://127.0.0.1:9".into(),
            "--registry-grpc-url".into(),
            "http://127.0.0.1:9".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = proact_alert_gateway::Config::try_parse_from(args).expect("config");
        config.validate().expect("valid config");
        let app = proact_alert_gateway::App::build(config).await.expect("gateway builds");
        let (http, grpc) = (app.http_addr(), app.grpc_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let gw = Self { http, grpc, shutdown, task };
        // Ready once the feed follows the stream: /api/status answers and the page is served.
        wait_for("gateway up", Duration::from_secs(10), || async { gw.get("/", None).await.0 == 200 }).await;
        gw
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http(self.http, "GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: serde_json::Value) -> (u16, String) {
        http(self.http, "POST", path, token, Some(body.to_string())).await
    }

    pub async fn ws(&self, query: &str) -> Ws {
        let url = format!("ws://{}/ws/alerts{query}", self.http);
        let (ws, _) = tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await.expect("ws connects");
        ws
    }

    /// A WebSocket opened with `token` in its `Authorization` header.
    pub async fn ws_as(&self, token: &str) -> Ws {
        let mut req = format!("ws://{}/ws/alerts", self.http).into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws connects");
        ws
    }

    /// Number of WebSocket clients the gateway currently serves.
    pub async fn clients(&self, token: Option<&str>) -> u64 {
        let (code, body) = self.get("/api/status", token).await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["gateway"]["clients"].as_u64().unwrap()
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal HTTP/1.1 client (one request per connection), enough for a JSON API.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (code, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn raised(alert_id: &str, equipement_id: &str, reason_len: usize) -> Alert {
    let now = proact_proto::time::now_micros();
    Alert {
        alert_id: alert_id.into(),
        equipement_id: equipement_id.into(),
        start_micros: now,
        severity: Severity::Critical as i32,
        score: 1.0,
        reason: if reason_len == 0 { "temperature 95.0 °C > 90.0 °C".into() } else { "x".repeat(reason_len) },
        rule: "temperature_critical".into(),
        model_version: "rules-v1".into(),
        state: AlertState::Open as i32,
        updated_micros: now,
        value: 95.0,
        ..Default::default()
    }
}

/// Writes an event to the alerts stream as the detector does; returns its stream id.
pub async fn publish(redis: &Client, kind: AlertEventKind, alert: Alert) -> String {
    let ev = AlertEvent { kind: kind as i32, alert: Some(alert), ..Default::default() };
    redis.xadd(ALERTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(ev.encode_to_vec()))).await.unwrap()
}

/// Writes `n` raised alerts `{prefix}-{i}` in pipelined chunks; returns their stream ids.
pub async fn publish_many(redis: &Client, prefix: &str, n: usize, reason_len: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let p = redis.pipeline();
        for i in chunk {
            let ev = AlertEvent {
                kind: AlertEventKind::Raised as i32,
                alert: Some(raised(&format!("{prefix}-{i}"), "PUMP-01", reason_len)),
                ..Default::default()
            };
            let _: () = p
                .xadd(ALERTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(ev.encode_to_vec())))
                .await
                .unwrap();
        }
        let r: Vec<String> = p.all().await.unwrap();
        ids.extend(r);
    }
    ids
}

/// The next alert event on `ws` (heartbeats skipped): (event_id, the whole JSON).
pub async fn next_alert(ws: &mut Ws, timeout: Duration) -> Option<(String, serde_json::Value)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let msg = tokio::time::timeout(left, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "alert" {
                return Some((v["event_id"].as_str().unwrap().to_string(), v));
            }
        }
    }
}
