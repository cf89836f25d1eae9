//! The knowledge base served: the gRPC `proact.v1.Knowledge` service and the JSON routes
//! `/api/knowledge/search?q=` and `/api/alerts/{id}/briefing`, for the alert gateway to
//! mount behind its auth. Both share [`KnowledgeState`]; errors map to gRPC and HTTP
//! statuses here, in one place each.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use proact_proto::v1 as pb;
use serde::Deserialize;

use crate::answer::{Answer, Hit};
use crate::briefing::{brief, AlertInfo, Briefing};
use crate::error::KnowledgeError;
use crate::index::KnowledgeBase;

/// Looks an alert up by id (`None`: no such alert).
pub type AlertLookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Option<AlertInfo>, KnowledgeError>> + Send + Sync>;

/// Alerts read from the `alerts` table.
pub fn alerts_from_database(pool: Pool) -> AlertLookup {
    Arc::new(move |id: String| {
        let pool = pool.clone();
        Box::pin(async move {
            let client = pool.get().await.map_err(|e| KnowledgeError::Unavailable(format!("alerts: {e}")))?;
            let alert = proact_store::get_alert(&client, &id)
                .await
                .map_err(|e| KnowledgeError::Unavailable(format!("alerts: {e}")))?;
            Ok(alert.map(|a| AlertInfo {
                alert_id: a.alert_id,
                equipement_id: a.equipement_id,
                rule: a.rule,
                reason: a.reason,
            }))
        })
    })
}

/// What the routes and the gRPC service share.
#[derive(Clone)]
pub struct KnowledgeState {
    pub kb: Arc<KnowledgeBase>,
    pub alerts: AlertLookup,
}

/// Lines per section of a briefing.
const BRIEFING_LINES: usize = 5;

impl KnowledgeState {
    pub async fn briefing(&self, alert_id: &str) -> Result<Briefing, KnowledgeError> {
        let id = alert_id.trim();
        if id.is_empty() {
            return Err(KnowledgeError::UnknownAlert(String::new()));
        }
        let alert = (self.alerts)(id.to_string()).await?.ok_or_else(|| KnowledgeError::UnknownAlert(id.to_string()))?;
        brief(&self.kb, &alert, BRIEFING_LINES)
    }
}

fn grpc_status(e: KnowledgeError) -> tonic::Status {
    match e {
        KnowledgeError::EmptyQuestion | KnowledgeError::QuestionTooLong { .. } | KnowledgeError::BadLimit { .. } => {
            tonic::Status::invalid_argument(e.to_string())
        }
        KnowledgeError::UnknownAlert(_) => tonic::Status::not_found(e.to_string()),
        KnowledgeError::Unavailable(_) => {
            tonic::Status::unavailable(proact_server::telemetry::logged_error("knowledge base unavailable", &e))
        }
        _ => tonic::Status::internal(proact_server::telemetry::logged_error("knowledge base failure", &e)),
    }
}

impl IntoResponse for KnowledgeError {
    fn into_response(self) -> Response {
        let code = match self {
            KnowledgeError::EmptyQuestion
            | KnowledgeError::QuestionTooLong { .. }
            | KnowledgeError::BadLimit { .. } => StatusCode::BAD_REQUEST,
            KnowledgeError::UnknownAlert(_) => StatusCode::NOT_FOUND,
            KnowledgeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let error = if code.is_server_error() {
            proact_server::telemetry::logged_error("knowledge base unavailable", &self)
        } else {
            self.to_string()
        };
        (code, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

fn pb_hit(h: &Hit) -> pb::KnowledgeHit {
    let r = &h.record;
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    pb::KnowledgeHit {
        citation: Some(pb::Citation {
            source: r.source().name().into(),
            file: r.origin.clone(),
            row: r
                .row
                .as_ref()
                .map(|x| match x {
                    crate::record::RowRef::Row(n) => n.to_string(),
                    crate::record::RowRef::Id(id) => id.clone(),
                })
                .unwrap_or_default(),
            matched_fields: h.matched.clone(),
        }),
        score: h.score,
        equipement_id: s(&r.equipement_id),
        equipment_type: s(&r.equipment_type),
        subsystem: s(&r.subsystem),
        component: s(&r.component),
        sub_component: s(&r.sub_component),
        failure_mode_code: s(&r.failure_mode_code),
        failure_mode: s(&r.failure_mode),
        effect: s(&r.effect),
        cause: s(&r.cause),
        current_controls: s(&r.current_controls),
        severity: r.severity,
        occurrence: r.occurrence,
        detection: r.detection,
        rpn: r.rpn,
        recommended_action: s(&r.recommended_action),
        intervention_type: s(&r.intervention_type),
        started_at: s(&r.started_at),
        ended_at: s(&r.ended_at),
        description: s(&r.description),
        action: s(&r.action),
        technician_id: s(&r.technician_id),
        duration_h: r.duration_h,
        status: s(&r.status),
    }
}

fn pb_answer(a: &Answer) -> pb::KnowledgeSearchResponse {
    pb::KnowledgeSearchResponse {
        hits: a.hits.iter().map(pb_hit).collect(),
        aggregate: a.aggregate.as_ref().map(|g| pb::Aggregate {
            op: serde_json::to_value(g.op).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            field: g.field.map(|f| f.name().to_string()).unwrap_or_default(),
            value: g.value,
            rows: g.rows as u64,
            groups: g
                .groups
                .iter()
                .map(|x| pb::AggregateGroup { subsystem: x.subsystem.clone(), value: x.value, rows: x.rows as u64 })
                .collect(),
        }),
        no_answer: a.no_answer.clone().unwrap_or_default(),
        unknown_words: a.unknown_words.clone(),
    }
}

#[tonic::async_trait]
impl pb::knowledge_server::Knowledge for KnowledgeState {
    async fn search(
        &self,
        request: tonic::Request<pb::KnowledgeSearchRequest>,
    ) -> Result<tonic::Response<pb::KnowledgeSearchResponse>, tonic::Status> {
        let r = request.into_inner();
        let limit = if r.limit == 0 { 10 } else { r.limit as usize };
        let answer = self.kb.search(&r.question, limit).map_err(grpc_status)?;
        Ok(tonic::Response::new(pb_answer(&answer)))
    }

    async fn briefing(
        &self,
        request: tonic::Request<pb::BriefingRequest>,
    ) -> Result<tonic::Response<pb::BriefingResponse>, tonic::Status> {
        let b = self.briefing(&request.into_inner().alert_id).await.map_err(grpc_status)?;
        Ok(tonic::Response::new(pb::BriefingResponse {
            alert_id: b.alert_id,
            equipement_id: b.equipement_id,
            equipment_type: b.equipment_type.unwrap_or_default(),
            signal: b.signal,
            failure_modes: b.failure_modes.iter().map(pb_hit).collect(),
            similar_interventions: b.similar_interventions.iter().map(pb_hit).collect(),
            technicians: b
                .technicians
                .into_iter()
                .map(|t| pb::SuggestedTechnician {
                    technician_id: t.technician_id,
                    on_this_equipment: t.on_this_equipment,
                    on_this_type: t.on_this_type,
                })
                .collect(),
        }))
    }
}

/// The gRPC service, ready for a tonic router.
pub fn grpc_service(state: KnowledgeState) -> pb::knowledge_server::KnowledgeServer<KnowledgeState> {
    pb::knowledge_server::KnowledgeServer::new(state)
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

/// The JSON of an answer: the hits as the CLI prints them, the aggregate, why nothing matched.
pub fn answer_json(a: &Answer) -> serde_json::Value {
    serde_json::json!({
        "hits": a.hits.iter().map(Hit::to_json).collect::<Vec<_>>(),
        "aggregate": a.aggregate,
        "no_answer": a.no_answer,
        "unknown_words": a.unknown_words,
        "understood": a.understood,
    })
}

async fn search_route(
    State(s): State<KnowledgeState>,
    Query(p): Query<SearchParams>,
) -> Result<Json<serde_json::Value>, KnowledgeError> {
    let answer = s.kb.search(&p.q, p.limit.unwrap_or(10))?;
    Ok(Json(answer_json(&answer)))
}

async fn briefing_route(
    State(s): State<KnowledgeState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, KnowledgeError> {
    let b = s.briefing(&id).await?;
    Ok(Json(serde_json::json!({
        "alert_id": b.alert_id,
        "equipement_id": b.equipement_id,
        "equipment_type": b.equipment_type,
        "signal": b.signal,
        "failure_modes": b.failure_modes.iter().map(Hit::to_json).collect::<Vec<_>>(),
        "similar_interventions": b.similar_interventions.iter().map(Hit::to_json).collect::<Vec<_>>(),
        "technicians": b.technicians,
    })))
}

/// `GET /api/knowledge/search?q=…&limit=…` and `GET /api/alerts/{id}/briefing`, for the
/// gateway to merge into its router behind its auth layer.
pub fn router(state: KnowledgeState) -> Router {
    Router::new()
        .route("/api/knowledge/search", get(search_route))
        .route("/api/alerts/{id}/briefing", get(briefing_route))
        .with_state(state)
}
