//! gRPC `Planning` on a real socket and the JSON router, over one desk: plan a week, explain,
//! add a critical order (re-plan with moves), pin; errors with their codes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::FutureExt;
use proact_planning::data::Sources;
use proact_planning::service::{Desk, Loader, PlanningService};
use proact_proto::v1::planning_client::PlanningClient;
use proact_proto::v1::planning_server::PlanningServer;
use proact_proto::v1::{
    AddOrderRequest, ExplainRequest, OrderPriority, PinRequest, PlanHorizonRequest, PlanOrder, PlanTechnician,
};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn serve(desk: Arc<Desk>) -> PlanningClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PlanningServer::new(PlanningService { desk }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    PlanningClient::connect(format!("http://{addr}")).await.unwrap()
}

fn tech(id: &str, skill: &str) -> PlanTechnician {
    PlanTechnician {
        id: id.into(),
        name: String::new(),
        skills: vec![skill.into()],
        daily_hours: 8.0,
        absent_days: vec![],
    }
}

fn order(id: &str, hours: f64, priority: OrderPriority) -> PlanOrder {
    PlanOrder {
        id: id.into(),
        skill: "mecanique".into(),
        estimated_hours: hours,
        priority: priority as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn grpc_plans_explains_replans_and_pins() {
    let mut client = serve(Desk::new(None)).await;
    let err = client.explain(ExplainRequest { order_id: "A".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

    let orders: Vec<PlanOrder> = (0..20).map(|i| order(&format!("O{i:02}"), 4.0, OrderPriority::Low)).collect();
    let request = PlanHorizonRequest {
        week: "2026-W10".into(),
        orders,
        technicians: vec![tech("T1", "mecanique"), tech("T2", "mecanique")],
    };
    let plan = client.plan_horizon(request).await.unwrap().into_inner();
    assert_eq!(plan.assignments.len(), 20);
    assert_eq!(plan.days.first().map(String::as_str), Some("2026-03-02"));
    assert_eq!(plan.loads.len(), 2);

    let e = client.explain(ExplainRequest { order_id: "O00".into() }).await.unwrap().into_inner();
    assert_eq!(e.assignments.len(), 1);
    assert!(e.text.contains("O00"), "{}", e.text);

    let mut urgent = order("URG", 4.0, OrderPriority::Critical);
    urgent.release = "2026-03-04".into();
    urgent.alert_id = "alert-7".into();
    let after = client.add_order(AddOrderRequest { order: Some(urgent) }).await.unwrap().into_inner();
    assert_eq!(after.trigger_alert_id, "alert-7");
    let u = after.assignments.iter().find(|a| a.order_id == "URG").expect("planned");
    assert_eq!(u.lateness_days, 0.0);
    assert_eq!(after.moves.len(), 1, "{:?}", after.moves);
    assert!(after.moves[0].reason.contains("alerte alert-7"), "{}", after.moves[0].reason);

    let pinned = client
        .pin(PinRequest { order_id: "O05".into(), technician_id: "T1".into(), day: "2026-03-06".into() })
        .await
        .unwrap()
        .into_inner();
    let a = pinned.assignments.iter().find(|a| a.order_id == "O05").unwrap();
    assert_eq!((a.technician_id.as_str(), a.day.as_str(), a.pinned), ("T1", "2026-03-06", true));

    let err = client
        .pin(PinRequest { order_id: "O05".into(), technician_id: "T9".into(), day: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("unknown technician `T9`"), "{}", err.message());
    let err =
        client.plan_horizon(PlanHorizonRequest { week: "2025-W53".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("2025 has no ISO week 53"), "{}", err.message());
}

#[tokio::test]
async fn json_api_over_the_data_folder() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let loader: Loader = Arc::new(move |week| {
        let dir = dir.clone();
        async move { Ok(Sources::from_dir(&dir)?.input(week, Vec::new(), true)) }.boxed()
    });
    let app = proact_planning::http::router(Desk::new(Some(loader)));
    let call = |method: &str, uri: &str, body: Option<Value>| {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, _) = call("GET", "/", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "no plan yet");

    let (status, plan) = call("POST", "/plan", Some(json!({"week": "2026-W45"}))).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let first = plan["assignments"][0]["order_id"].as_str().expect("preventive orders planned").to_string();
    assert!(first.starts_with("PM-"), "{first}");

    let (status, e) = call("GET", &format!("/explain/{first}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(e["text"].as_str().unwrap().contains(&first));
    let (status, e) = call("GET", "/explain/NOPE", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "unknown order `NOPE`");

    let urgent = json!({"id": "OT-URG", "skill": "mecanique", "priority": "critical", "estimated_hours": 3,
                        "release": "2026-11-04", "alert_id": "alert-9", "equipement_id": "PUMP-02"});
    let (status, after) = call("POST", "/orders", Some(urgent)).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["trigger_alert_id"], "alert-9");
    assert!(after["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["order_id"] == "OT-URG" && a["lateness_days"] == 0));

    let (status, err) = call("POST", "/pin", Some(json!({"order_id": first, "technician_id": "T99"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("unknown technician `T99`"), "{err}");
    let (status, current) = call("GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["trigger_alert_id"], "alert-9", "a refused pin leaves the plan as it was");
}
