//! The plan as text for a terminal: one line per technician and day, then what could not be
//! planned and why (French, like the dashboard).

use std::fmt::Write;

use crate::Plan;

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan {} — retard pondéré {:.0}, écart de charge {:.0} points, {} ordre(s) planifié(s), {} non planifié(s)",
        plan.week,
        plan.weighted_lateness,
        plan.load_spread_pct,
        plan.assignments.iter().map(|a| &a.order_id).collect::<std::collections::HashSet<_>>().len(),
        plan.unplanned.len()
    );
    for load in &plan.loads {
        let pct = load.utilisation_pct().map_or("absent".to_string(), |p| format!("{p:.0} %"));
        let _ = writeln!(
            out,
            "\n{} ({:.1} h / {:.1} h, {pct})",
            load.technician_id, load.planned_hours, load.capacity_hours
        );
        for (i, day) in plan.days.iter().enumerate() {
            let orders: Vec<String> = plan
                .assignments
                .iter()
                .filter(|a| a.technician_id == load.technician_id && a.day == *day)
                .map(|a| {
                    let late = if a.lateness_days > 0 { format!(", +{} j", a.lateness_days) } else { String::new() };
                    let pin = if a.pinned { ", épinglé" } else { "" };
                    format!("{} ({:.2} h{late}{pin})", a.order_id, a.hours)
                })
                .collect();
            let over = if load.day_hours[i] > load.day_capacity[i] + 1e-9 { "  SURCHARGE" } else { "" };
            let _ = writeln!(
                out,
                "  {day}  {:>4.1}/{:<4.1} h  {}{over}",
                load.day_hours[i],
                load.day_capacity[i],
                if orders.is_empty() { "—".to_string() } else { orders.join(", ") }
            );
        }
    }
    if !plan.issues.is_empty() {
        let _ = writeln!(out, "\nÀ traiter :");
        for i in &plan.issues {
            let _ = writeln!(out, "  {} [{}] {}", i.order_id, i.code.as_str(), i.message);
        }
    }
    for m in &plan.moves {
        let to = match (&m.to_technician, m.to_day) {
            (Some(t), Some(d)) => format!("{t} le {d}"),
            _ => "non planifié".to_string(),
        };
        let _ =
            writeln!(out, "  déplacé {} : {} le {} → {to} — {}", m.order_id, m.from_technician, m.from_day, m.reason);
    }
    out
}
