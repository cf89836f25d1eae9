//! The JSON API of the planner, an axum `Router` the alert gateway nests under
//! `/api/planning` (it adds its own authentication layer):
//!
//! - `POST /plan` `{"week": "2026-W10", "orders": [...]?, "technicians": [...]?}` → the plan;
//! - `GET /` → the current plan;
//! - `GET /view` → `{"plan": …, "orders": […]}`: the current plan and its orders, for the
//!   dashboard's planning view;
//! - `GET /explain/{order_id}` → why that order went where it did;
//! - `POST /pin` `{"order_id", "technician_id", "day"?}` → the re-planned week;
//! - `POST /orders` an order (usually critical, from an alert) → the re-planned week with its moves.
//!
//! Errors are JSON `{"error": "..."}` with the status chosen in `lib.rs`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::model::{Order, Technician, Week};
use crate::service::Desk;
use crate::{Explanation, Plan, PlanningError};

#[derive(Deserialize)]
struct PlanBody {
    week: Week,
    #[serde(default)]
    orders: Vec<Order>,
    #[serde(default)]
    technicians: Vec<Technician>,
}

#[derive(Deserialize)]
struct PinBody {
    order_id: String,
    technician_id: String,
    #[serde(default)]
    day: Option<NaiveDate>,
}

pub fn router(desk: Arc<Desk>) -> Router {
    Router::new()
        .route("/", get(current))
        .route("/view", get(view))
        .route("/plan", post(plan_week))
        .route("/explain/{order_id}", get(explain))
        .route("/pin", post(pin))
        .route("/orders", post(add_order))
        .with_state(desk)
}

async fn current(State(desk): State<Arc<Desk>>) -> Result<Json<Plan>, PlanningError> {
    Ok(Json(desk.current().await?))
}

async fn view(State(desk): State<Arc<Desk>>) -> Result<Json<serde_json::Value>, PlanningError> {
    let (plan, orders) = desk.current_with_orders().await?;
    Ok(Json(serde_json::json!({ "plan": plan, "orders": orders })))
}

async fn plan_week(State(desk): State<Arc<Desk>>, Json(b): Json<PlanBody>) -> Result<Json<Plan>, PlanningError> {
    Ok(Json(desk.plan_week(b.week, b.orders, b.technicians).await?))
}

async fn explain(
    State(desk): State<Arc<Desk>>,
    Path(order_id): Path<String>,
) -> Result<Json<Explanation>, PlanningError> {
    Ok(Json(desk.explain(&order_id).await?))
}

async fn pin(State(desk): State<Arc<Desk>>, Json(b): Json<PinBody>) -> Result<Json<Plan>, PlanningError> {
    Ok(Json(desk.pin(&b.order_id, &b.technician_id, b.day).await?))
}

async fn add_order(State(desk): State<Arc<Desk>>, Json(order): Json<Order>) -> Result<Json<Plan>, PlanningError> {
    Ok(Json(desk.add_order(order).await?))
}
