//! The planner's inputs from the database (`proact_store::planning`): the technicians'
//! workload, the AMDEC lines and the intervention history (the preventive orders), and the
//! open work orders of the `work_orders` table (docs/maintenance.md) as planning [`Order`]s.
//! Only reads: no migration, so a CLI's `--json` stdout stays one JSON plan.

use chrono::{DateTime, Days, NaiveTime, Utc};
use deadpool_postgres::Pool;
use proact_store::planning::OpenWorkOrderRecord;

use crate::data::{skill_of, AmdecAction, Intervention, Sources, WorkloadRow};
use crate::model::{Order, PlanInput, Priority, Technician, Week};
use crate::PlanningError;

/// The first instant after `week` (its next Monday, 00:00 UTC).
fn end_of(week: Week) -> DateTime<Utc> {
    (week.monday() + Days::new(7)).and_time(NaiveTime::MIN).and_utc()
}

/// The reference tables as the planner's rows; history up to the end of `week`.
pub async fn sources(pool: &Pool, week: Week) -> Result<Sources, PlanningError> {
    let (workload, amdec, history) = futures::try_join!(
        proact_store::planning::workload(pool),
        proact_store::planning::amdec(pool),
        proact_store::planning::interventions(pool, end_of(week)),
    )?;
    Ok(Sources {
        workload: workload
            .into_iter()
            .map(|w| WorkloadRow {
                skills: crate::data::split_skills(&w.skills),
                technician_id: w.technician_id,
                technician_name: w.technician_name,
                period_start: w.period_start.date_naive(),
                planned_hours: w.planned_hours.unwrap_or(0.0),
                availability_pct: w.availability_pct,
            })
            .collect(),
        amdec: amdec
            .into_iter()
            .map(|a| AmdecAction {
                equipement_id: a.equipement_id,
                failure_mode_code: a.failure_mode_code,
                criticality: a.criticality,
                recommended_action: a.recommended_action,
            })
            .collect(),
        history: history
            .into_iter()
            .map(|i| Intervention {
                started_at: i.started_at.date_naive(),
                equipement_id: i.equipement_id,
                intervention_type: i.intervention_type,
                failure_mode_code: i.failure_mode_code,
                technician_id: i.technician_id,
                duration_h: i.duration_h,
                description: i.description,
            })
            .collect(),
    })
}

/// A work order's 0–100 priority in the planner's classes: the page's bands (P1 ≥ 75 is
/// critical, P2 ≥ 50 high, P3 ≥ 25 medium, else low).
pub fn priority_class(p: f64) -> Priority {
    match p {
        p if p >= 75.0 => Priority::Critical,
        p if p >= 50.0 => Priority::High,
        p if p >= 25.0 => Priority::Medium,
        _ => Priority::Low,
    }
}

/// The skill a failure mode needs: the one most of the technicians who treated that mode
/// share, else those who worked on the equipment, else the assigned technician's first.
fn skill_for(w: &OpenWorkOrderRecord, history: &[Intervention], technicians: &[Technician]) -> Option<String> {
    let by = |keep: &dyn Fn(&Intervention) -> bool| -> Vec<&str> {
        history.iter().filter(|i| keep(i) && !i.technician_id.is_empty()).map(|i| i.technician_id.as_str()).collect()
    };
    let mode = by(&|i| !w.failure_mode_code.is_empty() && i.failure_mode_code == w.failure_mode_code);
    let equipment = by(&|i| i.equipement_id == w.equipement_id);
    skill_of(&mode, technicians)
        .or_else(|| skill_of(&equipment, technicians))
        .or_else(|| technicians.iter().find(|t| t.id == w.technician_id).and_then(|t| t.skills.first().cloned()))
}

/// An open work order as a planning order: priority class, estimated hours, the failure
/// mode's skill, released on its planned start, deadline from its priority, started when in
/// progress, pinned to its technician when that technician works this week. `None` (logged)
/// for an order without a positive estimate, which the planner cannot place.
pub fn order_of(w: &OpenWorkOrderRecord, history: &[Intervention], technicians: &[Technician]) -> Option<Order> {
    if w.estimated_duration_h.is_nan() || w.estimated_duration_h <= 0.0 {
        tracing::warn!(work_order = %w.work_order_id, hours = w.estimated_duration_h,
            "work order left out of the plan: its estimated duration is not positive");
        return None;
    }
    // No skill known: the planner reports the order as `no_skill` rather than guessing one.
    let skill = skill_for(w, history, technicians).unwrap_or_default();
    let mut o = Order::new(&w.work_order_id, &skill, priority_class(w.priority), w.estimated_duration_h);
    let start = w.planned_start.date_naive();
    o.equipement_id = w.equipement_id.clone();
    o.failure_mode_code = w.failure_mode_code.clone();
    o.release = Some(start);
    o.alert_id = w.alert_id.clone().filter(|a| !a.is_empty());
    o.description = w.description.clone();
    if technicians.iter().any(|t| t.id == w.technician_id) {
        o.pinned_technician = Some(w.technician_id.clone());
        o.current_technician = Some(w.technician_id.clone());
        o.current_day = Some(start);
        o.started = w.in_progress;
    } else {
        tracing::warn!(work_order = %w.work_order_id, technician = %w.technician_id,
            "the work order's technician does not work this week: planned on anyone skilled");
    }
    Some(o)
}

/// The open work orders due by the end of `week` (or only `only`), as planning orders.
pub async fn open_orders(
    pool: &Pool,
    week: Week,
    only: Option<&str>,
    history: &[Intervention],
    technicians: &[Technician],
) -> Result<Vec<Order>, PlanningError> {
    let rows = proact_store::planning::open_work_orders(pool, end_of(week), only).await?;
    Ok(rows.iter().filter_map(|w| order_of(w, history, technicians)).collect())
}

/// One open work order as a planning order, with the skills and history of the week of its
/// planned start; `None` when it is not open (or has no positive estimate).
pub async fn work_order(pool: &Pool, work_order_id: &str) -> Result<Option<Order>, PlanningError> {
    let rows = proact_store::planning::open_work_orders(pool, DateTime::<Utc>::MAX_UTC, Some(work_order_id)).await?;
    let Some(w) = rows.first() else { return Ok(None) };
    let week = Week::of(w.planned_start.date_naive());
    let sources = sources(pool, week).await?;
    let technicians = crate::data::technicians_for_week(&sources.workload, week);
    Ok(order_of(w, &sources.history, &technicians))
}

/// A week's whole input from the database: its technicians, the preventive orders due
/// (when `preventive`), the open work orders, and `extra` orders (which replace those of
/// the same id).
pub async fn input(pool: &Pool, week: Week, extra: Vec<Order>, preventive: bool) -> Result<PlanInput, PlanningError> {
    let sources = sources(pool, week).await?;
    let technicians = crate::data::technicians_for_week(&sources.workload, week);
    let mut orders = open_orders(pool, week, None, &sources.history, &technicians).await?;
    orders.retain(|o| !extra.iter().any(|e| e.id == o.id));
    orders.extend(extra);
    Ok(sources.input(week, orders, preventive))
}

/// A [`crate::service::Loader`] over the database: the desk plans from the tables.
pub fn loader(pool: Pool) -> crate::service::Loader {
    std::sync::Arc::new(move |week| {
        let pool = pool.clone();
        Box::pin(async move { input(&pool, week, Vec::new(), true).await })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(priority: f64, hours: f64, technician: &str, in_progress: bool) -> OpenWorkOrderRecord {
        OpenWorkOrderRecord {
            work_order_id: "OT-1".into(),
            equipement_id: "PUMP-01".into(),
            alert_id: Some("a-1".into()),
            failure_mode_code: "BEARING_WEAR".into(),
            priority,
            technician_id: technician.into(),
            planned_start: "2026-03-03T08:00:00Z".parse().unwrap(),
            estimated_duration_h: hours,
            description: String::new(),
            in_progress,
        }
    }

    fn technician(id: &str, skills: &[&str]) -> Technician {
        Technician {
            id: id.into(),
            name: id.into(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            daily_hours: 7.0,
            absent_days: Vec::new(),
            day_hours: Default::default(),
        }
    }

    fn done(tech: &str, mode: &str) -> Intervention {
        Intervention {
            equipement_id: "OTHER".into(),
            started_at: "2026-01-10".parse().unwrap(),
            intervention_type: "corrective".into(),
            failure_mode_code: mode.into(),
            technician_id: tech.into(),
            duration_h: Some(2.0),
            description: String::new(),
        }
    }

    #[test]
    fn priority_bands_follow_the_page() {
        assert_eq!(priority_class(86.1), Priority::Critical);
        assert_eq!(priority_class(75.0), Priority::Critical);
        assert_eq!(priority_class(66.8), Priority::High);
        assert_eq!(priority_class(25.0), Priority::Medium);
        assert_eq!(priority_class(10.0), Priority::Low);
    }

    #[test]
    fn a_work_order_becomes_an_order_with_its_failure_modes_skill_and_technician() {
        let techs = [technician("T01", &["electrique"]), technician("T02", &["mecanique"])];
        let history = [done("T02", "BEARING_WEAR"), done("T01", "SHORT_CIRCUIT")];
        let o = order_of(&record(86.0, 3.0, "T01", true), &history, &techs).unwrap();
        assert_eq!(o.skill, "mecanique", "the skill of those who treated the mode, not the assignee's");
        assert_eq!(o.priority, Priority::Critical);
        assert_eq!(o.release, Some("2026-03-03".parse().unwrap()));
        assert_eq!(o.deadline, None, "derived from the priority by the planner");
        assert_eq!(o.pinned_technician.as_deref(), Some("T01"));
        assert!(o.started);
        assert_eq!(o.alert_id.as_deref(), Some("a-1"));
    }

    #[test]
    fn unknown_technicians_and_empty_estimates_do_not_break_the_plan() {
        let techs = [technician("T02", &["mecanique"])];
        let o = order_of(&record(40.0, 2.0, "T99", false), &[], &techs).unwrap();
        assert_eq!(o.pinned_technician, None);
        assert_eq!(o.skill, "", "no history, no assignee: reported no_skill by the planner");
        assert!(order_of(&record(40.0, 0.0, "T02", false), &[], &techs).is_none());
    }
}
