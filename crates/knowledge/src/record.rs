//! What the knowledge base holds: one [`Record`] per AMDEC/FMEA row, GMAO intervention or
//! work order, made from the tables the data preparation cleaned (so it holds exactly the
//! rows the cleaning report kept), with where each came from for its citation.

use std::path::Path;

use proact_dataprep::{clean_file, Cell, CleanOptions, CleanTable, Kind, PrepError};
use serde::Serialize;

use crate::error::KnowledgeError;

/// Where a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An AMDEC / FMEA row.
    Amdec,
    /// A GMAO intervention (ours: `gmao_interventions`, `GMAO_integrator_clean.csv`).
    Intervention,
    /// A maintenance work order of an excavator-style log (kind `mwo`).
    WorkOrder,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Amdec => "amdec",
            Source::Intervention => "intervention",
            Source::WorkOrder => "work_order",
        }
    }
}

/// Which row of its source a record is: the 1-based data row of a file, or the
/// intervention / work-order id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum RowRef {
    Row(u64),
    Id(String),
}

impl std::fmt::Display for RowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowRef::Row(r) => write!(f, "row {r}"),
            RowRef::Id(id) => f.write_str(id),
        }
    }
}

/// One row of knowledge. Text columns are the canonical columns of the preparation schema
/// (docs/data.md); a work order's columns are mapped onto them (asset → `equipement_id`,
/// major system → `subsystem`, part → `component`, short text and comments →
/// `description`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Record {
    #[serde(skip)]
    pub source: Option<Source>,
    /// The file the row was read from, or `database`.
    #[serde(skip)]
    pub origin: String,
    #[serde(skip)]
    pub row: Option<RowRef>,
    pub equipement_id: Option<String>,
    pub equipment_type: Option<String>,
    pub subsystem: Option<String>,
    pub component: Option<String>,
    pub sub_component: Option<String>,
    pub failure_mode_code: Option<String>,
    pub failure_mode: Option<String>,
    pub effect: Option<String>,
    pub cause: Option<String>,
    pub current_controls: Option<String>,
    pub severity: Option<i64>,
    pub occurrence: Option<i64>,
    pub detection: Option<i64>,
    pub rpn: Option<i64>,
    pub criticality: Option<String>,
    pub recommended_action: Option<String>,
    pub intervention_type: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub description: Option<String>,
    pub action: Option<String>,
    pub technician_id: Option<String>,
    pub duration_h: Option<f64>,
    pub cost_eur: Option<f64>,
    pub status: Option<String>,
}

/// The searchable text fields, with the group they are indexed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// What the row is about: subsystem, component, sub-component, equipment.
    Part,
    /// The failure mode.
    Mode,
    /// Everything else said about it: effect, cause, controls, actions, descriptions.
    Text,
}

impl Record {
    pub fn source(&self) -> Source {
        self.source.unwrap_or(Source::Amdec)
    }

    /// The key an update replaces: the same source row, or the same intervention id.
    pub fn key(&self) -> String {
        match &self.row {
            Some(RowRef::Id(id)) => format!("{}:{id}", self.source().name()),
            Some(RowRef::Row(r)) => format!("{}:{}:{r}", self.source().name(), self.origin),
            None => format!("{}:{}", self.source().name(), self.origin),
        }
    }

    /// Each non-empty text field with its name and group.
    pub fn text_fields(&self) -> Vec<(&'static str, Group, &str)> {
        let all: [(&'static str, Group, &Option<String>); 15] = [
            ("subsystem", Group::Part, &self.subsystem),
            ("component", Group::Part, &self.component),
            ("sub_component", Group::Part, &self.sub_component),
            ("equipement_id", Group::Part, &self.equipement_id),
            ("equipment_type", Group::Part, &self.equipment_type),
            ("failure_mode", Group::Mode, &self.failure_mode),
            ("failure_mode_code", Group::Mode, &self.failure_mode_code),
            ("effect", Group::Text, &self.effect),
            ("cause", Group::Text, &self.cause),
            ("current_controls", Group::Text, &self.current_controls),
            ("recommended_action", Group::Text, &self.recommended_action),
            ("description", Group::Text, &self.description),
            ("action", Group::Text, &self.action),
            ("intervention_type", Group::Text, &self.intervention_type),
            ("technician_id", Group::Text, &self.technician_id),
        ];
        all.into_iter()
            .filter_map(|(n, g, v)| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| (n, g, s)))
            .collect()
    }

    /// The value of a numeric column by name.
    pub fn number(&self, field: NumField) -> Option<i64> {
        match field {
            NumField::Severity => self.severity,
            NumField::Occurrence => self.occurrence,
            NumField::Detection => self.detection,
            NumField::Rpn => self.rpn,
        }
    }

    /// The JSON line of this record: source, row, and the canonical columns of its kind
    /// (null when empty), so every line of one source has the same keys.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        map.insert("source".into(), self.source().name().into());
        map.insert("file".into(), self.origin.clone().into());
        map.insert("row".into(), serde_json::to_value(&self.row).unwrap_or_default());
        let serde_json::Value::Object(all) = serde_json::to_value(self).unwrap_or_default() else { return map };
        let wanted: &[&str] = match self.source() {
            Source::Amdec => AMDEC_COLUMNS,
            Source::Intervention => INTERVENTION_COLUMNS,
            Source::WorkOrder => WORK_ORDER_COLUMNS,
        };
        for name in wanted {
            map.insert((*name).into(), all.get(*name).cloned().unwrap_or_default());
        }
        map
    }
}

const AMDEC_COLUMNS: &[&str] = &[
    "equipement_id",
    "equipment_type",
    "subsystem",
    "component",
    "sub_component",
    "failure_mode_code",
    "failure_mode",
    "effect",
    "cause",
    "current_controls",
    "severity",
    "occurrence",
    "detection",
    "rpn",
    "criticality",
    "recommended_action",
];
const INTERVENTION_COLUMNS: &[&str] = &[
    "equipement_id",
    "equipment_type",
    "started_at",
    "ended_at",
    "intervention_type",
    "failure_mode_code",
    "description",
    "technician_id",
    "duration_h",
    "cost_eur",
    "status",
];
const WORK_ORDER_COLUMNS: &[&str] = &[
    "equipement_id",
    "started_at",
    "intervention_type",
    "subsystem",
    "component",
    "failure_mode",
    "description",
    "action",
    "cost_eur",
];

/// The numeric columns a question can put a condition on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumField {
    Severity,
    Occurrence,
    Detection,
    Rpn,
}

impl NumField {
    pub const ALL: [NumField; 4] = [NumField::Severity, NumField::Occurrence, NumField::Detection, NumField::Rpn];

    pub fn name(self) -> &'static str {
        match self {
            NumField::Severity => "severity",
            NumField::Occurrence => "occurrence",
            NumField::Detection => "detection",
            NumField::Rpn => "rpn",
        }
    }
}

/// Reads an AMDEC / FMEA export through the data preparation's cleaner.
pub fn load_amdec(path: &Path) -> Result<Vec<Record>, KnowledgeError> {
    let cleaned = clean_file(path, Kind::Amdec, &CleanOptions::default())?;
    Ok(amdec_records(&cleaned.table, &path.display().to_string()))
}

/// Reads an intervention history: a GMAO export, or else a work-order log (kind `mwo`).
/// The GMAO reading is tried first; its error is the one reported when neither fits.
pub fn load_interventions(path: &Path) -> Result<Vec<Record>, KnowledgeError> {
    let origin = path.display().to_string();
    match clean_file(path, Kind::Gmao, &CleanOptions::default()) {
        Ok(c) => Ok(intervention_records(&c.table)),
        Err(gmao @ (PrepError::MissingColumn { .. } | PrepError::NoKnownColumn { .. })) => {
            match clean_file(path, Kind::Mwo, &CleanOptions::default()) {
                Ok(c) => Ok(work_order_records(&c.table, &origin)),
                Err(PrepError::MissingColumn { .. } | PrepError::NoKnownColumn { .. }) => Err(gmao.into()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn text(t: &CleanTable, r: usize, col: &str) -> Option<String> {
    match t.cell(r, col) {
        Cell::Empty => None,
        c => Some(c.render()).filter(|s| !s.trim().is_empty()),
    }
}

/// AMDEC rows of a clean table, cited by their 1-based data row in `origin`.
pub fn amdec_records(t: &CleanTable, origin: &str) -> Vec<Record> {
    (0..t.len())
        .map(|r| Record {
            source: Some(Source::Amdec),
            origin: origin.to_string(),
            row: Some(RowRef::Row(t.records[r])),
            equipement_id: text(t, r, "equipement_id"),
            equipment_type: text(t, r, "equipment_type"),
            subsystem: text(t, r, "subsystem"),
            component: text(t, r, "component"),
            sub_component: text(t, r, "sub_component"),
            failure_mode_code: text(t, r, "failure_mode_code"),
            failure_mode: text(t, r, "failure_mode"),
            effect: text(t, r, "effect"),
            cause: text(t, r, "cause"),
            current_controls: text(t, r, "current_controls"),
            severity: t.cell(r, "severity").as_i64(),
            occurrence: t.cell(r, "occurrence").as_i64(),
            detection: t.cell(r, "detection").as_i64(),
            rpn: t.cell(r, "rpn").as_i64(),
            criticality: text(t, r, "criticality"),
            recommended_action: text(t, r, "recommended_action"),
            ..Record::default()
        })
        .collect()
}

/// GMAO interventions of a clean table, cited by their intervention id.
pub fn intervention_records(t: &CleanTable) -> Vec<Record> {
    (0..t.len())
        .map(|r| Record {
            source: Some(Source::Intervention),
            origin: "gmao".into(),
            row: text(t, r, "intervention_id").map(RowRef::Id),
            equipement_id: text(t, r, "equipement_id"),
            equipment_type: text(t, r, "equipment_type"),
            started_at: text(t, r, "started_at"),
            ended_at: text(t, r, "ended_at"),
            intervention_type: text(t, r, "intervention_type"),
            failure_mode_code: text(t, r, "failure_mode_code"),
            description: text(t, r, "description"),
            technician_id: text(t, r, "technician_id"),
            duration_h: t.cell(r, "duration_h").as_f64(),
            cost_eur: t.cell(r, "cost_eur").as_f64(),
            status: text(t, r, "status"),
            ..Record::default()
        })
        .collect()
}

/// Work orders of a clean `mwo` table, cited by their work-order id.
pub fn work_order_records(t: &CleanTable, origin: &str) -> Vec<Record> {
    (0..t.len())
        .map(|r| {
            let description = [text(t, r, "short_text"), text(t, r, "comments")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" — ");
            Record {
                source: Some(Source::WorkOrder),
                origin: origin.to_string(),
                row: text(t, r, "id").map(|id| RowRef::Id(format!("WO-{id}"))),
                equipement_id: text(t, r, "asset"),
                started_at: text(t, r, "bsc_start_date"),
                intervention_type: text(t, r, "pm_type"),
                subsystem: text(t, r, "major_system").map(|s| s.replace('_', " ")),
                component: text(t, r, "part").map(|s| s.replace('_', " ")),
                failure_mode: text(t, r, "failure_mode"),
                description: Some(description).filter(|d| !d.is_empty()),
                action: text(t, r, "action"),
                cost_eur: t.cell(r, "cost").as_f64(),
                ..Record::default()
            }
        })
        .collect()
}
