//! What the technician planner (crate proact-planning) reads from the reference tables:
//! the technicians' workload, the AMDEC lines, the intervention history and the open work
//! orders.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::StoreError;

/// One month of one technician (table `workload`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRecord {
    pub technician_id: String,
    pub technician_name: String,
    /// As stored: `|`-separated.
    pub skills: String,
    pub period_start: DateTime<Utc>,
    pub planned_hours: Option<f64>,
    pub availability_pct: Option<f64>,
}

/// One past intervention (table `gmao_interventions`).
#[derive(Debug, Clone, PartialEq)]
pub struct InterventionRecord {
    pub equipement_id: String,
    pub started_at: DateTime<Utc>,
    pub intervention_type: String,
    pub failure_mode_code: String,
    pub technician_id: String,
    pub duration_h: Option<f64>,
    pub description: String,
}

/// One AMDEC line (table `amdec`).
#[derive(Debug, Clone, PartialEq)]
pub struct AmdecRecord {
    pub equipement_id: String,
    pub failure_mode_code: String,
    pub criticality: String,
    pub recommended_action: String,
}

pub async fn workload(pool: &Pool) -> Result<Vec<WorkloadRecord>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT technician_id, coalesce(technician_name, '') AS technician_name, coalesce(skills, '') AS skills,
                    period_start, planned_hours, availability_pct
             FROM workload ORDER BY technician_id, period_start",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WorkloadRecord {
            technician_id: r.get("technician_id"),
            technician_name: r.get("technician_name"),
            skills: r.get("skills"),
            period_start: r.get("period_start"),
            planned_hours: r.get("planned_hours"),
            availability_pct: r.get("availability_pct"),
        })
        .collect())
}

/// The interventions started before `until`, oldest first.
pub async fn interventions(pool: &Pool, until: DateTime<Utc>) -> Result<Vec<InterventionRecord>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT equipement_id, started_at, intervention_type, coalesce(failure_mode_code, '') AS failure_mode_code,
                    coalesce(technician_id, '') AS technician_id, duration_h, coalesce(description, '') AS description
             FROM gmao_interventions WHERE started_at < $1 ORDER BY started_at, intervention_id",
            &[&until],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| InterventionRecord {
            equipement_id: r.get("equipement_id"),
            started_at: r.get("started_at"),
            intervention_type: r.get("intervention_type"),
            failure_mode_code: r.get("failure_mode_code"),
            technician_id: r.get("technician_id"),
            duration_h: r.get("duration_h"),
            description: r.get("description"),
        })
        .collect())
}

pub async fn amdec(pool: &Pool) -> Result<Vec<AmdecRecord>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT equipement_id, failure_mode_code, coalesce(criticality, '') AS criticality,
                    coalesce(recommended_action, '') AS recommended_action
             FROM amdec ORDER BY equipement_id, failure_mode_code",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AmdecRecord {
            equipement_id: r.get("equipement_id"),
            failure_mode_code: r.get("failure_mode_code"),
            criticality: r.get("criticality"),
            recommended_action: r.get("recommended_action"),
        })
        .collect())
}

/// One open work order (table `work_orders`, state planned or in progress).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenWorkOrderRecord {
    pub work_order_id: String,
    pub equipement_id: String,
    pub alert_id: Option<String>,
    pub failure_mode_code: String,
    /// 0–100 (docs/maintenance.md, "Priority").
    pub priority: f64,
    pub technician_id: String,
    pub planned_start: DateTime<Utc>,
    pub estimated_duration_h: f64,
    pub description: String,
    pub in_progress: bool,
}

/// The work orders planned or in progress whose planned start is before `until`, or only
/// the one named `only`, oldest planned start first.
pub async fn open_work_orders(
    pool: &Pool,
    until: DateTime<Utc>,
    only: Option<&str>,
) -> Result<Vec<OpenWorkOrderRecord>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT work_order_id, equipement_id, alert_id, coalesce(failure_mode_code, '') AS failure_mode_code,
                    priority, technician_id, planned_start, estimated_duration_h, description, state
             FROM work_orders
             WHERE state IN ('planned', 'in_progress') AND planned_start < $1
               AND ($2::text IS NULL OR work_order_id = $2)
             ORDER BY planned_start, work_order_id",
            &[&until, &only],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OpenWorkOrderRecord {
            work_order_id: r.get("work_order_id"),
            equipement_id: r.get("equipement_id"),
            alert_id: r.get("alert_id"),
            failure_mode_code: r.get("failure_mode_code"),
            priority: r.get("priority"),
            technician_id: r.get("technician_id"),
            planned_start: r.get("planned_start"),
            estimated_duration_h: r.get("estimated_duration_h"),
            description: r.get("description"),
            in_progress: r.get::<_, &str>("state") == "in_progress",
        })
        .collect())
}
