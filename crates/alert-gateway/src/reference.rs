//! What the page needs from the reference data (AMDEC, workload, GMAO history; loaded by
//! `proact-prepare load`) joined with live state: the status of each equipment, and the
//! technicians to suggest for an alert.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proact_proto::v1::{Alert, Severity};
use serde::Serialize;

/// A reference query failed.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("storage: {0}")]
    Store(#[from] proact_store::StoreError),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// The overall state of one equipment on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    /// No reading for longer than the configured silence threshold (or never).
    Silent,
}

/// Decides an equipment's status: an open critical alert first, then any open alert, then
/// silence, else ok.
pub fn status(open: &[&Alert], last_reading: Option<DateTime<Utc>>, now: DateTime<Utc>, silent_after_s: i64) -> Status {
    if open.iter().any(|a| a.severity >= Severity::Critical as i32) {
        return Status::Critical;
    }
    if !open.is_empty() {
        return Status::Warning;
    }
    match last_reading {
        Some(t) if (now - t).num_seconds() <= silent_after_s => Status::Ok,
        _ => Status::Silent,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EquipmentStatus {
    pub equipement_id: String,
    pub equipment_type: String,
    /// Highest AMDEC criticality of its failure modes (`low`, `medium`, `high`), if known.
    pub criticality: String,
    pub max_rpn: i32,
    pub failure_modes: i64,
    pub status: Status,
    pub open_alerts: usize,
    pub last_reading: Option<DateTime<Utc>>,
}

/// Every equipment of the AMDEC table, plus any other with an open alert, with its status.
pub async fn equipment(
    pool: &deadpool_postgres::Pool,
    silent_after_s: i64,
) -> Result<Vec<EquipmentStatus>, ReferenceError> {
    let client = pool.get().await?;
    let amdec = proact_store::reference::amdec_summary(&client).await?;
    let open: Vec<Alert> = proact_store::alerts::open_alerts(&client, 5000).await?;
    let mut ids: BTreeMap<String, EquipmentStatus> = BTreeMap::new();
    for r in amdec {
        ids.insert(
            r.equipement_id.clone(),
            EquipmentStatus {
                equipement_id: r.equipement_id,
                equipment_type: r.equipment_type,
                criticality: r.criticality.into(),
                max_rpn: r.max_rpn,
                failure_modes: r.failure_modes,
                status: Status::Silent,
                open_alerts: 0,
                last_reading: None,
            },
        );
    }
    for a in &open {
        ids.entry(a.equipement_id.clone()).or_insert_with(|| EquipmentStatus {
            equipement_id: a.equipement_id.clone(),
            equipment_type: String::new(),
            criticality: String::new(),
            max_rpn: 0,
            failure_modes: 0,
            status: Status::Silent,
            open_alerts: 0,
            last_reading: None,
        });
    }
    let list: Vec<String> = ids.keys().cloned().collect();
    let last = proact_store::telemetry::last_readings(&client, &list).await?;
    let now = Utc::now();
    for (id, e) in ids.iter_mut() {
        let mine: Vec<&Alert> = open.iter().filter(|a| &a.equipement_id == id).collect();
        e.last_reading = last.get(id).copied().flatten();
        e.open_alerts = mine.len();
        e.status = status(&mine, e.last_reading, now, silent_after_s);
    }
    Ok(ids.into_values().collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureMode {
    pub code: String,
    pub name: String,
    pub component: String,
    pub skill: String,
    pub rpn: i32,
    pub criticality: String,
    pub recommended_action: String,
    /// The mode's AMDEC effect matches what the alert measured (e.g. heating for a temperature rule).
    pub likely: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Technician {
    pub technician_id: String,
    pub name: String,
    pub skills: Vec<String>,
    /// The needed skills this technician has.
    pub matching: Vec<String>,
    /// Alerts assigned to them and not cleared yet.
    pub open_assignments: i64,
    /// Actual / planned hours of their latest workload period, in percent.
    pub load_pct: Option<f64>,
    pub availability_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Suggestions {
    pub equipement_id: String,
    pub failure_modes: Vec<FailureMode>,
    pub skills: Vec<String>,
    /// Matching technicians first, least loaded first; then the others.
    pub technicians: Vec<Technician>,
}

/// Which AMDEC effects a rule's measurement points to.
fn likely(rule: &str, mode_text: &str) -> bool {
    let t = mode_text.to_lowercase();
    if rule.contains("temperature") {
        return t.contains("chauff") || t.contains("thermique") || t.contains("température");
    }
    if rule.contains("vibration") {
        return t.contains("vibration");
    }
    false
}

/// The technicians to suggest for `alert`: its equipment's failure modes from the AMDEC (or
/// only `mode` when given), the skills they need, and the technicians who have one of them,
/// least loaded first.
pub async fn suggestions(
    pool: &deadpool_postgres::Pool,
    alert: &Alert,
    mode: Option<&str>,
) -> Result<Suggestions, ReferenceError> {
    let client = pool.get().await?;
    let mut modes: Vec<FailureMode> = proact_store::reference::failure_modes(&client, &alert.equipement_id)
        .await?
        .into_iter()
        .map(|m| FailureMode {
            likely: likely(&alert.rule, &format!("{} {}", m.name, m.effect)),
            code: m.code,
            name: m.name,
            component: m.component,
            skill: m.skill,
            rpn: m.rpn,
            criticality: m.criticality,
            recommended_action: m.recommended_action,
        })
        .collect();
    // Likely modes first, then by RPN (the query's order; the sort is stable).
    modes.sort_by_key(|m| !m.likely);
    let chosen: Vec<&FailureMode> = match mode.filter(|m| !m.is_empty()) {
        Some(code) => modes.iter().filter(|m| m.code == code).collect(),
        None if modes.iter().any(|m| m.likely) => modes.iter().filter(|m| m.likely).collect(),
        None => modes.iter().collect(),
    };
    let mut skills: Vec<String> =
        chosen.iter().flat_map(|m| m.skill.split('|')).filter(|s| !s.is_empty()).map(str::to_string).collect();
    skills.sort();
    skills.dedup();

    let mut technicians: Vec<Technician> = proact_store::reference::technicians(&client)
        .await?
        .into_iter()
        .map(|t| Technician {
            matching: t.skills.iter().filter(|s| skills.contains(s)).cloned().collect(),
            technician_id: t.technician_id,
            name: t.name,
            skills: t.skills,
            open_assignments: t.open_assignments,
            load_pct: t.load_pct.map(|x| (x * 10.0).round() / 10.0),
            availability_pct: t.availability_pct,
        })
        .collect();
    rank(&mut technicians);
    Ok(Suggestions { equipement_id: alert.equipement_id.clone(), failure_modes: modes, skills, technicians })
}

/// Matching technicians first; among them the least loaded: fewest open assignments, then
/// lowest workload, then most available.
pub fn rank(technicians: &mut [Technician]) {
    technicians.sort_by(|a, b| {
        a.matching
            .is_empty()
            .cmp(&b.matching.is_empty())
            .then(a.open_assignments.cmp(&b.open_assignments))
            .then(a.load_pct.unwrap_or(100.0).total_cmp(&b.load_pct.unwrap_or(100.0)))
            .then(b.availability_pct.unwrap_or(0.0).total_cmp(&a.availability_pct.unwrap_or(0.0)))
            .then(a.technician_id.cmp(&b.technician_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tech(id: &str, matching: bool, open: i64, load: f64) -> Technician {
        Technician {
            technician_id: id.into(),
            name: id.into(),
            skills: vec!["mecanique".into()],
            matching: if matching { vec!["mecanique".into()] } else { vec![] },
            open_assignments: open,
            load_pct: Some(load),
            availability_pct: Some(90.0),
        }
    }

    #[test]
    fn matching_then_least_loaded() {
        let mut t = vec![
            tech("T1", false, 0, 10.0),
            tech("T2", true, 2, 10.0),
            tech("T3", true, 0, 95.0),
            tech("T4", true, 0, 80.0),
        ];
        rank(&mut t);
        let order: Vec<&str> = t.iter().map(|t| t.technician_id.as_str()).collect();
        assert_eq!(order, ["T4", "T3", "T2", "T1"]);
    }

    #[test]
    fn status_precedence() {
        let now = Utc::now();
        let crit = Alert { severity: Severity::Critical as i32, ..Default::default() };
        let warn = Alert { severity: Severity::Warning as i32, ..Default::default() };
        assert_eq!(status(&[&warn, &crit], None, now, 60), Status::Critical);
        assert_eq!(status(&[&warn], Some(now), now, 60), Status::Warning);
        assert_eq!(status(&[], Some(now - chrono::Duration::seconds(61)), now, 60), Status::Silent);
        assert_eq!(status(&[], None, now, 60), Status::Silent);
        assert_eq!(status(&[], Some(now - chrono::Duration::seconds(5)), now, 60), Status::Ok);
    }

    #[test]
    fn temperature_rules_point_to_heating_modes() {
        assert!(likely("temperature_critical", "Usure des roulements Échauffement, vibrations, grippage"));
        assert!(!likely("temperature_critical", "Fuite de garniture Fuite de fluide"));
        assert!(likely("vibration_high", "Balourd Vibrations, fissuration"));
    }
}
