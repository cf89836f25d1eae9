//! Reading the planner's inputs: technicians from the workload data, orders from a JSON or
//! CSV file, preventive orders derived from the AMDEC recommended actions (their intervals)
//! and from the history's preventive rhythm per equipment.
//!
//! The rows are plain structs ([`Sources`]) so the same derivations serve the clean CSV files
//! of `data/` and the database tables (read by `proact_store::planning`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Datelike, Days, NaiveDate, Weekday};

use crate::model::{Order, PlanInput, Priority, Technician, Week};
use crate::PlanningError;

/// One month of one technician (`Workload_clean.csv`, table `workload`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRow {
    pub technician_id: String,
    pub technician_name: String,
    pub skills: Vec<String>,
    pub period_start: NaiveDate,
    pub planned_hours: f64,
    pub availability_pct: Option<f64>,
}

/// One past intervention (`GMAO_integrator_clean.csv`, table `gmao_interventions`).
#[derive(Debug, Clone, PartialEq)]
pub struct Intervention {
    pub equipement_id: String,
    pub started_at: NaiveDate,
    pub intervention_type: String,
    pub failure_mode_code: String,
    pub technician_id: String,
    pub duration_h: Option<f64>,
    pub description: String,
}

/// One AMDEC line (`AMDEC_clean.csv`, table `amdec`).
#[derive(Debug, Clone, PartialEq)]
pub struct AmdecAction {
    pub equipement_id: String,
    pub failure_mode_code: String,
    pub criticality: String,
    pub recommended_action: String,
}

/// A CSV row: its line and its values by column.
type CsvRow = (u64, HashMap<String, String>);

/// A CSV file as rows, with the header checked for `required`.
fn read_csv(path: &Path, required: &[&str]) -> Result<Vec<CsvRow>, PlanningError> {
    let file = path.display().to_string();
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| PlanningError::File { file: file.clone(), reason: e.to_string() })?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| PlanningError::File { file: file.clone(), reason: e.to_string() })?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    for r in required {
        if !headers.iter().any(|h| h == r) {
            return Err(PlanningError::File { file, reason: format!("missing column `{r}`") });
        }
    }
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| PlanningError::File { file: file.clone(), reason: e.to_string() })?;
        let line = rec.position().map_or(0, |p| p.line());
        rows.push((line, headers.iter().cloned().zip(rec.iter().map(|v| v.trim().to_string())).collect()));
    }
    Ok(rows)
}

struct Row<'a> {
    file: &'a str,
    line: u64,
    values: &'a HashMap<String, String>,
}

impl Row<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> PlanningError {
        PlanningError::Field {
            file: self.file.to_string(),
            line: self.line,
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn str(&self, field: &str) -> &str {
        self.values.get(field).map_or("", String::as_str)
    }

    fn required(&self, field: &str) -> Result<&str, PlanningError> {
        match self.str(field) {
            "" => Err(self.err(field, "empty")),
            v => Ok(v),
        }
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>, PlanningError> {
        match self.str(field) {
            "" => Ok(None),
            v => v.parse::<f64>().map(Some).map_err(|_| self.err(field, format!("`{v}` is not a number"))),
        }
    }

    fn date(&self, field: &str) -> Result<Option<NaiveDate>, PlanningError> {
        parse_date(self.str(field)).map_err(|reason| self.err(field, reason))
    }

    fn flag(&self, field: &str) -> Result<bool, PlanningError> {
        match self.str(field).to_lowercase().as_str() {
            "" | "false" | "0" | "no" | "non" => Ok(false),
            "true" | "1" | "yes" | "oui" => Ok(true),
            v => Err(self.err(field, format!("`{v}` is not true or false"))),
        }
    }

    fn opt_string(&self, field: &str) -> Option<String> {
        Some(self.str(field)).filter(|v| !v.is_empty()).map(str::to_string)
    }
}

/// A date as `YYYY-MM-DD` or an RFC 3339 timestamp (its UTC date).
fn parse_date(v: &str) -> Result<Option<NaiveDate>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(Some(d));
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| Some(t.date_naive()))
        .map_err(|_| format!("`{v}` is not a date (YYYY-MM-DD)"))
}

pub fn read_workload(path: &Path) -> Result<Vec<WorkloadRow>, PlanningError> {
    let file = path.display().to_string();
    read_csv(path, &["technician_id", "skills", "period_start", "planned_hours"])?
        .iter()
        .map(|(line, values)| {
            let r = Row { file: &file, line: *line, values };
            Ok(WorkloadRow {
                technician_id: r.required("technician_id")?.to_string(),
                technician_name: r.str("technician_name").to_string(),
                skills: split_skills(r.str("skills")),
                period_start: r.date("period_start")?.ok_or_else(|| r.err("period_start", "empty"))?,
                planned_hours: r.opt_f64("planned_hours")?.ok_or_else(|| r.err("planned_hours", "empty"))?,
                availability_pct: r.opt_f64("availability_pct")?,
            })
        })
        .collect()
}

pub fn split_skills(s: &str) -> Vec<String> {
    s.split(['|', ',', ';']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn weekdays_in_month(first: NaiveDate) -> u32 {
    let mut d = first.with_day(1).expect("day 1 exists");
    let month = d.month();
    let mut n = 0;
    while d.month() == month {
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            n += 1;
        }
        d = d + Days::new(1);
    }
    n
}

/// The technicians of a week from their workload: each one's latest period starting on or
/// before the week's Monday (else their earliest). Hours a day for work orders = the
/// period's planned hours spread over its working days × the availability percentage.
pub fn technicians_for_week(rows: &[WorkloadRow], week: Week) -> Vec<Technician> {
    let monday = week.monday();
    let mut latest: BTreeMap<&str, &WorkloadRow> = BTreeMap::new();
    for r in rows {
        let keep = match latest.get(r.technician_id.as_str()) {
            None => true,
            Some(cur) => {
                let (c, n) = (cur.period_start, r.period_start);
                (n <= monday && (c > monday || n > c)) || (c > monday && n < c)
            }
        };
        if keep {
            latest.insert(&r.technician_id, r);
        }
    }
    latest
        .values()
        .map(|r| {
            let per_day = r.planned_hours / f64::from(weekdays_in_month(r.period_start).max(1));
            let available = r.availability_pct.unwrap_or(100.0).clamp(0.0, 100.0) / 100.0;
            Technician {
                id: r.technician_id.clone(),
                name: r.technician_name.clone(),
                skills: r.skills.clone(),
                daily_hours: (per_day * available * 4.0).round() / 4.0,
                absent_days: Vec::new(),
                day_hours: BTreeMap::new(),
            }
        })
        .collect()
}

pub fn read_interventions(path: &Path) -> Result<Vec<Intervention>, PlanningError> {
    let file = path.display().to_string();
    read_csv(path, &["equipement_id", "started_at", "intervention_type"])?
        .iter()
        .map(|(line, values)| {
            let r = Row { file: &file, line: *line, values };
            Ok(Intervention {
                equipement_id: r.required("equipement_id")?.to_string(),
                started_at: r.date("started_at")?.ok_or_else(|| r.err("started_at", "empty"))?,
                intervention_type: r.str("intervention_type").to_string(),
                failure_mode_code: r.str("failure_mode_code").to_string(),
                technician_id: r.str("technician_id").to_string(),
                duration_h: r.opt_f64("duration_h")?,
                description: r.str("description").to_string(),
            })
        })
        .collect()
}

pub fn read_amdec(path: &Path) -> Result<Vec<AmdecAction>, PlanningError> {
    let file = path.display().to_string();
    read_csv(path, &["equipement_id", "failure_mode_code"])?
        .iter()
        .map(|(line, values)| {
            let r = Row { file: &file, line: *line, values };
            Ok(AmdecAction {
                equipement_id: r.required("equipement_id")?.to_string(),
                failure_mode_code: r.required("failure_mode_code")?.to_string(),
                criticality: r.str("criticality").to_string(),
                recommended_action: r.str("recommended_action").to_string(),
            })
        })
        .collect()
}

/// Orders from a JSON file (an array of orders, or `{"orders": [...]}`) or a CSV file with
/// the same field names as columns.
pub fn read_orders(path: &Path) -> Result<Vec<Order>, PlanningError> {
    let file = path.display().to_string();
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Orders {
            List(Vec<Order>),
            Wrapped { orders: Vec<Order> },
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| PlanningError::File { file: file.clone(), reason: e.to_string() })?;
        // Untagged enums hide the field at fault: parse as a list first for its message.
        return match serde_json::from_str::<Vec<Order>>(&text) {
            Ok(list) => Ok(list),
            Err(list_err) => match serde_json::from_str::<Orders>(&text) {
                Ok(Orders::List(l) | Orders::Wrapped { orders: l }) => Ok(l),
                Err(_) => Err(PlanningError::File { file, reason: list_err.to_string() }),
            },
        };
    }
    read_csv(path, &["id", "skill", "estimated_hours"])?
        .iter()
        .map(|(line, values)| {
            let r = Row { file: &file, line: *line, values };
            let crew = match r.str("crew") {
                "" => 1,
                v => v.parse().map_err(|_| r.err("crew", format!("`{v}` is not a whole number")))?,
            };
            Ok(Order {
                id: r.required("id")?.to_string(),
                equipement_id: r.str("equipement_id").to_string(),
                failure_mode_code: r.str("failure_mode_code").to_string(),
                skill: r.required("skill")?.to_string(),
                priority: r.str("priority").parse().map_err(|e: String| r.err("priority", e))?,
                release: r.date("release")?,
                deadline: r.date("deadline")?,
                estimated_hours: r.opt_f64("estimated_hours")?.ok_or_else(|| r.err("estimated_hours", "empty"))?,
                crew,
                pinned_technician: r.opt_string("pinned_technician"),
                pinned_day: r.date("pinned_day")?,
                started: r.flag("started")?,
                announced: r.flag("announced")?,
                current_technician: r.opt_string("current_technician"),
                current_day: r.date("current_day")?,
                site: r.opt_string("site"),
                alert_id: r.opt_string("alert_id"),
                description: r.str("description").to_string(),
            })
        })
        .collect()
}

/// A maintenance interval stated in a recommended action, in days: "toutes les 500 h",
/// "500 hour service", "tous les 3 mois", "every 2 weeks". Operating hours count as running
/// around the clock (24 h a day), the conservative reading for continuous-process equipment.
pub fn action_interval_days(action: &str) -> Option<f64> {
    let lower = action.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| c.is_whitespace() || c == '-').filter(|w| !w.is_empty()).collect();
    for (i, w) in words.iter().enumerate() {
        let Ok(n) = w.trim_end_matches('h').replace(',', ".").parse::<f64>() else { continue };
        if n <= 0.0 {
            continue;
        }
        let unit = if w.ends_with('h') && w.len() > 1 { "h" } else { words.get(i + 1).copied().unwrap_or("") };
        let days = match unit.trim_end_matches(['.', ',', ')']) {
            "h" | "heures" | "heure" | "hour" | "hours" | "hr" | "hrs" => n / 24.0,
            "j" | "jour" | "jours" | "day" | "days" => n,
            "semaine" | "semaines" | "week" | "weeks" => n * 7.0,
            "mois" | "month" | "months" => n * 30.0,
            "an" | "ans" | "year" | "years" => n * 365.0,
            _ => continue,
        };
        return Some(days);
    }
    None
}

fn priority_of(criticality: &str) -> Priority {
    match criticality.to_lowercase().as_str() {
        "critical" | "critique" => Priority::High,
        "high" | "haute" | "élevée" => Priority::High,
        "medium" | "moyenne" => Priority::Medium,
        _ => Priority::Low,
    }
}

/// The skill most of the technicians who did these interventions share.
pub(crate) fn skill_of(done_by: &[&str], technicians: &[Technician]) -> Option<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for id in done_by {
        if let Some(t) = technicians.iter().find(|t| t.id == *id) {
            for s in &t.skills {
                *count.entry(s).or_default() += 1;
            }
        }
    }
    count.into_iter().max_by_key(|&(s, n)| (n, std::cmp::Reverse(s))).map(|(s, _)| s.to_string())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

/// Preventive orders due by the end of `week`:
/// - per equipment, the history's preventive rhythm (median interval between its preventive
///   interventions, from the last one), with the median duration and the skill shared by
///   those who did them;
/// - per AMDEC line whose recommended action states an interval, from the equipment's last
///   intervention for that failure mode (else its last preventive one).
///
/// An order already overdue keeps its due date as deadline: its lateness is real.
pub fn preventive_orders(
    amdec: &[AmdecAction],
    history: &[Intervention],
    technicians: &[Technician],
    week: Week,
) -> Vec<Order> {
    let friday = week.monday() + Days::new(4);
    let mut by_equipment: BTreeMap<&str, Vec<&Intervention>> = BTreeMap::new();
    for i in history.iter().filter(|i| i.intervention_type == "preventive" && i.started_at <= friday) {
        by_equipment.entry(&i.equipement_id).or_default().push(i);
    }
    let criticality = |equipment: &str| {
        amdec
            .iter()
            .filter(|a| a.equipement_id == equipment)
            .map(|a| priority_of(&a.criticality))
            .min()
            .unwrap_or(Priority::Low)
    };
    let mut orders = Vec::new();
    for (equipment, mut done) in by_equipment {
        done.sort_by_key(|i| i.started_at);
        let gaps: Vec<f64> = done.windows(2).map(|w| (w[1].started_at - w[0].started_at).num_days() as f64).collect();
        let (Some(interval), Some(last)) = (median(gaps), done.last()) else { continue };
        let due = last.started_at + Days::new(interval.round() as u64);
        if due > friday {
            continue;
        }
        let performers: Vec<&str> = done.iter().map(|i| i.technician_id.as_str()).filter(|t| !t.is_empty()).collect();
        let Some(skill) = skill_of(&performers, technicians) else { continue };
        let hours = median(done.iter().filter_map(|i| i.duration_h).filter(|h| *h > 0.0).collect()).unwrap_or(2.0);
        let mut o = Order::new(&format!("PM-{equipment}-{week}"), &skill, criticality(equipment), hours);
        o.equipement_id = equipment.to_string();
        o.deadline = Some(due);
        o.description = format!(
            "Maintenance préventive (rythme de l'historique : tous les {interval:.0} j, dernière le {}) : {}",
            last.started_at, last.description
        );
        orders.push(o);
    }
    for a in amdec {
        let Some(days) = action_interval_days(&a.recommended_action) else { continue };
        let on_equipment = history.iter().filter(|i| i.equipement_id == a.equipement_id && i.started_at <= friday);
        let last_for_mode =
            on_equipment.clone().filter(|i| i.failure_mode_code == a.failure_mode_code).map(|i| i.started_at).max();
        let last_preventive =
            on_equipment.clone().filter(|i| i.intervention_type == "preventive").map(|i| i.started_at).max();
        let Some(last) = last_for_mode.or(last_preventive) else { continue };
        let due = last + Days::new(days.ceil() as u64);
        if due > friday {
            continue;
        }
        let performers: Vec<&str> = on_equipment
            .filter(|i| i.failure_mode_code == a.failure_mode_code || i.intervention_type == "preventive")
            .map(|i| i.technician_id.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        let Some(skill) = skill_of(&performers, technicians) else { continue };
        let mut o = Order::new(
            &format!("PM-{}-{}-{week}", a.equipement_id, a.failure_mode_code),
            &skill,
            priority_of(&a.criticality),
            2.0,
        );
        o.equipement_id = a.equipement_id.clone();
        o.failure_mode_code = a.failure_mode_code.clone();
        o.deadline = Some(due);
        o.description = format!("Action AMDEC : {}", a.recommended_action);
        orders.push(o);
    }
    orders
}

/// The reference data a plan is made from, read from files or from the database.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub workload: Vec<WorkloadRow>,
    pub amdec: Vec<AmdecAction>,
    pub history: Vec<Intervention>,
}

impl Sources {
    /// The clean CSVs of a data folder: `Workload_clean.csv`, `AMDEC_clean.csv`,
    /// `GMAO_integrator_clean.csv`.
    pub fn from_dir(dir: &Path) -> Result<Sources, PlanningError> {
        Ok(Sources {
            workload: read_workload(&dir.join("Workload_clean.csv"))?,
            amdec: read_amdec(&dir.join("AMDEC_clean.csv"))?,
            history: read_interventions(&dir.join("GMAO_integrator_clean.csv"))?,
        })
    }

    /// A week's inputs: its technicians, the preventive orders due (when `preventive`), and
    /// the given open orders.
    pub fn input(&self, week: Week, orders: Vec<Order>, preventive: bool) -> PlanInput {
        let technicians = technicians_for_week(&self.workload, week);
        let mut all =
            if preventive { preventive_orders(&self.amdec, &self.history, &technicians, week) } else { Vec::new() };
        // An order given explicitly replaces the derived one with the same id.
        all.retain(|p| !orders.iter().any(|o| o.id == p.id));
        all.extend(orders);
        PlanInput { week, technicians, orders: all, travel: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_read_from_the_actions() {
        assert_eq!(action_interval_days("Vidange toutes les 500 h"), Some(500.0 / 24.0));
        assert_eq!(action_interval_days("500 hour service"), Some(500.0 / 24.0));
        assert_eq!(action_interval_days("Graissage : 500h"), Some(500.0 / 24.0));
        assert_eq!(action_interval_days("Contrôle tous les 3 mois"), Some(90.0));
        assert_eq!(action_interval_days("Remplacer la garniture mécanique"), None);
    }

    #[test]
    fn hours_per_day_come_from_the_planned_hours_and_availability() {
        let row = |month: u32, hours: f64| WorkloadRow {
            technician_id: "T01".into(),
            technician_name: String::new(),
            skills: vec!["mecanique".into()],
            period_start: NaiveDate::from_ymd_opt(2026, month, 1).unwrap(),
            planned_hours: hours,
            availability_pct: Some(50.0),
        };
        // March 2026 has 22 working days: 154 h → 7 h a day, half of it available.
        let techs = technicians_for_week(&[row(2, 10.0), row(3, 154.0), row(4, 10.0)], "2026-W12".parse().unwrap());
        assert_eq!(techs[0].daily_hours, 3.5);
    }
}
