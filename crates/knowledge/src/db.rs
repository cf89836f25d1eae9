//! The database mode: the knowledge base built from the reference tables (`amdec`,
//! `gmao_interventions`, read by `proact_store::knowledge`), and kept current one
//! intervention at a time.

use deadpool_postgres::Pool;
use proact_store::knowledge::{AmdecRow, InterventionRow};

use crate::error::KnowledgeError;
use crate::index::KnowledgeBase;
use crate::record::{Record, RowRef, Source};

/// Where database rows say they come from, in citations.
pub const DATABASE: &str = "database";

/// An AMDEC row of the table, cited by its key `equipement_id/failure_mode_code`.
pub fn amdec_record(r: AmdecRow) -> Record {
    Record {
        source: Some(Source::Amdec),
        origin: DATABASE.into(),
        row: Some(RowRef::Id(format!("{}/{}", r.equipement_id, r.failure_mode_code))),
        equipement_id: Some(r.equipement_id),
        equipment_type: r.equipment_type,
        subsystem: r.subsystem,
        component: r.component,
        sub_component: r.sub_component,
        failure_mode_code: Some(r.failure_mode_code),
        failure_mode: Some(r.failure_mode),
        effect: r.effect,
        cause: r.cause,
        current_controls: r.current_controls,
        severity: Some(r.severity.into()),
        occurrence: Some(r.occurrence.into()),
        detection: Some(r.detection.into()),
        rpn: Some(r.rpn.into()),
        criticality: r.criticality,
        recommended_action: r.recommended_action,
        ..Record::default()
    }
}

/// An intervention of the table, cited by its id.
pub fn intervention_record(r: InterventionRow) -> Record {
    let date = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    Record {
        source: Some(Source::Intervention),
        origin: DATABASE.into(),
        row: Some(RowRef::Id(r.intervention_id)),
        equipement_id: Some(r.equipement_id),
        equipment_type: r.equipment_type,
        started_at: Some(date(r.started_at)),
        ended_at: r.ended_at.map(date),
        intervention_type: Some(r.intervention_type),
        failure_mode_code: r.failure_mode_code,
        description: r.description,
        technician_id: r.technician_id,
        duration_h: r.duration_h,
        cost_eur: r.cost_eur,
        status: r.status,
        cause: r.cause_found.filter(|s| !s.is_empty()),
        action: r.action_taken.filter(|s| !s.is_empty()),
        ..Record::default()
    }
}

fn unavailable(e: proact_store::StoreError) -> KnowledgeError {
    KnowledgeError::Unavailable(format!("reading the reference tables: {e}"))
}

/// Every AMDEC row and intervention of the database.
pub async fn load(pool: &Pool) -> Result<Vec<Record>, KnowledgeError> {
    let mut records: Vec<Record> =
        proact_store::knowledge::amdec_rows(pool).await.map_err(unavailable)?.into_iter().map(amdec_record).collect();
    records.extend(
        proact_store::knowledge::interventions(pool).await.map_err(unavailable)?.into_iter().map(intervention_record),
    );
    Ok(records)
}

/// Re-reads one intervention and makes its current state searchable (a new, updated or
/// closed work order). Returns false when the database has no such intervention.
pub async fn refresh_intervention(kb: &KnowledgeBase, pool: &Pool, id: &str) -> Result<bool, KnowledgeError> {
    match proact_store::knowledge::intervention_by_id(pool, id).await.map_err(unavailable)? {
        Some(row) => {
            kb.upsert(vec![intervention_record(row)])?;
            Ok(true)
        }
        None => Ok(false),
    }
}
