//! What each kind of dataset looks like once clean: its canonical columns, their types, which
//! ones a row cannot live without, and which ones a spreadsheet merges.

use std::fmt;
use std::str::FromStr;

use crate::error::PrepError;

/// The datasets the pipeline knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// AMDEC / FMEA table (ours or a user's export, e.g. the UWA haul-truck FMEA).
    Amdec,
    /// GMAO (CMMS) intervention history.
    Gmao,
    /// Technicians' workload per period.
    Workload,
    /// The AI4I 2020 predictive-maintenance dataset.
    Ai4i,
    /// A real maintenance work-order log (UWA excavator MWO).
    Mwo,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Amdec, Kind::Gmao, Kind::Workload, Kind::Ai4i, Kind::Mwo];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Amdec => "amdec",
            Kind::Gmao => "gmao",
            Kind::Workload => "workload",
            Kind::Ai4i => "ai4i",
            Kind::Mwo => "mwo",
        }
    }

    /// The canonical columns, in output order.
    pub fn columns(self) -> &'static [ColumnSpec] {
        match self {
            Kind::Amdec => AMDEC,
            Kind::Gmao => GMAO,
            Kind::Workload => WORKLOAD,
            Kind::Ai4i => AI4I,
            Kind::Mwo => MWO,
        }
    }

    pub fn column(self, name: &str) -> Option<&'static ColumnSpec> {
        self.columns().iter().find(|c| c.name == name)
    }

    /// The class label, for the stratified split.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Kind::Amdec => Some("criticality"),
            Kind::Ai4i => Some("machine_failure"),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = PrepError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PrepError::UnknownKind(s.to_string()))
    }
}

/// How a cell is parsed and written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Int,
    Float,
    /// Written as ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    Date,
}

/// What a missing value means for the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The header must have it and every row must have a value: else the row is dropped.
    Required,
    /// Not required in the header, but when the column is there a row without it is dropped
    /// (e.g. the equipment id of an AMDEC row: a user's FMEA may have no such column at all).
    KeyIfPresent,
    /// Numeric gaps are imputed with the column mean; text gaps stay empty.
    Optional,
}

/// One canonical column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub need: Need,
    /// Level in the merged-cell hierarchy (0 = outermost), for spreadsheets that leave the
    /// cells of a merged block blank after the first row.
    pub merged: Option<u8>,
    /// Always written, even when the input has no such column (derived columns).
    pub derived: bool,
}

const fn col(name: &'static str, ty: Ty, need: Need) -> ColumnSpec {
    ColumnSpec { name, ty, need, merged: None, derived: false }
}
const fn merged(name: &'static str, ty: Ty, need: Need, level: u8) -> ColumnSpec {
    ColumnSpec { name, ty, need, merged: Some(level), derived: false }
}
const fn derived(name: &'static str, ty: Ty) -> ColumnSpec {
    ColumnSpec { name, ty, need: Need::Optional, merged: None, derived: true }
}

use Need::{KeyIfPresent, Optional, Required};
use Ty::{Date, Float, Int, Text};

static AMDEC: &[ColumnSpec] = &[
    merged("equipement_id", Text, KeyIfPresent, 0),
    merged("equipment_type", Text, Optional, 0),
    merged("subsystem", Text, Optional, 0),
    merged("component", Text, Optional, 1),
    merged("sub_component", Text, Optional, 2),
    col("failure_mode_code", Text, Optional),
    merged("failure_mode", Text, Required, 3),
    merged("effect", Text, Optional, 4),
    col("cause", Text, Optional),
    col("current_controls", Text, Optional),
    col("severity", Int, Required),
    col("occurrence", Int, Required),
    col("detection", Int, Required),
    derived("rpn", Int),
    derived("rpn_stated_mismatch", Int),
    col("criticality", Text, Optional),
    col("recommended_action", Text, Optional),
];

static GMAO: &[ColumnSpec] = &[
    col("intervention_id", Text, Required),
    col("equipement_id", Text, Required),
    col("equipment_type", Text, Optional),
    col("started_at", Date, Required),
    col("ended_at", Date, Optional),
    col("intervention_type", Text, Required),
    col("failure_mode_code", Text, Optional),
    col("description", Text, Optional),
    col("technician_id", Text, Optional),
    col("duration_h", Float, Optional),
    col("cost_eur", Float, Optional),
    col("status", Text, Optional),
];

static WORKLOAD: &[ColumnSpec] = &[
    merged("technician_id", Text, Required, 0),
    merged("technician_name", Text, Optional, 0),
    merged("skills", Text, Optional, 0),
    col("period_start", Date, Required),
    col("planned_hours", Float, Optional),
    col("actual_hours", Float, Optional),
    col("interventions", Int, Optional),
    col("availability_pct", Float, Optional),
];

static AI4I: &[ColumnSpec] = &[
    col("udi", Int, Required),
    col("product_id", Text, Optional),
    col("type", Text, Required),
    col("air_temperature_k", Float, Optional),
    col("process_temperature_k", Float, Optional),
    col("rotational_speed_rpm", Float, Optional),
    col("torque_nm", Float, Optional),
    col("tool_wear_min", Float, Optional),
    col("machine_failure", Int, Required),
    col("twf", Int, Optional),
    col("hdf", Int, Optional),
    col("pwf", Int, Optional),
    col("osf", Int, Optional),
    col("rnf", Int, Optional),
];

static MWO: &[ColumnSpec] = &[
    col("id", Int, Required),
    col("bsc_start_date", Date, Required),
    col("asset", Text, Required),
    col("short_text", Text, Required),
    col("pm_type", Text, Optional),
    col("cost", Float, Optional),
    col("running_time_days", Float, Optional),
    col("major_system", Text, Optional),
    col("part", Text, Optional),
    col("action", Text, Optional),
    col("variant", Text, Optional),
    col("failure_mode", Text, Optional),
    col("location", Text, Optional),
    col("comments", Text, Optional),
    col("func_location", Text, Optional),
    col("susp_sugg", Int, Optional),
    col("rule", Text, Optional),
];
