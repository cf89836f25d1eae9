//! Signed model artefacts through the real registry and detector (PostgreSQL, Redis, gRPC):
//! the trainer signs what it stores with `PROACT_MODEL_SIGNING_KEY`, and a detector given
//! `PROACT_MODEL_VERIFY_KEY` loads only what that key signed, at start as on a hot reload.
//! Whoever can write the registry's table and the events stream (every check before signatures
//! passes for them: the version is active, the event is genuine, the checksums match) still
//! cannot make the detector run their model; the model in use keeps serving.
//!
//! One test in this file: the refusal counter it waits on is process-wide.

use std::time::Duration;

use proact_features::{FeatureSchema, Window, WindowConfig};
use proact_models::{ArtefactInfo, ArtefactSigner, ModelArtefact, NormalBehaviourParams, SchemaRef};
use proact_proto::v1::detector_client::DetectorClient;
use proact_proto::v1::DetectorStatusRequest;
use proact_trainer::registry::{Candidate, Holdout};
use proact_trainer::Registry;
use tonic::transport::Channel;

const NAME: &str = "normal-behaviour/PUMP-07";

/// A normal-behaviour model of PUMP-07 for `version`, as training would store it.
fn candidate(version: &str) -> Candidate {
    let schema = FeatureSchema::base();
    let mut w = Window::new(&schema, WindowConfig::default());
    let (mut rows, mut buf) = (Vec::new(), vec![0.0; schema.len()]);
    for s in 0..600i64 {
        let _ = w.push(s * 1000, &[60.0 + (s % 7) as f64 * 0.3, 2.0 + (s % 3) as f64 * 0.1]);
        w.write_features(&mut buf).unwrap();
        rows.extend_from_slice(&buf);
    }
    let model = NormalBehaviourParams::default().fit(&rows, schema.len()).unwrap();
    Candidate {
        artefact: model.to_artefact(ArtefactInfo::new(NAME, version, SchemaRef::from(&schema))),
        metrics: serde_json::json!({}),
        parameters: serde_json::json!({}),
        data_from: None,
        data_to: None,
        holdout: Holdout { n_features: schema.len(), x: vec![], y: vec![] },
    }
}

/// The value of a counter of this process's metrics (0 before its first increment).
fn counter(name: &str) -> u64 {
    proact_server::telemetry::metrics_handle()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// The version of PUMP-07's model the detector scores with ("" for none).
async fn serving(status: &mut DetectorClient<Channel>) -> String {
    let s = status.status(DetectorStatusRequest {}).await.unwrap().into_inner();
    s.model_versions.get(NAME).cloned().unwrap_or_default()
}

async fn wait_refusals(n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counter("proact_detector_model_signature_refusals_total") < n {
        assert!(std::time::Instant::now() < deadline, "the detector did not refuse artefact {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter("proact_detector_model_signature_refusals_total"), n, "one refusal per bad artefact");
}

/// Stored bytes with one digit of the model's threshold changed and both checksums (the header's
/// and the registry's column) made to match again: only the signature still tells.
fn tamper(signed: &[u8]) -> (Vec<u8>, String) {
    use sha2::Digest;
    let nl = signed.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&signed[..nl]).unwrap();
    let sig = header.split(' ').find_map(|p| p.strip_prefix("ed25519=")).expect("stored signed");
    let mut body = signed[nl + 1..].to_vec();
    // A decimal of the model's threshold: still a valid artefact, another model.
    let at = body.windows(12).rposition(|w| w == b"\"threshold\":").unwrap();
    let pos = (at..body.len()).find(|&i| body[i] == b'.').unwrap() + 1;
    body[pos] = if body[pos] == b'1' { b'2' } else { b'1' };
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let mut out = format!("proact-model/1 sha256={sha} bytes={} ed25519={sig}\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    ModelArtefact::from_bytes(&out).expect("the tampered artefact passes every check but the signature");
    (out, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_artefacts_signed_by_the_trainers_key_are_loaded() {
    let stack = proact_testkit::Stack::start().await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let db = stack.postgres.url();
    let key = ArtefactSigner::generate();
    let trainer_cfg = proact_e2e::registry_config(&stack, &["--model-signing-key", &key.secret_key_hex()]);
    let registry = proact_trainer::connect(&trainer_cfg).await.unwrap();
    // Someone with the registry's database and Redis credentials, but not the trainer's key.
    let unsigned = Registry::new(registry.pool().clone(), registry.redis().clone(), 0.0);
    let forger = unsigned.clone().with_signer(ArtefactSigner::generate());

    // Active before the detector starts: an unsigned version.
    unsigned.insert_candidate(&candidate("20261124-000000")).await.unwrap();
    unsigned.promote(NAME, "20261124-000000", true).await.unwrap();

    let trainer = proact_trainer::App::build(trainer_cfg).await.unwrap();
    let registry_url = format!("http://{}", trainer.grpc_addr());
    let t_task = tokio::spawn(trainer.run_until_stopped(shutdown.clone()));
    let detector_cfg =
        proact_e2e::detector_config(&stack, &registry_url, "signed", &["--model-verify-key", &key.public_key_hex()]);
    let detector = proact_anomaly_detector::App::build(detector_cfg).await.unwrap();
    let detector_url = format!("http://{}", detector.grpc_addr());
    let d_task = tokio::spawn(detector.run_until_stopped(shutdown.clone()));
    wait_refusals(1).await;
    let mut status = DetectorClient::connect(detector_url).await.unwrap();
    assert_eq!(serving(&mut status).await, "", "the unsigned version was refused at start");

    // Signed by the trainer: loaded.
    registry.insert_candidate(&candidate("20261124-000001")).await.unwrap();
    registry.promote(NAME, "20261124-000001", true).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !serving(&mut status).await.contains("20261124-000001") {
        assert!(std::time::Instant::now() < deadline, "the signed version was not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Forged: signed by another key, promoted through the registry, so the version is active
    // and the event is the registry's own.
    forger.insert_candidate(&candidate("20261124-000002")).await.unwrap();
    forger.promote(NAME, "20261124-000002", true).await.unwrap();
    wait_refusals(2).await;
    assert!(serving(&mut status).await.contains("20261124-000001"), "the signed model keeps serving");

    // Tampered: signed by the trainer, then one byte changed in the table with the checksums
    // recomputed.
    registry.insert_candidate(&candidate("20261124-000003")).await.unwrap();
    let pg = proact_server::db::connect(&db).await.unwrap();
    let row = pg
        .query_one("SELECT artefact FROM models WHERE name = $1 AND version = $2", &[&NAME, &"20261124-000003"])
        .await
        .unwrap();
    let (bytes, sha) = tamper(row.get(0));
    pg.execute(
        "UPDATE models SET artefact = $3, sha256 = $4 WHERE name = $1 AND version = $2",
        &[&NAME, &"20261124-000003", &bytes, &sha],
    )
    .await
    .unwrap();
    registry.promote(NAME, "20261124-000003", true).await.unwrap();
    wait_refusals(3).await;
    assert!(serving(&mut status).await.contains("20261124-000001"), "the signed model keeps serving");

    shutdown.cancel();
    d_task.await.unwrap().unwrap();
    t_task.await.unwrap().unwrap();
}
