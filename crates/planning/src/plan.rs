//! The plan the planner answers with: each order's technician-days, what could not be done and
//! why, each technician's load, and the plan's figures (lateness, load spread, handovers).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::Week;

/// Below this, hours and capacities count as zero.
pub(crate) const EPS: f64 = 1e-9;

/// One technician's share of an order on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub order_id: String,
    pub technician_id: String,
    pub day: NaiveDate,
    pub hours: f64,
    /// Travel or setup added to that technician's day by this order.
    pub travel_hours: f64,
    /// Calendar days after the deadline (0 when on time).
    pub lateness_days: i64,
    pub pinned: bool,
}

/// Why an order could not be planned as asked (the rest of the plan stands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueCode {
    /// No technician has the skill.
    NoSkill,
    /// Skilled technicians exist but none works on an allowed day of the horizon.
    NoAvailability,
    /// Not enough free hours left among the skilled technicians.
    NoCapacity,
    /// A critical order placed after its deadline (or not at all): no capacity could meet it.
    DeadlineMissed,
    /// Released after the horizon: planned in a later week.
    ReleasedLater,
    /// A manual pin that overloads the technician's day.
    PinOverload,
    /// A manual pin on a technician without the skill.
    PinUnskilled,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::NoSkill => "no_skill",
            IssueCode::NoAvailability => "no_availability",
            IssueCode::NoCapacity => "no_capacity",
            IssueCode::DeadlineMissed => "deadline_missed",
            IssueCode::ReleasedLater => "released_later",
            IssueCode::PinOverload => "pin_overload",
            IssueCode::PinUnskilled => "pin_unskilled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub code: IssueCode,
    pub order_id: String,
    /// French, for the supervisor.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TechnicianLoad {
    pub technician_id: String,
    pub planned_hours: f64,
    pub capacity_hours: f64,
    /// Per day of the horizon (work and travel).
    pub day_hours: Vec<f64>,
    pub day_capacity: Vec<f64>,
}

impl TechnicianLoad {
    pub fn utilisation_pct(&self) -> Option<f64> {
        (self.capacity_hours > EPS).then(|| 100.0 * self.planned_hours / self.capacity_hours)
    }
}

/// An order that changed place in a re-plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub order_id: String,
    pub from_technician: String,
    pub from_day: NaiveDate,
    /// `None`: no longer planned this week.
    pub to_technician: Option<String>,
    pub to_day: Option<NaiveDate>,
    /// French, for the supervisor.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub week: Week,
    pub days: Vec<NaiveDate>,
    pub assignments: Vec<Assignment>,
    pub unplanned: Vec<String>,
    pub issues: Vec<Issue>,
    pub loads: Vec<TechnicianLoad>,
    /// Σ priority weight × days late; an unplanned order counts as late until next Monday.
    pub weighted_lateness: f64,
    /// Highest minus lowest weekly utilisation among technicians who work this week, in points.
    pub load_spread_pct: f64,
    /// Started orders now with another technician.
    pub handovers: u32,
    #[serde(default)]
    pub moves: Vec<Move>,
    #[serde(default)]
    pub trigger_alert_id: Option<String>,
}

impl Plan {
    pub fn assignments_of<'a>(&'a self, order_id: &'a str) -> impl Iterator<Item = &'a Assignment> + 'a {
        self.assignments.iter().filter(move |a| a.order_id == order_id)
    }
}
