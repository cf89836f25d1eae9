//! The reference rows the knowledge base searches: every AMDEC row and every GMAO
//! intervention, and one intervention by id (for the live update after a work order is
//! opened or closed). Columns are the canonical ones of `crates/server/migrations/0002_reference.sql`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::StoreError;

/// One row of `amdec`.
#[derive(Debug, Clone, PartialEq)]
pub struct AmdecRow {
    pub equipement_id: String,
    pub equipment_type: Option<String>,
    pub subsystem: Option<String>,
    pub component: Option<String>,
    pub sub_component: Option<String>,
    pub failure_mode_code: String,
    pub failure_mode: String,
    pub effect: Option<String>,
    pub cause: Option<String>,
    pub current_controls: Option<String>,
    pub severity: i32,
    pub occurrence: i32,
    pub detection: i32,
    pub rpn: i32,
    pub criticality: Option<String>,
    pub recommended_action: Option<String>,
}

/// One row of `gmao_interventions`.
#[derive(Debug, Clone, PartialEq)]
pub struct InterventionRow {
    pub intervention_id: String,
    pub equipement_id: String,
    pub equipment_type: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub intervention_type: String,
    pub failure_mode_code: Option<String>,
    pub description: Option<String>,
    pub technician_id: Option<String>,
    pub duration_h: Option<f64>,
    pub cost_eur: Option<f64>,
    pub status: Option<String>,
    /// What a closed work order found and did (empty for imported GMAO rows).
    pub cause_found: Option<String>,
    pub action_taken: Option<String>,
    pub outcome: Option<String>,
}

const AMDEC_COLUMNS: &str = "equipement_id, equipment_type, subsystem, component, sub_component, failure_mode_code,
     failure_mode, effect, cause, current_controls, severity, occurrence, detection, rpn, criticality,
     recommended_action";
const INTERVENTION_COLUMNS: &str = "intervention_id, equipement_id, equipment_type, started_at, ended_at,
     intervention_type, failure_mode_code, description, technician_id, duration_h, cost_eur, status,
     cause_found, action_taken, outcome";

/// Every AMDEC row, in key order.
pub async fn amdec_rows(pool: &Pool) -> Result<Vec<AmdecRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("SELECT {AMDEC_COLUMNS} FROM amdec ORDER BY equipement_id, failure_mode_code"), &[])
        .await?;
    Ok(rows
        .iter()
        .map(|r| AmdecRow {
            equipement_id: r.get(0),
            equipment_type: r.get(1),
            subsystem: r.get(2),
            component: r.get(3),
            sub_component: r.get(4),
            failure_mode_code: r.get(5),
            failure_mode: r.get(6),
            effect: r.get(7),
            cause: r.get(8),
            current_controls: r.get(9),
            severity: r.get(10),
            occurrence: r.get(11),
            detection: r.get(12),
            rpn: r.get(13),
            criticality: r.get(14),
            recommended_action: r.get(15),
        })
        .collect())
}

fn intervention(r: &tokio_postgres::Row) -> InterventionRow {
    InterventionRow {
        intervention_id: r.get(0),
        equipement_id: r.get(1),
        equipment_type: r.get(2),
        started_at: r.get(3),
        ended_at: r.get(4),
        intervention_type: r.get(5),
        failure_mode_code: r.get(6),
        description: r.get(7),
        technician_id: r.get(8),
        duration_h: r.get(9),
        cost_eur: r.get(10),
        status: r.get(11),
        cause_found: r.get(12),
        action_taken: r.get(13),
        outcome: r.get(14),
    }
}

/// Every intervention, oldest first.
pub async fn interventions(pool: &Pool) -> Result<Vec<InterventionRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {INTERVENTION_COLUMNS} FROM gmao_interventions ORDER BY started_at, intervention_id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(intervention).collect())
}

/// One intervention by id.
pub async fn intervention_by_id(pool: &Pool, id: &str) -> Result<Option<InterventionRow>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(&format!("SELECT {INTERVENTION_COLUMNS} FROM gmao_interventions WHERE intervention_id = $1"), &[&id])
        .await?;
    Ok(row.as_ref().map(intervention))
}
