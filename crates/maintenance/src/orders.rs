//! The work-order state machine: create, start, close, cancel, and the reads around them.
//!
//! ```text
//! planned ──start──▶ in_progress ──close──▶ done
//!    │  └───────────────close──────────────▶ done   (e.g. a false alarm seen remotely)
//!    └──cancel──▶ cancelled ◀──cancel── in_progress
//! ```
//!
//! Every change runs in one transaction that locks the order's row, checks the rule, writes
//! the order, its transition row (with the event to publish) and, on closing, the
//! intervention; a refused request rolls back and changes nothing. Retries are safe where a
//! client may repeat itself: creating from an alert that already has an open order returns
//! that order, starting a started order or cancelling a cancelled one returns it unchanged.
//! Closing a closed order is refused: a second outcome would rewrite the history.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use proact_proto::v1::{
    CloseWorkOrderRequest, CreateWorkOrderRequest, ListWorkOrdersRequest, ModelOutcomes, Outcome,
    SuggestFailureModesResponse, WorkOrder, WorkOrderEvent, WorkOrderKind, WorkOrderState,
};
use proact_store::work_orders::{self as store, AmdecMode, ListFilter, NewTransition};
use prost::Message;
use tokio_postgres::Transaction;

use crate::modes::{self, Signal};
use crate::priority::{self, Inputs};
use crate::MaintenanceError;

/// The time of a change; tests pass a fixed one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The work orders of one plant: PostgreSQL for the state, Redis for the events.
#[derive(Clone)]
pub struct WorkOrders {
    pool: Pool,
    redis: Option<fred::prelude::Client>,
    clock: Clock,
}

fn require<'a>(field: &'static str, value: &'a str) -> Result<&'a str, MaintenanceError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(MaintenanceError::invalid(field, "required"));
    }
    Ok(v)
}

fn hours(field: &'static str, h: f64) -> Result<f64, MaintenanceError> {
    if !h.is_finite() {
        return Err(MaintenanceError::invalid(field, format!("{h} is not a number of hours")));
    }
    if h < 0.0 {
        return Err(MaintenanceError::invalid(field, format!("{h} h: a duration cannot be negative")));
    }
    Ok(h)
}

fn in_amdec<'a>(
    field: &'static str,
    code: &str,
    equipement_id: &str,
    modes: &'a [AmdecMode],
) -> Result<&'a AmdecMode, MaintenanceError> {
    modes.iter().find(|m| m.failure_mode_code == code).ok_or_else(|| MaintenanceError::NotInAmdec {
        field,
        code: code.to_string(),
        equipement_id: equipement_id.to_string(),
        known: modes.iter().map(|m| m.failure_mode_code.clone()).collect(),
    })
}

fn closed_state_name(s: WorkOrderState) -> Option<&'static str> {
    match s {
        WorkOrderState::Done => Some("done"),
        WorkOrderState::Cancelled => Some("cancelled"),
        _ => None,
    }
}

/// The refusal to change a done or cancelled order.
fn refused(w: &WorkOrder) -> MaintenanceError {
    MaintenanceError::AlreadyClosed {
        id: w.work_order_id.clone(),
        state: closed_state_name(w.state()).unwrap_or("closed"),
    }
}

impl WorkOrders {
    /// `redis` may be `None` where nothing listens (events then wait in the outbox).
    pub fn new(pool: Pool, redis: Option<fred::prelude::Client>) -> Self {
        Self::with_clock(pool, redis, Arc::new(Utc::now))
    }

    pub fn with_clock(pool: Pool, redis: Option<fred::prelude::Client>, clock: Clock) -> Self {
        WorkOrders { pool, redis, clock }
    }

    fn now_micros(&self) -> i64 {
        (self.clock)().timestamp_micros()
    }

    /// Publishes what the last commits left in the outbox. A Redis failure is logged, not
    /// returned: the change is committed, and its event goes out with the next one.
    async fn publish(&self) {
        let Some(redis) = &self.redis else { return };
        if let Err(e) = crate::events::publish_pending(&self.pool, redis).await {
            tracing::warn!(error = %e, "work-order events not published yet; they stay in the outbox");
        }
    }

    /// Records `from → w.state` in the transaction, with the event that will be published.
    async fn transition(
        &self,
        tx: &Transaction<'_>,
        w: &WorkOrder,
        from: Option<WorkOrderState>,
        by: &str,
        comment: &str,
    ) -> Result<(), MaintenanceError> {
        let id = store::next_transition_id(tx).await?;
        let event = WorkOrderEvent {
            from_state: from.map_or(0, |s| s as i32),
            to_state: w.state,
            by: by.to_string(),
            at_micros: w.updated_micros,
            comment: comment.to_string(),
            work_order: Some(w.clone()),
            transition_id: id,
        };
        let bytes = event.encode_to_vec();
        store::add_transition(
            tx,
            &NewTransition {
                id,
                work_order_id: &w.work_order_id,
                from,
                to: w.state(),
                by,
                at_micros: w.updated_micros,
                comment,
                event: &bytes,
            },
        )
        .await?;
        Ok(())
    }

    /// Creates a work order: corrective from `alert_id`, or preventive on `equipement_id`.
    pub async fn create(&self, req: &CreateWorkOrderRequest) -> Result<WorkOrder, MaintenanceError> {
        let by = require("by", &req.by)?;
        let technician = require("technician_id", &req.technician_id)?;
        let estimated = hours("estimated_duration_h", req.estimated_duration_h)?;
        if !(req.priority.is_finite() && (0.0..=100.0).contains(&req.priority)) {
            return Err(MaintenanceError::invalid("priority", format!("{} is not between 0 and 100", req.priority)));
        }
        let mut client = self.pool.get().await?;
        let alert = match req.alert_id.trim() {
            "" => None,
            id => Some(
                proact_store::get_alert(&client, id)
                    .await?
                    .ok_or_else(|| MaintenanceError::NotFound { what: "alert", id: id.to_string() })?,
            ),
        };
        let equipement_id = match &alert {
            Some(a) => {
                if !req.equipement_id.trim().is_empty() && req.equipement_id.trim() != a.equipement_id {
                    return Err(MaintenanceError::invalid(
                        "equipement_id",
                        format!("{} is not the alert's equipment ({})", req.equipement_id.trim(), a.equipement_id),
                    ));
                }
                a.equipement_id.clone()
            }
            None => {
                let eq = require("equipement_id", &req.equipement_id)
                    .map_err(|_| MaintenanceError::invalid("equipement_id", "required without an alert_id"))?;
                if !store::equipment_known(&client, eq).await? {
                    return Err(MaintenanceError::NotFound { what: "equipment", id: eq.to_string() });
                }
                eq.to_string()
            }
        };
        if !store::technician_known(&client, technician).await? {
            return Err(MaintenanceError::UnknownTechnician(technician.to_string()));
        }
        let amdec = store::amdec_modes(&**client, &equipement_id).await?;
        let signal = alert.as_ref().map_or(Signal::Other, modes::signal_of);
        let failure_mode_code = match req.failure_mode_code.trim() {
            "" => modes::preselect(&amdec, signal).map(|m| m.failure_mode_code.clone()).unwrap_or_default(),
            code => in_amdec("failure_mode_code", code, &equipement_id, &amdec)?.failure_mode_code.clone(),
        };
        let priority = if req.priority > 0.0 {
            req.priority
        } else {
            let chosen: Vec<&AmdecMode> = amdec.iter().filter(|m| m.failure_mode_code == failure_mode_code).collect();
            match &alert {
                Some(a) if chosen.is_empty() => {
                    priority::priority(Inputs::of_alert(a, &modes::relevant(&amdec, signal)))
                }
                Some(a) => priority::priority(Inputs::of_alert(a, &chosen)),
                None => priority::priority(Inputs { criticality: priority::criticality(&chosen), ..Inputs::default() }),
            }
        };
        let now = self.now_micros();
        let w = WorkOrder {
            work_order_id: format!("WO-{}", &uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase()),
            kind: if alert.is_some() { WorkOrderKind::Corrective } else { WorkOrderKind::Preventive } as i32,
            equipement_id,
            alert_id: alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default(),
            alert_model_version: alert.as_ref().map(|a| a.model_version.clone()).unwrap_or_default(),
            alert_started_micros: alert.as_ref().map_or(0, |a| a.start_micros),
            failure_mode_code,
            priority,
            technician_id: technician.to_string(),
            planned_start_micros: if req.planned_start_micros > 0 { req.planned_start_micros } else { now },
            estimated_duration_h: estimated,
            description: req.description.trim().to_string(),
            state: WorkOrderState::Planned as i32,
            created_by: by.to_string(),
            created_micros: now,
            updated_micros: now,
            ..Default::default()
        };
        let tx = client.transaction().await?;
        if let Some(a) = &alert {
            if let Some(open) = store::open_for_alert(&tx, &a.alert_id).await? {
                return Ok(open);
            }
        }
        if !store::insert(&tx, &w).await? {
            // Another request opened an order for this alert between our check and insert.
            drop(tx);
            let tx = client.transaction().await?;
            return store::open_for_alert(&tx, &w.alert_id).await?.ok_or_else(|| {
                MaintenanceError::invalid("alert_id", "a concurrent order for this alert was not found")
            });
        }
        self.transition(&tx, &w, None, by, "").await?;
        tx.commit().await?;
        tracing::info!(work_order = %w.work_order_id, equipment = %w.equipement_id, alert = %w.alert_id, "work order created");
        self.publish().await;
        Ok(w)
    }

    /// Runs `change` on the locked order: `Ok(None)` from it is "nothing to do" (a retry),
    /// and returns the order unchanged.
    async fn change<F>(&self, id: &str, by: &str, comment: &str, change: F) -> Result<WorkOrder, MaintenanceError>
    where
        F: FnOnce(&WorkOrder, i64) -> Result<Option<WorkOrder>, MaintenanceError>,
    {
        let id = require("work_order_id", id)?;
        let by = require("by", by)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = store::lock(&tx, id)
            .await?
            .ok_or_else(|| MaintenanceError::NotFound { what: "work order", id: id.to_string() })?;
        let Some(next) = change(&current, self.now_micros())? else { return Ok(current) };
        store::update(&tx, &next).await?;
        self.transition(&tx, &next, Some(current.state()), by, comment.trim()).await?;
        if next.state() == WorkOrderState::Done {
            let equipment_type = store::amdec_modes(&*tx, &next.equipement_id)
                .await?
                .first()
                .map(|m| m.equipment_type.clone())
                .unwrap_or_default();
            store::record_intervention(&tx, &next, &equipment_type).await?;
        }
        tx.commit().await?;
        tracing::info!(work_order = %next.work_order_id, state = store::state_name(next.state()), by, "work order changed");
        self.publish().await;
        Ok(next)
    }

    /// Moves an open (planned or in progress) order to `to`, `stamp` setting the time of the
    /// move; an order already in `to` is returned as it is (a retried request).
    async fn move_open(
        &self,
        id: &str,
        by: &str,
        comment: &str,
        to: WorkOrderState,
        stamp: fn(&mut WorkOrder, i64),
    ) -> Result<WorkOrder, MaintenanceError> {
        self.change(id, by, comment, |w, now| match w.state() {
            s if s == to => Ok(None),
            WorkOrderState::Planned | WorkOrderState::InProgress => {
                let mut next = WorkOrder { state: to as i32, updated_micros: now, ..w.clone() };
                stamp(&mut next, now);
                Ok(Some(next))
            }
            _ => Err(refused(w)),
        })
        .await
    }

    /// planned → in progress; an order already in progress is returned as it is.
    pub async fn start(&self, id: &str, by: &str, comment: &str) -> Result<WorkOrder, MaintenanceError> {
        self.move_open(id, by, comment, WorkOrderState::InProgress, |w, now| w.started_micros = now).await
    }

    /// planned or in progress → cancelled; a cancelled order is returned as it is.
    pub async fn cancel(&self, id: &str, by: &str, comment: &str) -> Result<WorkOrder, MaintenanceError> {
        self.move_open(id, by, comment, WorkOrderState::Cancelled, |w, now| w.closed_micros = now).await
    }

    /// planned or in progress → done, with the outcome; the order joins the history.
    pub async fn close(&self, req: &CloseWorkOrderRequest) -> Result<WorkOrder, MaintenanceError> {
        let outcome = Outcome::try_from(req.outcome).ok().filter(|o| *o != Outcome::Unspecified).ok_or_else(|| {
            MaintenanceError::invalid("outcome", "required: failure_confirmed, false_alarm or no_fault_found")
        })?;
        let actual = req.actual_duration_h.map(|h| hours("actual_duration_h", h)).transpose()?;
        let found = req.found_failure_mode_code.trim().to_string();
        if outcome == Outcome::FailureConfirmed && found.is_empty() {
            return Err(MaintenanceError::invalid(
                "found_failure_mode_code",
                "required when the failure is confirmed: which AMDEC mode was found",
            ));
        }
        // The AMDEC check needs the equipment, so it reads the order first; the lock below
        // re-reads it, and the equipment of an order never changes.
        let id = require("work_order_id", &req.work_order_id)?;
        let amdec = {
            let client = self.pool.get().await?;
            let w = store::get(&client, id)
                .await?
                .ok_or_else(|| MaintenanceError::NotFound { what: "work order", id: id.to_string() })?;
            store::amdec_modes(&**client, &w.equipement_id).await?
        };
        self.change(id, &req.by, &req.comment, |w, now| {
            if closed_state_name(w.state()).is_some() {
                return Err(refused(w));
            }
            if !found.is_empty() {
                in_amdec("found_failure_mode_code", &found, &w.equipement_id, &amdec)?;
            }
            let actual = actual.unwrap_or_else(|| {
                if w.started_micros > 0 {
                    (now - w.started_micros).max(0) as f64 / 3.6e9
                } else {
                    0.0
                }
            });
            Ok(Some(WorkOrder {
                state: WorkOrderState::Done as i32,
                outcome: outcome as i32,
                found_failure_mode_code: found,
                cause_found: req.cause_found.trim().to_string(),
                action_taken: req.action_taken.trim().to_string(),
                parts: req.parts.trim().to_string(),
                actual_duration_h: actual,
                closed_micros: now,
                updated_micros: now,
                ..w.clone()
            }))
        })
        .await
    }

    /// One order and its transitions, oldest first.
    pub async fn get(&self, id: &str) -> Result<(WorkOrder, Vec<WorkOrderEvent>), MaintenanceError> {
        let id = require("work_order_id", id)?;
        let client = self.pool.get().await?;
        let w = store::get(&client, id)
            .await?
            .ok_or_else(|| MaintenanceError::NotFound { what: "work order", id: id.to_string() })?;
        let events = store::transition_events(&client, id)
            .await?
            .iter()
            .filter_map(|b| WorkOrderEvent::decode(b.as_slice()).ok())
            .collect();
        Ok((w, events))
    }

    /// Orders by technician, state and equipment (empty filters match all).
    pub async fn list(&self, req: &ListWorkOrdersRequest) -> Result<Vec<WorkOrder>, MaintenanceError> {
        let state = match WorkOrderState::try_from(req.state) {
            Ok(WorkOrderState::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => return Err(MaintenanceError::invalid("state", format!("unknown state {}", req.state))),
        };
        let client = self.pool.get().await?;
        Ok(store::list(
            &client,
            &ListFilter {
                technician_id: req.technician_id.trim().to_string(),
                state,
                equipement_id: req.equipement_id.trim().to_string(),
                limit: req.limit,
            },
        )
        .await?)
    }

    /// The AMDEC modes for an order from `alert_id` (or on `equipement_id`), best first, and
    /// the priority the order would get by default.
    pub async fn suggest(
        &self,
        alert_id: &str,
        equipement_id: &str,
    ) -> Result<SuggestFailureModesResponse, MaintenanceError> {
        let client = self.pool.get().await?;
        let alert = match alert_id.trim() {
            "" => None,
            id => Some(
                proact_store::get_alert(&client, id)
                    .await?
                    .ok_or_else(|| MaintenanceError::NotFound { what: "alert", id: id.to_string() })?,
            ),
        };
        let eq = match &alert {
            Some(a) => a.equipement_id.clone(),
            None => require("equipement_id", equipement_id)
                .map_err(|_| MaintenanceError::invalid("equipement_id", "required without an alert_id"))?
                .to_string(),
        };
        let amdec = store::amdec_modes(&**client, &eq).await?;
        let signal = alert.as_ref().map_or(Signal::Other, modes::signal_of);
        let ranked = modes::rank(&amdec, signal);
        let priority = match &alert {
            Some(a) => {
                let best: Vec<&AmdecMode> =
                    ranked.iter().take_while(|(_, s)| *s > 0).take(1).map(|(m, _)| *m).collect();
                let judged = if best.is_empty() { modes::relevant(&amdec, signal) } else { best };
                priority::priority(Inputs::of_alert(a, &judged))
            }
            None => 0.0,
        };
        Ok(SuggestFailureModesResponse {
            modes: ranked
                .iter()
                .map(|(m, s)| proact_proto::v1::FailureModeChoice {
                    failure_mode_code: m.failure_mode_code.clone(),
                    failure_mode: m.failure_mode.clone(),
                    component: m.component.clone(),
                    severity: m.severity,
                    rpn: m.rpn,
                    matches_signal: *s > 0,
                })
                .collect(),
            priority,
        })
    }

    /// The priority of `alert` from the AMDEC of its equipment ([`priority`]).
    pub async fn alert_priority(&self, alert: &proact_proto::v1::Alert) -> Result<f64, MaintenanceError> {
        let client = self.pool.get().await?;
        let amdec = store::amdec_modes(&**client, &alert.equipement_id).await?;
        Ok(priority::of_alert(alert, &amdec))
    }

    /// Per version that raised alerts: how the team closed their work orders, and the
    /// precision that makes (confirmed / all outcomes; no fault found counts against).
    pub async fn outcomes_by_model(&self) -> Result<Vec<ModelOutcomes>, MaintenanceError> {
        let client = self.pool.get().await?;
        Ok(store::outcomes_by_model(&client).await?.into_iter().map(precision).collect())
    }

    /// Publishes events left in the outbox (at service start, or on a timer).
    pub async fn publish_pending(&self) -> Result<usize, crate::events::PublishError> {
        match &self.redis {
            Some(r) => crate::events::publish_pending(&self.pool, r).await,
            None => Ok(0),
        }
    }
}

/// The team's precision for one version.
pub fn precision(c: store::OutcomeCounts) -> ModelOutcomes {
    let total = c.failure_confirmed + c.false_alarm + c.no_fault_found;
    ModelOutcomes {
        precision: if total == 0 { 0.0 } else { f64::from(c.failure_confirmed) / f64::from(total) },
        model_version: c.model_version,
        failure_confirmed: c.failure_confirmed,
        false_alarm: c.false_alarm,
        no_fault_found: c.no_fault_found,
    }
}
