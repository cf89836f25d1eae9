//! Alert upserts against a real PostgreSQL: a detector event that comes after an operator's
//! action updates the episode but keeps what the operator set.

use proact_proto::v1::{Alert, AlertState};

fn alert(updated: i64, severity: i32, state: AlertState) -> Alert {
    Alert {
        alert_id: "A-1".into(),
        equipement_id: "PUMP-01".into(),
        start_micros: 1_700_000_000_000_000,
        severity,
        score: 0.5,
        reason: "temperature".into(),
        rule: "temperature".into(),
        state: state as i32,
        updated_micros: updated,
        value: 91.0,
        ..Default::default()
    }
}

#[tokio::test]
async fn later_detector_events_keep_the_operator_fields() {
    let pg = proact_testkit::Postgres::start().await.expect("PostgreSQL starts");
    let pool = proact_server::db::pool(&pg.url(), 2).unwrap();
    proact_store::schema::migrate(&mut pool.get().await.unwrap()).await.unwrap();
    let t0 = 1_700_000_000_000_000;

    proact_store::store_alerts(&pool, &[alert(t0, 1, AlertState::Open)]).await.unwrap();
    // The operator acknowledges and assigns (the gateway stores the alert with its fields).
    let mut acked = alert(t0 + 1_000, 1, AlertState::Acknowledged);
    acked.acknowledged_by = "marie".into();
    acked.comment = "bearing noise, checking".into();
    acked.assigned_to = "T-07".into();
    proact_store::store_alerts(&pool, &[acked]).await.unwrap();
    // The detector escalates the episode: its event knows nothing of the operator.
    let mut escalated = alert(t0 + 2_000, 2, AlertState::Open);
    escalated.value = 96.0;
    proact_store::store_alerts(&pool, &[escalated]).await.unwrap();

    let client = pool.get().await.unwrap();
    let row = client.query_one("SELECT * FROM alerts WHERE alert_id = 'A-1'", &[]).await.unwrap();
    let a = proact_store::row_to_alert(&row);
    assert_eq!(a.severity, 2, "the escalation is stored");
    assert_eq!(a.value, 96.0);
    assert_eq!(a.state, AlertState::Acknowledged as i32, "an acknowledged alert does not reopen");
    assert_eq!(a.acknowledged_by, "marie");
    assert_eq!(a.comment, "bearing noise, checking");
    assert_eq!(a.assigned_to, "T-07");

    // The episode ends: cleared wins over acknowledged, the operator's fields stay.
    let cleared = alert(t0 + 3_000, 2, AlertState::Cleared);
    proact_store::store_alerts(&pool, &[cleared]).await.unwrap();
    let a = proact_store::row_to_alert(
        &client.query_one("SELECT * FROM alerts WHERE alert_id = 'A-1'", &[]).await.unwrap(),
    );
    assert_eq!(a.state, AlertState::Cleared as i32);
    assert_eq!(a.acknowledged_by, "marie");

    // An older event arriving late changes nothing.
    proact_store::store_alerts(&pool, &[alert(t0 + 500, 1, AlertState::Open)]).await.unwrap();
    let a = proact_store::row_to_alert(
        &client.query_one("SELECT * FROM alerts WHERE alert_id = 'A-1'", &[]).await.unwrap(),
    );
    assert_eq!(a.state, AlertState::Cleared as i32);
    assert_eq!(a.severity, 2);
}
