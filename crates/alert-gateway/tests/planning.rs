//! The technicians' plan served by the gateway: the open work orders of PostgreSQL read as
//! the planner's orders (only the open ones of the week, with their fields), gRPC `Planning`
//! and `/api/planning` behind the gateway's token, both answering with a plan made from them.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use common::*;
use proact_proto::v1::planning_client::PlanningClient;
use proact_proto::v1::{ExplainRequest, PlanHorizonRequest};
use serde_json::json;

const TOKEN: &str = "planning-test-token";
const WEEK: &str = "2026-W10";
/// Tuesday of that week, when the orders are planned to start.
const TUESDAY: &str = "2026-03-03T08:00:00Z";

/// Creates a work order through the gateway's JSON API; returns its id.
async fn create(gw: &Gateway, equipment: &str, mode: &str, technician: &str, start: &str, hours: f64) -> String {
    // Priority 60 (P2, high): a critical one would also start the gateway's own re-plan.
    let body = json!({"equipement_id": equipment, "failure_mode_code": mode, "technician_id": technician,
        "priority": 60.0, "planned_start": start, "estimated_duration_h": hours,
        "description": format!("{mode} sur {equipment}"), "by": "planning-test"});
    let (code, created) = gw.post("/api/work-orders", Some(TOKEN), body).await;
    assert_eq!(code, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["work_order_id"].as_str().unwrap().to_string()
}

async fn transition(gw: &Gateway, id: &str, what: &str, body: serde_json::Value) {
    let (code, answer) = gw.post(&format!("/api/work-orders/{id}/{what}"), Some(TOKEN), body).await;
    assert_eq!(code, 200, "{what} {id}: {answer}");
}

fn grpc_request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_is_made_from_the_open_work_orders_behind_the_token() {
    let servers = Servers::start().await;
    let pool = load_reference_data(&servers).await;
    let gw = Gateway::start(&servers, &["--token", TOKEN]).await;

    // Two open orders of the week (one of them started), one done, one cancelled, and one
    // planned for the next week.
    let planned = create(&gw, "PUMP-01", "BEARING_WEAR", "T01", TUESDAY, 3.0).await;
    let running = create(&gw, "PUMP-01", "CAVITATION", "T02", TUESDAY, 2.5).await;
    transition(&gw, &running, "start", json!({"by": "paul"})).await;
    let done = create(&gw, "PUMP-01", "SEAL_LEAK", "T01", TUESDAY, 1.0).await;
    transition(&gw, &done, "start", json!({"by": "paul"})).await;
    transition(
        &gw,
        &done,
        "close",
        json!({"by": "paul", "outcome": "failure_confirmed", "found_failure_mode_code": "SEAL_LEAK",
            "cause_found": "faces usées", "action_taken": "garniture remplacée", "actual_duration_h": 1.0}),
    )
    .await;
    let cancelled = create(&gw, "FAN-01", "IMBALANCE", "T02", TUESDAY, 2.0).await;
    transition(&gw, &cancelled, "cancel", json!({"by": "paul", "comment": "doublon"})).await;
    let next_week = create(&gw, "FAN-01", "IMBALANCE", "T01", "2026-03-10T08:00:00Z", 2.0).await;

    // The query that feeds the planner: the open orders starting before the week's end, with
    // the fields the planner needs.
    let week_end: DateTime<Utc> = "2026-03-09T00:00:00Z".parse().unwrap();
    let rows = proact_store::planning::open_work_orders(&pool, week_end, None).await.unwrap();
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.work_order_id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from([planned.as_str(), running.as_str()]), "only the week's open orders");
    let row = |id: &str| rows.iter().find(|r| r.work_order_id == id).unwrap();
    let p = row(&planned);
    assert_eq!(
        (p.equipement_id.as_str(), p.failure_mode_code.as_str(), p.technician_id.as_str()),
        ("PUMP-01", "BEARING_WEAR", "T01")
    );
    assert_eq!((p.priority, p.estimated_duration_h, p.in_progress), (60.0, 3.0, false));
    assert_eq!(p.planned_start, TUESDAY.parse::<DateTime<Utc>>().unwrap());
    assert_eq!(p.description, "BEARING_WEAR sur PUMP-01");
    assert_eq!(p.alert_id.as_deref().filter(|a| !a.is_empty()), None, "created without an alert");
    assert!(row(&running).in_progress, "the started order is in progress");
    let later = proact_store::planning::open_work_orders(&pool, DateTime::<Utc>::MAX_UTC, None).await.unwrap();
    assert!(later.iter().any(|r| r.work_order_id == next_week), "next week's order is open, only later");
    for closed in [&done, &cancelled] {
        let only = proact_store::planning::open_work_orders(&pool, DateTime::<Utc>::MAX_UTC, Some(closed)).await;
        assert!(only.unwrap().is_empty(), "{closed} is not open");
    }

    // gRPC Planning: refused without the token; with it, a plan of the week from those orders.
    let mut client = PlanningClient::connect(format!("http://{}", gw.grpc)).await.unwrap();
    let horizon = || PlanHorizonRequest { week: WEEK.into(), ..Default::default() };
    assert_eq!(client.plan_horizon(horizon()).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let plan = client.plan_horizon(grpc_request(horizon())).await.unwrap().into_inner();
    assert_eq!(plan.week, WEEK);
    assert_eq!(plan.days.first().map(String::as_str), Some("2026-03-02"));
    let in_plan: BTreeSet<&str> =
        plan.assignments.iter().map(|a| a.order_id.as_str()).chain(plan.unplanned.iter().map(String::as_str)).collect();
    for open in [&planned, &running] {
        assert!(in_plan.contains(open.as_str()), "{open} is in the plan: {plan:?}");
    }
    for absent in [&done, &cancelled, &next_week] {
        assert!(!in_plan.contains(absent.as_str()), "{absent} is not in this week's plan");
    }
    // Each open order stays with its technician, from its start day on.
    for (id, technician) in [(&planned, "T01"), (&running, "T02")] {
        let a = plan.assignments.iter().find(|a| &a.order_id == id).expect("planned");
        assert_eq!(a.technician_id, technician, "{id}");
        assert!(a.day.as_str() >= "2026-03-03", "{id} not before its planned start: {}", a.day);
    }
    assert!(plan.loads.iter().any(|l| l.technician_id == "T01" && l.planned_hours >= 3.0), "{:?}", plan.loads);
    let explained = client.explain(grpc_request(ExplainRequest { order_id: planned.clone() })).await.unwrap();
    assert!(explained.into_inner().text.contains("T01"), "the explanation names the technician");

    // JSON: the same plan under /api/planning, behind the same token.
    assert_eq!(gw.get("/api/planning", None).await.0, 401);
    assert_eq!(gw.post("/api/planning/plan", None, json!({"week": WEEK})).await.0, 401);
    assert_eq!(gw.get(&format!("/api/planning/explain/{planned}"), None).await.0, 401);
    let (code, current) = gw.get("/api/planning", Some(TOKEN)).await;
    assert_eq!(code, 200, "{current}");
    let current: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert_eq!(current["week"], WEEK);
    assert_eq!(current["assignments"].as_array().unwrap().len(), plan.assignments.len(), "the plan gRPC made");
    let (code, replanned) = gw.post("/api/planning/plan", Some(TOKEN), json!({"week": WEEK})).await;
    assert_eq!(code, 200, "{replanned}");
    let replanned: serde_json::Value = serde_json::from_str(&replanned).unwrap();
    let technician_of = |id: &str| {
        replanned["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["order_id"] == id)
            .map(|a| a["technician_id"].clone())
    };
    assert_eq!(technician_of(&planned), Some(json!("T01")));
    assert_eq!(technician_of(&running), Some(json!("T02")));
    assert_eq!(technician_of(&done), None);
    let (code, view) = gw.get("/api/planning/view", Some(TOKEN)).await;
    assert_eq!(code, 200, "{view}");
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    let order = view["orders"].as_array().unwrap().iter().find(|o| o["id"] == planned.as_str()).unwrap().clone();
    assert_eq!((order["equipement_id"].as_str(), order["priority"].as_str()), (Some("PUMP-01"), Some("high")));
    let started = view["orders"].as_array().unwrap().iter().find(|o| o["id"] == running.as_str()).unwrap().clone();
    assert_eq!(started["started"], true, "the order in progress is started for the planner");
    gw.stop().await;
}
