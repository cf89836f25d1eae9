//! The two doors the gateway will open in phase 2: gRPC `proact.v1.WorkOrders` over a real
//! TCP listener and the JSON router, each driven like a client would, with the error codes
//! a client relies on.

mod common;

use axum::body::Body;
use common::Env;
use http::{Request, StatusCode};
use proact_maintenance::grpc::WorkOrdersService;
use proact_maintenance::{http as json_api, WorkOrders};
use proact_proto::v1::work_orders_client::WorkOrdersClient;
use proact_proto::v1::{
    CloseWorkOrderRequest, CreateWorkOrderRequest, ListWorkOrdersRequest, ModelOutcomesRequest, Outcome, Severity,
    SuggestFailureModesRequest, WorkOrderRef, WorkOrderState,
};
use serde_json::{json, Value};
use tower::ServiceExt;

#[tokio::test]
async fn grpc_work_orders() {
    let env = Env::start().await;
    env.alert("G-1", "MOTOR-02", "vibration_critical", Severity::Critical, "rules-v1").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = WorkOrdersService::new(WorkOrders::new(env.pool.clone(), Some(env.redis.clone())));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = WorkOrdersClient::connect(format!("http://{addr}")).await.unwrap();

    let suggested = client
        .suggest_failure_modes(SuggestFailureModesRequest { alert_id: "G-1".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suggested.modes[0].failure_mode_code, "BEARING_WEAR");
    assert!(suggested.modes[0].matches_signal);
    assert!(!suggested.modes.iter().find(|m| m.failure_mode_code == "WINDING_INSULATION").unwrap().matches_signal);

    let w = client
        .create(CreateWorkOrderRequest {
            alert_id: "G-1".into(),
            technician_id: "T01".into(),
            estimated_duration_h: 4.0,
            by: "marie".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.failure_mode_code, "BEARING_WEAR");
    assert_eq!(w.priority, suggested.priority, "the order takes the suggested priority");
    let r = |by: &str| WorkOrderRef { work_order_id: w.work_order_id.clone(), by: by.into(), comment: String::new() };
    client.start(r("paul")).await.unwrap();
    let listed = client
        .list(ListWorkOrdersRequest {
            technician_id: "T01".into(),
            state: WorkOrderState::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.work_orders.len(), 1);

    let missing_mode = CloseWorkOrderRequest {
        work_order_id: w.work_order_id.clone(),
        by: "paul".into(),
        outcome: Outcome::FailureConfirmed as i32,
        ..Default::default()
    };
    let e = client.close(missing_mode.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("found_failure_mode_code"), "{}", e.message());
    let done = client
        .close(CloseWorkOrderRequest { found_failure_mode_code: "BEARING_WEAR".into(), ..missing_mode.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state(), WorkOrderState::Done);
    let e = client
        .close(CloseWorkOrderRequest { found_failure_mode_code: "BEARING_WEAR".into(), ..missing_mode })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let history = client.get(r("")).await.unwrap().into_inner();
    assert_eq!(history.transitions.len(), 3);
    let e = client.get(WorkOrderRef { work_order_id: "WO-NONE".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let outcomes = client.outcomes_by_model(ModelOutcomesRequest {}).await.unwrap().into_inner();
    assert_eq!(outcomes.versions[0].model_version, "rules-v1");
    assert_eq!(outcomes.versions[0].precision, 1.0);
}

async fn call(router: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn json_work_orders() {
    let env = Env::start().await;
    env.alert("J-1", "PUMP-03", "temperature_warning", Severity::Warning, "rules-v1").await;
    let router = json_api::router(WorkOrders::new(env.pool.clone(), Some(env.redis.clone())));

    let (s, v) = call(&router, "GET", "/api/work-orders/suggest?alert_id=J-1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["preselected"], "BEARING_WEAR");

    let (s, w) = call(
        &router,
        "POST",
        "/api/work-orders",
        Some(json!({"alert_id": "J-1", "technician_id": "T02", "by": "marie",
                    "planned_start": "2026-01-10T08:00:00Z", "estimated_duration_h": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(w["state"], "planned");
    assert_eq!(w["planned_start"], "2026-01-10T08:00:00.000Z");
    assert_eq!(w["actual_duration_h"], Value::Null);
    let id = w["work_order_id"].as_str().unwrap().to_string();

    let (s, v) = call(
        &router,
        "POST",
        "/api/work-orders",
        Some(json!({"alert_id": "J-1", "technician_id": "T02", "by": "m", "planned_start": "demain"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("planned_start:"), "{v}");

    let (s, v) = call(&router, "GET", "/api/work-orders?technician_id=T02&state=planned", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["work_orders"][0]["work_order_id"], id.as_str());
    let (s, v) = call(&router, "GET", "/api/work-orders?state=open", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("state"), "{v}");

    let close =
        |d: f64| json!({"by": "paul", "outcome": "false_alarm", "actual_duration_h": d, "comment": "capteur décroché"});
    let (s, v) = call(&router, "POST", &format!("/api/work-orders/{id}/close"), Some(close(-0.5))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("negative"), "{v}");
    let (s, v) = call(
        &router,
        "POST",
        &format!("/api/work-orders/{id}/close"),
        Some(json!({"by": "paul", "outcome": "peut-être"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("false_alarm"), "{v}");
    let (s, v) = call(&router, "POST", &format!("/api/work-orders/{id}/close"), Some(close(0.5))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "false_alarm");
    assert_eq!(v["actual_duration_h"], 0.5);
    let (s, _) = call(&router, "POST", &format!("/api/work-orders/{id}/close"), Some(close(0.5))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = call(&router, "POST", "/api/work-orders/WO-NONE/start", Some(json!({"by": "paul"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = call(&router, "GET", &format!("/api/work-orders/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let to: Vec<&str> = v["transitions"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap()).collect();
    assert_eq!(to, ["planned", "done"], "closed from planned: a false alarm needs no visit");
    assert_eq!(v["transitions"][1]["comment"], "capteur décroché");

    let (s, v) = call(&router, "GET", "/api/work-orders/outcomes-by-model", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["versions"][0]["false_alarm"], 1);
    assert_eq!(v["versions"][0]["precision"], 0.0);
}
