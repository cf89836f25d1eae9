//! The alert briefing: what the knowledge base knows that bears on one alert. The AMDEC
//! modes of the alert's equipment most consistent with its signal (a temperature episode
//! points to overheating and cooling modes, a vibration one to bearings, imbalance,
//! misalignment), the most similar past interventions on this machine then on machines of
//! its type, and the technicians who did them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::fold;
use crate::answer::Hit;
use crate::error::KnowledgeError;
use crate::index::{KnowledgeBase, Scope};
use crate::record::Source;

/// What the briefing needs of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInfo {
    pub alert_id: String,
    pub equipement_id: String,
    /// Machine-readable rule, e.g. `temperature_critical`.
    pub rule: String,
    /// Human-readable reason.
    pub reason: String,
}

/// A technician suggested for the alert.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SuggestedTechnician {
    pub technician_id: String,
    pub on_this_equipment: u32,
    pub on_this_type: u32,
}

/// The briefing of one alert.
#[derive(Debug, Clone, Serialize)]
pub struct Briefing {
    pub alert_id: String,
    pub equipement_id: String,
    pub equipment_type: Option<String>,
    pub signal: String,
    pub failure_modes: Vec<Hit>,
    pub similar_interventions: Vec<Hit>,
    pub technicians: Vec<SuggestedTechnician>,
}

/// The kind of signal an alert is about, and the failure vocabulary it points to (English;
/// the lexicon brings the French).
fn signal_of(alert: &AlertInfo) -> (&'static str, &'static str) {
    let text = fold(&format!("{} {}", alert.rule, alert.reason));
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["temp", "thermal", "thermique", "surchauffe", "overheat", "chaleur"]) {
        ("temperature", "overheating cooling temperature lubrication fan radiator")
    } else if has(&["vib", "acceleration", "balourd", "imbalance"]) {
        ("vibration", "bearing imbalance misalignment vibration loose wear")
    } else if has(&["pressure", "pression"]) {
        ("pressure", "pressure leak blocked seal cavitation valve")
    } else if has(&["current", "courant", "voltage", "tension", "power", "puissance", "electri"]) {
        ("electrical", "electrical overload short circuit insulation winding motor")
    } else if has(&["flow", "debit"]) {
        ("flow", "flow blocked cavitation leak filter")
    } else if has(&["no_data", "nodata", "silence", "missing"]) {
        ("no data", "sensor wiring connector communication")
    } else {
        ("other", "failure damage wear")
    }
}

fn hits_of(kb: &KnowledgeBase, words: &str, limit: usize, scope: &Scope) -> Result<Vec<Hit>, KnowledgeError> {
    Ok(kb.search_in(words, limit, scope)?.hits)
}

/// Builds the briefing of an alert, with at most `limit` lines per section.
pub fn brief(kb: &KnowledgeBase, alert: &AlertInfo, limit: usize) -> Result<Briefing, KnowledgeError> {
    let eq = alert.equipement_id.trim();
    let (signal, words) = signal_of(alert);
    let equipment_type = kb
        .records_where(|r| r.equipement_id.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(eq)))
        .into_iter()
        .find_map(|r| r.equipment_type);

    let amdec = |equipment: Option<String>, equipment_type: Option<String>| Scope {
        sources: Some(vec![Source::Amdec]),
        equipment,
        equipment_type,
    };
    // The equipment's own AMDEC first; a machine without one borrows its type's.
    let mut modes = hits_of(kb, words, limit, &amdec(Some(eq.to_string()), None))?;
    if modes.is_empty() {
        if let Some(t) = &equipment_type {
            modes = hits_of(kb, words, limit, &amdec(None, Some(t.clone())))?;
        }
    }
    if modes.is_empty() {
        // Nothing consistent with the signal: the equipment's modes by criticality, unmatched.
        let mut rows = kb.records_where(|r| {
            r.source() == Source::Amdec && r.equipement_id.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(eq))
        });
        rows.sort_by_key(|r| std::cmp::Reverse(r.rpn.unwrap_or(0)));
        modes = rows.into_iter().take(limit).map(|record| Hit { record, score: 0.0, matched: Vec::new() }).collect();
    }

    let history = |equipment: Option<String>, equipment_type: Option<String>| Scope {
        sources: Some(vec![Source::Intervention, Source::WorkOrder]),
        equipment,
        equipment_type,
    };
    let here = hits_of(kb, words, 200, &history(Some(eq.to_string()), None))?;
    let same_type = match &equipment_type {
        Some(t) => hits_of(kb, words, 200, &history(None, Some(t.clone())))?
            .into_iter()
            .filter(|h| !h.record.equipement_id.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(eq)))
            .collect(),
        None => Vec::new(),
    };
    let mut technicians: BTreeMap<String, SuggestedTechnician> = BTreeMap::new();
    for (h, mine) in here.iter().map(|h| (h, true)).chain(same_type.iter().map(|h| (h, false))) {
        let Some(t) = h.record.technician_id.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { continue };
        let e = technicians.entry(t.to_string()).or_insert_with(|| SuggestedTechnician {
            technician_id: t.to_string(),
            on_this_equipment: 0,
            on_this_type: 0,
        });
        if mine {
            e.on_this_equipment += 1;
        } else {
            e.on_this_type += 1;
        }
    }
    let mut technicians: Vec<SuggestedTechnician> = technicians.into_values().collect();
    technicians.sort_by(|a, b| {
        (b.on_this_equipment, b.on_this_type)
            .cmp(&(a.on_this_equipment, a.on_this_type))
            .then(a.technician_id.cmp(&b.technician_id))
    });
    technicians.truncate(3);
    let similar_interventions = here.into_iter().chain(same_type).take(limit).collect();
    Ok(Briefing {
        alert_id: alert.alert_id.clone(),
        equipement_id: eq.to_string(),
        equipment_type,
        signal: signal.to_string(),
        failure_modes: modes,
        similar_interventions,
        technicians,
    })
}
