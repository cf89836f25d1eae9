//! ProAct technician planning: who does which work order on which day of a week.
//!
//! Where it sits: the work orders (corrective from alerts, preventive from the AMDEC
//! actions and the history's rhythm, see [`data`]) and the technicians' skills and hours
//! (the workload data) come in; a plan comes out, to the maintenance supervisor through the
//! trainer's CLI (`proact-trainer plan`), gRPC `Planning` ([`service`]) and the JSON API
//! ([`http`]) that the alert gateway mounts.
//!
//! - [`model`]: the inputs and their validation;
//! - [`db`]: the inputs from the database, the open work orders among them;
//! - [`solve`]: the planner (rounds of Kuhn-Munkres assignment and greedy, each improved by a
//!   local search) and the greedy baseline;
//! - [`replan`]: a new critical order or a manual pin, with minimal moves and their reasons;
//! - [`explain`]: why an order went where it did;
//! - [`text`]: the plan for a terminal;
//! - [`exact`]: the proven optimum of small instances (MILP), for the benchmark;
//! - [`instance`]: instances generated from the workload data and the fleet, for the
//!   benchmark and the tests.
#![forbid(unsafe_code)]

pub mod data;
pub mod db;
pub mod exact;
pub mod explain;
pub mod http;
pub mod instance;
pub mod model;
pub mod plan;
pub mod replan;
pub mod service;
pub mod solve;
pub mod text;

pub use explain::{explain, Explanation};
pub use model::{Order, PlanInput, Priority, Technician, Travel, Week};
pub use replan::{add_order, pin};
pub use solve::{plan, plan_greedy, plan_rounds, Assignment, Issue, IssueCode, Move, Plan, TechnicianLoad};

/// Why a plan could not be made or an input not read. Infeasible orders are not errors:
/// they are planned around and reported in [`Plan::issues`].
#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    #[error("invalid week `{week}`: {reason}")]
    InvalidWeek { week: String, reason: String },
    #[error("order {order}: unknown technician `{technician}`")]
    UnknownTechnician { order: String, technician: String },
    #[error("order {order}: estimated duration {hours} h must be a positive number of hours")]
    BadDuration { order: String, hours: f64 },
    #[error("unknown order `{0}`")]
    UnknownOrder(String),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{file}, line {line}: field `{field}`: {reason}")]
    Field { file: String, line: u64, field: String, reason: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("no plan yet: plan a week first")]
    NoPlan,
    #[error("solver: {0}")]
    Solver(String),
    #[error("reading the planning tables (load them with `proact-trainer load-reference`): {0}")]
    Database(#[from] proact_store::StoreError),
}

impl PlanningError {
    /// The one place errors get their gRPC and HTTP codes.
    fn codes(&self) -> (tonic::Code, axum::http::StatusCode) {
        use axum::http::StatusCode;
        match self {
            PlanningError::UnknownOrder(_) => (tonic::Code::NotFound, StatusCode::NOT_FOUND),
            PlanningError::NoPlan => (tonic::Code::FailedPrecondition, StatusCode::CONFLICT),
            PlanningError::Solver(_) | PlanningError::File { .. } | PlanningError::Database(_) => {
                (tonic::Code::Internal, StatusCode::INTERNAL_SERVER_ERROR)
            }
            _ => (tonic::Code::InvalidArgument, StatusCode::BAD_REQUEST),
        }
    }
}

impl From<PlanningError> for tonic::Status {
    fn from(e: PlanningError) -> Self {
        tonic::Status::new(e.codes().0, e.to_string())
    }
}

impl axum::response::IntoResponse for PlanningError {
    fn into_response(self) -> axum::response::Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.codes().1, axum::Json(body)).into_response()
    }
}
