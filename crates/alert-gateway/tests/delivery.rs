//! Delivery guarantees of `/ws/alerts` and gRPC `Subscribe`, against real Redis and
//! PostgreSQL: authentication, exact resume, and isolation of slow clients.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use proact_proto::v1::alerts_client::AlertsClient;
use proact_proto::v1::{ListAlertsRequest, SubscribeAlertsRequest};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_point_refuses_a_missing_or_wrong_token() {
    let servers = Servers::start().await;
    let gw = Gateway::start(&servers, &["--token", TOKEN]).await;

    // WebSocket: refused before the upgrade, with 401; a token in the URL opens nothing (it
    // would end up in logs), nor does a ticket that was not issued.
    for query in
        ["", "?token=wrong-token-0123456789", &format!("?token={TOKEN}"), "?ticket=0123456789abcdef0123456789abcdef"]
    {
        let req = format!("ws://{}/ws/alerts{query}", gw.http).into_client_request().unwrap();
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401, "{query}"),
            other => panic!("expected 401 for {query:?}, got {:?}", other.map(|_| ())),
        }
    }
    let mut req = format!("ws://{}/ws/alerts", gw.http).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("header token accepted");
    // A browser's way: a ticket bought with the token opens one socket, once.
    assert_eq!(http(gw.http, "POST", "/api/ws-ticket", None, None).await.0, 401);
    let (code, body) = gw.post("/api/ws-ticket", Some(TOKEN), serde_json::json!({})).await;
    assert_eq!(code, 200, "{body}");
    let ticket = serde_json::from_str::<serde_json::Value>(&body).unwrap()["ticket"].as_str().unwrap().to_string();
    gw.ws(&format!("?ticket={ticket}")).await;
    let again = format!("ws://{}/ws/alerts?ticket={ticket}", gw.http).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(again).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401, "a ticket works once"),
        other => panic!("a used ticket must be refused, got {:?}", other.map(|_| ())),
    }
    // A page of another site, with a valid token: refused (cross-site WebSocket hijacking).
    let mut foreign = format!("ws://{}/ws/alerts", gw.http).into_client_request().unwrap();
    foreign.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    foreign.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign Origin must be refused, got {:?}", other.map(|_| ())),
    }
    let mut own = format!("ws://{}/ws/alerts", gw.http).into_client_request().unwrap();
    own.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    own.headers_mut().insert("origin", format!("http://{}", gw.http).parse().unwrap());
    tokio_tungstenite::connect_async(own).await.expect("the gateway's own page opens the feed");

    // JSON API: every route, read and write.
    for (method, path) in [
        ("GET", "/api/alerts"),
        ("GET", "/api/alerts/X"),
        ("GET", "/api/alerts/X/technicians"),
        ("POST", "/api/alerts/X/ack"),
        ("POST", "/api/alerts/X/assign"),
        ("POST", "/api/alerts/X/clear"),
        ("GET", "/api/equipment"),
        ("GET", "/api/equipment/PUMP-01/telemetry"),
        ("GET", "/api/status"),
    ] {
        let body = (method == "POST").then(|| r#"{"by":"x"}"#.to_string());
        assert_eq!(http(gw.http, method, path, None, body.clone()).await.0, 401, "{method} {path} without token");
        assert_eq!(
            http(gw.http, method, path, Some("wrong-token-0123456789"), body).await.0,
            401,
            "{method} {path} with a wrong token"
        );
    }
    assert_eq!(gw.get("/api/alerts", Some(TOKEN)).await.0, 200);
    assert_eq!(gw.get(&format!("/api/alerts?token={TOKEN}"), None).await.0, 401, "no token in URLs");
    // The page itself is static and carries no data: it loads, then asks for the token.
    assert_eq!(gw.get("/", None).await.0, 200);
    // Every answer forbids framing, sniffing and scripts from elsewhere (refusals too).
    for path in ["/", "/static/dashboard.js", "/api/alerts"] {
        let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", gw.http);
        tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw).await.unwrap();
        let head = String::from_utf8_lossy(&raw).split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        for h in [
            "content-security-policy: default-src 'self'; script-src 'self';",
            "frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
        ] {
            assert!(head.contains(h), "{path}: {h} missing in\n{head}");
        }
    }

    // gRPC: UNAUTHENTICATED without the bearer metadata, on unary and streaming calls.
    let mut client = AlertsClient::connect(format!("http://{}", gw.grpc)).await.unwrap();
    let e = client.list(ListAlertsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = client.subscribe(SubscribeAlertsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(ListAlertsRequest::default());
    wrong.metadata_mut().insert("authorization", "Bearer wrong-token-0123456789".parse().unwrap());
    assert_eq!(client.list(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut right = tonic::Request::new(ListAlertsRequest::default());
    right.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    client.list(right).await.expect("token accepted");

    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_disconnect_delivers_exactly_the_missed_alerts() {
    let servers = Servers::start().await;
    let redis = servers.redis_client().await;
    let gw = Gateway::start(&servers, &[]).await;

    let mut ws = gw.ws("").await;
    let seen = publish_many(&redis, "before", 5, 0).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next_alert(&mut ws, WAIT).await.expect("live alert").0);
    }
    assert_eq!(got, seen);
    let last = got.last().unwrap().clone();
    ws.close(None).await.unwrap();
    drop(ws);

    // Missed while away: more than one replay page.
    let missed = publish_many(&redis, "missed", 1_234, 0).await;
    let mut ws = gw.ws(&format!("?after={last}")).await;
    let live = publish_many(&redis, "live", 7, 0).await;
    let want: Vec<String> = missed.iter().chain(&live).cloned().collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.push(next_alert(&mut ws, WAIT).await.expect("replayed or live alert").0);
    }
    assert_eq!(got, want, "exactly the missed alerts, then the live ones, in order, once each");
    // Nothing more (no duplicate of a replayed event arrives from the live feed).
    let marker = publish_many(&redis, "marker", 1, 0).await;
    assert_eq!(next_alert(&mut ws, WAIT).await.expect("marker").0, marker[0]);

    // gRPC Subscribe resumes the same way.
    let mut client = AlertsClient::connect(format!("http://{}", gw.grpc)).await.unwrap();
    let mut stream =
        client.subscribe(SubscribeAlertsRequest { resume_after: last.clone() }).await.unwrap().into_inner();
    let mut got = Vec::new();
    while got.len() < want.len() + 1 {
        let ev = tokio::time::timeout(WAIT, stream.message()).await.unwrap().unwrap().unwrap();
        got.push(ev.event_id);
    }
    let want_grpc: Vec<String> = want.iter().chain(&marker).cloned().collect();
    assert_eq!(got, want_grpc);

    // A resume point that is not a stream id is refused, not silently ignored.
    assert_eq!(gw.get("/ws/alerts?after=yesterday", None).await.0, 400);
    gw.stop().await;
}

/// A client that stops reading its socket is cut off (close 4008) while a reading client
/// receives every alert: the slow one never holds the others back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_evicted_and_does_not_delay_the_others() {
    let servers = Servers::start().await;
    let redis = servers.redis_client().await;
    let gw = Gateway::start(&servers, &["--client-queue", "256", "--write-timeout-secs", "1"]).await;

    let mut stalled = gw.ws("").await; // connected, then never read until the end
    let mut reader = gw.ws("").await;
    wait_for("two clients", WAIT, || async { gw.clients(None).await == 2 }).await;

    // Enough bytes (1,000 × 32 KB) to fill the stalled client's TCP buffers several times over.
    const N: usize = 1_000;
    let publisher = {
        let redis = redis.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for chunk in 0..(N / 25) {
                ids.extend(publish_many(&redis, &format!("burst{chunk}"), 25, 32 * 1024).await);
                // Paced like a real (if heavy) alert rate rather than one giant burst.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ids
        })
    };
    let mut got = Vec::new();
    while got.len() < N {
        got.push(next_alert(&mut reader, WAIT).await.expect("the reading client gets every alert").0);
    }
    let ids = publisher.await.unwrap();
    assert_eq!(got, ids, "the reading client got every alert, in order");

    // The gateway has let go of the stalled client, which still has not read anything.
    wait_for("stalled client evicted", WAIT, || async { gw.clients(None).await == 1 }).await;

    // When it finally reads: what was buffered, then the close frame with the reason (or, if
    // the close frame could not be written to its full buffers, the end of the connection).
    let mut received = 0;
    let mut close = None;
    while let Ok(Some(msg)) = tokio::time::timeout(WAIT, stalled.next()).await {
        match msg {
            Ok(Message::Text(_)) => received += 1,
            Ok(Message::Close(c)) => {
                close = c;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(received < N, "the stalled client was cut off ({received} of {N} alerts)");
    if let Some(c) = close {
        assert_eq!(c.code, CloseCode::Library(4008));
        assert!(c.reason.contains("reconnect with after="), "{}", c.reason);
    }

    // The reader is unaffected and still live.
    let more = publish_many(&redis, "after", 1, 0).await;
    assert_eq!(next_alert(&mut reader, WAIT).await.unwrap().0, more[0]);
    gw.stop().await;
}

/// A client that falls more than its queue behind gets close code 4008 with a reason, and
/// can resume from its last event id without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_further_behind_than_its_queue_is_closed_with_4008_and_resumes() {
    let servers = Servers::start().await;
    let redis = servers.redis_client().await;
    // A long write timeout: this client is slow, not gone.
    let gw = Gateway::start(&servers, &["--client-queue", "32", "--write-timeout-secs", "120"]).await;

    let mut slow = gw.ws("").await;
    let mut reader = gw.ws("").await;
    wait_for("two clients", WAIT, || async { gw.clients(None).await == 2 }).await;
    const N: usize = 1_000;
    // Paced so that a client that reads keeps up with its queue of 32; 32 MB in all, more
    // than the slow client's TCP buffers hold.
    let publisher = {
        let redis = redis.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for chunk in 0..(N / 8) {
                ids.extend(publish_many(&redis, &format!("lag{chunk}"), 8, 32 * 1024).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ids
        })
    };
    let mut got = 0;
    while got < N {
        next_alert(&mut reader, WAIT).await.expect("reader keeps up");
        got += 1;
    }
    let ids = publisher.await.unwrap();

    // Now the slow client reads: its backlog, then the eviction.
    let mut last = String::new();
    let close = loop {
        match tokio::time::timeout(WAIT, slow.next()).await.expect("slow client gets data or a close") {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "alert" {
                    last = v["event_id"].as_str().unwrap().to_string();
                }
            }
            Some(Ok(Message::Close(c))) => break c.expect("a close frame with a code"),
            Some(Ok(_)) => {}
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Library(4008));
    assert!(close.reason.contains("too slow"), "{}", close.reason);
    assert!(!last.is_empty() && last != *ids.last().unwrap(), "it was cut off before the end");

    // Resuming from the last event it saw gives exactly the rest.
    let mut again = gw.ws(&format!("?after={last}")).await;
    let rest: Vec<String> = ids.iter().skip_while(|i| **i != last).skip(1).cloned().collect();
    let mut got = Vec::new();
    while got.len() < rest.len() {
        got.push(next_alert(&mut again, WAIT).await.expect("resumed").0);
    }
    assert_eq!(got, rest);
    gw.stop().await;
}

/// The gateway speaks the WebSocket protocol itself (it writes pre-encoded frames): pings
/// are answered, a close is answered with its code, a broken frame or a request that is not
/// an upgrade is refused, and a delivered alert still reads as a normal text message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_protocol_is_spoken_as_tungstenite_expects() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let servers = Servers::start().await;
    let redis = servers.redis_client().await;
    let gw = Gateway::start(&servers, &[]).await;

    let mut ws = gw.ws("").await;
    ws.send(Message::Ping("are you there".into())).await.unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, Message::Pong("are you there".into()));
    let ids = publish_many(&redis, "proto", 3, 200_000).await; // also a frame with a 64-bit length
    for id in &ids {
        assert_eq!(&next_alert(&mut ws, WAIT).await.expect("alert").0, id);
    }
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "bye".into() }))).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(c.code, CloseCode::Away),
        other => panic!("expected the close to be answered, got {other:?}"),
    }
    wait_for("client gone", WAIT, || async { gw.clients(None).await == 0 }).await;

    // A plain GET is not an upgrade.
    let (code, body) = gw.get("/ws/alerts", None).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Upgrade: websocket"), "{body}");

    // An unmasked client frame breaks the protocol: close 1002.
    let mut tcp = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let req = format!(
        "GET /ws/alerts HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        gw.http
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut reply)).await.unwrap().unwrap();
    assert_eq!(&reply[..4], &[0x88, reply[1], 0x03, 0xEA], "close 1002: {reply:?}");
    gw.stop().await;
}

/// `after=0` used to make the replica read the whole alerts stream for one socket: the
/// replay reaches back `PROACT_WS_MAX_REPLAY_SECS` at most (older alerts come from the list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reaches_back_to_its_window_only() {
    use bytes::Bytes;
    use fred::prelude::*;
    use proact_proto::streams::{ALERTS_STREAM, PAYLOAD_FIELD};
    use proact_proto::v1::{AlertEvent, AlertEventKind};
    use prost::Message as _;
    let servers = Servers::start().await;
    let gw = Gateway::start(&servers, &["--max-replay-secs", "3600"]).await;
    let redis = servers.redis_client().await;
    let old = AlertEvent {
        kind: AlertEventKind::Raised as i32,
        alert: Some(raised("OLD", "PUMP-01", 0)),
        ..Default::default()
    };
    let two_hours_ago = proact_proto::time::now_micros() / 1000 - 7_200_000;
    let _: String = redis
        .xadd(
            ALERTS_STREAM,
            false,
            None::<()>,
            format!("{two_hours_ago}-0"),
            (PAYLOAD_FIELD, Bytes::from(old.encode_to_vec())),
        )
        .await
        .unwrap();
    let recent = publish(&redis, AlertEventKind::Raised, raised("RECENT", "PUMP-01", 0)).await;
    let mut ws = gw.ws("?after=0").await;
    assert_eq!(next_alert(&mut ws, WAIT).await.expect("the recent alert").0, recent, "the old one is skipped");
    gw.stop().await;
}

/// A client that trickles its headers (or sends none) is cut off after the header timeout
/// instead of holding a connection forever; the connection cap lets the next client in as
/// soon as a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_the_connection_cap_admits_the_next_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let servers = Servers::start().await;
    let gw = Gateway::start(&servers, &["--header-timeout-secs", "1", "--max-connections", "1"]).await;
    let mut slow = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server closes a connection whose headers never end");

    // One slot: a WebSocket holds it; the next request is answered once the socket closes.
    let mut ws = gw.ws("").await;
    let addr = gw.http;
    let next = tokio::spawn(async move { http(addr, "GET", "/", None, None).await.0 });
    ws.close(None).await.unwrap();
    drop(ws);
    assert_eq!(tokio::time::timeout(WAIT, next).await.expect("answered once the slot is free").unwrap(), 200);
    gw.stop().await;
}
