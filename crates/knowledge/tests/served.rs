//! The database mode and the served surfaces against a real PostgreSQL: the knowledge base
//! built from the reference tables, an intervention written to the table made searchable
//! without a re-index, the JSON routes (search, briefing, errors) and the gRPC service.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proact_knowledge::service::{alerts_from_database, grpc_service, router, KnowledgeState};
use proact_knowledge::{db, KnowledgeBase, RowRef, Source};
use proact_proto::v1 as pb;
use tower::ServiceExt;

struct Served {
    _pg: proact_testkit::Postgres,
    pool: deadpool_postgres::Pool,
    state: KnowledgeState,
}

async fn served() -> Served {
    let pg = proact_testkit::Postgres::start().await.expect("start PostgreSQL");
    let mut client = proact_dataprep::load::connect(&pg.url()).await.unwrap();
    proact_dataprep::load::load_dir(&mut client, &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"))
        .await
        .unwrap();
    let pool = proact_server::db::pool(&pg.url(), 2).unwrap();
    let kb = KnowledgeBase::with_records(db::load(&pool).await.unwrap()).unwrap();
    let alert = |id: &str, eq: &str, rule: &str, reason: &str| pb::Alert {
        alert_id: id.into(),
        equipement_id: eq.into(),
        start_micros: 1_700_000_000_000_000,
        rule: rule.into(),
        reason: reason.into(),
        state: 1,
        updated_micros: 1_700_000_000_000_000,
        ..Default::default()
    };
    proact_store::store_alerts(
        &pool,
        &[
            alert("a-vib", "MOTOR-01", "model_normal_behaviour", "vibration rms 7.9 mm/s above the normal band"),
            alert("a-temp", "COMP-01", "temperature_critical", "temperature 96.5 °C over 90 °C"),
        ],
    )
    .await
    .unwrap();
    let state = KnowledgeState { kb: Arc::new(kb), alerts: alerts_from_database(pool.clone()) };
    Served { _pg: pg, pool, state }
}

async fn get(state: &KnowledgeState, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = router(state.clone()).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_database_mode_the_routes_and_the_grpc_service() {
    let s = served().await;

    // Rows from the tables, cited by their keys.
    let (status, body) = get(&s.state, "/api/knowledge/search?q=fuite%20garniture%20pompe&limit=3").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = &body["hits"][0];
    assert_eq!(first["source"], "amdec");
    assert_eq!(first["file"], "database");
    assert!(first["row"].as_str().unwrap().ends_with("/SEAL_LEAK"), "{first}");

    // A new intervention written to the table becomes searchable without a re-index.
    let client = s.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO gmao_interventions (intervention_id, equipement_id, equipment_type, started_at, intervention_type, description, technician_id, status)
             VALUES ('OT-77777', 'PUMP-02', 'pump', now(), 'corrective', 'Remplacement du débitmètre électromagnétique', 'T04', 'open')",
            &[],
        )
        .await
        .unwrap();
    assert!(s.state.kb.search("débitmètre électromagnétique", 3).unwrap().hits.is_empty());
    assert!(db::refresh_intervention(&s.state.kb, &s.pool, "OT-77777").await.unwrap());
    let hits = s.state.kb.search("débitmètre électromagnétique", 3).unwrap().hits;
    assert_eq!(hits[0].record.row, Some(RowRef::Id("OT-77777".into())));
    assert_eq!(hits[0].record.source(), Source::Intervention);
    assert!(!db::refresh_intervention(&s.state.kb, &s.pool, "OT-NOPE").await.unwrap());

    // Bad input: clear errors with their HTTP codes.
    let (status, body) = get(&s.state, "/api/knowledge/search?q=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");
    // (A 100 KB URL is refused by HTTP itself; 10 KB reaches the knowledge base.)
    let long = "x".repeat(10 * 1024);
    let (status, body) = get(&s.state, &format!("/api/knowledge/search?q={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("shorter"), "{body}");
    let (status, body) = get(&s.state, "/api/alerts/no-such-alert/briefing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("no-such-alert"), "{body}");

    // A vibration alert points to bearings and misalignment, not to the winding.
    let (status, b) = get(&s.state, "/api/alerts/a-vib/briefing").await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["signal"], "vibration");
    assert_eq!(b["equipment_type"], "motor");
    let modes: Vec<&str> =
        b["failure_modes"].as_array().unwrap().iter().map(|m| m["failure_mode_code"].as_str().unwrap()).collect();
    assert!(["BEARING_WEAR", "MISALIGNMENT"].contains(&modes[0]), "{modes:?}");
    assert!(b["failure_modes"].as_array().unwrap().iter().all(|m| m["equipement_id"] == "MOTOR-01"));
    let similar = b["similar_interventions"].as_array().unwrap();
    assert!(!similar.is_empty());
    assert_eq!(similar[0]["equipement_id"], "MOTOR-01", "this machine's history comes first");
    assert!(similar[0]["row"].as_str().unwrap().starts_with("OT-"));
    assert!(!b["technicians"].as_array().unwrap().is_empty());

    // The same briefing over gRPC, for a temperature alert: overheating first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = grpc_service(s.state.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let mut client = pb::knowledge_client::KnowledgeClient::connect(format!("http://{addr}")).await.unwrap();
    let b = client.briefing(pb::BriefingRequest { alert_id: "a-temp".into() }).await.unwrap().into_inner();
    assert_eq!(b.signal, "temperature");
    assert_eq!(b.failure_modes[0].failure_mode_code, "OVERHEATING");
    assert!(b.failure_modes[0].citation.as_ref().unwrap().row.ends_with("/OVERHEATING"));
    let e = client.briefing(pb::BriefingRequest { alert_id: "nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let r = client
        .search(pb::KnowledgeSearchRequest { question: "usure des roulements".into(), limit: 5 })
        .await
        .unwrap()
        .into_inner();
    assert!(r.hits.iter().any(|h| h.failure_mode_code == "BEARING_WEAR"));
    let e = client.search(pb::KnowledgeSearchRequest { question: " ".into(), limit: 5 }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e =
        client.search(pb::KnowledgeSearchRequest { question: "leak ".repeat(20 * 1024), limit: 5 }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("shorter"), "{}", e.message());
}
