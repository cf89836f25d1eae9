//! The maintenance loop closed, with real servers: simulated machines overheat → the
//! detector's rules raise alerts → the archive stores them → the team closes work orders from
//! them through the gateway's gRPC `WorkOrders` with their outcome (failure confirmed) → the
//! trainer's own schedule retrains → a
//! RandomForest learned from those orders is promoted → the running detector hot-loads it and
//! stamps its version on the next alert, raised before any rule would fire.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream, ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::work_orders_client::WorkOrdersClient;
use proact_proto::v1::{AlertEvent, CloseWorkOrderRequest, CreateWorkOrderRequest, ModelStatus, Outcome, Telemetry};
use prost::Message;

const STEP_S: i64 = 5;
/// Minutes of the ramp that ends in a failure (60 → 95 °C: the warning rule fires at 80 °C).
const RAMP_MIN: i64 = 15;
/// Failures of the pumps, in minutes from the start of the history; the fan never fails.
const FAILURES_MIN: [i64; 2] = [40, 100];
const HISTORY_MIN: i64 = 130;
const MACHINES: [&str; 3] = ["PUMP-A", "PUMP-B", "FAN-C"];
const TOKEN: &str = "learning-loop-token";

/// A request carrying the gateway's token.
fn authorised<T>(body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

/// A reading `s` seconds into the history: a wiggle around 60 °C, ramping before each failure.
fn reading(eq: &str, s: i64) -> (f64, f64) {
    let k = MACHINES.iter().position(|m| *m == eq).unwrap_or(0) as i64;
    let w = ((s * 7919 + k * 104_729) % 1000) as f64 / 1000.0 - 0.5;
    let mut ramp = 0.0;
    if eq != "FAN-C" {
        for f in FAILURES_MIN.map(|m| m * 60) {
            if s < f && f - s <= RAMP_MIN * 60 {
                ramp = 1.0 - (f - s) as f64 / (RAMP_MIN * 60) as f64;
            }
        }
    }
    (60.0 + 1.5 * w + 35.0 * ramp, 2.0 + 0.2 * w + 2.0 * ramp)
}

async fn send(redis: &Client, eq: &str, ts_micros: i64, temp: f64, vib: f64) -> String {
    let t = Telemetry { equipement_id: eq.into(), ts_micros, temperature: temp, vibration: vib, ..Default::default() };
    let key = telemetry_stream(shard_for(eq, 8));
    redis.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await.unwrap()
}

async fn alert_events(redis: &Client) -> Vec<AlertEvent> {
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap_or_default();
    entries.iter().filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok()).collect()
}

/// Polls `probe` until it returns `Some`, failing with `what` after `secs`.
async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn args(bin: &str, stack: &proact_testkit::Stack, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [bin, "--redis-url", &stack.redis.url(), "--database-url", &stack.postgres.url()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"].map(String::from));
    // The internal APIs (archive, detector, registry) require their token, and the detector
    // and the gateway send it: the loop below only closes if every call carries it.
    a.extend(["--grpc-token", INTERNAL_TOKEN].map(String::from));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

const INTERNAL_TOKEN: &str = "loop-internal-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_orders_closed_by_the_team_teach_a_model_the_detector_then_runs() {
    let stack = proact_testkit::Stack::start().await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pool = proact_server::db::pool(&stack.postgres.url(), 2).unwrap();
    proact_store::schema::migrate(&mut pool.get().await.unwrap()).await.unwrap();
    // The machines' AMDEC (a type with the default thresholds: warning 80 °C, critical 90 °C)
    // and a technician, so work orders can name a failure mode and be assigned.
    let pg = pool.get().await.unwrap();
    pg.batch_execute(
        "INSERT INTO amdec (equipement_id, equipment_type, failure_mode_code, failure_mode, component,
                            severity, occurrence, detection, rpn)
         VALUES ('PUMP-A', 'rig', 'OVERHEATING', 'Surchauffe', 'moteur', 6, 4, 4, 96),
                ('PUMP-B', 'rig', 'OVERHEATING', 'Surchauffe', 'moteur', 6, 4, 4, 96),
                ('FAN-C', 'rig', 'OVERHEATING', 'Surchauffe', 'moteur', 6, 4, 4, 96);
         INSERT INTO workload (technician_id, technician_name, period_start)
         VALUES ('T01', 'Karim', now());",
    )
    .await
    .unwrap();

    let archive = proact_archive::App::build(
        proact_archive::Config::try_parse_from(args("proact-archive", &stack, &["--block-ms", "100"])).unwrap(),
    )
    .await
    .unwrap();
    let archive_url = format!("http://{}", archive.grpc_addr());
    let mut tasks = vec![tokio::spawn(archive.run_until_stopped(shutdown.clone()))];
    // Retrains every minute; no normal-behaviour models, so the only model that can stamp an
    // alert is the forest learned from the work orders.
    let trainer_args = args(
        "proact-trainer",
        &stack,
        &[
            "--train-schedule",
            "* * * * *",
            "--label-horizon-hours",
            "0.15",
            "--sample-every-secs",
            "10",
            "--rf-trees",
            "30",
            "--rf-max-depth",
            "8",
            "--nb-min-rows",
            "100000000",
        ],
    );
    let trainer_cfg = proact_trainer::Config::try_parse_from(trainer_args).unwrap();
    let registry = proact_trainer::connect(&trainer_cfg).await.unwrap();
    let trainer = proact_trainer::App::build(trainer_cfg).await.unwrap();
    let registry_url = format!("http://{}", trainer.grpc_addr());
    tasks.push(tokio::spawn(trainer.run_until_stopped(shutdown.clone())));
    let detector_args = args(
        "proact-anomaly-detector",
        &stack,
        // The loop from work orders to a trained model: the online detectors stay out of it.
        &["--registry-url", &registry_url, "--consumer", "loop", "--silence-after-secs", "0", "--online", "off"],
    );
    let detector =
        proact_anomaly_detector::App::build(proact_anomaly_detector::Config::try_parse_from(detector_args).unwrap())
            .await
            .unwrap();
    let detector_url = format!("http://{}", detector.grpc_addr());
    tasks.push(tokio::spawn(detector.run_until_stopped(shutdown.clone())));
    let gateway_args = args(
        "proact-alert-gateway",
        &stack,
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--archive-grpc-url",
            &archive_url,
            "--registry-grpc-url",
            &registry_url,
            "--token",
            TOKEN,
        ],
    );
    let gateway = proact_alert_gateway::App::build(proact_alert_gateway::Config::try_parse_from(gateway_args).unwrap())
        .await
        .unwrap();
    let gateway_url = format!("http://{}", gateway.grpc_addr());
    tasks.push(tokio::spawn(gateway.run_until_stopped(shutdown.clone())));
    let redis = proact_server::redis::connect(&stack.redis.url()).await.unwrap();

    // Two hours of the fleet's history, ending a while ago: two failures per pump.
    let base = proact_proto::time::now_micros() - 3 * 3_600_000_000;
    let mut sent = 0i64;
    for s in (0..HISTORY_MIN * 60).step_by(STEP_S as usize) {
        for eq in MACHINES {
            let (t, v) = reading(eq, s);
            send(&redis, eq, base + s * 1_000_000, t, v).await;
            sent += 1;
        }
    }
    let alerts: Vec<(String, i64)> = wait_for("the rule alerts and every reading archived", 120, || async {
        let c = pool.get().await.ok()?;
        let archived: i64 = c.query_one("SELECT count(*) FROM telemetry", &[]).await.ok()?.get(0);
        let rows = c
            .query("SELECT alert_id, start_ts FROM alerts WHERE equipement_id LIKE 'PUMP-%' ORDER BY start_ts", &[])
            .await
            .ok()?;
        let alerts: Vec<(String, i64)> =
            rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, DateTime<Utc>>(1).timestamp_micros())).collect();
        (archived == sent && alerts.len() >= FAILURES_MIN.len() * 2).then_some(alerts)
    })
    .await;
    assert!(alert_events(&redis).await.iter().all(|e| e.alert.as_ref().unwrap().model_version == "rules-v1"));

    // The team confirms every failure through the gateway, as the dashboard's form does.
    let mut orders = WorkOrdersClient::connect(gateway_url).await.unwrap();
    for (alert_id, _) in &alerts {
        let w = orders
            .create(authorised(CreateWorkOrderRequest {
                alert_id: alert_id.clone(),
                failure_mode_code: "OVERHEATING".into(),
                technician_id: "T01".into(),
                by: "karim".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        orders
            .close(authorised(CloseWorkOrderRequest {
                work_order_id: w.work_order_id,
                by: "karim".into(),
                outcome: Outcome::FailureConfirmed as i32,
                found_failure_mode_code: "OVERHEATING".into(),
                actual_duration_h: Some(0.3),
                ..Default::default()
            }))
            .await
            .unwrap();
    }

    // The schedule retrains on its own; the first run after the orders were closed has their
    // labels (the dataset's source counts them).
    let confirmed = format!("gmao:corrective 0, work orders {} confirmed", alerts.len());
    let forest = wait_for("a scheduled run to promote a forest learned from the orders", 200, || async {
        let listed = registry.list("anomaly-rf").await.ok()?;
        listed.into_iter().find(|m| {
            let params: serde_json::Value = serde_json::from_str(&m.parameters_json).unwrap_or_default();
            m.status == ModelStatus::Active as i32
                && params["data"]["source"].as_str().is_some_and(|s| s.contains(&confirmed))
        })
    })
    .await;

    // The detector hot-loads it.
    let unauthenticated = proact_proto::v1::detector_client::DetectorClient::connect(detector_url.clone())
        .await
        .unwrap()
        .status(proact_proto::v1::DetectorStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let traces = proact_server::otel::Tracing::disabled();
    let status = proact_proto::v1::detector_client::DetectorClient::new(
        proact_server::grpc::connect(&detector_url, &traces, Some(INTERNAL_TOKEN)).await.unwrap(),
    );
    let stamp = format!("anomaly-rf@{}", forest.version);
    wait_for("the detector to load the promoted forest", 60, || {
        let mut status = status.clone();
        let version = forest.version.clone();
        async move {
            let r = status.status(proact_proto::v1::DetectorStatusRequest {}).await.ok()?.into_inner();
            r.model_versions.values().any(|v| v.contains(&version)).then_some(())
        }
    })
    .await;

    // The next heating of a pump, stopped below every rule threshold (78 °C < 80 °C): the forest
    // raises it, with its version.
    let after = base + HISTORY_MIN * 60 * 1_000_000;
    for i in 0..(10 * 60 / STEP_S) {
        let x = i as f64 / (10 * 60 / STEP_S) as f64;
        send(&redis, "PUMP-A", after + i * STEP_S * 1_000_000, 60.0 + 18.0 * x, 2.0 + 1.5 * x).await;
    }
    let raised = wait_for("an alert stamped with the forest's version", 60, || async {
        let events = alert_events(&redis).await;
        events.into_iter().filter_map(|e| e.alert).find(|a| a.model_version == stamp)
    })
    .await;
    assert_eq!(raised.equipement_id, "PUMP-A");
    assert_eq!(raised.rule, "model_forest");
    assert!(raised.start_micros >= after, "raised on the new readings");

    shutdown.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
