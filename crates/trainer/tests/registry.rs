//! The registry against real PostgreSQL and Redis: the promotion gate, rollback and its event,
//! corrupted artefacts refused by checksum, and the bound on open Watch streams.

mod common;

use ndarray::Array2;
use proact_features::FeatureSchema;
use proact_models::metrics::{evaluate, stratified_split, synthetic_classification};
use proact_models::{ArtefactInfo, RandomForestParams, SchemaRef};
use proact_proto::v1::{GetModelRequest, ModelEventKind, ModelStatus};
use proact_trainer::registry::{metrics_json, Candidate, Holdout};
use proact_trainer::{Registry, TrainerError};

const NAME: &str = "anomaly-rf";

/// Rows with 16 features (the base schema's width) and their split, the same for every model.
struct Data {
    x: Vec<f64>,
    y: Vec<usize>,
    train: Vec<usize>,
    test: Vec<usize>,
}

const D: usize = 16;

fn data() -> Data {
    let (x, y) = synthetic_classification(3_000, D, 7);
    let (train, test) = stratified_split(&y, 0.2, 42);
    Data { x, y, train, test }
}

/// A forest of `trees` × `depth` as a candidate evaluated on the shared held-out rows.
fn candidate(d: &Data, version: &str, trees: usize, depth: usize) -> Candidate {
    let xt = Array2::from_shape_fn((d.train.len(), D), |(i, j)| d.x[d.train[i] * D + j]);
    let yt: Vec<usize> = d.train.iter().map(|&i| d.y[i]).collect();
    let rf = RandomForestParams::default().n_trees(trees).max_depth(depth).threads(2).fit_arrays(&xt, &yt).unwrap();
    let y_test: Vec<usize> = d.test.iter().map(|&i| d.y[i]).collect();
    let scores: Vec<f64> = d.test.iter().map(|&i| rf.flat.predict_proba(&d.x[i * D..(i + 1) * D])).collect();
    let m = evaluate(&y_test, &scores, 0.5);
    let mut info = ArtefactInfo::new(NAME, version, SchemaRef::from(&FeatureSchema::base()));
    info.metrics = Some(m.clone());
    Candidate {
        artefact: rf.to_artefact(info, 0.5),
        metrics: metrics_json(&m, d.train.len()),
        parameters: serde_json::json!({"trees": trees, "depth": depth}),
        data_from: None,
        data_to: None,
        holdout: Holdout {
            n_features: D,
            x: d.test.iter().flat_map(|&i| d.x[i * D..(i + 1) * D].iter().copied()).collect(),
            y: y_test.iter().map(|&v| v as u8).collect(),
        },
    }
}

async fn status_of(reg: &Registry, version: &str) -> i32 {
    reg.version(NAME, version).await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_gate_refuses_a_worse_model_and_rollback_restores_the_previous_version() {
    let run = common::start(&[]).await;
    let reg = &run.registry;
    let d = data();
    let (good, worse) = (candidate(&d, "v1", 30, 10), candidate(&d, "v2", 1, 1));
    let (good_f1, worse_f1) = (good.metrics["f1"].as_f64().unwrap(), worse.metrics["f1"].as_f64().unwrap());
    assert!(good_f1 > worse_f1 + 0.05, "test setup: {good_f1} vs {worse_f1}");

    // The first version has nothing to beat.
    reg.insert_candidate(&good).await.unwrap();
    let ev = reg.promote(NAME, "v1", false).await.unwrap();
    assert_eq!(ev.kind, ModelEventKind::Promoted as i32, "{}", ev.detail);
    assert_eq!(status_of(reg, "v1").await, ModelStatus::Active as i32);

    // A worse candidate is refused on the same held-out rows, and stays a candidate.
    let stored = reg.insert_candidate(&worse).await.unwrap();
    assert_eq!(stored.status, ModelStatus::Candidate as i32);
    assert_eq!(stored.sha256, worse.artefact.sha256().unwrap());
    let ev = reg.promote(NAME, "v2", false).await.unwrap();
    assert_eq!(ev.kind, ModelEventKind::Refused as i32);
    assert!(ev.detail.contains("active v1"), "{}", ev.detail);
    assert_eq!(status_of(reg, "v2").await, ModelStatus::Candidate as i32);
    assert_eq!(status_of(reg, "v1").await, ModelStatus::Active as i32);
    let client = common::pg_client(&run.pg).await;
    let gate: serde_json::Value =
        client.query_one("SELECT metrics->'gate' FROM models WHERE version = 'v2'", &[]).await.unwrap().get(0);
    assert_eq!(gate["decision"], "refused");
    assert!((gate["active_f1"].as_f64().unwrap() - good_f1).abs() < 1e-12, "the active one re-scored: {gate}");

    // A candidate as good as the active one passes (not worse), and so does a worse one within the margin.
    reg.insert_candidate(&candidate(&d, "v3", 30, 10)).await.unwrap();
    let margin_reg = Registry::new(
        reg.pool().clone(),
        reg.redis().clone(),
        good_f1 - worse_f1 + 0.01, // wide enough for v2
    );
    assert_eq!(reg.promote(NAME, "v3", false).await.unwrap().kind, ModelEventKind::Promoted as i32);
    assert_eq!(status_of(reg, "v1").await, ModelStatus::Retired as i32);

    // Explicit promote of the worse one (force), then roll back: the previous version (v3) is active again.
    let ev = reg.promote(NAME, "v2", true).await.unwrap();
    assert_eq!(ev.kind, ModelEventKind::Promoted as i32);
    assert_eq!(status_of(reg, "v2").await, ModelStatus::Active as i32);
    let ev = reg.rollback(NAME, "").await.unwrap();
    assert_eq!(ev.kind, ModelEventKind::RolledBack as i32);
    let m = ev.model.as_ref().unwrap();
    assert_eq!((m.version.as_str(), m.status), ("v3", ModelStatus::Active as i32));
    assert!(ev.detail.contains("from v2"), "{}", ev.detail);
    assert_eq!(status_of(reg, "v2").await, ModelStatus::Retired as i32);

    // Any version that was live before can be rolled back to, by name; rolling back to the
    // active one is refused, and so is a candidate that never went live (it would skip the gate).
    assert_eq!(reg.rollback(NAME, "v1").await.unwrap().model.unwrap().version, "v1");
    assert!(matches!(reg.rollback(NAME, "v1").await, Err(TrainerError::Conflict(_))));
    assert!(matches!(reg.rollback(NAME, "v9").await, Err(TrainerError::NotFound { .. })));
    reg.insert_candidate(&candidate(&d, "v4", 1, 1)).await.unwrap();
    match reg.rollback(NAME, "v4").await {
        Err(TrainerError::Conflict(m)) => assert!(m.contains("never active"), "{m}"),
        other => panic!("a never-promoted candidate must not be rolled back to: {other:?}"),
    }
    assert_eq!(status_of(reg, "v4").await, ModelStatus::Candidate as i32);
    assert_eq!(status_of(reg, "v1").await, ModelStatus::Active as i32);
    // With the margin, v2 (worse by less than the margin) passes the gate against v1.
    let ev = margin_reg.promote(NAME, "v2", false).await.unwrap();
    assert_eq!(ev.kind, ModelEventKind::Promoted as i32, "{}", ev.detail);

    // Every status change was published, in order, with the version it concerns.
    let got: Vec<(i32, String)> = common::events(&run.redis)
        .await
        .into_iter()
        .map(|e| (e.kind, e.model.map(|m| m.version).unwrap_or_default()))
        .collect();
    let k = |k: ModelEventKind| k as i32;
    assert_eq!(
        got,
        vec![
            (k(ModelEventKind::Promoted), "v1".into()),
            (k(ModelEventKind::Refused), "v2".into()),
            (k(ModelEventKind::Promoted), "v3".into()),
            (k(ModelEventKind::Promoted), "v2".into()),
            (k(ModelEventKind::RolledBack), "v3".into()),
            (k(ModelEventKind::RolledBack), "v1".into()),
            (k(ModelEventKind::Promoted), "v2".into()),
        ]
    );
    let active: Vec<_> = reg.list(NAME).await.unwrap().into_iter().filter(|m| m.status == 2).collect();
    assert_eq!(active.len(), 1, "one active version per name");
    run.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_artefacts_are_refused_by_checksum() {
    let run = common::start(&[]).await;
    let reg = &run.registry;
    let d = data();
    for (v, trees) in [("v1", 5), ("v2", 6), ("v3", 7)] {
        reg.insert_candidate(&candidate(&d, v, trees, 6)).await.unwrap();
    }
    reg.promote(NAME, "v1", true).await.unwrap();
    let mut grpc = common::grpc_client(run.grpc).await;
    let get = |v: &str| GetModelRequest { name: NAME.into(), version: v.into() };
    assert!(grpc.get(get("")).await.is_ok(), "an intact artefact is served");

    // Flip one byte inside the body of the active version's artefact.
    let client = common::pg_client(&run.pg).await;
    client
        .execute(
            "UPDATE models SET artefact = set_byte(artefact, octet_length(artefact) - 40,
                 get_byte(artefact, octet_length(artefact) - 40) # 1) WHERE version = 'v1'",
            &[],
        )
        .await
        .unwrap();
    let e = grpc.get(get("")).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::DataLoss, "{e:?}");
    assert!(e.message().contains("checksum"), "{}", e.message());
    assert!(matches!(reg.artefact(NAME, "v1").await, Err(TrainerError::Corrupt { .. })));

    // A self-consistent artefact that is not the one registered (v3's bytes under v2) is refused
    // too: the registry's sha256 no longer matches.
    client
        .execute(
            "UPDATE models SET artefact = (SELECT artefact FROM models WHERE version = 'v3') WHERE version = 'v2'",
            &[],
        )
        .await
        .unwrap();
    let e = grpc.get(get("v2")).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::DataLoss, "{e:?}");
    // Neither can be promoted or rolled back to; the intact v3 can, even over a corrupted active one.
    assert!(matches!(reg.promote(NAME, "v2", true).await, Err(TrainerError::Corrupt { .. })));
    assert!(matches!(reg.rollback(NAME, "v2").await, Err(TrainerError::Corrupt { .. })));
    let ev = reg.promote(NAME, "v3", false).await.unwrap();
    assert_eq!(ev.kind, ModelEventKind::Promoted as i32, "{}", ev.detail);
    assert!(matches!(reg.rollback(NAME, "").await, Err(TrainerError::Corrupt { .. })), "v1 is the previous one");
    run.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}

/// Each `Watch` holds a Redis connection: past `MAX_WATCHERS` open at once, one more is refused
/// with RESOURCE_EXHAUSTED (not queued), and closing a stream frees its slot for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_past_the_bound_are_refused_and_a_closed_one_frees_its_slot() {
    use proact_proto::v1::WatchModelsRequest;
    use proact_trainer::grpc::MAX_WATCHERS;
    let run = common::start(&[]).await;
    let grpc = common::grpc_client(run.grpc).await;
    let watch = || {
        let mut grpc = grpc.clone();
        async move { grpc.watch(WatchModelsRequest { name: String::new() }).await.map(|r| r.into_inner()) }
    };
    let mut open = Vec::new();
    for i in 0..MAX_WATCHERS {
        open.push(watch().await.unwrap_or_else(|e| panic!("Watch {i} of {MAX_WATCHERS} refused: {e:?}")));
    }
    let e = watch().await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // The server frees a slot once it sees the client went away.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut reopened = loop {
        match watch().await {
            Ok(s) => break s,
            Err(e) if e.code() == tonic::Code::ResourceExhausted && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("the freed slot was not reusable: {e:?}"),
        }
    };
    let e = watch().await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "still {MAX_WATCHERS} at most: {e:?}");

    // The reopened stream is a working one: it delivers the next promotion.
    let d = data();
    run.registry.insert_candidate(&candidate(&d, "v1", 5, 4)).await.unwrap();
    run.registry.promote(NAME, "v1", true).await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(30), reopened.message())
        .await
        .expect("an event within 30 s")
        .unwrap()
        .expect("the stream is open");
    assert_eq!(ev.kind, ModelEventKind::Promoted as i32);
    assert_eq!(ev.model.unwrap().version, "v1");
    drop(open);
    run.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}
