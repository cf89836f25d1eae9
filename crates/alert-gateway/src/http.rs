//! The gateway's HTTP side: the dashboard page, `/ws/alerts`, and a small JSON API.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proact_proto::v1::{AlertEvent, AlertsQuery};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{self, Change, LifecycleError};
use crate::{feed, json};

const DASHBOARD: &str = include_str!("../static/index.html");

/// Shared state of the HTTP handlers.
pub struct Shared {
    pub pool: deadpool_postgres::Pool,
    pub redis: fred::prelude::Client,
    pub feed: broadcast::Sender<AlertEvent>,
    pub token: Option<String>,
    pub heartbeat: Duration,
    pub shutdown: CancellationToken,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/ws/alerts", get(ws_alerts))
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}/ack", post(ack))
        .route("/api/alerts/{id}/assign", post(assign))
        .route("/api/alerts/{id}/clear", post(clear))
        .with_state(shared)
}

fn authorized(shared: &Shared, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let Some(want) = shared.token.as_deref() else { return true };
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Browsers cannot set headers on a WebSocket: the page passes the token as a parameter.
    bearer.or(query_token).is_some_and(|got| constant_time_eq(got.as_bytes(), want.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing or wrong bearer token\n")
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
pub struct WsParams {
    /// Replay every alert event after this alerts-stream id, then follow live.
    pub after: Option<String>,
    pub token: Option<String>,
}

async fn ws_alerts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(p): Query<WsParams>,
    ws: WebSocketUpgrade,
) -> Response {
    if !authorized(&shared, &headers, p.token.as_deref()) {
        return unauthorized();
    }
    // Subscribe before replaying, so nothing falls between the replay and the live feed.
    let rx = shared.feed.subscribe();
    ws.on_upgrade(move |socket| client(shared, socket, rx, p.after))
}

async fn client(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<AlertEvent>,
    after: Option<String>,
) {
    metrics::gauge!("proact_gateway_ws_clients").increment(1.0);
    let mut last = String::new();
    if let Some(after) = after.filter(|a| !a.is_empty()) {
        match feed::replay_after(&shared.redis, &after, 10_000).await {
            Ok(missed) => {
                for ev in missed {
                    last = ev.event_id.clone();
                    if socket.send(WsMessage::Text(json::event(&ev).to_string().into())).await.is_err() {
                        metrics::gauge!("proact_gateway_ws_clients").decrement(1.0);
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "replay failed"),
        }
    }
    let mut heartbeat = tokio::time::interval(shared.heartbeat);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {
                let _ = socket.send(WsMessage::Close(Some(CloseFrame { code: 1001, reason: "gateway shutting down".into() }))).await;
                break;
            }
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if !last.is_empty() && !feed::id_after(&ev.event_id, &last) {
                        continue; // already sent by the replay
                    }
                    if socket.send(WsMessage::Text(json::event(&ev).to_string().into())).await.is_err() {
                        break;
                    }
                    metrics::counter!("proact_gateway_ws_messages_total").increment(1);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // A slow client is cut off rather than slowing the others; it resumes
                    // from its last event id on reconnect.
                    metrics::counter!("proact_gateway_ws_evicted_total").increment(1);
                    let reason = format!("too slow: {n} alerts behind; reconnect with after=<last event_id>");
                    let _ = socket.send(WsMessage::Close(Some(CloseFrame { code: 4008, reason: reason.into() }))).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = heartbeat.tick() => {
                if socket.send(WsMessage::Text(r#"{"type":"heartbeat"}"#.into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
    metrics::gauge!("proact_gateway_ws_clients").decrement(1.0);
}

#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    pub equipement_id: Option<String>,
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub token: Option<String>,
}

async fn list_alerts(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(p): Query<ListParams>) -> Response {
    if !authorized(&shared, &headers, p.token.as_deref()) {
        return unauthorized();
    }
    let state = match p.state.as_deref() {
        None | Some("") => 0,
        Some("open") => 1,
        Some("acknowledged") => 2,
        Some("cleared") => 3,
        Some(other) => return (StatusCode::BAD_REQUEST, format!("unknown state {other:?}\n")).into_response(),
    };
    let q = AlertsQuery {
        equipement_id: p.equipement_id.unwrap_or_default(),
        state,
        limit: p.limit.unwrap_or(200),
        ..Default::default()
    };
    match proact_store::list_alerts(&shared.pool, &q).await {
        Ok(alerts) => {
            Json(serde_json::json!({ "alerts": alerts.iter().map(json::alert).collect::<Vec<_>>() })).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ChangeBody {
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub technician_id: String,
}

async fn change(shared: Arc<Shared>, headers: HeaderMap, id: String, c: Change) -> Response {
    if !authorized(&shared, &headers, None) {
        return unauthorized();
    }
    match lifecycle::apply(&shared.pool, &shared.redis, &id, c).await {
        Ok(a) => Json(json::alert(&a)).into_response(),
        Err(e @ LifecycleError::NotFound(_)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e @ LifecycleError::Invalid(_)) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn ack(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ChangeBody>,
) -> Response {
    change(s, h, id, Change::Acknowledge { by: b.by, comment: b.comment }).await
}

async fn assign(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ChangeBody>,
) -> Response {
    change(s, h, id, Change::Assign { technician_id: b.technician_id, by: b.by, comment: b.comment }).await
}

async fn clear(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ChangeBody>,
) -> Response {
    change(s, h, id, Change::Clear { by: b.by, comment: b.comment }).await
}
