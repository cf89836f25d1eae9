//! Work orders against real PostgreSQL and Redis: the life of an order from an alert to the
//! intervention history and the labels, its events on the stream, and bad input that
//! changes nothing.

mod common;

use common::{Env, ALERT_START};
use proact_maintenance::labels::Labels;
use proact_maintenance::{MaintenanceError, WorkOrders};
use proact_proto::v1::{
    CloseWorkOrderRequest, CreateWorkOrderRequest, ListWorkOrdersRequest, Outcome, Severity, WorkOrderKind,
    WorkOrderState,
};

fn from_alert(alert_id: &str) -> CreateWorkOrderRequest {
    CreateWorkOrderRequest {
        alert_id: alert_id.into(),
        technician_id: "T03".into(),
        estimated_duration_h: 3.0,
        by: "marie".into(),
        ..Default::default()
    }
}

fn close(id: &str, outcome: Outcome, found: &str) -> CloseWorkOrderRequest {
    CloseWorkOrderRequest {
        work_order_id: id.into(),
        by: "karim".into(),
        outcome: outcome as i32,
        found_failure_mode_code: found.into(),
        cause_found: "refroidisseur encrassé".into(),
        action_taken: "nettoyage du refroidisseur".into(),
        parts: "joint 12x2".into(),
        actual_duration_h: Some(2.5),
        comment: "remis en service".into(),
    }
}

#[tokio::test]
async fn an_alert_becomes_a_work_order_an_intervention_and_a_label() {
    let env = Env::start().await;
    let orders = WorkOrders::new(env.pool.clone(), Some(env.redis.clone()));
    env.alert("A-1", "COMP-01", "temperature_critical", Severity::Critical, "rules-v1").await;
    let before_history = env.count("gmao_interventions").await;

    let w = orders.create(&from_alert("A-1")).await.unwrap();
    assert_eq!(w.state(), WorkOrderState::Planned);
    assert_eq!(w.kind(), WorkOrderKind::Corrective);
    assert_eq!(w.equipement_id, "COMP-01");
    assert_eq!(w.failure_mode_code, "OVERHEATING", "pre-selected from the temperature signal");
    assert!(w.priority > 50.0 && w.priority <= 100.0, "critical alert: {}", w.priority);
    assert_eq!(w.alert_model_version, "rules-v1");
    assert_eq!(w.alert_started_micros, ALERT_START);

    // A retried create (the response was lost) finds the open order.
    let again = orders.create(&from_alert("A-1")).await.unwrap();
    assert_eq!(again.work_order_id, w.work_order_id);
    assert_eq!(env.count("work_orders").await, 1);

    let started = orders.start(&w.work_order_id, "karim", "sur place").await.unwrap();
    assert_eq!(started.state(), WorkOrderState::InProgress);
    assert!(started.started_micros > 0);
    let retried = orders.start(&w.work_order_id, "karim", "").await.unwrap();
    assert_eq!(retried.started_micros, started.started_micros, "starting twice changes nothing");

    let done = orders.close(&close(&w.work_order_id, Outcome::FailureConfirmed, "OVERHEATING")).await.unwrap();
    assert_eq!(done.state(), WorkOrderState::Done);
    assert_eq!(done.outcome(), Outcome::FailureConfirmed);
    assert_eq!(done.actual_duration_h, 2.5);

    // Who did what, when.
    let (got, transitions) = orders.get(&w.work_order_id).await.unwrap();
    assert_eq!(got, done);
    let steps: Vec<(i32, i32, &str)> = transitions.iter().map(|t| (t.from_state, t.to_state, t.by.as_str())).collect();
    assert_eq!(
        steps,
        [
            (0, WorkOrderState::Planned as i32, "marie"),
            (WorkOrderState::Planned as i32, WorkOrderState::InProgress as i32, "karim"),
            (WorkOrderState::InProgress as i32, WorkOrderState::Done as i32, "karim"),
        ]
    );
    assert_eq!(transitions[1].comment, "sur place");

    // Every transition on the stream, in order, with the order as it was after it.
    let events = env.events().await;
    assert_eq!(events, transitions, "the stream carries exactly the recorded transitions");
    assert!(events.windows(2).all(|e| e[0].transition_id < e[1].transition_id));
    assert_eq!(events[2].work_order.as_ref().unwrap().outcome(), Outcome::FailureConfirmed);

    // The closed order is an intervention of the one history.
    assert_eq!(env.count("gmao_interventions").await, before_history + 1);
    let c = env.pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT origin, intervention_type, failure_mode_code, outcome, cause_found, parts, duration_h,
                    fault_started_at, technician_id, equipment_type
             FROM gmao_interventions WHERE intervention_id = $1",
            &[&w.work_order_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("origin"), "work_order");
    assert_eq!(row.get::<_, &str>("intervention_type"), "corrective");
    assert_eq!(row.get::<_, &str>("failure_mode_code"), "OVERHEATING");
    assert_eq!(row.get::<_, &str>("outcome"), "failure_confirmed");
    assert_eq!(row.get::<_, &str>("parts"), "joint 12x2");
    assert_eq!(row.get::<_, f64>("duration_h"), 2.5);
    assert_eq!(row.get::<_, &str>("technician_id"), "T03");
    assert_eq!(row.get::<_, &str>("equipment_type"), "compressor");
    let onset: chrono::DateTime<chrono::Utc> = row.get("fault_started_at");
    assert_eq!(onset.timestamp_micros(), ALERT_START);
    let imported: i64 =
        c.query_one("SELECT count(*) FROM gmao_interventions WHERE origin = 'gmao_import'", &[]).await.unwrap().get(0);
    assert_eq!(imported, before_history, "the imported rows keep their origin");

    // The labels see it: positive in the horizon before the alert, left out after it.
    let labels = Labels::load(&c, 48 * 3_600_000).await.unwrap();
    assert_eq!(labels.sources().confirmed, 1);
    assert!(labels.sources().imported_corrective > 0, "imported corrective rows still count");
    let alert_ms = ALERT_START / 1000;
    assert_eq!(labels.label("COMP-01", alert_ms - 3_600_000), Some(1));
    assert_eq!(labels.label("COMP-01", alert_ms + 60_000), None);

    // The team's precision for the version that raised it.
    let per_model = orders.outcomes_by_model().await.unwrap();
    assert_eq!(per_model.len(), 1);
    assert_eq!(per_model[0].model_version, "rules-v1");
    assert_eq!((per_model[0].failure_confirmed, per_model[0].precision), (1, 1.0));
}

#[tokio::test]
async fn outcomes_per_model_version_and_lists_per_technician() {
    let env = Env::start().await;
    let orders = WorkOrders::new(env.pool.clone(), Some(env.redis.clone()));
    let cases = [
        ("M-1", "anomaly-rf@3", Outcome::FailureConfirmed, "BEARING_WEAR"),
        ("M-2", "anomaly-rf@3", Outcome::FalseAlarm, ""),
        ("M-3", "anomaly-rf@3", Outcome::NoFaultFound, ""),
        ("M-4", "anomaly-rf@4", Outcome::FailureConfirmed, "BEARING_WEAR"),
    ];
    for (alert, version, outcome, found) in cases {
        env.alert(alert, "PUMP-02", "model_forest", Severity::Warning, version).await;
        let w = orders.create(&from_alert(alert)).await.unwrap();
        assert_eq!(w.failure_mode_code, "", "a model alert names no signal: nothing pre-selected");
        orders.close(&close(&w.work_order_id, outcome, found)).await.unwrap();
    }
    // Still open: one planned for T03, one cancelled.
    env.alert("M-5", "PUMP-02", "vibration_warning", Severity::Warning, "rules-v1").await;
    let open = orders.create(&from_alert("M-5")).await.unwrap();
    assert_eq!(open.failure_mode_code, "BEARING_WEAR");
    let preventive = orders
        .create(&CreateWorkOrderRequest {
            equipement_id: "FAN-01".into(),
            failure_mode_code: "IMBALANCE".into(),
            technician_id: "T05".into(),
            estimated_duration_h: 1.0,
            description: "équilibrage trimestriel".into(),
            by: "marie".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(preventive.kind(), WorkOrderKind::Preventive);
    assert!(preventive.priority > 0.0, "from the mode's criticality");
    orders.cancel(&preventive.work_order_id, "marie", "reporté").await.unwrap();
    let cancelled_again = orders.cancel(&preventive.work_order_id, "marie", "").await.unwrap();
    assert_eq!(cancelled_again.state(), WorkOrderState::Cancelled);

    let per_model = orders.outcomes_by_model().await.unwrap();
    let v3 = per_model.iter().find(|m| m.model_version == "anomaly-rf@3").unwrap();
    assert_eq!((v3.failure_confirmed, v3.false_alarm, v3.no_fault_found), (1, 1, 1));
    assert!((v3.precision - 1.0 / 3.0).abs() < 1e-12);
    let v4 = per_model.iter().find(|m| m.model_version == "anomaly-rf@4").unwrap();
    assert_eq!(v4.precision, 1.0);
    assert!(per_model.iter().all(|m| m.model_version != "rules-v1"), "open orders have no outcome yet");

    let planned_t03 = orders
        .list(&ListWorkOrdersRequest {
            technician_id: "T03".into(),
            state: WorkOrderState::Planned as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(planned_t03.iter().map(|w| w.work_order_id.as_str()).collect::<Vec<_>>(), [open.work_order_id.as_str()]);
    let all_t03 =
        orders.list(&ListWorkOrdersRequest { technician_id: "T03".into(), ..Default::default() }).await.unwrap();
    assert_eq!(all_t03.len(), 5);

    // False alarms and no-fault-found are inspections in the history, not corrective repairs.
    let c = env.pool.get().await.unwrap();
    let kinds: Vec<(String, String)> = c
        .query(
            "SELECT outcome, intervention_type FROM gmao_interventions WHERE origin = 'work_order' ORDER BY outcome",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(kinds.contains(&("false_alarm".into(), "inspection".into())));
    assert!(kinds.contains(&("no_fault_found".into(), "inspection".into())));
    assert_eq!(kinds.iter().filter(|(_, t)| t == "corrective").count(), 2);
}

/// Each refused request leaves the tables and the stream as they were.
#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let env = Env::start().await;
    let orders = WorkOrders::new(env.pool.clone(), Some(env.redis.clone()));
    env.alert("B-1", "COMP-01", "temperature_warning", Severity::Warning, "rules-v1").await;
    env.alert("B-2", "COMP-02", "temperature_warning", Severity::Warning, "rules-v1").await;
    let closed = orders.create(&from_alert("B-1")).await.unwrap();
    orders.close(&close(&closed.work_order_id, Outcome::FalseAlarm, "")).await.unwrap();
    let open = orders.create(&from_alert("B-2")).await.unwrap();
    orders.start(&open.work_order_id, "karim", "").await.unwrap();
    let before = env.footprint().await;
    let open_before = orders.get(&open.work_order_id).await.unwrap();

    let expect = |r: Result<proact_proto::v1::WorkOrder, MaintenanceError>, says: &str| {
        let e = r.expect_err(says);
        assert!(e.to_string().contains(says), "{e} should say {says:?}");
        e
    };

    let e = expect(orders.close(&close("WO-NOPE", Outcome::FalseAlarm, "")).await, "WO-NOPE");
    assert!(matches!(e, MaintenanceError::NotFound { .. }));
    let e = expect(
        orders.close(&close(&closed.work_order_id, Outcome::FailureConfirmed, "OVERHEATING")).await,
        "already done",
    );
    assert!(matches!(e, MaintenanceError::AlreadyClosed { .. }));
    expect(orders.start(&closed.work_order_id, "karim", "").await, "already done");
    expect(orders.cancel(&closed.work_order_id, "karim", "").await, "already done");
    expect(orders.close(&close(&open.work_order_id, Outcome::FailureConfirmed, "")).await, "found_failure_mode_code");
    let mut negative = close(&open.work_order_id, Outcome::FalseAlarm, "");
    negative.actual_duration_h = Some(-1.0);
    expect(orders.close(&negative).await, "actual_duration_h: -1 h: a duration cannot be negative");
    let e = expect(
        orders.close(&close(&open.work_order_id, Outcome::FailureConfirmed, "BEARING_WEAR")).await,
        "not in the AMDEC of COMP-02",
    );
    assert!(e.to_string().contains("OVERHEATING"), "lists the known modes: {e}");
    let mut no_outcome = close(&open.work_order_id, Outcome::FalseAlarm, "");
    no_outcome.outcome = 0;
    expect(orders.close(&no_outcome).await, "outcome: required");

    env.alert("B-3", "COMP-01", "temperature_warning", Severity::Warning, "rules-v1").await;
    let mut unknown_tech = from_alert("B-3");
    unknown_tech.technician_id = "T99".into();
    expect(orders.create(&unknown_tech).await, "unknown technician \"T99\"");
    let mut bad_mode = from_alert("B-3");
    bad_mode.failure_mode_code = "CAVITATION".into();
    expect(
        orders.create(&bad_mode).await,
        "failure_mode_code: failure mode \"CAVITATION\" is not in the AMDEC of COMP-01",
    );
    let mut negative_estimate = from_alert("B-3");
    negative_estimate.estimated_duration_h = -2.0;
    expect(orders.create(&negative_estimate).await, "estimated_duration_h");
    expect(orders.create(&from_alert("NO-SUCH-ALERT")).await, "alert \"NO-SUCH-ALERT\" not found");
    let mut wrong_eq = from_alert("B-3");
    wrong_eq.equipement_id = "PUMP-01".into();
    expect(orders.create(&wrong_eq).await, "not the alert's equipment");
    let mut no_eq = from_alert("");
    no_eq.equipement_id = "".into();
    expect(orders.create(&no_eq).await, "equipement_id: required without an alert_id");
    let mut unknown_eq = from_alert("");
    unknown_eq.equipement_id = "NOPE-01".into();
    expect(orders.create(&unknown_eq).await, "equipment \"NOPE-01\" not found");
    let mut nobody = from_alert("B-3");
    nobody.by = " ".into();
    expect(orders.create(&nobody).await, "by: required");

    assert_eq!(env.footprint().await, before, "no row, no event");
    assert_eq!(orders.get(&open.work_order_id).await.unwrap(), open_before, "the open order is untouched");
}

/// Events written while Redis is unreachable wait in the outbox and go out in order.
#[tokio::test]
async fn events_wait_in_the_outbox_until_redis_takes_them() {
    let env = Env::start().await;
    env.alert("O-1", "FAN-01", "vibration_critical", Severity::Critical, "rules-v1").await;
    let offline = WorkOrders::new(env.pool.clone(), None);
    let w = offline.create(&from_alert("O-1")).await.unwrap();
    assert_eq!(w.failure_mode_code, "IMBALANCE");
    offline.start(&w.work_order_id, "karim", "").await.unwrap();
    assert!(env.events().await.is_empty());

    let online = WorkOrders::new(env.pool.clone(), Some(env.redis.clone()));
    assert_eq!(online.publish_pending().await.unwrap(), 2);
    assert_eq!(online.publish_pending().await.unwrap(), 0, "each event goes out once");
    online.cancel(&w.work_order_id, "marie", "doublon").await.unwrap();
    let to: Vec<i32> = env.events().await.iter().map(|e| e.to_state).collect();
    assert_eq!(
        to,
        [WorkOrderState::Planned as i32, WorkOrderState::InProgress as i32, WorkOrderState::Cancelled as i32]
    );
    let unpublished: i64 = env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM work_order_transitions WHERE event_id IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unpublished, 0);
}
