//! Training end to end against real PostgreSQL and Redis: synthetic archived telemetry and GMAO
//! corrective interventions → TriggerTraining → stored versions with metrics → Get streams the
//! exact artefact → Watch sees a rollback.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proact_features::FeatureSchema;
use proact_maintenance::WorkOrders;
use proact_models::ModelArtefact;
use proact_proto::v1::{
    CloseWorkOrderRequest, CreateWorkOrderRequest, GetModelRequest, ModelEventKind, ModelStatus, Outcome,
    RollbackModelRequest, TriggerTrainingRequest, WatchModelsRequest,
};

const STEP_S: i64 = 5;
const HOURS: i64 = 12;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap()
}

/// PUMP-A and PUMP-B fail twice (at 5 h and 10 h), overheating and shaking for the hour before;
/// FAN-C never fails.
fn failures(eq: &str) -> Vec<i64> {
    match eq {
        "FAN-C" => vec![],
        _ => vec![5 * 3600, 10 * 3600],
    }
}

async fn seed(client: &tokio_postgres::Client) {
    seed_telemetry(client).await;
    for eq in ["PUMP-A", "PUMP-B"] {
        for (j, &f) in failures(eq).iter().enumerate() {
            let start = t0() + chrono::Duration::seconds(f);
            client
                .execute(
                    "INSERT INTO gmao_interventions (intervention_id, equipement_id, started_at, ended_at, intervention_type)
                     VALUES ($1, $2, $3, $4, 'corrective')",
                    &[&format!("OT-{eq}-{j}"), &eq, &start, &(start + chrono::Duration::minutes(30))],
                )
                .await
                .unwrap();
        }
    }
    // Preventive work is not a failure: it must not create labels.
    client
        .execute(
            "INSERT INTO gmao_interventions (intervention_id, equipement_id, started_at, intervention_type)
             VALUES ('OT-PREV', 'FAN-C', $1, 'preventive')",
            &[&(t0() + chrono::Duration::hours(6))],
        )
        .await
        .unwrap();
}

/// The fleet's readings only: failures leave their ramps in the archive, and no history says so.
async fn seed_telemetry(client: &tokio_postgres::Client) {
    // The archive may partition `telemetry` by time: give the test's day a partition.
    let partitioned: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('telemetry'))", &[])
        .await
        .unwrap()
        .get(0);
    if partitioned {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS telemetry_test_p PARTITION OF telemetry
                 FOR VALUES FROM ('2026-01-04T00:00:00Z') TO ('2026-01-07T00:00:00Z')",
            )
            .await
            .unwrap();
    }
    let (mut ids, mut ts, mut temp, mut vib) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, eq) in ["PUMP-A", "PUMP-B", "FAN-C"].iter().enumerate() {
        let fails = failures(eq);
        for i in 0..(HOURS * 3600 / STEP_S) {
            let s = i * STEP_S;
            // Deterministic wiggle, different per equipment.
            let w = ((i * 7919 + k as i64 * 104_729) % 1000) as f64 / 1000.0 - 0.5;
            // Ramp over the hour before a failure; no data while the repair lasts (30 min).
            let mut ramp = 0.0;
            let mut repairing = false;
            for &f in &fails {
                if s < f && f - s <= 3600 {
                    ramp = 1.0 - (f - s) as f64 / 3600.0;
                }
                if s >= f && s < f + 1800 {
                    repairing = true;
                }
            }
            if repairing {
                continue;
            }
            ids.push(eq.to_string());
            ts.push(t0() + chrono::Duration::seconds(s));
            temp.push(60.0 + 10.0 * k as f64 + 1.5 * w + 25.0 * ramp);
            vib.push(3.0 + 0.3 * w + 6.0 * ramp);
        }
    }
    client
        .execute(
            "INSERT INTO telemetry (equipement_id, ts, temperature, vibration)
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[])",
            &[&ids, &ts, &temp, &vib],
        )
        .await
        .unwrap();
}

/// The trainer on the test's day: one-hour label horizon, a row every 30 s, a small forest.
async fn start_on_the_test_day() -> common::Running {
    let from = t0().to_rfc3339();
    let to = (t0() + chrono::Duration::hours(HOURS)).to_rfc3339();
    common::start(&[
        "--train-from",
        &from,
        "--train-to",
        &to,
        "--label-horizon-hours",
        "1",
        "--sample-every-secs",
        "30",
        "--rf-trees",
        "20",
        "--rf-max-depth",
        "8",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_end_to_end_stores_versions_with_metrics_and_serves_them() {
    let run = start_on_the_test_day().await;
    let client = common::pg_client(&run.pg).await;
    seed(&client).await;
    let mut grpc = common::grpc_client(run.grpc).await;

    let out = grpc.trigger_training(TriggerTrainingRequest { name: String::new() }).await.unwrap().into_inner();
    let names: Vec<&str> = out.trained.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["anomaly-rf", "normal-behaviour/FAN-C", "normal-behaviour/PUMP-A", "normal-behaviour/PUMP-B"]
    );
    // Nothing was active: every first version is promoted.
    assert!(out.events.iter().all(|e| e.kind == ModelEventKind::Promoted as i32), "{:?}", out.events);

    // The forest learned the pre-failure hour; its held-out metrics are stored with the version.
    let rf = &out.trained[0];
    let m = rf.metrics.as_ref().unwrap();
    assert!(m.f1 > 0.8 && m.roc_auc > 0.9, "{m:?}");
    assert_eq!(m.confusion.len(), 4);
    assert_eq!(m.confusion.iter().sum::<u64>(), m.test_rows);
    assert_eq!(rf.feature_schema, FeatureSchema::base().names().to_vec());
    assert_eq!(rf.data_from_micros, (t0() + chrono::Duration::seconds(60)).timestamp_micros(), "after the warm-up");
    assert!(rf.data_to_micros > rf.data_from_micros && rf.size_bytes > 0);
    let params: serde_json::Value = serde_json::from_str(&rf.parameters_json).unwrap();
    assert_eq!(params["model"]["n_trees"], 20);
    assert_eq!(params["data"]["label_horizon_ms"], 3_600_000);
    let stored: serde_json::Value =
        client.query_one("SELECT metrics FROM models WHERE name = 'anomaly-rf'", &[]).await.unwrap().get(0);
    let rows = stored["test_rows"].as_u64().unwrap();
    assert!(rows > 100 && stored["positives_test"].as_u64().unwrap() > 10, "{stored}");
    // About 20 % of the windows are held out (the rest trained the model).
    let total = rows + stored["train_rows"].as_u64().unwrap();
    assert!((rows as f64 / total as f64 - 0.2).abs() < 0.01, "{stored}");

    // Normal-behaviour models: metrics where labels exist (the pumps), none to judge for the fan.
    let nb_pump = out.trained.iter().find(|m| m.name == "normal-behaviour/PUMP-A").unwrap();
    let nb_metrics: serde_json::Value = client
        .query_one("SELECT metrics FROM models WHERE name = 'normal-behaviour/PUMP-A'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nb_metrics["labelled"], true);
    assert!(nb_pump.metrics.as_ref().unwrap().recall > 0.5, "{nb_metrics}");
    let fan: serde_json::Value =
        client.query_one("SELECT metrics FROM models WHERE name = 'normal-behaviour/FAN-C'", &[]).await.unwrap().get(0);
    assert_eq!(fan["labelled"], false);

    // Get streams chunks (≤ 64 KiB, offsets) that reassemble to the exact stored artefact.
    let mut stream =
        grpc.get(GetModelRequest { name: "anomaly-rf".into(), version: String::new() }).await.unwrap().into_inner();
    let (mut bytes, mut first, mut chunks) = (Vec::new(), None, 0);
    while let Some(c) = stream.message().await.unwrap() {
        assert_eq!(c.offset as usize, bytes.len());
        assert!(c.data.len() <= 64 * 1024);
        if chunks == 0 {
            first = c.model.clone();
        } else {
            assert!(c.model.is_none());
        }
        bytes.extend_from_slice(&c.data);
        chunks += 1;
    }
    let stored_bytes: Vec<u8> =
        client.query_one("SELECT artefact FROM models WHERE name = 'anomaly-rf'", &[]).await.unwrap().get(0);
    assert_eq!(bytes, stored_bytes);
    assert_eq!(chunks, bytes.len().div_ceil(64 * 1024));
    let artefact = ModelArtefact::from_bytes(&bytes).unwrap();
    let first = first.unwrap();
    assert_eq!((first.name.as_str(), first.version.as_str()), ("anomaly-rf", rf.version.as_str()));
    assert_eq!(first.sha256, artefact.sha256().unwrap(), "what the detector checks");
    artefact.check_schema(FeatureSchema::base().id()).unwrap();
    assert_eq!(artefact.training.rows as u64, total);

    // Same data again: new, greater versions; the forest is not worse than itself, so promoted;
    // the fan's model has no label to be compared with the active one, so it is refused.
    let watch_client = grpc.clone();
    let again = grpc.trigger_training(TriggerTrainingRequest { name: String::new() }).await.unwrap().into_inner();
    for (new, old) in again.trained.iter().zip(&out.trained) {
        assert_eq!(new.name, old.name);
        assert!(new.version > old.version, "{} > {}", new.version, old.version);
    }
    let kind_of = |name: &str| {
        let i = again.trained.iter().position(|m| m.name == name).unwrap();
        (again.events[i].kind, again.events[i].detail.clone())
    };
    assert_eq!(kind_of("anomaly-rf").0, ModelEventKind::Promoted as i32, "{}", kind_of("anomaly-rf").1);
    let (k, detail) = kind_of("normal-behaviour/FAN-C");
    assert_eq!(k, ModelEventKind::Refused as i32);
    assert!(detail.contains("no positive label"), "{detail}");

    // Watch follows the model-events stream: a rollback shows up.
    let mut watch_client = watch_client;
    let mut watch = watch_client.watch(WatchModelsRequest { name: "anomaly-rf".into() }).await.unwrap().into_inner();
    let ev = grpc.rollback(RollbackModelRequest { name: "anomaly-rf".into(), version: String::new() }).await.unwrap();
    let ev = ev.into_inner();
    assert_eq!(ev.model.as_ref().unwrap().version, rf.version);
    let seen = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.kind, ModelEventKind::RolledBack as i32);
    assert_eq!(seen.model.unwrap().version, rf.version);
    let listed = run.registry.list("anomaly-rf").await.unwrap();
    assert_eq!(listed.iter().filter(|m| m.status == ModelStatus::Active as i32).count(), 1);

    // Asking for one equipment's model trains only that one.
    let one = grpc
        .trigger_training(TriggerTrainingRequest { name: "normal-behaviour/PUMP-B".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.trained.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), vec!["normal-behaviour/PUMP-B"]);
    run.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failure_labels_skips_the_forest_and_still_fits_normal_behaviour() {
    let from = t0().to_rfc3339();
    let to = (t0() + chrono::Duration::hours(HOURS)).to_rfc3339();
    let run = common::start(&["--train-from", &from, "--train-to", &to, "--sample-every-secs", "60"]).await;
    let client = common::pg_client(&run.pg).await;
    seed(&client).await;
    client.execute("DELETE FROM gmao_interventions", &[]).await.unwrap();
    let trainer = proact_trainer::Trainer::new(run.registry.clone(), {
        let mut s = proact_trainer::TrainSettings {
            from: Some(t0()),
            to: Some(t0() + chrono::Duration::hours(HOURS)),
            ..Default::default()
        };
        s.sampling.every_ms = 60_000;
        s
    });
    let out = trainer.run("").await.unwrap();
    assert!(out.trained.iter().all(|m| m.name.starts_with("normal-behaviour/")), "{:?}", out.trained);
    assert_eq!(out.trained.len(), 3);
    assert!(out.skipped.iter().any(|s| s.starts_with("anomaly-rf: no positive label")), "{:?}", out.skipped);

    // The CLI: train one model, promote it (refused: no label to compare it with the active one,
    // exit code 1), force it, roll back, list.
    use proact_trainer::{run_command, Command};
    let name = "normal-behaviour/FAN-C".to_string();
    assert_eq!(run_command(&run.config, &Command::Train { name: name.clone() }).await.unwrap(), 0);
    let newest = run.registry.list(&name).await.unwrap().remove(0);
    assert_eq!(newest.status, ModelStatus::Candidate as i32, "refused by the gate");
    let promote = |force| Command::Promote { name: name.clone(), version: newest.version.clone(), force };
    assert_eq!(run_command(&run.config, &promote(false)).await.unwrap(), 1);
    assert_eq!(run_command(&run.config, &promote(true)).await.unwrap(), 0);
    assert_eq!(run.registry.version(&name, &newest.version).await.unwrap().status, ModelStatus::Active as i32);
    let rollback = Command::Rollback { name: name.clone(), version: None };
    assert_eq!(run_command(&run.config, &rollback).await.unwrap(), 0);
    assert_eq!(run.registry.version(&name, &newest.version).await.unwrap().status, ModelStatus::Retired as i32);
    assert_eq!(run_command(&run.config, &Command::List { name: String::new() }).await.unwrap(), 0);
    run.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}

#[test]
fn the_dropped_criticality_model_is_refused_with_its_reason() {
    let table = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/AMDEC_clean.csv");
    let config =
        <proact_trainer::Config as clap::Parser>::try_parse_from(["proact-trainer", "--criticality-table", table])
            .unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("PROACT_TRAIN_CRITICALITY_TABLE") && e.contains("no longer trained"), "{e}");
}

/// Stores an alert raised at `at` as the archive would.
async fn alert(pool: &deadpool_postgres::Pool, id: &str, eq: &str, at: DateTime<Utc>, model_version: &str) {
    let a = proact_proto::v1::Alert {
        alert_id: id.into(),
        equipement_id: eq.into(),
        start_micros: at.timestamp_micros(),
        severity: proact_proto::v1::Severity::Warning as i32,
        score: 0.9,
        reason: "vibration_high".into(),
        rule: "vibration_high".into(),
        model_version: model_version.into(),
        state: proact_proto::v1::AlertState::Open as i32,
        updated_micros: at.timestamp_micros(),
        value: 9.0,
        ..Default::default()
    };
    proact_store::store_alerts(pool, std::slice::from_ref(&a)).await.unwrap();
}

/// Opens a work order from the alert and closes it with `outcome`, half an hour after the alert.
async fn close_from_alert(pool: &deadpool_postgres::Pool, alert_id: &str, at: DateTime<Utc>, outcome: Outcome) {
    let closed_at = at + chrono::Duration::minutes(30);
    let orders = WorkOrders::with_clock(pool.clone(), None, std::sync::Arc::new(move || closed_at));
    let w = orders
        .create(&CreateWorkOrderRequest {
            alert_id: alert_id.into(),
            technician_id: "T01".into(),
            by: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let confirmed = outcome == Outcome::FailureConfirmed;
    orders
        .close(&CloseWorkOrderRequest {
            work_order_id: w.work_order_id,
            by: "test".into(),
            outcome: outcome as i32,
            found_failure_mode_code: if confirmed { "BEARING_WEAR".into() } else { String::new() },
            actual_duration_h: Some(0.5),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_closed_by_the_team_are_the_labels_and_their_outcomes_are_listed_with_the_model() {
    let run = start_on_the_test_day().await;
    let client = common::pg_client(&run.pg).await;
    // No imported GMAO history: the only labels are the team's closed work orders.
    seed_telemetry(&client).await;
    client
        .batch_execute(
            "INSERT INTO amdec (equipement_id, equipment_type, failure_mode_code, failure_mode, component,
                                severity, occurrence, detection, rpn)
             VALUES ('PUMP-A', 'pump', 'BEARING_WEAR', 'Usure roulement', 'roulement', 8, 4, 5, 160),
                    ('PUMP-B', 'pump', 'BEARING_WEAR', 'Usure roulement', 'roulement', 8, 4, 5, 160),
                    ('FAN-C', 'fan', 'BEARING_WEAR', 'Usure roulement', 'roulement', 5, 3, 4, 60);
             INSERT INTO workload (technician_id, technician_name, period_start)
             VALUES ('T01', 'Karim', '2026-01-05T00:00:00Z');",
        )
        .await
        .unwrap();
    let pool = proact_server::db::pool(&run.pg.url(), 2).unwrap();
    for eq in ["PUMP-A", "PUMP-B"] {
        for (j, &f) in failures(eq).iter().enumerate() {
            let at = t0() + chrono::Duration::seconds(f);
            let id = format!("A-{eq}-{j}");
            alert(&pool, &id, eq, at, "rules-v1").await;
            close_from_alert(&pool, &id, at, Outcome::FailureConfirmed).await;
        }
    }

    let mut grpc = common::grpc_client(run.grpc).await;
    let out = grpc.trigger_training(TriggerTrainingRequest { name: "anomaly-rf".into() }).await.unwrap().into_inner();
    assert_eq!(out.trained.len(), 1, "a forest is trained from the work orders alone: {out:?}");
    let rf = &out.trained[0];
    let params: serde_json::Value = serde_json::from_str(&rf.parameters_json).unwrap();
    let source = params["data"]["source"].as_str().unwrap_or_default().to_string();
    assert!(source.contains("gmao:corrective 0, work orders 4 confirmed"), "{params}");
    let m = rf.metrics.as_ref().unwrap();
    assert!(m.f1 > 0.8 && m.roc_auc > 0.9, "the pre-failure hour learned from the orders: {m:?}");
    assert!(rf.outcomes.is_none(), "no order made from this version's alerts yet");

    // The team judges two of the new version's alerts: one real, one false alarm.
    let stamp = format!("anomaly-rf@{}", rf.version);
    let at = t0() + chrono::Duration::hours(11);
    alert(&pool, "M-1", "PUMP-A", at, &stamp).await;
    close_from_alert(&pool, "M-1", at, Outcome::FailureConfirmed).await;
    alert(&pool, "M-2", "FAN-C", at, &stamp).await;
    close_from_alert(&pool, "M-2", at, Outcome::FalseAlarm).await;
    let listed =
        grpc.list(proact_proto::v1::ListModelsRequest { name: "anomaly-rf".into() }).await.unwrap().into_inner().models;
    let o = listed[0].outcomes.as_ref().expect("the team's outcomes listed with the version");
    assert_eq!((o.failure_confirmed, o.false_alarm, o.no_fault_found, o.precision), (1, 1, 0, 0.5));
    assert_eq!(
        proact_trainer::outcomes_line(Some(o)),
        "precision 0.50 (1 confirmed, 1 false alarms, 0 no fault found)"
    );
    run.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}
