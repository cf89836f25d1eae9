//! The planner's inputs: ISO weeks, work orders, technicians, travel times, and the checks
//! that turn a bad input into an error naming the order, technician or field.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use crate::PlanningError;

/// An ISO week (`YYYY-Www`); its working days are Monday to Friday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Week {
    pub year: i32,
    pub week: u32,
}

impl Week {
    pub fn monday(self) -> NaiveDate {
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon).expect("checked at parse")
    }

    /// The five working days, Monday first.
    pub fn days(self) -> Vec<NaiveDate> {
        let monday = self.monday();
        (0..5).map(|i| monday + Days::new(i)).collect()
    }

    /// The week a date falls in.
    pub fn of(date: NaiveDate) -> Week {
        let iso = date.iso_week();
        Week { year: iso.year(), week: iso.week() }
    }
}

impl FromStr for Week {
    type Err = PlanningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| PlanningError::InvalidWeek { week: s.to_string(), reason: why.to_string() };
        let (y, w) = s.trim().split_once("-W").ok_or_else(|| bad("expected YYYY-Www, e.g. 2026-W10"))?;
        let year: i32 = y.parse().map_err(|_| bad("the year is not a number"))?;
        let week: u32 = w.parse().map_err(|_| bad("the week is not a number"))?;
        if w.len() != 2 {
            return Err(bad("the week has two digits, e.g. W03"));
        }
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
            .ok_or_else(|| bad(&format!("{year} has no ISO week {week}")))?;
        Ok(Week { year, week })
    }
}

impl TryFrom<String> for Week {
    type Error = PlanningError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Week> for String {
    fn from(w: Week) -> String {
        w.to_string()
    }
}

impl fmt::Display for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-W{:02}", self.year, self.week)
    }
}

/// How urgent an order is. Its weight multiplies each day of lateness in the objective; a
/// critical order's deadline is a constraint (reported when no capacity can meet it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    pub fn weight(self) -> i64 {
        match self {
            Priority::Critical => 8,
            Priority::High => 4,
            Priority::Medium => 2,
            Priority::Low => 1,
        }
    }

    /// Days from release to the deadline when the order gives none: a critical repair is
    /// done the next day at the latest.
    pub fn default_deadline_days(self) -> u64 {
        match self {
            Priority::Critical => 1,
            Priority::High => 3,
            Priority::Medium => 7,
            Priority::Low => 14,
        }
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Priority::Critical => "critique",
            Priority::High => "haute",
            Priority::Medium => "moyenne",
            Priority::Low => "basse",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "critical" | "critique" | "1" => Ok(Priority::Critical),
            "high" | "haute" | "2" => Ok(Priority::High),
            "medium" | "moyenne" | "3" | "" => Ok(Priority::Medium),
            "low" | "basse" | "4" => Ok(Priority::Low),
            other => Err(format!("unknown priority `{other}`; expected critical, high, medium or low")),
        }
    }
}

fn one() -> u32 {
    1
}

/// An open work order to place on a technician and a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    #[serde(default)]
    pub equipement_id: String,
    #[serde(default)]
    pub failure_mode_code: String,
    /// The trade needed (a value of the workload's `skills`, e.g. `mecanique`).
    pub skill: String,
    #[serde(default)]
    pub priority: Priority,
    /// Not before this day (default: the start of the horizon).
    #[serde(default)]
    pub release: Option<NaiveDate>,
    /// Done by this day (default: release + [`Priority::default_deadline_days`]).
    #[serde(default)]
    pub deadline: Option<NaiveDate>,
    /// Hours of work left.
    pub estimated_hours: f64,
    /// Technicians working on it together, the same day.
    #[serde(default = "one")]
    pub crew: u32,
    #[serde(default)]
    pub pinned_technician: Option<String>,
    #[serde(default)]
    pub pinned_day: Option<NaiveDate>,
    /// Work has begun: its technician keeps it unless lateness forces otherwise.
    #[serde(default)]
    pub started: bool,
    /// Its technician and day were told: moving it costs a change of plan.
    #[serde(default)]
    pub announced: bool,
    /// Where a started or announced order currently is.
    #[serde(default)]
    pub current_technician: Option<String>,
    #[serde(default)]
    pub current_day: Option<NaiveDate>,
    /// Where the work is, for travel times between sites.
    #[serde(default)]
    pub site: Option<String>,
    /// The alert this order answers.
    #[serde(default)]
    pub alert_id: Option<String>,
    #[serde(default)]
    pub description: String,
}

impl Order {
    /// A plain order with the defaults; tests and generators set the rest.
    pub fn new(id: &str, skill: &str, priority: Priority, hours: f64) -> Order {
        Order {
            id: id.to_string(),
            equipement_id: String::new(),
            failure_mode_code: String::new(),
            skill: skill.to_string(),
            priority,
            release: None,
            deadline: None,
            estimated_hours: hours,
            crew: 1,
            pinned_technician: None,
            pinned_day: None,
            started: false,
            announced: false,
            current_technician: None,
            current_day: None,
            site: None,
            alert_id: None,
            description: String::new(),
        }
    }

    /// The release day, given the horizon's first day.
    pub fn release_on(&self, first_day: NaiveDate) -> NaiveDate {
        self.release.unwrap_or(first_day)
    }

    /// The deadline, given or derived from the priority.
    pub fn deadline_on(&self, first_day: NaiveDate) -> NaiveDate {
        self.deadline.unwrap_or_else(|| {
            let release = self.release_on(first_day).max(first_day);
            release + Days::new(self.priority.default_deadline_days())
        })
    }
}

/// A technician and when they can work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Technician {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub skills: Vec<String>,
    /// Hours a day available for work orders.
    pub daily_hours: f64,
    #[serde(default)]
    pub absent_days: Vec<NaiveDate>,
    /// Days with other hours than `daily_hours` (part-time, training).
    #[serde(default)]
    pub day_hours: BTreeMap<NaiveDate, f64>,
}

impl Technician {
    pub fn new(id: &str, skills: &[&str], daily_hours: f64) -> Technician {
        Technician {
            id: id.to_string(),
            name: String::new(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            daily_hours,
            absent_days: Vec::new(),
            day_hours: BTreeMap::new(),
        }
    }

    pub fn has_skill(&self, skill: &str) -> bool {
        self.skills.iter().any(|s| s == skill)
    }

    pub fn hours_on(&self, day: NaiveDate) -> f64 {
        if self.absent_days.contains(&day) {
            0.0
        } else {
            self.day_hours.get(&day).copied().unwrap_or(self.daily_hours)
        }
    }
}

/// Travel or setup time between two sites, counted once per site a technician adds to a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Travel {
    pub from: String,
    pub to: String,
    pub hours: f64,
}

/// Everything one plan is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInput {
    pub week: Week,
    pub technicians: Vec<Technician>,
    pub orders: Vec<Order>,
    #[serde(default)]
    pub travel: Vec<Travel>,
}

impl PlanInput {
    /// Rejects what cannot be planned at all: duplicate ids, unknown technicians, durations
    /// that are not positive, pins outside the week. (What is only infeasible, such as an
    /// order nobody is skilled for, is planned around and reported in the plan instead.)
    pub fn validate(&self) -> Result<(), PlanningError> {
        let mut techs = HashSet::new();
        for t in &self.technicians {
            if t.id.trim().is_empty() {
                return Err(PlanningError::Invalid { what: "technician".into(), reason: "empty id".into() });
            }
            if !techs.insert(t.id.as_str()) {
                return Err(PlanningError::Invalid {
                    what: format!("technician {}", t.id),
                    reason: "listed twice".into(),
                });
            }
            let bad_hours = std::iter::once(t.daily_hours).chain(t.day_hours.values().copied());
            for h in bad_hours {
                if !h.is_finite() || !(0.0..=24.0).contains(&h) {
                    return Err(PlanningError::Invalid {
                        what: format!("technician {}", t.id),
                        reason: format!("daily hours {h} are not between 0 and 24"),
                    });
                }
            }
        }
        let days = self.week.days();
        let mut ids = HashSet::new();
        for o in &self.orders {
            if o.id.trim().is_empty() {
                return Err(PlanningError::Invalid { what: "order".into(), reason: "empty id".into() });
            }
            if !ids.insert(o.id.as_str()) {
                return Err(PlanningError::Invalid { what: format!("order {}", o.id), reason: "listed twice".into() });
            }
            if !o.estimated_hours.is_finite() || o.estimated_hours <= 0.0 {
                return Err(PlanningError::BadDuration { order: o.id.clone(), hours: o.estimated_hours });
            }
            if o.crew == 0 {
                return Err(PlanningError::Invalid { what: format!("order {}", o.id), reason: "crew is 0".into() });
            }
            for tech in [&o.pinned_technician, &o.current_technician].into_iter().flatten() {
                if !techs.contains(tech.as_str()) {
                    return Err(PlanningError::UnknownTechnician { order: o.id.clone(), technician: tech.clone() });
                }
            }
            if let Some(day) = o.pinned_day {
                if !days.contains(&day) {
                    return Err(PlanningError::Invalid {
                        what: format!("order {}", o.id),
                        reason: format!("pinned day {day} is not a working day of {}", self.week),
                    });
                }
            }
            if let (Some(r), Some(d)) = (o.release, o.deadline) {
                if d < r {
                    return Err(PlanningError::Invalid {
                        what: format!("order {}", o.id),
                        reason: format!("deadline {d} is before release {r}"),
                    });
                }
            }
        }
        for t in &self.travel {
            if !t.hours.is_finite() || t.hours < 0.0 {
                return Err(PlanningError::Invalid {
                    what: format!("travel {} → {}", t.from, t.to),
                    reason: format!("{} hours", t.hours),
                });
            }
        }
        Ok(())
    }

    pub fn travel_hours(&self, from: &str, to: &str) -> f64 {
        if from == to {
            return 0.0;
        }
        self.travel
            .iter()
            .find(|t| (t.from == from && t.to == to) || (t.from == to && t.to == from))
            .map_or(0.0, |t| t.hours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_parse_and_reject_what_does_not_exist() {
        let w: Week = "2026-W10".parse().unwrap();
        assert_eq!(w.monday(), NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
        assert_eq!(w.days().len(), 5);
        assert!("2026-W53".parse::<Week>().is_ok(), "2026 has 53 ISO weeks");
        let err = "2025-W53".parse::<Week>().unwrap_err().to_string();
        assert!(err.contains("2025 has no ISO week 53"), "{err}");
        assert!("2026-W00".parse::<Week>().is_err());
        assert!("2026-10".parse::<Week>().unwrap_err().to_string().contains("YYYY-Www"));
        assert_eq!(Week::of(NaiveDate::from_ymd_opt(2026, 3, 6).unwrap()), w);
    }

    #[test]
    fn deadlines_follow_priority_when_not_given() {
        let monday = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let mut o = Order::new("A", "mecanique", Priority::Critical, 2.0);
        o.release = Some(monday + Days::new(2));
        assert_eq!(o.deadline_on(monday), monday + Days::new(3));
    }
}
