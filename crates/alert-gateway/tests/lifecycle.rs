//! The alert lifecycle and the page's reference views, against real Redis and PostgreSQL.
//! No archive runs here: the alert rows exist only once the gateway writes them, which is
//! exactly the race of an operator acknowledging an alert the archive has not stored yet.

mod common;

use std::time::Duration;

use common::*;
use proact_proto::v1::alerts_client::AlertsClient;
use proact_proto::v1::{AcknowledgeAlertRequest, AlertEventKind, AlertState, ClearAlertRequest};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_assign_clear_are_stored_broadcast_and_guarded() {
    let servers = Servers::start().await;
    let redis = servers.redis_client().await;
    let pg = servers.pg().await;
    let gw = Gateway::start(&servers, &[]).await;
    let mut watcher = gw.ws("").await; // another operator's page

    // Unknown alerts: 404 on HTTP, NOT_FOUND on gRPC, for every action.
    for action in ["ack", "assign", "clear"] {
        let (code, body) =
            gw.post(&format!("/api/alerts/NOPE/{action}"), None, json!({"by":"léa","technician_id":"T01"})).await;
        assert_eq!(code, 404, "{action}: {body}");
    }
    let mut grpc = AlertsClient::connect(format!("http://{}", gw.grpc)).await.unwrap();
    let e = grpc
        .acknowledge(AcknowledgeAlertRequest { alert_id: "NOPE".into(), by: "léa".into(), comment: String::new() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Raised by the detector; acknowledged at once (no archive has written its row).
    publish(&redis, AlertEventKind::Raised, raised("A1", "PUMP-01", 0)).await;
    let (_, ev) = next_alert(&mut watcher, WAIT).await.unwrap();
    assert_eq!(ev["kind"], "raised");
    let (code, body) = gw.post("/api/alerts/A1/ack", None, json!({"by":"", "comment":"x"})).await;
    assert_eq!(code, 409, "who acknowledges is required: {body}");
    let (code, body) = gw.post("/api/alerts/A1/ack", None, json!({"by":"léa", "comment":"je regarde"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(parse(&body)["state"], "acknowledged");
    let (_, ev) = next_alert(&mut watcher, WAIT).await.unwrap();
    assert_eq!((ev["kind"].as_str(), ev["alert"]["state"].as_str()), (Some("acknowledged"), Some("acknowledged")));
    assert_eq!(ev["alert"]["acknowledged_by"], "léa");
    assert_eq!(ev["alert"]["comment"], "je regarde");
    let row = pg.query_one("SELECT state, acknowledged_by FROM alerts WHERE alert_id = 'A1'", &[]).await.unwrap();
    assert_eq!(row.get::<_, i16>(0), AlertState::Acknowledged as i16);
    assert_eq!(row.get::<_, String>(1), "léa");

    // The detector escalates it later, knowing nothing of operators: the acknowledgement stays.
    let mut escalated = raised("A1", "PUMP-01", 0);
    escalated.score = 1.5;
    escalated.updated_micros = proact_proto::time::now_micros();
    publish(&redis, AlertEventKind::Escalated, escalated).await;
    let (_, ev) = next_alert(&mut watcher, WAIT).await.unwrap();
    assert_eq!(ev["kind"], "escalated");
    assert_eq!(
        (ev["alert"]["state"].as_str(), ev["alert"]["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("léa"))
    );

    // Who acted is bounded on every action, as the comment is (it is stored and broadcast).
    let long = "x".repeat(501);
    for action in ["assign", "clear"] {
        let (code, body) =
            gw.post(&format!("/api/alerts/A1/{action}"), None, json!({"by": long, "technician_id":"T03"})).await;
        assert_eq!(code, 409, "{action}: {body}");
        assert!(body.contains("by must be at most 500"), "{body}");
    }

    // Assign, then clear; clearing again changes nothing and publishes nothing.
    let (code, body) =
        gw.post("/api/alerts/A1/assign", None, json!({"by":"léa", "technician_id":"T03", "comment":""})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(parse(&body)["assigned_to"], "T03");
    let (_, ev) = next_alert(&mut watcher, WAIT).await.unwrap();
    assert_eq!((ev["kind"].as_str(), ev["alert"]["assigned_to"].as_str()), (Some("assigned"), Some("T03")));
    let (code, body) = gw.post("/api/alerts/A1/clear", None, json!({"by":"marc", "comment":"roulement changé"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(parse(&body)["state"], "cleared");
    let (_, ev) = next_alert(&mut watcher, WAIT).await.unwrap();
    assert_eq!(ev["alert"]["state"], "cleared");
    let stream_len: u64 =
        fred::prelude::StreamsInterface::xlen(&redis, proact_proto::streams::ALERTS_STREAM).await.unwrap();
    let (code, body) = gw.post("/api/alerts/A1/clear", None, json!({"by":"marc"})).await;
    assert_eq!(code, 200, "clearing twice is not an error: {body}");
    assert_eq!(parse(&body)["state"], "cleared");
    let again = grpc
        .clear(ClearAlertRequest { alert_id: "A1".into(), by: "marc".into(), comment: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state, AlertState::Cleared as i32);
    let after: u64 = fred::prelude::StreamsInterface::xlen(&redis, proact_proto::streams::ALERTS_STREAM).await.unwrap();
    assert_eq!(after, stream_len, "an idempotent clear publishes nothing");

    // A cleared alert cannot be acknowledged or assigned any more.
    assert_eq!(gw.post("/api/alerts/A1/ack", None, json!({"by":"léa"})).await.0, 409);
    assert_eq!(gw.post("/api/alerts/A1/assign", None, json!({"by":"léa","technician_id":"T01"})).await.0, 409);
    let e = grpc
        .acknowledge(AcknowledgeAlertRequest { alert_id: "A1".into(), by: "léa".into(), comment: String::new() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    // The audit trail: who did what, in order; the stored row is the final state.
    let (code, body) = gw.get("/api/alerts/A1", None).await;
    assert_eq!(code, 200, "{body}");
    let v = parse(&body);
    let trail: Vec<(String, String)> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["action"].as_str().unwrap().into(), h["by"].as_str().unwrap().into()))
        .collect();
    let want = [("acknowledged", "léa"), ("assigned", "léa"), ("cleared", "marc")];
    assert_eq!(trail, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(v["alert"]["state"], "cleared");
    assert_eq!(v["alert"]["assigned_to"], "T03");
    let (code, body) = gw.get("/api/alerts?state=cleared", None).await;
    assert_eq!(code, 200);
    assert_eq!(parse(&body)["alerts"][0]["alert_id"], "A1");
    assert_eq!(gw.get("/api/alerts?state=bogus", None).await.0, 400);
    gw.stop().await;
}

/// Reference rows in the shape `proact-prepare load` writes them (a small subset).
async fn load_reference(pg: &tokio_postgres::Client) {
    pg.batch_execute(
        "INSERT INTO amdec (equipement_id, equipment_type, component, failure_mode_code, failure_mode, effect,
                            severity, occurrence, detection, rpn, criticality, recommended_action) VALUES
          ('PUMP-01','pump','Roue','CAVITATION','Cavitation','Perte de débit, érosion de la roue',7,4,5,140,'high','Vérifier'),
          ('PUMP-01','pump','Roulement','BEARING_WEAR','Usure des roulements','Échauffement, vibrations, grippage',8,5,4,160,'high','Remplacer'),
          ('COMP-01','compressor','Circuit','OVERHEATING','Surchauffe','Déclenchement thermique',8,4,3,96,'medium','Nettoyer'),
          ('FAN-01','fan','Hélice','IMBALANCE','Balourd','Vibrations, fissuration',5,4,3,60,'low','Équilibrer'),
          ('MOTOR-01','motor','Bobinage','WINDING_INSULATION','Défaut d''isolement','Court-circuit',9,2,6,108,'medium','Rebobiner');
         INSERT INTO workload (technician_id, technician_name, skills, period_start, planned_hours, actual_hours, interventions, availability_pct) VALUES
          ('T01','Martin Dubois','mecanique','2026-09-01T00:00:00Z',100,50,1,90),
          ('T01','Martin Dubois','mecanique','2026-10-01T00:00:00Z',100,95,4,80),
          ('T02','Sophie Lefèvre','mecanique','2026-10-01T00:00:00Z',100,70,2,85),
          ('T03','Karim Benali','mecanique|thermique','2026-10-01T00:00:00Z',100,40,1,95),
          ('T04','Julie Moreau','electrique','2026-10-01T00:00:00Z',100,10,0,99);",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equipment_status_and_technician_suggestions_from_the_reference_data() {
    let servers = Servers::start().await;
    let redis = servers.redis_client().await;
    let pg = servers.pg().await;
    let gw = Gateway::start(&servers, &["--silent-after-secs", "300"]).await;
    load_reference(&pg).await;
    // FAN-01 reported a minute ago, COMP-01 an hour ago, MOTOR-01 never. (If the archive
    // partitions telemetry by time, a partition around now takes these rows.)
    pg.batch_execute(
        "DO $$ BEGIN
           IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('telemetry')) THEN
             EXECUTE format('CREATE TABLE gateway_test_telemetry PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                            now() - interval '1 day', now() + interval '1 day');
           END IF;
         END $$;
         INSERT INTO telemetry (equipement_id, ts, temperature, vibration) VALUES
           ('FAN-01', now() - interval '1 minute', 60, 2), ('COMP-01', now() - interval '1 hour', 60, 2),
           ('PUMP-01', now() - interval '10 seconds', 95, 3)",
    )
    .await
    .unwrap();
    let mut watcher = gw.ws("").await;
    publish(&redis, AlertEventKind::Raised, raised("P1", "PUMP-01", 0)).await;
    next_alert(&mut watcher, WAIT).await.unwrap();
    // T03 already has an open assignment: it ranks after the other mechanics.
    assert_eq!(gw.post("/api/alerts/P1/assign", None, json!({"by":"léa","technician_id":"T03"})).await.0, 200);

    let (code, body) = gw.get("/api/equipment", None).await;
    assert_eq!(code, 200, "{body}");
    let v = parse(&body);
    let status: Vec<(String, String)> = v["equipment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["equipement_id"].as_str().unwrap().into(), e["status"].as_str().unwrap().into()))
        .collect();
    let want = [("COMP-01", "silent"), ("FAN-01", "ok"), ("MOTOR-01", "silent"), ("PUMP-01", "critical")];
    assert_eq!(status, want.map(|(a, b)| (a.to_string(), b.to_string())));
    let pump = &v["equipment"][3];
    assert_eq!((pump["open_alerts"].as_u64(), pump["criticality"].as_str()), (Some(1), Some("high")));

    // A temperature alert on PUMP-01: bearing wear (heating) is the likely mode; mechanics
    // first, least loaded first (T03 has an open assignment), the electrician last.
    let (code, body) = gw.get("/api/alerts/P1/technicians", None).await;
    assert_eq!(code, 200, "{body}");
    let s = parse(&body);
    assert_eq!(s["failure_modes"][0]["code"], "BEARING_WEAR");
    assert_eq!(s["failure_modes"][0]["likely"], true);
    assert_eq!(s["skills"], json!(["mecanique"]));
    let order: Vec<&str> =
        s["technicians"].as_array().unwrap().iter().map(|t| t["technician_id"].as_str().unwrap()).collect();
    assert_eq!(order, ["T02", "T01", "T03", "T04"]);
    assert_eq!(s["technicians"][1]["load_pct"], 95.0, "the latest workload period counts");
    assert_eq!(s["technicians"][3]["matching"], json!([]));
    // One mode chosen explicitly.
    let (_, body) = gw.get("/api/alerts/P1/technicians?failure_mode=CAVITATION", None).await;
    assert_eq!(parse(&body)["skills"], json!(["mecanique"]));
    assert_eq!(gw.get("/api/alerts/NOPE/technicians", None).await.0, 404);

    // Without an archive, the chart's data is a clear 503, not a hang.
    let (code, body) = gw.get("/api/equipment/PUMP-01/telemetry", None).await;
    assert_eq!(code, 503, "{body}");
    assert!(parse(&body)["error"].as_str().unwrap().contains("archive"));
    // The status block answers even with the registry down.
    let (code, body) = gw.get("/api/status", None).await;
    assert_eq!(code, 200, "{body}");
    let st = parse(&body);
    assert!(st["model"]["registry_error"].is_string());
    assert_eq!(st["model"]["last_alert_model_version"], "rules-v1");
    gw.stop().await;
}
