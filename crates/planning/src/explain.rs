//! Why an order went where it did, and why each other technician did not get it, in French
//! for the supervisor.

use serde::{Deserialize, Serialize};

use crate::model::PlanInput;
use crate::solve::{Assignment, Plan};
use crate::PlanningError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub order_id: String,
    pub text: String,
    pub assignments: Vec<Assignment>,
    /// One line per other technician.
    pub alternatives: Vec<String>,
}

pub fn explain(input: &PlanInput, plan: &Plan, order_id: &str) -> Result<Explanation, PlanningError> {
    let order = input
        .orders
        .iter()
        .find(|o| o.id == order_id)
        .ok_or_else(|| PlanningError::UnknownOrder(order_id.to_string()))?;
    let first = plan.days[0];
    let (release, due) = (order.release_on(first), order.deadline_on(first));
    let head = format!(
        "{} ({}, priorité {}, {:.1} h, compétence « {} », disponible le {release}, échéance le {due})",
        order.id,
        if order.equipement_id.is_empty() { "sans équipement" } else { &order.equipement_id },
        order.priority.label_fr(),
        order.estimated_hours,
        order.skill
    );
    let assignments: Vec<Assignment> = plan.assignments_of(order_id).cloned().collect();
    let load_pct = |tech: &str| {
        plan.loads.iter().find(|l| l.technician_id == tech).and_then(|l| l.utilisation_pct()).unwrap_or(0.0)
    };
    let text = if assignments.is_empty() {
        let why: Vec<&str> =
            plan.issues.iter().filter(|i| i.order_id == order_id).map(|i| i.message.as_str()).collect();
        format!("{head} : non planifié — {}", if why.is_empty() { "raison inconnue".into() } else { why.join(" ; ") })
    } else {
        let parts: Vec<String> = assignments
            .iter()
            .map(|a| {
                let when = if a.lateness_days > 0 {
                    format!("en retard de {} j", a.lateness_days)
                } else {
                    "dans les délais".to_string()
                };
                let how = if a.pinned { "épinglé à la main" } else { "compétent, créneau libre" };
                format!(
                    "{} le {} ({how}, {when}, charge de la semaine {:.0} %)",
                    a.technician_id,
                    a.day,
                    load_pct(&a.technician_id)
                )
            })
            .collect();
        let kept = if order.started {
            " ; travail commencé : reste avec son technicien sauf retard à éviter"
        } else if order.announced {
            " ; annoncé : ne bouge que pour éviter un retard"
        } else {
            ""
        };
        format!("{head} → {}{kept}", parts.join(", "))
    };
    let chosen: Vec<&str> = assignments.iter().map(|a| a.technician_id.as_str()).collect();
    let alternatives = input
        .technicians
        .iter()
        .filter(|t| !chosen.contains(&t.id.as_str()))
        .map(|t| {
            if !t.has_skill(&order.skill) {
                return format!("{} : n'a pas la compétence « {} »", t.id, order.skill);
            }
            let load = plan.loads.iter().find(|l| l.technician_id == t.id);
            let open: Vec<String> = plan
                .days
                .iter()
                .enumerate()
                .filter(|(_, d)| **d >= release)
                .filter_map(|(i, d)| {
                    let l = load?;
                    let free = l.day_capacity[i] - l.day_hours[i];
                    (free + 1e-9 >= order.estimated_hours).then(|| format!("{d} ({free:.1} h libres)"))
                })
                .collect();
            if t.absent_days.len() >= plan.days.len() || load.is_some_and(|l| l.capacity_hours <= 0.0) {
                format!("{} : absent cette semaine", t.id)
            } else if open.is_empty() {
                format!("{} : pas de créneau de {:.1} h libre après le {release}", t.id, order.estimated_hours)
            } else {
                format!(
                    "{} : possible {} mais charge de la semaine {:.0} % (le choix équilibre les charges et respecte les engagements)",
                    t.id,
                    open.join(", "),
                    load_pct(&t.id)
                )
            }
        })
        .collect();
    Ok(Explanation { order_id: order_id.to_string(), text, assignments, alternatives })
}
