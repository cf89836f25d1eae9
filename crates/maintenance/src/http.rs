//! The JSON API under `/api/work-orders`, as an axum router the gateway merges into its own
//! (behind its auth layer).
//!
//! | method | path | body / query | answer |
//! | --- | --- | --- | --- |
//! | POST | `/api/work-orders` | `alert_id` or `equipement_id`, `technician_id`, `by`, optional `failure_mode_code`, `priority`, `planned_start` (RFC 3339), `estimated_duration_h`, `description` | 201, the order |
//! | GET | `/api/work-orders` | `?technician_id=&state=&equipement_id=&limit=` | `{"work_orders": […]}` |
//! | GET | `/api/work-orders/{id}` | | the order and its `transitions` |
//! | POST | `/api/work-orders/{id}/start`, `/cancel` | `by`, `comment` | the order |
//! | POST | `/api/work-orders/{id}/close` | `by`, `outcome`, `found_failure_mode_code`, `cause_found`, `action_taken`, `parts`, `actual_duration_h`, `comment` | the order |
//! | GET | `/api/work-orders/suggest` | `?alert_id=` or `?equipement_id=` | ranked AMDEC modes and the default priority |
//! | GET | `/api/work-orders/outcomes-by-model` | | per model version: outcomes and precision |
//!
//! States are `planned`, `in_progress`, `done`, `cancelled`; outcomes `failure_confirmed`,
//! `false_alarm`, `no_fault_found`; times RFC 3339 in UTC. Errors are `{"error": "…"}` with
//! 400 (bad input, naming the field), 404, 409 (already closed) or 503.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use proact_proto::v1::{
    CloseWorkOrderRequest, CreateWorkOrderRequest, ListWorkOrdersRequest, Outcome, WorkOrder, WorkOrderEvent,
    WorkOrderKind, WorkOrderState,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::priority::band;
use crate::{MaintenanceError, WorkOrders};

/// The routes above, with their state.
pub fn router(orders: WorkOrders) -> Router {
    Router::new()
        .route("/api/work-orders", post(create).get(list))
        .route("/api/work-orders/suggest", get(suggest))
        .route("/api/work-orders/outcomes-by-model", get(outcomes))
        .route("/api/work-orders/{id}", get(one))
        .route("/api/work-orders/{id}/start", post(start))
        .route("/api/work-orders/{id}/cancel", post(cancel))
        .route("/api/work-orders/{id}/close", post(close))
        .with_state(orders)
}

type ApiResult = Result<Response, MaintenanceError>;

fn rfc3339(micros: i64) -> Value {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .filter(|_| micros > 0)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
}

fn parse_time(field: &'static str, s: Option<&str>) -> Result<i64, MaintenanceError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(0),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| MaintenanceError::invalid(field, format!("{s:?} is not an RFC 3339 time ({e})"))),
    }
}

pub fn state_name(s: i32) -> &'static str {
    match WorkOrderState::try_from(s) {
        Ok(
            s @ (WorkOrderState::Planned
            | WorkOrderState::InProgress
            | WorkOrderState::Done
            | WorkOrderState::Cancelled),
        ) => proact_store::work_orders::state_name(s),
        _ => "",
    }
}

fn parse_state(s: Option<&str>) -> Result<i32, MaintenanceError> {
    Ok(match s.map(str::trim).unwrap_or("") {
        "" => 0,
        "planned" => WorkOrderState::Planned as i32,
        "in_progress" => WorkOrderState::InProgress as i32,
        "done" => WorkOrderState::Done as i32,
        "cancelled" => WorkOrderState::Cancelled as i32,
        other => {
            return Err(MaintenanceError::invalid(
                "state",
                format!("{other:?}: one of planned, in_progress, done, cancelled"),
            ))
        }
    })
}

fn parse_outcome(s: &str) -> Result<i32, MaintenanceError> {
    Ok(match s.trim() {
        "failure_confirmed" => Outcome::FailureConfirmed as i32,
        "false_alarm" => Outcome::FalseAlarm as i32,
        "no_fault_found" => Outcome::NoFaultFound as i32,
        "" => 0,
        other => {
            return Err(MaintenanceError::invalid(
                "outcome",
                format!("{other:?}: one of failure_confirmed, false_alarm, no_fault_found"),
            ))
        }
    })
}

/// A work order as JSON.
pub fn work_order(w: &WorkOrder) -> Value {
    let done = w.state() == WorkOrderState::Done;
    json!({
        "work_order_id": w.work_order_id,
        "kind": if w.kind() == WorkOrderKind::Preventive { "preventive" } else { "corrective" },
        "equipement_id": w.equipement_id,
        "alert_id": w.alert_id,
        "alert_model_version": w.alert_model_version,
        "alert_start": rfc3339(w.alert_started_micros),
        "failure_mode_code": w.failure_mode_code,
        "priority": w.priority,
        "priority_band": band(w.priority),
        "technician_id": w.technician_id,
        "planned_start": rfc3339(w.planned_start_micros),
        "estimated_duration_h": w.estimated_duration_h,
        "description": w.description,
        "state": state_name(w.state),
        "created_by": w.created_by,
        "created_at": rfc3339(w.created_micros),
        "updated_at": rfc3339(w.updated_micros),
        "started_at": rfc3339(w.started_micros),
        "closed_at": rfc3339(w.closed_micros),
        "outcome": proact_store::work_orders::outcome_name(w.outcome()),
        "found_failure_mode_code": w.found_failure_mode_code,
        "cause_found": w.cause_found,
        "action_taken": w.action_taken,
        "parts": w.parts,
        "actual_duration_h": if done { json!(w.actual_duration_h) } else { Value::Null },
    })
}

/// A transition as JSON (also the shape the gateway broadcasts to its dashboards).
pub fn event(e: &WorkOrderEvent) -> Value {
    json!({
        "transition_id": e.transition_id,
        "from": state_name(e.from_state),
        "to": state_name(e.to_state),
        "by": e.by,
        "at": rfc3339(e.at_micros),
        "comment": e.comment,
        "work_order": e.work_order.as_ref().map(work_order),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    alert_id: String,
    #[serde(default)]
    equipement_id: String,
    #[serde(default)]
    failure_mode_code: String,
    #[serde(default)]
    priority: f64,
    #[serde(default)]
    technician_id: String,
    planned_start: Option<String>,
    #[serde(default)]
    estimated_duration_h: f64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    by: String,
}

async fn create(State(o): State<WorkOrders>, Json(b): Json<CreateBody>) -> ApiResult {
    let req = CreateWorkOrderRequest {
        alert_id: b.alert_id,
        equipement_id: b.equipement_id,
        failure_mode_code: b.failure_mode_code,
        priority: b.priority,
        technician_id: b.technician_id,
        planned_start_micros: parse_time("planned_start", b.planned_start.as_deref())?,
        estimated_duration_h: b.estimated_duration_h,
        description: b.description,
        by: b.by,
    };
    let w = o.create(&req).await?;
    Ok((StatusCode::CREATED, Json(work_order(&w))).into_response())
}

#[derive(Debug, Deserialize)]
struct ListParams {
    technician_id: Option<String>,
    state: Option<String>,
    equipement_id: Option<String>,
    limit: Option<u32>,
}

async fn list(State(o): State<WorkOrders>, Query(p): Query<ListParams>) -> ApiResult {
    let req = ListWorkOrdersRequest {
        technician_id: p.technician_id.unwrap_or_default(),
        state: parse_state(p.state.as_deref())?,
        equipement_id: p.equipement_id.unwrap_or_default(),
        limit: p.limit.unwrap_or(0),
    };
    let list: Vec<Value> = o.list(&req).await?.iter().map(work_order).collect();
    Ok(Json(json!({ "work_orders": list })).into_response())
}

async fn one(State(o): State<WorkOrders>, Path(id): Path<String>) -> ApiResult {
    let (w, transitions) = o.get(&id).await?;
    let mut v = work_order(&w);
    v["transitions"] = transitions.iter().map(event).collect();
    Ok(Json(v).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    #[serde(default)]
    by: String,
    #[serde(default)]
    comment: String,
}

async fn start(State(o): State<WorkOrders>, Path(id): Path<String>, Json(b): Json<ChangeBody>) -> ApiResult {
    Ok(Json(work_order(&o.start(&id, &b.by, &b.comment).await?)).into_response())
}

async fn cancel(State(o): State<WorkOrders>, Path(id): Path<String>, Json(b): Json<ChangeBody>) -> ApiResult {
    Ok(Json(work_order(&o.cancel(&id, &b.by, &b.comment).await?)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    #[serde(default)]
    by: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    found_failure_mode_code: String,
    #[serde(default)]
    cause_found: String,
    #[serde(default)]
    action_taken: String,
    #[serde(default)]
    parts: String,
    actual_duration_h: Option<f64>,
    #[serde(default)]
    comment: String,
}

async fn close(State(o): State<WorkOrders>, Path(id): Path<String>, Json(b): Json<CloseBody>) -> ApiResult {
    let req = CloseWorkOrderRequest {
        work_order_id: id,
        by: b.by,
        outcome: parse_outcome(&b.outcome)?,
        found_failure_mode_code: b.found_failure_mode_code,
        cause_found: b.cause_found,
        action_taken: b.action_taken,
        parts: b.parts,
        actual_duration_h: b.actual_duration_h,
        comment: b.comment,
    };
    Ok(Json(work_order(&o.close(&req).await?)).into_response())
}

#[derive(Debug, Deserialize)]
struct SuggestParams {
    alert_id: Option<String>,
    equipement_id: Option<String>,
}

async fn suggest(State(o): State<WorkOrders>, Query(p): Query<SuggestParams>) -> ApiResult {
    let s = o.suggest(p.alert_id.as_deref().unwrap_or(""), p.equipement_id.as_deref().unwrap_or("")).await?;
    let modes: Vec<Value> = s
        .modes
        .iter()
        .map(|m| {
            json!({
                "failure_mode_code": m.failure_mode_code,
                "failure_mode": m.failure_mode,
                "component": m.component,
                "severity": m.severity,
                "rpn": m.rpn,
                "matches_signal": m.matches_signal,
            })
        })
        .collect();
    let preselected = s.modes.first().filter(|m| m.matches_signal).map(|m| m.failure_mode_code.clone());
    Ok(Json(json!({
        "modes": modes,
        "preselected": preselected,
        "priority": s.priority,
        "priority_band": band(s.priority),
    }))
    .into_response())
}

async fn outcomes(State(o): State<WorkOrders>) -> ApiResult {
    let v: Vec<Value> = o
        .outcomes_by_model()
        .await?
        .iter()
        .map(|m| {
            json!({
                "model_version": m.model_version,
                "failure_confirmed": m.failure_confirmed,
                "false_alarm": m.false_alarm,
                "no_fault_found": m.no_fault_found,
                "precision": m.precision,
            })
        })
        .collect();
    Ok(Json(json!({ "versions": v })).into_response())
}
