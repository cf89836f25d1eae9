//! `proact-trainer plan`: the technicians' week from the workload data, as text or JSON.
//! The planning itself is in crate proact-planning; this reads its inputs from the data
//! folder or the database's reference tables (`proact_store::planning`).

use std::path::Path;

use anyhow::Context;
use chrono::{Days, NaiveTime};
use proact_planning::data::{AmdecAction, Intervention, Sources, WorkloadRow};
use proact_planning::{Order, PlanInput, Week};

/// The reference tables as the planner's rows; history up to the end of `week`. Only
/// reads (no migration, whose log lines would mix with `--json` on stdout).
pub async fn sources_from_db(database_url: &str, week: Week) -> anyhow::Result<Sources> {
    let pool = proact_server::db::pool(database_url, 1)?;
    let until = (week.monday() + Days::new(7)).and_time(NaiveTime::MIN).and_utc();
    let (workload, amdec, history) = tokio::try_join!(
        proact_store::planning::workload(&pool),
        proact_store::planning::amdec(&pool),
        proact_store::planning::interventions(&pool, until),
    )
    .context("reading the reference tables (load them with `proact-trainer load-reference`)")?;
    Ok(Sources {
        workload: workload
            .into_iter()
            .map(|w| WorkloadRow {
                skills: proact_planning::data::split_skills(&w.skills),
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

/// The inputs of `plan`: reference data from the folder or the database, the preventive
/// orders due, and the open orders of a file.
pub async fn input(
    week: Week,
    data: &Path,
    database_url: Option<&str>,
    orders: Option<&Path>,
    preventive: bool,
) -> anyhow::Result<PlanInput> {
    let sources = match database_url {
        Some(url) => sources_from_db(url, week).await?,
        None => Sources::from_dir(data)?,
    };
    let extra: Vec<Order> = match orders {
        Some(path) => proact_planning::data::read_orders(path)?,
        None => Vec::new(),
    };
    Ok(sources.input(week, extra, preventive))
}
