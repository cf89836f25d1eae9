//! The model registry: versions in PostgreSQL (`models`, `model_holdout`), the promotion gate,
//! rollback, and the model events published to Redis (`proact:model-events`).
//!
//! Where it sits: training ([`crate::train`]) inserts every new version as a *candidate* and
//! asks for its promotion; an operator promotes (`force` skips the gate) or rolls back through
//! the CLI or gRPC ([`crate::grpc`]). Each status change publishes a `ModelEvent`; every
//! detector replica follows that stream and fetches the newly active artefact through `Get`.
//!
//! Statuses: candidate (1) → active (2) → retired (3); one active version per name (a unique
//! index). Promotion and rollback of a name are serialised by an advisory lock on the name, and
//! the event is published after the commit, so a detector never fetches a version that is not
//! yet active.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use fred::prelude::*;
use proact_models::{metrics::evaluate, ArtefactSigner, ModelArtefact};
use proact_proto::streams::{MODEL_EVENTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::{ModelEvent, ModelEventKind, ModelMetrics, ModelOutcomes, ModelStatus, ModelVersion};
use prost::Message;
use serde_json::{json, Value};

use crate::error::TrainerError;

pub const CANDIDATE: i16 = ModelStatus::Candidate as i16;
pub const ACTIVE: i16 = ModelStatus::Active as i16;
pub const RETIRED: i16 = ModelStatus::Retired as i16;

const COLS: &str =
    "name, version, status, metrics, parameters, feature_schema, sha256, created_at, data_from, data_to, \
                    octet_length(artefact) AS size_bytes";

/// The held-out rows a version was evaluated on (row-major features, 0/1 labels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holdout {
    pub n_features: usize,
    pub x: Vec<f64>,
    pub y: Vec<u8>,
}

impl Holdout {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    pub fn positives(&self) -> usize {
        self.y.iter().filter(|&&y| y == 1).count()
    }

    fn encode_x(&self) -> Vec<u8> {
        self.x.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn decode(n_features: usize, x: &[u8], y: Vec<u8>) -> Option<Holdout> {
        if x.len() != y.len() * n_features * 8 {
            return None;
        }
        let x = x.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        Some(Holdout { n_features, x, y })
    }
}

/// A trained version ready to be stored as a candidate.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub artefact: ModelArtefact,
    /// Held-out metrics as stored in `models.metrics` (see [`metrics_json`]).
    pub metrics: Value,
    /// The model's parameters plus how its training data was made.
    pub parameters: Value,
    pub data_from: Option<DateTime<Utc>>,
    pub data_to: Option<DateTime<Utc>>,
    pub holdout: Holdout,
}

/// The outcome of the promotion gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub promote: bool,
    pub detail: String,
    /// Stored under `metrics.gate` of the candidate.
    pub record: Value,
}

/// `models.metrics` for held-out metrics: the keys `ModelVersion.metrics` is read from, plus
/// what the gate and an operator need (threshold, positives, train rows).
pub fn metrics_json(m: &proact_models::Metrics, train_rows: usize) -> Value {
    let c = &m.confusion;
    json!({
        "precision": m.precision,
        "recall": m.recall,
        "f1": m.f1,
        "roc_auc": m.roc_auc,
        "confusion": [c.tn, c.fp, c.fn_, c.tp],
        "test_rows": m.n,
        "positives_test": c.tp + c.fn_,
        "labelled": c.tp + c.fn_ > 0,
        "threshold": m.threshold,
        "train_rows": train_rows,
    })
}

pub fn row_to_version(r: &tokio_postgres::Row) -> ModelVersion {
    let metrics: Value = r.get("metrics");
    let f = |k: &str| metrics.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let schema: Value = r.get("feature_schema");
    let ts = |c: &str| r.get::<_, Option<DateTime<Utc>>>(c).map(|t| t.timestamp_micros()).unwrap_or(0);
    ModelVersion {
        name: r.get("name"),
        version: r.get("version"),
        status: i32::from(r.get::<_, i16>("status")),
        metrics: Some(ModelMetrics {
            precision: f("precision"),
            recall: f("recall"),
            f1: f("f1"),
            roc_auc: f("roc_auc"),
            confusion: metrics
                .get("confusion")
                .and_then(|c| c.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default(),
            test_rows: metrics.get("test_rows").and_then(|v| v.as_u64()).unwrap_or(0),
        }),
        parameters_json: r.get::<_, Value>("parameters").to_string(),
        feature_schema: schema
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        sha256: r.get("sha256"),
        created_micros: ts("created_at"),
        data_from_micros: ts("data_from"),
        data_to_micros: ts("data_to"),
        size_bytes: r.get::<_, i32>("size_bytes") as u64,
        outcomes: None,
    }
}

/// Versions of `name` (every model when empty), newest first per name.
pub async fn list_versions(pool: &Pool, name: &str) -> Result<Vec<ModelVersion>, TrainerError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLS} FROM models WHERE $1 = '' OR name = $1 ORDER BY name, created_at DESC, version DESC"
            ),
            &[&name],
        )
        .await?;
    let mut versions: Vec<ModelVersion> = rows.iter().map(row_to_version).collect();
    drop(client);
    let mut outcomes: HashMap<String, ModelOutcomes> = proact_maintenance::WorkOrders::new(pool.clone(), None)
        .outcomes_by_model()
        .await
        .map_err(TrainerError::from)?
        .into_iter()
        .map(|o| (o.model_version.clone(), o))
        .collect();
    for m in &mut versions {
        // The detector stamps a model's alerts `name@version`.
        m.outcomes = outcomes.remove(&format!("{}@{}", m.name, m.version));
    }
    Ok(versions)
}

/// The sha256 written in an artefact's header line, if there is one.
fn header_sha(bytes: &[u8]) -> Option<&str> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..nl]).ok()?;
    header.split(' ').find_map(|p| p.strip_prefix("sha256="))
}

/// Checks stored bytes before they are served or activated: the artefact's own checksum (header
/// against body), the registry's sha256 against the header, and that it is the version asked for.
pub fn verify(name: &str, version: &str, sha256: &str, bytes: &[u8]) -> Result<ModelArtefact, TrainerError> {
    let corrupt = |detail: String| {
        metrics::counter!("proact_trainer_corrupt_artefacts_total").increment(1);
        TrainerError::Corrupt { name: name.into(), version: version.into(), detail }
    };
    let a = ModelArtefact::from_bytes(bytes).map_err(|e| corrupt(e.to_string()))?;
    match header_sha(bytes) {
        Some(h) if h == sha256 => {}
        Some(h) => return Err(corrupt(format!("its header sha256 {h} differs from the registry's {sha256}"))),
        None => return Err(corrupt("no sha256 in its header".into())),
    }
    if a.name != name || a.version != version {
        return Err(corrupt(format!("the bytes are those of {} {}", a.name, a.version)));
    }
    Ok(a)
}

/// Compares a candidate with the active version on the candidate's held-out rows: promoted when
/// its F1 is at least the active one's minus `margin`. Without an active version it is promoted;
/// without labelled held-out rows it is not (F1 would compare nothing), unless forced elsewhere.
pub fn gate(
    candidate: &ModelArtefact,
    active: Option<(&str, &ModelArtefact)>,
    holdout: Option<&Holdout>,
    margin: f64,
) -> Gate {
    let decide = |promote: bool, detail: String, record: Value| Gate { promote, detail, record };
    let Some((av, active)) = active else {
        return decide(true, "no active version to compare with".into(), json!({"decision": "no_active"}));
    };
    let Some(h) = holdout.filter(|h| h.rows() > 0) else {
        return decide(
            false,
            format!("no held-out rows are stored for this version, so it cannot be compared with active {av}; promote it with force"),
            json!({"decision": "no_holdout", "active_version": av}),
        );
    };
    let positives = h.positives();
    if positives == 0 {
        return decide(
            false,
            format!(
                "the {} held-out rows have no positive label, so F1 cannot compare it with active {av}; promote it with force",
                h.rows()
            ),
            json!({"decision": "no_labels", "active_version": av, "rows": h.rows()}),
        );
    }
    let schema = candidate.feature_schema.id.as_str();
    let scorer = match candidate.scorer(schema) {
        Ok(s) if h.n_features == candidate.feature_schema.names.len() => s,
        Ok(_) => {
            return decide(
                false,
                "held-out rows do not match its feature schema".into(),
                json!({"decision": "bad_holdout"}),
            )
        }
        Err(e) => return decide(false, format!("it cannot score: {e}"), json!({"decision": "bad_candidate"})),
    };
    let active_scorer = match active.scorer(schema) {
        Ok(s) => s,
        Err(e) => {
            return decide(
                true,
                format!("active {av} cannot score this feature schema ({e}), so the candidate replaces it"),
                json!({"decision": "active_incompatible", "active_version": av}),
            )
        }
    };
    let y: Vec<usize> = h.y.iter().map(|&v| usize::from(v)).collect();
    let eval = |s: &dyn proact_models::Scorer| {
        let scores: Vec<f64> = h.x.chunks_exact(h.n_features).map(|r| s.score(r)).collect();
        evaluate(&y, &scores, s.threshold())
    };
    let (c, a) = (eval(scorer.as_ref()), eval(active_scorer.as_ref()));
    let promote = c.f1 >= a.f1 - margin;
    let detail = format!(
        "F1 {:.4} {} active {av}'s {:.4} − margin {margin} on the same {} held-out rows ({positives} positive)",
        c.f1,
        if promote { "≥" } else { "<" },
        a.f1,
        h.rows()
    );
    let record = json!({
        "decision": if promote { "promoted" } else { "refused" },
        "active_version": av,
        "candidate_f1": c.f1,
        "active_f1": a.f1,
        "margin": margin,
        "rows": h.rows(),
        "positives": positives,
    });
    decide(promote, detail, record)
}

/// PostgreSQL and the model-events stream.
#[derive(Clone)]
pub struct Registry {
    pool: Pool,
    redis: Client,
    margin: f64,
    signer: Option<Arc<ArtefactSigner>>,
}

impl Registry {
    /// `margin`: how much lower a candidate's F1 may be than the active one's and still pass.
    /// Artefacts are stored unsigned until [`Registry::with_signer`].
    pub fn new(pool: Pool, redis: Client, margin: f64) -> Self {
        Registry { pool, redis, margin, signer: None }
    }

    /// Signs every artefact stored from now on with `signer`.
    pub fn with_signer(self, signer: ArtefactSigner) -> Self {
        Registry { signer: Some(Arc::new(signer)), ..self }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn redis(&self) -> &Client {
        &self.redis
    }

    pub async fn list(&self, name: &str) -> Result<Vec<ModelVersion>, TrainerError> {
        list_versions(&self.pool, name).await
    }

    /// The lexicographically greatest version of every name (to make new ones greater).
    pub async fn latest_versions(&self) -> Result<HashMap<String, String>, TrainerError> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT name, max(version) FROM models GROUP BY name", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn version(&self, name: &str, version: &str) -> Result<ModelVersion, TrainerError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(&format!("SELECT {COLS} FROM models WHERE name = $1 AND version = $2"), &[&name, &version])
            .await?
            .ok_or_else(|| TrainerError::NotFound { name: name.into(), version: version.into() })?;
        Ok(row_to_version(&row))
    }

    /// Stores a trained version as a candidate, with its held-out rows.
    pub async fn insert_candidate(&self, c: &Candidate) -> Result<ModelVersion, TrainerError> {
        let a = &c.artefact;
        let bytes = match &self.signer {
            Some(signer) => a.to_signed_bytes(signer)?,
            None => a.to_bytes()?,
        };
        let sha = a.sha256()?;
        let schema = json!(a.feature_schema.names);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO models (name, version, status, metrics, parameters, feature_schema, sha256, artefact, data_from, data_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[&a.name, &a.version, &CANDIDATE, &c.metrics, &c.parameters, &schema, &sha, &bytes, &c.data_from, &c.data_to],
        )
        .await?;
        let h = &c.holdout;
        tx.execute(
            "INSERT INTO model_holdout (name, version, n_features, n_rows, features, labels) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&a.name, &a.version, &(h.n_features as i32), &(h.rows() as i32), &h.encode_x(), &h.y],
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("proact_trainer_versions_stored_total").increment(1);
        self.version(&a.name, &a.version).await
    }

    /// The verified artefact bytes of `version` (the active one when empty) and its metadata.
    pub async fn artefact(&self, name: &str, version: &str) -> Result<(ModelVersion, Vec<u8>), TrainerError> {
        let client = self.pool.get().await?;
        let row = if version.is_empty() {
            client
                .query_opt(
                    &format!("SELECT {COLS}, artefact FROM models WHERE name = $1 AND status = $2"),
                    &[&name, &ACTIVE],
                )
                .await?
                .ok_or_else(|| TrainerError::NoActive(name.into()))?
        } else {
            client
                .query_opt(
                    &format!("SELECT {COLS}, artefact FROM models WHERE name = $1 AND version = $2"),
                    &[&name, &version],
                )
                .await?
                .ok_or_else(|| TrainerError::NotFound { name: name.into(), version: version.into() })?
        };
        let mv = row_to_version(&row);
        let bytes: Vec<u8> = row.get("artefact");
        verify(&mv.name, &mv.version, &mv.sha256, &bytes)?;
        Ok((mv, bytes))
    }

    /// Promotes `version` of `name` if the gate passes (or `force`), retiring the active one.
    /// A refused candidate stays a candidate; the returned event (also published) says why.
    pub async fn promote(&self, name: &str, version: &str, force: bool) -> Result<ModelEvent, TrainerError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        lock_name(&tx, name).await?;
        let row = tx
            .query_opt(
                "SELECT status, sha256, artefact FROM models WHERE name = $1 AND version = $2",
                &[&name, &version],
            )
            .await?
            .ok_or_else(|| TrainerError::NotFound { name: name.into(), version: version.into() })?;
        if row.get::<_, i16>("status") == ACTIVE {
            return Err(TrainerError::Conflict(format!("{name} {version} is already the active version")));
        }
        let candidate = verify(name, version, row.get("sha256"), row.get("artefact"))?;
        let active_row = tx
            .query_opt(
                "SELECT version, sha256, artefact FROM models WHERE name = $1 AND status = $2",
                &[&name, &ACTIVE],
            )
            .await?;
        let gate_result = if force {
            Gate {
                promote: true,
                detail: "forced by the operator (gate skipped)".into(),
                record: json!({"decision": "forced"}),
            }
        } else {
            let active = match &active_row {
                None => None,
                Some(r) => {
                    let v: String = r.get("version");
                    match verify(name, &v, r.get("sha256"), r.get("artefact")) {
                        Ok(a) => Some((v, a)),
                        // A corrupted active version is no yardstick: the candidate replaces it.
                        Err(e) => {
                            tracing::warn!(model = name, version = %v, error = %e, "active artefact fails verification");
                            None
                        }
                    }
                }
            };
            let holdout = load_holdout(&tx, name, version).await?;
            let margin = self.margin;
            tokio::task::spawn_blocking(move || {
                gate(&candidate, active.as_ref().map(|(v, a)| (v.as_str(), a)), holdout.as_ref(), margin)
            })
            .await?
        };
        tx.execute(
            "UPDATE models SET metrics = metrics || jsonb_build_object('gate', $3::jsonb) WHERE name = $1 AND version = $2",
            &[&name, &version, &gate_result.record],
        )
        .await?;
        if gate_result.promote {
            tx.execute(
                "UPDATE models SET status = $2, retired_at = now() WHERE name = $1 AND status = $3",
                &[&name, &RETIRED, &ACTIVE],
            )
            .await?;
            tx.execute(
                "UPDATE models SET status = $3, activated_at = now() WHERE name = $1 AND version = $2",
                &[&name, &version, &ACTIVE],
            )
            .await?;
        }
        tx.commit().await?;
        let (kind, action) = if gate_result.promote {
            (ModelEventKind::Promoted, format!("promotion of {name} {version}"))
        } else {
            (ModelEventKind::Refused, format!("refusal of {name} {version}"))
        };
        metrics::counter!("proact_trainer_promotions_total", "result" => if gate_result.promote { "promoted" } else { "refused" })
            .increment(1);
        let ev = self.event(kind, name, version, gate_result.detail).await?;
        self.publish(&ev, action).await?;
        Ok(ev)
    }

    /// Makes `version` (the previously active one when empty) active again, retiring the active.
    pub async fn rollback(&self, name: &str, version: &str) -> Result<ModelEvent, TrainerError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        lock_name(&tx, name).await?;
        let target = if version.is_empty() {
            // Retired versions are exactly the ones that were active; the most recently retired
            // is the one active before the current.
            tx.query_opt(
                "SELECT version FROM models WHERE name = $1 AND status = $2
                 ORDER BY retired_at DESC NULLS LAST, created_at DESC LIMIT 1",
                &[&name, &RETIRED],
            )
            .await?
            .map(|r| r.get::<_, String>(0))
            .ok_or_else(|| TrainerError::Conflict(format!("{name} has no previously active version to roll back to")))?
        } else {
            version.to_string()
        };
        let row = tx
            .query_opt(
                "SELECT status, sha256, artefact FROM models WHERE name = $1 AND version = $2",
                &[&name, &target],
            )
            .await?
            .ok_or_else(|| TrainerError::NotFound { name: name.into(), version: target.clone() })?;
        verify(name, &target, row.get("sha256"), row.get("artefact"))?;
        match row.get::<_, i16>("status") {
            ACTIVE => return Err(TrainerError::Conflict(format!("{name} {target} is already the active version"))),
            // Only a version that was live before may come back without the gate: a candidate
            // that never went live goes through promotion, where the gate judges it.
            RETIRED => {}
            _ => {
                return Err(TrainerError::Conflict(format!(
                    "{name} {target} was never active: promote it instead (the gate decides)"
                )))
            }
        }
        let previous: Option<String> = tx
            .query_opt("SELECT version FROM models WHERE name = $1 AND status = $2", &[&name, &ACTIVE])
            .await?
            .map(|r| r.get(0));
        tx.execute(
            "UPDATE models SET status = $2, retired_at = now() WHERE name = $1 AND status = $3",
            &[&name, &RETIRED, &ACTIVE],
        )
        .await?;
        tx.execute(
            "UPDATE models SET status = $3, activated_at = now() WHERE name = $1 AND version = $2",
            &[&name, &target, &ACTIVE],
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("proact_trainer_rollbacks_total").increment(1);
        let detail = match previous {
            Some(p) => format!("rolled back from {p}"),
            None => "rolled back (no version was active)".into(),
        };
        let ev = self.event(ModelEventKind::RolledBack, name, &target, detail).await?;
        self.publish(&ev, format!("rollback of {name} to {target}")).await?;
        Ok(ev)
    }

    async fn event(
        &self,
        kind: ModelEventKind,
        name: &str,
        version: &str,
        detail: String,
    ) -> Result<ModelEvent, TrainerError> {
        Ok(ModelEvent {
            kind: kind as i32,
            model: Some(self.version(name, version).await?),
            at_micros: Utc::now().timestamp_micros(),
            detail,
        })
    }

    async fn publish(&self, ev: &ModelEvent, action: String) -> Result<(), TrainerError> {
        let r: Result<String, Error> = self
            .redis
            .xadd(MODEL_EVENTS_STREAM, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(ev.encode_to_vec())))
            .await;
        r.map(|_| ()).map_err(|source| TrainerError::Publish { action, source })
    }
}

/// Serialises promotion and rollback of one name across trainer processes.
async fn lock_name(tx: &tokio_postgres::Transaction<'_>, name: &str) -> Result<(), TrainerError> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('proact-model:' || $1, 0))", &[&name]).await?;
    Ok(())
}

async fn load_holdout(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    version: &str,
) -> Result<Option<Holdout>, TrainerError> {
    let row = tx
        .query_opt(
            "SELECT n_features, features, labels FROM model_holdout WHERE name = $1 AND version = $2",
            &[&name, &version],
        )
        .await?;
    Ok(row.and_then(|r| Holdout::decode(r.get::<_, i32>(0) as usize, r.get(1), r.get(2))))
}
