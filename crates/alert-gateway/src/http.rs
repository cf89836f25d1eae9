//! The gateway's HTTP side: the dashboard page, `/ws/alerts`, and the small JSON API the
//! page uses. Every route but the page itself (static, no data) needs the bearer token when
//! one is configured, in `Authorization: Bearer …`; the WebSocket, which a browser cannot
//! give headers, takes a single-use ticket got with the token instead (`access`).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proact_proto::v1::AlertsQuery;
use serde::Deserialize;
use serde_json::json;

use crate::feed::StreamId;
use crate::lifecycle::{Change, LifecycleError};
use crate::reference::ReferenceError;
use crate::state::GatewayState;
use crate::upstream;
use crate::{json, ws};

const DASHBOARD: &str = include_str!("../static/index.html");

/// The page's other files, embedded like the page: each capability's panel keeps its script
/// (and styles) in a file of its own under `static/`, loaded by a tag in `index.html`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("briefing.js", "text/javascript; charset=utf-8", include_str!("../static/briefing.js")),
    ("workorders.js", "text/javascript; charset=utf-8", include_str!("../static/workorders.js")),
    ("workorders.css", "text/css; charset=utf-8", include_str!("../static/workorders.css")),
    ("planning.js", "text/javascript; charset=utf-8", include_str!("../static/planning.js")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../static/dashboard.js")),
];

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => {
            ([(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// The page, its assets, and every JSON API behind the token: the gateway's own and `apis`,
/// the capabilities' routers it serves (work orders…).
pub fn router(shared: Arc<GatewayState>, apis: Router) -> Router {
    let api = Router::new()
        .route("/ws/alerts", get(ws_alerts))
        .route("/api/ws-ticket", post(ws_ticket))
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}", get(get_alert))
        .route("/api/alerts/{id}/technicians", get(technicians))
        .route("/api/alerts/{id}/ack", post(ack))
        .route("/api/alerts/{id}/assign", post(assign))
        .route("/api/alerts/{id}/clear", post(clear))
        .route("/api/equipment", get(equipment))
        .route("/api/equipment/{id}/telemetry", get(telemetry))
        .route("/api/status", get(status))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/", get(|| async { ([(header::CACHE_CONTROL, "no-cache")], Html(DASHBOARD)) }))
        .route("/static/{name}", get(asset))
        .merge(api)
        .with_state(shared.clone())
        .merge(apis.route_layer(middleware::from_fn_with_state(shared, auth)))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    crate::access::secure(next.run(req).await)
}

/// A single-use ticket for `/ws/alerts?ticket=…` (the route is behind the token).
async fn ws_ticket(State(shared): State<Arc<GatewayState>>) -> ApiResult {
    let ticket =
        crate::access::issue_ticket(&shared.redis).await.map_err(|e| ApiError::Unavailable(format!("Redis: {e}")))?;
    Ok(Json(json!({ "ticket": ticket, "expires_in_secs": crate::access::TICKET_TTL.as_secs() })).into_response())
}

/// The bearer token of the `Authorization` header.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// The `ticket` query parameter (tickets are hex: nothing to decode).
fn presented_ticket(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("ticket="))
}

async fn auth(State(shared): State<Arc<GatewayState>>, req: Request, next: Next) -> Response {
    let mut allowed = shared.accepts(presented_token(req.headers()));
    if !allowed && req.uri().path() == "/ws/alerts" {
        let ticket = presented_ticket(req.uri().query()).map(str::to_string);
        if let Some(t) = ticket {
            allowed = crate::access::redeem_ticket(&shared.redis, &t).await;
        }
    }
    if !allowed {
        metrics::counter!("proact_gateway_auth_refused_total", "api" => "http").increment(1);
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing or wrong bearer token\n")
            .into_response();
    }
    next.run(req).await
}

/// Every failure of the JSON API, mapped to one status code in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (code, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(_) => ApiError::NotFound(e.to_string()),
            LifecycleError::Invalid(_) => ApiError::Conflict(e.to_string()),
            _ => ApiError::Unavailable(unavailable(&e)),
        }
    }
}

/// A database failure as the caller sees it: no table, column or host names (those are in
/// the log line the message refers to).
fn unavailable(e: &dyn std::fmt::Display) -> String {
    proact_server::telemetry::logged_error("database unavailable", e)
}

impl From<ReferenceError> for ApiError {
    fn from(e: ReferenceError) -> Self {
        ApiError::Unavailable(unavailable(&e))
    }
}

impl From<proact_store::StoreError> for ApiError {
    fn from(e: proact_store::StoreError) -> Self {
        ApiError::Unavailable(unavailable(&e))
    }
}

type ApiResult = Result<Response, ApiError>;

#[derive(Debug, Deserialize, Default)]
pub struct WsParams {
    /// Replay every alert event after this alerts-stream id, then follow live.
    pub after: Option<String>,
}

/// The WebSocket handshake (RFC 6455 §4.2, HTTP/1.1), done here rather than by axum's
/// `WebSocketUpgrade` because `ws` writes pre-encoded frames straight to the upgraded
/// connection, which axum's socket type does not give access to.
async fn ws_alerts(State(shared): State<Arc<GatewayState>>, Query(p): Query<WsParams>, mut req: Request) -> ApiResult {
    let after = match p.after.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(
            StreamId::parse(a)
                .ok_or_else(|| ApiError::BadRequest(format!("after: {a:?} is not a stream id (ms-seq)")))?,
        ),
    };
    // Stream ids are milliseconds: older than the replay window, the replay starts at its edge.
    let floor_ms = (proact_proto::time::now_micros() / 1000).max(0) as u64;
    let floor = StreamId { ms: floor_ms.saturating_sub(shared.max_replay.as_millis() as u64), seq: 0 };
    let after = after.map(|a| if a < floor { floor } else { a });
    if req.version() != axum::http::Version::HTTP_11 {
        return Err(ApiError::BadRequest("a WebSocket upgrade needs HTTP/1.1".into()));
    }
    if let Some(why) = shared.origins.refuses(req.headers()) {
        metrics::counter!("proact_gateway_auth_refused_total", "api" => "origin").increment(1);
        return Ok((StatusCode::FORBIDDEN, why).into_response());
    }
    let accept = websocket_accept(req.headers()).map_err(|e| ApiError::BadRequest(e.into()))?;
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Ok((StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded to a WebSocket").into_response());
    };
    // Subscribe before replaying, so nothing falls between the replay and the live feed.
    let rx = shared.feed.subscribe();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => ws::serve(shared, hyper_util::rt::TokioIo::new(upgraded), rx, after).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [(header::CONNECTION, "upgrade"), (header::UPGRADE, "websocket")],
        [(header::SEC_WEBSOCKET_ACCEPT, accept)],
    )
        .into_response())
}

/// The `Sec-WebSocket-Accept` answer to a valid WebSocket upgrade request, or what is wrong with it.
fn websocket_accept(headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err("a WebSocket upgrade request needs `Connection: upgrade` and `Upgrade: websocket`");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err("only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)");
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or("Sec-WebSocket-Key is missing")?;
    if !is_websocket_key(key.as_bytes()) {
        return Err("Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)");
    }
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// 16 bytes in base64: 22 characters of the alphabet, then `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    pub equipement_id: Option<String>,
    pub state: Option<String>,
    pub min_severity: Option<String>,
    pub limit: Option<u32>,
}

fn parse_state(s: Option<&str>) -> Result<i32, ApiError> {
    Ok(match s {
        None | Some("") => 0,
        Some("open") => 1,
        Some("acknowledged") => 2,
        Some("cleared") => 3,
        Some(other) => return Err(ApiError::BadRequest(format!("unknown state {other:?}"))),
    })
}

fn parse_severity(s: Option<&str>) -> Result<i32, ApiError> {
    Ok(match s {
        None | Some("") => 0,
        Some("info") => 1,
        Some("warning") => 2,
        Some("critical") => 3,
        Some(other) => return Err(ApiError::BadRequest(format!("unknown severity {other:?}"))),
    })
}

/// Alerts from the database, plus the alerts-stream position they are at least as new as:
/// the page follows the WebSocket from there, so nothing raised meanwhile is missed.
async fn list_alerts(State(shared): State<Arc<GatewayState>>, Query(p): Query<ListParams>) -> ApiResult {
    let position = last_event_id(&shared.redis).await;
    let q = AlertsQuery {
        equipement_id: p.equipement_id.unwrap_or_default(),
        state: parse_state(p.state.as_deref())?,
        min_severity: parse_severity(p.min_severity.as_deref())?,
        limit: p.limit.unwrap_or(200).min(5000),
        ..Default::default()
    };
    let alerts = proact_store::list_alerts(&shared.pool, &q).await?;
    Ok(Json(json!({
        "alerts": alerts.iter().map(|a| json::alert(a, shared.crit.priority(a))).collect::<Vec<_>>(),
        "last_event_id": position,
    }))
    .into_response())
}

async fn last_event_id(redis: &fred::prelude::Client) -> Option<String> {
    use fred::prelude::*;
    let v: Value = redis.xrevrange(proact_proto::streams::ALERTS_STREAM, "+", "-", Some(1)).await.ok()?;
    match v {
        Value::Array(entries) => entries.first().and_then(|e| match e {
            Value::Array(p) => p.first().and_then(|id| id.as_string()),
            _ => None,
        }),
        _ => None,
    }
}

async fn find(shared: &GatewayState, id: &str) -> Result<proact_proto::v1::Alert, ApiError> {
    shared.lifecycle().find(id).await?.ok_or_else(|| ApiError::NotFound(format!("no alert with id {id:?}")))
}

async fn get_alert(State(shared): State<Arc<GatewayState>>, Path(id): Path<String>) -> ApiResult {
    let alert = find(&shared, &id).await?;
    let history = crate::lifecycle::history(&shared.pool, &id).await?;
    Ok(Json(json!({ "alert": json::alert(&alert, shared.crit.priority(&alert)), "history": history })).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct TechParams {
    pub failure_mode: Option<String>,
}

async fn technicians(
    State(shared): State<Arc<GatewayState>>,
    Path(id): Path<String>,
    Query(p): Query<TechParams>,
) -> ApiResult {
    let alert = find(&shared, &id).await?;
    let s = crate::reference::suggestions(&shared.pool, &alert, p.failure_mode.as_deref()).await?;
    Ok(Json(s).into_response())
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

async fn change(shared: &GatewayState, id: &str, c: Change) -> ApiResult {
    let a = shared.lifecycle().apply(id, c).await?;
    Ok(Json(json::alert(&a, shared.crit.priority(&a))).into_response())
}

async fn ack(State(s): State<Arc<GatewayState>>, Path(id): Path<String>, Json(b): Json<ChangeBody>) -> ApiResult {
    change(&s, &id, Change::Acknowledge { by: b.by, comment: b.comment }).await
}

async fn assign(State(s): State<Arc<GatewayState>>, Path(id): Path<String>, Json(b): Json<ChangeBody>) -> ApiResult {
    change(&s, &id, Change::Assign { technician_id: b.technician_id, by: b.by, comment: b.comment }).await
}

async fn clear(State(s): State<Arc<GatewayState>>, Path(id): Path<String>, Json(b): Json<ChangeBody>) -> ApiResult {
    change(&s, &id, Change::Clear { by: b.by, comment: b.comment }).await
}

async fn equipment(State(shared): State<Arc<GatewayState>>) -> ApiResult {
    let list = crate::reference::equipment(&shared.pool, shared.silent_after_s).await?;
    Ok(Json(json!({ "equipment": list, "silent_after_s": shared.silent_after_s })).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct TelemetryParams {
    /// Window ending now, in minutes (default 30, at most one week).
    pub minutes: Option<u32>,
}

async fn telemetry(
    State(shared): State<Arc<GatewayState>>,
    Path(id): Path<String>,
    Query(p): Query<TelemetryParams>,
) -> ApiResult {
    let minutes = i64::from(p.minutes.unwrap_or(30).clamp(1, 7 * 24 * 60));
    let to = proact_proto::time::now_micros() + 1;
    let from = to - minutes * 60_000_000;
    let points = upstream::telemetry(shared.archive.clone(), &id, from, to)
        .await
        .map_err(|e| ApiError::Unavailable(format!("archive: {}", e.message())))?;
    // Alert spans overlapping the window, to mark on the chart.
    let q = AlertsQuery { equipement_id: id.clone(), to_micros: to, limit: 200, ..Default::default() };
    let spans: Vec<serde_json::Value> = proact_store::list_alerts(&shared.pool, &q)
        .await?
        .iter()
        .filter(|a| a.end_micros == 0 || a.end_micros >= from)
        .map(|a| {
            json!({
                "alert_id": a.alert_id,
                "start": a.start_micros / 1000,
                "end": if a.end_micros > 0 { Some(a.end_micros / 1000) } else { None },
                "severity": json::severity(a.severity),
                "state": json::state(a.state),
            })
        })
        .collect();
    Ok(Json(json!({
        "equipement_id": id,
        "from": from / 1000,
        "to": to / 1000,
        "points": points,
        "alerts": spans,
    }))
    .into_response())
}

/// The model in use and the ingest rate, for the page's header.
async fn status(State(shared): State<Arc<GatewayState>>) -> ApiResult {
    let (registry, recent) = tokio::join!(
        tokio::time::timeout(upstream::UPSTREAM_TIMEOUT, upstream::active_models(shared.registry.clone())),
        model_of_recent_alerts(&shared.pool),
    );
    let (active, registry_error) = match registry {
        Ok(Ok(m)) => (m, None),
        Ok(Err(e)) => (Vec::new(), Some(format!("registry: {}", e.message()))),
        Err(_) => (Vec::new(), Some("registry: no answer".to_string())),
    };
    Ok(Json(json!({
        "model": {
            "active": active,
            "registry_error": registry_error,
            "last_alert_model_version": recent,
        },
        "ingest": { "readings_per_s": shared.ingest_rate.get() },
        "gateway": { "clients": shared.clients.load(std::sync::atomic::Ordering::Relaxed) },
    }))
    .into_response())
}

/// The model version stamped on the most recently raised alert (what the detector runs).
async fn model_of_recent_alerts(pool: &deadpool_postgres::Pool) -> Option<String> {
    let client = pool.get().await.ok()?;
    proact_store::alerts::model_of_recent_alerts(&client).await.ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_keys_are_sixteen_bytes_of_base64() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "RFC 6455's example");
        assert!(!is_websocket_key(b""));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!is_websocket_key(&[b'A'; 4096]));
    }

    #[test]
    fn token_only_from_the_header_ticket_from_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_token(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(presented_token(&h), Some("xyz"));
        assert_eq!(presented_ticket(Some("after=1-0&ticket=ab12")), Some("ab12"));
        assert_eq!(presented_ticket(Some("after=1-0&token=abc")), None);
        assert_eq!(presented_ticket(None), None);
    }
}
