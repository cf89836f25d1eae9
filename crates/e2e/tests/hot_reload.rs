//! Hot model reload through the real registry: a model promoted in the trainer reaches the
//! running detector over the model-events stream and gRPC, is verified and swapped in, and
//! every later reading is scored by it (alerts carry its version); readings before the swap
//! were scored by the rules alone.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use proact_features::{FeatureSchema, Window, WindowConfig};
use proact_models::{ArtefactInfo, NormalBehaviourParams, SchemaRef};
use proact_proto::streams::{shard_for, telemetry_stream, ALERTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{AlertEvent, Telemetry};
use prost::Message;

fn normal(s: i64) -> (f64, f64) {
    (60.0 + (s % 7) as f64 * 0.3, 2.0 + (s % 3) as f64 * 0.1)
}

async fn alerts(redis: &Client) -> Vec<AlertEvent> {
    let entries: Vec<(String, HashMap<String, Bytes>)> =
        redis.xrange(ALERTS_STREAM, "-", "+", None).await.unwrap_or_default();
    entries.iter().filter_map(|(_, f)| AlertEvent::decode(f.get(PAYLOAD_FIELD)?.as_ref()).ok()).collect()
}

async fn send(redis: &Client, id: &str, base: i64, s: i64, temp: f64, vib: f64) -> String {
    let t = Telemetry {
        equipement_id: id.into(),
        ts_micros: base + s * 1_000_000,
        temperature: temp,
        vibration: vib,
        ..Default::default()
    };
    let key = telemetry_stream(shard_for(id, 8));
    redis.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await.unwrap()
}

/// Waits until the detector's consumer group has been delivered `last_id` on `id`'s shard and
/// acknowledged everything: every reading up to it has been scored.
async fn wait_scored(redis: &Client, id: &str, last_id: &str) {
    let key = telemetry_stream(shard_for(id, 8));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let groups = proact_server::redis::groups(redis, &key).await.unwrap();
        if groups.iter().any(|g| g.name == "anomaly-detector" && g.last_delivered == last_id && g.pending == 0) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the detector did not score up to {last_id}: {groups:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promoted_model_is_hot_swapped_into_the_running_detector() {
    let stack = proact_testkit::Stack::start().await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trainer_cfg = proact_e2e::registry_config(&stack, &[]);
    let registry = proact_trainer::connect(&trainer_cfg).await.unwrap();
    let trainer = proact_trainer::App::build(trainer_cfg).await.unwrap();
    let registry_url = format!("http://{}", trainer.grpc_addr());
    let t_task = tokio::spawn(trainer.run_until_stopped(shutdown.clone()));

    // The trained models' hot swap alone: the online detectors would see the shift too.
    let detector_cfg = proact_e2e::detector_config(&stack, &registry_url, "hot", &["--online", "off"]);
    let detector = proact_anomaly_detector::App::build(detector_cfg).await.unwrap();
    let detector_url = format!("http://{}", detector.grpc_addr());
    let d_task = tokio::spawn(detector.run_until_stopped(shutdown.clone()));
    let redis = proact_server::redis::connect(&stack.redis.url()).await.unwrap();

    // Before: normal history then a vibration shift the rules do not flag (7.5 < 11 mm/s).
    let base = proact_proto::time::now_micros() - 3_600_000_000;
    for s in 0..120 {
        let (t, v) = normal(s);
        send(&redis, "PUMP-07", base, s, t, v).await;
    }
    let mut last_id = String::new();
    for s in 120..130 {
        last_id = send(&redis, "PUMP-07", base, s, 60.0, 7.5).await;
    }
    wait_scored(&redis, "PUMP-07", &last_id).await;
    assert!(alerts(&redis).await.is_empty(), "the rules alone raise nothing");

    // Promote a normal-behaviour model for PUMP-07 in the registry.
    let schema = FeatureSchema::base();
    let mut w = Window::new(&schema, WindowConfig::default());
    let (mut rows, mut buf) = (Vec::new(), vec![0.0; schema.len()]);
    for s in 0..600 {
        let (t, v) = normal(s);
        let _ = w.push(s * 1000, &[t, v]);
        w.write_features(&mut buf).unwrap();
        rows.extend_from_slice(&buf);
    }
    let model = NormalBehaviourParams::default().fit(&rows, schema.len()).unwrap();
    let artefact =
        model.to_artefact(ArtefactInfo::new("normal-behaviour/PUMP-07", "20261124-000001", SchemaRef::from(&schema)));
    let candidate = proact_trainer::registry::Candidate {
        artefact,
        metrics: serde_json::json!({}),
        parameters: serde_json::json!({}),
        data_from: None,
        data_to: None,
        holdout: proact_trainer::registry::Holdout { n_features: schema.len(), x: vec![], y: vec![] },
    };
    // A forged event first: anyone who can write to Redis can announce a "promotion" of a
    // candidate the gate never passed. The detector asks the registry and ignores it.
    let forged = NormalBehaviourParams::default().fit(&rows, schema.len()).unwrap().to_artefact(ArtefactInfo::new(
        "normal-behaviour/PUMP-07",
        "20261124-000000",
        SchemaRef::from(&schema),
    ));
    registry
        .insert_candidate(&proact_trainer::registry::Candidate { artefact: forged, ..candidate.clone() })
        .await
        .unwrap();
    let event = proact_proto::v1::ModelEvent {
        kind: proact_proto::v1::ModelEventKind::Promoted as i32,
        model: Some(proact_proto::v1::ModelVersion {
            name: "normal-behaviour/PUMP-07".into(),
            version: "20261124-000000".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let _: String = redis
        .xadd(
            proact_proto::streams::MODEL_EVENTS_STREAM,
            false,
            None::<()>,
            "*",
            (proact_proto::streams::PAYLOAD_FIELD, bytes::Bytes::from(prost::Message::encode_to_vec(&event))),
        )
        .await
        .unwrap();
    // Handled (refused) before anything else happens: the detector counts the refusal.
    let refused = || {
        proact_server::telemetry::metrics_handle()
            .render()
            .lines()
            .any(|l| l.starts_with("proact_detector_model_reload_failures_total") && l.ends_with(" 1"))
    };
    for _ in 0..600 {
        if refused() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused(), "the detector refused the forged event");
    registry.insert_candidate(&candidate).await.unwrap();
    registry.promote("normal-behaviour/PUMP-07", "20261124-000001", true).await.unwrap();

    // The promotion is published; the detector fetches, verifies and swaps it.
    let mut published = 0u64;
    for _ in 0..100 {
        published = redis.xlen(proact_proto::streams::MODEL_EVENTS_STREAM).await.unwrap_or(0);
        if published > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published, 2, "the forged event, then the promotion's");
    // Swapped in: the detector's status lists the promoted version.
    let mut status = proact_proto::v1::detector_client::DetectorClient::connect(detector_url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let versions =
            status.status(proact_proto::v1::DetectorStatusRequest {}).await.unwrap().into_inner().model_versions;
        assert!(
            !versions.values().any(|v| v.contains("20261124-000000")),
            "the forged version was loaded: {versions:?}"
        );
        if versions.values().any(|v| v.contains("20261124-000001")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the promoted model was not swapped in: {versions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After: the same shift on the next readings is scored by the model.
    for s in 130..140 {
        send(&redis, "PUMP-07", base, s, 60.0, 7.6).await;
    }
    let mut raised = Vec::new();
    for _ in 0..100 {
        raised = alerts(&redis).await;
        if !raised.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(raised.len(), 1, "one episode: {raised:?}");
    let a = raised[0].alert.as_ref().unwrap();
    assert_eq!(a.model_version, "normal-behaviour/PUMP-07@20261124-000001");
    assert_eq!(a.rule, "model_normal_behaviour");
    assert!(a.start_micros >= base + 130 * 1_000_000, "raised on a reading after the swap");

    shutdown.cancel();
    d_task.await.unwrap().unwrap();
    t_task.await.unwrap().unwrap();
}
