//! Work orders served by the gateway: the JSON API and gRPC `WorkOrders` behind the
//! gateway's token, and every transition pushed to the dashboards' sockets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use proact_proto::v1::work_orders_client::WorkOrdersClient;
use proact_proto::v1::{Alert, AlertState, Severity, WorkOrderRef};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "work-orders-test-token";

/// The next `work_order` notice on `ws` (alerts and heartbeats skipped).
async fn next_work_order(ws: &mut Ws, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let msg = tokio::time::timeout(left, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "work_order" {
                return Some(v["event"].clone());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_behind_the_token_and_their_transitions_on_every_socket() {
    let servers = Servers::start().await;
    // The schema first (the gateway would apply it too), then the sample reference data, so
    // that the gateway reads the AMDEC at start.
    let pool = proact_server::db::pool(&servers.postgres.url(), 1).unwrap();
    proact_store::schema::migrate(&mut pool.get().await.unwrap()).await.unwrap();
    let mut db = proact_dataprep::load::connect(&servers.postgres.url()).await.unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    proact_dataprep::load::load_dir(&mut db, &data).await.expect("the sample reference data loads");
    let gw = Gateway::start(&servers, &["--token", TOKEN]).await;
    let now = proact_proto::time::now_micros();
    let alert = Alert {
        alert_id: "A-WO-1".into(),
        equipement_id: "PUMP-01".into(),
        start_micros: now,
        severity: Severity::Critical as i32,
        score: 0.9,
        reason: "temperature_critical".into(),
        rule: "temperature_critical".into(),
        state: AlertState::Open as i32,
        updated_micros: now,
        value: 95.0,
        ..Default::default()
    };
    let fan = Alert {
        alert_id: "A-WO-2".into(),
        equipement_id: "FAN-01".into(),
        severity: Severity::Warning as i32,
        rule: "vibration_warning".into(),
        reason: "vibration_warning".into(),
        ..alert.clone()
    };
    proact_store::store_alerts(&pool, &[alert, fan]).await.unwrap();

    // Each alert carries its priority: severity, then the AMDEC criticality of its equipment.
    let (code, list) = gw.get("/api/alerts", Some(TOKEN)).await;
    assert_eq!(code, 200, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let priority = |id: &str| {
        let a = list["alerts"].as_array().unwrap().iter().find(|a| a["alert_id"] == id).unwrap().clone();
        (a["priority"].as_f64().unwrap(), a["priority_band"].as_str().unwrap().to_string())
    };
    let (pump, pump_band) = priority("A-WO-1");
    let (fan, _) = priority("A-WO-2");
    assert!(pump > fan && fan > 0.0 && pump <= 100.0, "critical PUMP-01 {pump} above warning FAN-01 {fan}");
    assert!(pump < 100.0, "the AMDEC criticality counts, not the severity alone: {pump}");
    assert_eq!(pump_band, "P1");
    let mut page = gw.ws_as(TOKEN).await;
    let mut other_page = gw.ws_as(TOKEN).await;

    let body =
        serde_json::json!({"alert_id": "A-WO-1", "technician_id": "T02", "by": "marie", "estimated_duration_h": 2});
    assert_eq!(gw.post("/api/work-orders", None, body.clone()).await.0, 401, "no token, no work order");
    let (code, created) = gw.post("/api/work-orders", Some(TOKEN), body).await;
    assert_eq!(code, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = created["work_order_id"].as_str().unwrap().to_string();
    assert_eq!(created["equipement_id"], "PUMP-01");

    for ws in [&mut page, &mut other_page] {
        let e = next_work_order(ws, Duration::from_secs(10)).await.expect("the creation reaches every page");
        assert_eq!(e["to"], "planned");
        assert_eq!(e["by"], "marie");
        assert_eq!(e["work_order"]["work_order_id"], id);
    }
    let (code, started) =
        gw.post(&format!("/api/work-orders/{id}/start"), Some(TOKEN), serde_json::json!({"by": "paul"})).await;
    assert_eq!(code, 200, "{started}");
    let e = next_work_order(&mut page, Duration::from_secs(10)).await.expect("the start reaches the page");
    assert_eq!((e["from"].as_str(), e["to"].as_str()), (Some("planned"), Some("in_progress")));

    // The alert's briefing, and the closed order in the knowledge base at once.
    let (code, briefing) = gw.get("/api/alerts/A-WO-1/briefing", Some(TOKEN)).await;
    assert_eq!(code, 200, "{briefing}");
    let briefing: serde_json::Value = serde_json::from_str(&briefing).unwrap();
    assert!(!briefing["failure_modes"].as_array().unwrap().is_empty(), "{briefing}");
    assert_eq!(gw.get("/api/alerts/A-WO-1/briefing", None).await.0, 401);
    let close = serde_json::json!({"by": "paul", "outcome": "failure_confirmed", "found_failure_mode_code": "CAVITATION",
        "cause_found": "colmatage du filtre d'aspiration par des copeaux", "action_taken": "filtre nettoyé",
        "actual_duration_h": 1.5});
    let (code, closed) = gw.post(&format!("/api/work-orders/{id}/close"), Some(TOKEN), close).await;
    assert_eq!(code, 200, "{closed}");
    let e = next_work_order(&mut page, Duration::from_secs(10)).await.expect("the closing reaches the page");
    assert_eq!(e["to"], "done");
    wait_for("the closed order searchable", Duration::from_secs(10), || async {
        let (code, found) = gw.get("/api/knowledge/search?q=copeaux%20filtre%20aspiration", Some(TOKEN)).await;
        assert_eq!(code, 200, "{found}");
        let found: serde_json::Value = serde_json::from_str(&found).unwrap();
        found["hits"].as_array().unwrap().first().is_some_and(|h| h["row"] == id.as_str())
    })
    .await;

    // gRPC, behind the same token.
    let mut client = WorkOrdersClient::connect(format!("http://{}", gw.grpc)).await.unwrap();
    let req = || WorkOrderRef { work_order_id: id.clone(), ..Default::default() };
    assert_eq!(client.get(req()).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut ok = tonic::Request::new(req());
    ok.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let history = client.get(ok).await.unwrap().into_inner();
    assert_eq!(history.transitions.len(), 3, "{history:?}");
    gw.stop().await;
}
