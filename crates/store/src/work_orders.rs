//! Work orders and the intervention history they join (tables `work_orders`,
//! `work_order_transitions`, `gmao_interventions`, read with `amdec` and `workload`).
//!
//! The rules (which transition is allowed, what an outcome needs) live in crate
//! `proact-maintenance`; this module only reads and writes. Writes take the caller's
//! transaction, so a state change, its transition row (with the event to publish) and, on
//! closing, the intervention row commit together or not at all.

use chrono::{DateTime, Utc};
use proact_proto::v1::{Outcome, WorkOrder, WorkOrderKind, WorkOrderState};
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use crate::{micros_to_ts, StoreError};

/// One AMDEC failure mode of an equipment.
#[derive(Debug, Clone, PartialEq)]
pub struct AmdecMode {
    pub equipement_id: String,
    pub equipment_type: String,
    pub failure_mode_code: String,
    pub failure_mode: String,
    pub component: String,
    pub effect: String,
    pub cause: String,
    pub severity: i32,
    pub occurrence: i32,
    pub detection: i32,
    pub rpn: i32,
    pub criticality: String,
}

const AMDEC_MODE_COLUMNS: &str = "equipement_id, coalesce(equipment_type, '') AS equipment_type, failure_mode_code,
     failure_mode, coalesce(component, '') AS component, coalesce(effect, '') AS effect,
     coalesce(cause, '') AS cause, severity, occurrence, detection, rpn, coalesce(criticality, '') AS criticality";

fn amdec_mode(r: &tokio_postgres::Row) -> AmdecMode {
    AmdecMode {
        equipement_id: r.get("equipement_id"),
        equipment_type: r.get("equipment_type"),
        failure_mode_code: r.get("failure_mode_code"),
        failure_mode: r.get("failure_mode"),
        component: r.get("component"),
        effect: r.get("effect"),
        cause: r.get("cause"),
        severity: r.get("severity"),
        occurrence: r.get("occurrence"),
        detection: r.get("detection"),
        rpn: r.get("rpn"),
        criticality: r.get("criticality"),
    }
}

/// The AMDEC failure modes of `equipement_id`, highest RPN first.
pub async fn amdec_modes(client: &impl GenericClient, equipement_id: &str) -> Result<Vec<AmdecMode>, StoreError> {
    let sql =
        format!("SELECT {AMDEC_MODE_COLUMNS} FROM amdec WHERE equipement_id = $1 ORDER BY rpn DESC, failure_mode_code");
    let rows = client.query(&sql, &[&equipement_id]).await?;
    Ok(rows.iter().map(amdec_mode).collect())
}

/// Every AMDEC mode, grouped by equipment in [`amdec_modes`]' order (for a cache of them).
pub async fn all_amdec_modes(client: &impl GenericClient) -> Result<Vec<AmdecMode>, StoreError> {
    let sql = format!("SELECT {AMDEC_MODE_COLUMNS} FROM amdec ORDER BY equipement_id, rpn DESC, failure_mode_code");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(amdec_mode).collect())
}

/// Whether `technician_id` is a technician of the workload table.
pub async fn technician_known(client: &Client, technician_id: &str) -> Result<bool, StoreError> {
    Ok(client
        .query_one("SELECT EXISTS (SELECT 1 FROM workload WHERE technician_id = $1)", &[&technician_id])
        .await?
        .get(0))
}

/// Whether anything is known of `equipement_id` (AMDEC, history or telemetry).
pub async fn equipment_known(client: &Client, equipement_id: &str) -> Result<bool, StoreError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM amdec WHERE equipement_id = $1)
                 OR EXISTS (SELECT 1 FROM gmao_interventions WHERE equipement_id = $1)
                 OR EXISTS (SELECT 1 FROM telemetry WHERE equipement_id = $1)",
            &[&equipement_id],
        )
        .await?
        .get(0))
}

pub fn state_name(s: WorkOrderState) -> &'static str {
    match s {
        WorkOrderState::Planned => "planned",
        WorkOrderState::InProgress => "in_progress",
        WorkOrderState::Done => "done",
        WorkOrderState::Cancelled => "cancelled",
        WorkOrderState::Unspecified => "unspecified",
    }
}

fn state_from(s: &str) -> WorkOrderState {
    match s {
        "planned" => WorkOrderState::Planned,
        "in_progress" => WorkOrderState::InProgress,
        "done" => WorkOrderState::Done,
        "cancelled" => WorkOrderState::Cancelled,
        _ => WorkOrderState::Unspecified,
    }
}

pub fn outcome_name(o: Outcome) -> Option<&'static str> {
    match o {
        Outcome::FailureConfirmed => Some("failure_confirmed"),
        Outcome::FalseAlarm => Some("false_alarm"),
        Outcome::NoFaultFound => Some("no_fault_found"),
        Outcome::Unspecified => None,
    }
}

pub fn outcome_from(s: Option<&str>) -> Outcome {
    match s {
        Some("failure_confirmed") => Outcome::FailureConfirmed,
        Some("false_alarm") => Outcome::FalseAlarm,
        Some("no_fault_found") => Outcome::NoFaultFound,
        _ => Outcome::Unspecified,
    }
}

fn kind_name(k: i32) -> &'static str {
    if k == WorkOrderKind::Preventive as i32 {
        "preventive"
    } else {
        "corrective"
    }
}

fn micros(r: &Row, c: &str) -> i64 {
    r.get::<_, Option<DateTime<Utc>>>(c).map(|t| t.timestamp_micros()).unwrap_or(0)
}

fn text(r: &Row, c: &str) -> String {
    r.get::<_, Option<String>>(c).unwrap_or_default()
}

fn opt_ts(m: i64) -> Option<DateTime<Utc>> {
    (m > 0).then(|| micros_to_ts(m))
}

fn opt_text(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

pub fn row_to_work_order(r: &Row) -> WorkOrder {
    WorkOrder {
        work_order_id: r.get("work_order_id"),
        kind: if r.get::<_, &str>("kind") == "preventive" {
            WorkOrderKind::Preventive as i32
        } else {
            WorkOrderKind::Corrective as i32
        },
        equipement_id: r.get("equipement_id"),
        alert_id: text(r, "alert_id"),
        alert_model_version: r.get("alert_model_version"),
        alert_started_micros: micros(r, "alert_started_at"),
        failure_mode_code: text(r, "failure_mode_code"),
        priority: r.get("priority"),
        technician_id: r.get("technician_id"),
        planned_start_micros: micros(r, "planned_start"),
        estimated_duration_h: r.get("estimated_duration_h"),
        description: r.get("description"),
        state: state_from(r.get("state")) as i32,
        created_by: r.get("created_by"),
        created_micros: micros(r, "created_at"),
        updated_micros: micros(r, "updated_at"),
        started_micros: micros(r, "started_at"),
        closed_micros: micros(r, "closed_at"),
        outcome: outcome_from(r.get("outcome")) as i32,
        found_failure_mode_code: text(r, "found_failure_mode_code"),
        cause_found: text(r, "cause_found"),
        action_taken: text(r, "action_taken"),
        parts: text(r, "parts"),
        actual_duration_h: r.get::<_, Option<f64>>("actual_duration_h").unwrap_or(0.0),
    }
}

/// The open (planned or in progress) work order of an alert, locked for the transaction.
pub async fn open_for_alert(tx: &Transaction<'_>, alert_id: &str) -> Result<Option<WorkOrder>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT * FROM work_orders WHERE alert_id = $1 AND state IN ('planned', 'in_progress') FOR UPDATE",
            &[&alert_id],
        )
        .await?
        .as_ref()
        .map(row_to_work_order))
}

/// The latest work order made from `alert_id`, in any state.
pub async fn latest_for_alert(client: &Client, alert_id: &str) -> Result<Option<WorkOrder>, StoreError> {
    Ok(client
        .query_opt("SELECT * FROM work_orders WHERE alert_id = $1 ORDER BY created_at DESC LIMIT 1", &[&alert_id])
        .await?
        .as_ref()
        .map(row_to_work_order))
}

/// A work order, locked until the transaction ends (so two concurrent changes serialise).
pub async fn lock(tx: &Transaction<'_>, work_order_id: &str) -> Result<Option<WorkOrder>, StoreError> {
    Ok(tx
        .query_opt("SELECT * FROM work_orders WHERE work_order_id = $1 FOR UPDATE", &[&work_order_id])
        .await?
        .as_ref()
        .map(row_to_work_order))
}

/// Inserts a new work order. Returns `false` when another transaction just opened one for the
/// same alert (the unique index of open orders per alert), leaving nothing written.
pub async fn insert(tx: &Transaction<'_>, w: &WorkOrder) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "INSERT INTO work_orders (work_order_id, kind, equipement_id, alert_id, alert_started_at,
                 alert_model_version, failure_mode_code, priority, technician_id, planned_start,
                 estimated_duration_h, description, state, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
             ON CONFLICT DO NOTHING",
            &[
                &w.work_order_id,
                &kind_name(w.kind),
                &w.equipement_id,
                &opt_text(&w.alert_id),
                &opt_ts(w.alert_started_micros),
                &w.alert_model_version,
                &opt_text(&w.failure_mode_code),
                &w.priority,
                &w.technician_id,
                &micros_to_ts(w.planned_start_micros),
                &w.estimated_duration_h,
                &w.description,
                &state_name(w.state()),
                &w.created_by,
                &micros_to_ts(w.created_micros),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Writes the state and the closing fields of `w` (as changed by a transition).
pub async fn update(tx: &Transaction<'_>, w: &WorkOrder) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE work_orders SET state = $2, updated_at = $3, started_at = $4, closed_at = $5, outcome = $6,
             found_failure_mode_code = $7, cause_found = $8, action_taken = $9, parts = $10,
             actual_duration_h = $11
         WHERE work_order_id = $1",
        &[
            &w.work_order_id,
            &state_name(w.state()),
            &micros_to_ts(w.updated_micros),
            &opt_ts(w.started_micros),
            &opt_ts(w.closed_micros),
            &outcome_name(w.outcome()),
            &opt_text(&w.found_failure_mode_code),
            &opt_text(&w.cause_found),
            &opt_text(&w.action_taken),
            &opt_text(&w.parts),
            &(w.state() == WorkOrderState::Done).then_some(w.actual_duration_h),
        ],
    )
    .await?;
    Ok(())
}

/// A transition to record: the event is encoded by the caller, with [`next_transition_id`]
/// inside it, so the stream entry and the row agree.
#[derive(Debug, Clone)]
pub struct NewTransition<'a> {
    pub id: i64,
    pub work_order_id: &'a str,
    pub from: Option<WorkOrderState>,
    pub to: WorkOrderState,
    pub by: &'a str,
    pub at_micros: i64,
    pub comment: &'a str,
    pub event: &'a [u8],
}

/// The id the next transition row will have.
pub async fn next_transition_id(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx.query_one("SELECT nextval(pg_get_serial_sequence('work_order_transitions', 'id'))", &[]).await?.get(0))
}

pub async fn add_transition(tx: &Transaction<'_>, t: &NewTransition<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO work_order_transitions (id, work_order_id, from_state, to_state, by_whom, at, comment, event)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &t.id,
            &t.work_order_id,
            &t.from.map(state_name),
            &state_name(t.to),
            &t.by,
            &micros_to_ts(t.at_micros),
            &t.comment,
            &t.event,
        ],
    )
    .await?;
    Ok(())
}

/// Adds the closed work order `w` to the intervention history (origin `work_order`).
/// `intervention_type` is `corrective` only for a confirmed failure on corrective work, so
/// readers of the imported history's corrective rows (labels, knowledge base) count real
/// repairs only; a false alarm or no fault found is an `inspection`.
pub async fn record_intervention(tx: &Transaction<'_>, w: &WorkOrder, equipment_type: &str) -> Result<(), StoreError> {
    let intervention_type = match (w.kind(), w.outcome()) {
        (WorkOrderKind::Preventive, _) => "preventive",
        (_, Outcome::FailureConfirmed) => "corrective",
        _ => "inspection",
    };
    let started = if w.started_micros > 0 { w.started_micros } else { w.closed_micros };
    let mode = if w.found_failure_mode_code.is_empty() { &w.failure_mode_code } else { &w.found_failure_mode_code };
    tx.execute(
        "INSERT INTO gmao_interventions (intervention_id, equipement_id, equipment_type, started_at, ended_at,
             intervention_type, failure_mode_code, description, technician_id, duration_h, status, origin,
             outcome, cause_found, action_taken, parts, alert_id, fault_started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'closed', 'work_order', $11, $12, $13, $14, $15, $16)",
        &[
            &w.work_order_id,
            &w.equipement_id,
            &opt_text(equipment_type),
            &micros_to_ts(started),
            &micros_to_ts(w.closed_micros),
            &intervention_type,
            &opt_text(mode),
            &w.description,
            &w.technician_id,
            &w.actual_duration_h,
            &outcome_name(w.outcome()),
            &opt_text(&w.cause_found),
            &opt_text(&w.action_taken),
            &opt_text(&w.parts),
            &opt_text(&w.alert_id),
            &opt_ts(w.alert_started_micros),
        ],
    )
    .await?;
    Ok(())
}

/// One work order by id.
pub async fn get(client: &Client, work_order_id: &str) -> Result<Option<WorkOrder>, StoreError> {
    Ok(client
        .query_opt("SELECT * FROM work_orders WHERE work_order_id = $1", &[&work_order_id])
        .await?
        .as_ref()
        .map(row_to_work_order))
}

/// The encoded events of a work order's transitions, oldest first.
pub async fn transition_events(client: &Client, work_order_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(client
        .query("SELECT event FROM work_order_transitions WHERE work_order_id = $1 ORDER BY id", &[&work_order_id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Filters of [`list`]; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub technician_id: String,
    pub state: Option<WorkOrderState>,
    pub equipement_id: String,
    pub limit: u32,
}

/// Work orders matching `f`: by planned start, then priority (highest first).
pub async fn list(client: &Client, f: &ListFilter) -> Result<Vec<WorkOrder>, StoreError> {
    let limit = i64::from(if f.limit == 0 { 500 } else { f.limit.min(10_000) });
    let state = f.state.map(state_name);
    Ok(client
        .query(
            "SELECT * FROM work_orders
             WHERE ($1 = '' OR technician_id = $1) AND ($2::text IS NULL OR state = $2)
               AND ($3 = '' OR equipement_id = $3)
             ORDER BY planned_start, priority DESC, work_order_id LIMIT $4",
            &[&f.technician_id, &state, &f.equipement_id, &limit],
        )
        .await?
        .iter()
        .map(row_to_work_order)
        .collect())
}

/// A transition whose event is not on the stream yet.
#[derive(Debug, Clone)]
pub struct Unpublished {
    pub id: i64,
    pub event: Vec<u8>,
}

/// Up to `limit` transitions not yet published, oldest first.
pub async fn unpublished(client: &Client, limit: i64) -> Result<Vec<Unpublished>, StoreError> {
    Ok(client
        .query("SELECT id, event FROM work_order_transitions WHERE event_id IS NULL ORDER BY id LIMIT $1", &[&limit])
        .await?
        .iter()
        .map(|r| Unpublished { id: r.get(0), event: r.get(1) })
        .collect())
}

pub async fn mark_published(client: &Client, id: i64, event_id: &str) -> Result<(), StoreError> {
    client.execute("UPDATE work_order_transitions SET event_id = $2 WHERE id = $1", &[&id, &event_id]).await?;
    Ok(())
}

/// One intervention as the labels see it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub equipement_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub intervention_type: String,
    /// `gmao_import` or `work_order`.
    pub origin: String,
    pub outcome: Outcome,
    /// The alert's start for a work order made from an alert.
    pub fault_started_at: Option<DateTime<Utc>>,
}

/// The interventions that say something about the machine's health: imported corrective
/// repairs and every closed work order with an outcome.
pub async fn label_history(client: &Client) -> Result<Vec<HistoryEvent>, StoreError> {
    let rows = client
        .query(
            "SELECT equipement_id, started_at, ended_at, lower(intervention_type) AS intervention_type, origin,
                    outcome, fault_started_at
             FROM gmao_interventions
             WHERE (origin = 'gmao_import' AND lower(intervention_type) = 'corrective') OR outcome IS NOT NULL
             ORDER BY equipement_id, started_at",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| HistoryEvent {
            equipement_id: r.get("equipement_id"),
            started_at: r.get("started_at"),
            ended_at: r.get("ended_at"),
            intervention_type: r.get("intervention_type"),
            origin: r.get("origin"),
            outcome: outcome_from(r.get("outcome")),
            fault_started_at: r.get("fault_started_at"),
        })
        .collect())
}

/// How the team closed the work orders made from one version's alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// The version that raised the alert (`rules-v1` for the threshold rules).
    pub model_version: String,
    pub failure_confirmed: u32,
    pub false_alarm: u32,
    pub no_fault_found: u32,
}

/// Outcomes of closed work orders made from alerts, per version that raised the alert.
pub async fn outcomes_by_model(client: &Client) -> Result<Vec<OutcomeCounts>, StoreError> {
    let rows = client
        .query(
            "SELECT alert_model_version,
                    count(*) FILTER (WHERE outcome = 'failure_confirmed') AS confirmed,
                    count(*) FILTER (WHERE outcome = 'false_alarm') AS false_alarm,
                    count(*) FILTER (WHERE outcome = 'no_fault_found') AS no_fault
             FROM work_orders
             WHERE state = 'done' AND alert_id IS NOT NULL AND alert_model_version <> ''
             GROUP BY alert_model_version ORDER BY alert_model_version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let n = |c: &str| u32::try_from(r.get::<_, i64>(c)).unwrap_or(u32::MAX);
            OutcomeCounts {
                model_version: r.get("alert_model_version"),
                failure_confirmed: n("confirmed"),
                false_alarm: n("false_alarm"),
                no_fault_found: n("no_fault"),
            }
        })
        .collect())
}
