//! The maintenance loop's domain: what the team does with an alert, and what flows back.
//!
//! An alert becomes a work order (equipment, AMDEC failure mode pre-selected from the
//! alert's signal, priority, technician, plan); the order goes planned → in progress → done
//! or cancelled, each change persisted with who and when and published on the
//! `proact:workorders` stream; closing records the outcome, and the closed order joins the
//! intervention history next to the imported GMAO rows. From that history come the
//! training labels ([`labels`]) and the precision of each model version as the team saw it
//! ([`WorkOrders::outcomes_by_model`]); [`priority`] ranks alerts and orders by severity,
//! AMDEC criticality and model risk.
//!
//! The alert gateway serves it: it mounts [`grpc::WorkOrdersService`] and [`http::router`],
//! and the trainer calls [`labels::Labels::load`]. SQL is in `proact_store::work_orders`.
#![forbid(unsafe_code)]

pub mod error;
pub mod events;
pub mod grpc;
pub mod http;
pub mod labels;
pub mod modes;
mod orders;
pub mod priority;

pub use error::MaintenanceError;
pub use orders::{Clock, WorkOrders};
