//! Re-planning: a new (usually critical) order or a manual pin changes a plan already made.
//!
//! Only the affected days are re-solved: every placement on another day is kept as it is,
//! and on the affected days each planned order prefers its current technician and day (the
//! preference is strongest for started, then announced orders, see `Stay`). An order moves
//! only when that lowers the priority-weighted lateness, so the result lists few moves, each
//! with its reason.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use crate::model::{Order, PlanInput};
use crate::solve::{solve_with, Board, Constraints, Move, Plan, Stay, REPLAN_BUDGET};
use crate::PlanningError;

/// What caused a re-plan, for the moves' reasons.
enum Cause<'a> {
    NewOrder(&'a Order),
    Pin { order: &'a str, technician: &'a str },
}

/// Adds `order` to the plan: re-plans the days from its release to its deadline.
/// Returns the new inputs and the new plan (with its moves).
pub fn add_order(input: &PlanInput, previous: &Plan, order: Order) -> Result<(PlanInput, Plan), PlanningError> {
    if input.orders.iter().any(|o| o.id == order.id) {
        return Err(PlanningError::Invalid {
            what: format!("order {}", order.id),
            reason: "already in the plan".into(),
        });
    }
    let mut next = input.clone();
    next.orders.push(order.clone());
    next.validate()?;
    let days = next.week.days();
    let release = order.release_on(days[0]);
    let deadline = order.deadline_on(days[0]);
    let affected: BTreeSet<NaiveDate> = match order.pinned_day {
        Some(d) => [d].into(),
        None => {
            let window: BTreeSet<NaiveDate> =
                days.iter().copied().filter(|d| *d >= release && *d <= deadline).collect();
            // A deadline already past, or a release on the last day: at least the first
            // possible day is open to change.
            if window.is_empty() {
                days.iter().copied().filter(|d| *d >= release).take(1).collect()
            } else {
                window
            }
        }
    };
    let plan = replan(&next, previous, &affected, Cause::NewOrder(&order))?;
    Ok((next, plan))
}

/// Pins an order to a technician (and a day, if given) and re-plans around it.
pub fn pin(
    input: &PlanInput,
    previous: &Plan,
    order_id: &str,
    technician: &str,
    day: Option<NaiveDate>,
) -> Result<(PlanInput, Plan), PlanningError> {
    let mut next = input.clone();
    let order = next
        .orders
        .iter_mut()
        .find(|o| o.id == order_id)
        .ok_or_else(|| PlanningError::UnknownOrder(order_id.to_string()))?;
    order.pinned_technician = Some(technician.to_string());
    order.pinned_day = day;
    next.validate()?;
    // The order's old day and its new day(s) change; others keep their placements.
    let mut affected: BTreeSet<NaiveDate> = previous.assignments_of(order_id).map(|a| a.day).collect();
    match day {
        Some(d) => {
            affected.insert(d);
        }
        None => affected.extend(next.week.days()),
    }
    let plan = replan(&next, previous, &affected, Cause::Pin { order: order_id, technician })?;
    Ok((next, plan))
}

fn replan(
    input: &PlanInput,
    previous: &Plan,
    affected: &BTreeSet<NaiveDate>,
    cause: Cause<'_>,
) -> Result<Plan, PlanningError> {
    let board = Board::new(input)?;
    let mut c = Constraints::default();
    let pinned_order = match cause {
        Cause::Pin { order, .. } => Some(order),
        Cause::NewOrder(_) => None,
    };
    for (o, order) in input.orders.iter().enumerate() {
        let places: Vec<(usize, usize)> = previous
            .assignments_of(&order.id)
            .filter_map(|a| Some((board.tech(&a.technician_id)?, board.day(a.day)?)))
            .collect();
        if places.is_empty() || Some(order.id.as_str()) == pinned_order {
            continue;
        }
        let touches_affected = places.iter().any(|&(_, d)| affected.contains(&board.days[d]));
        if !touches_affected || order.crew > 1 {
            c.fixed.insert(o, places);
        } else {
            let (t, d) = places[0];
            c.stay.insert(o, Stay::for_order(order, t, d));
        }
    }
    let mut plan = solve_with(board, &c, REPLAN_BUDGET);
    plan.moves = moves(previous, &plan, affected, &cause);
    if let Cause::NewOrder(o) = cause {
        plan.trigger_alert_id = o.alert_id.clone();
    }
    Ok(plan)
}

fn moves(previous: &Plan, next: &Plan, affected: &BTreeSet<NaiveDate>, cause: &Cause<'_>) -> Vec<Move> {
    let days: Vec<String> = affected.iter().map(|d| d.to_string()).collect();
    let mut out = Vec::new();
    for before in &previous.assignments {
        if let Cause::Pin { order, .. } = cause {
            if before.order_id == *order {
                continue;
            }
        }
        let now: Vec<_> = next.assignments_of(&before.order_id).collect();
        if now.iter().any(|a| a.technician_id == before.technician_id && a.day == before.day) {
            continue;
        }
        let to = now.iter().find(|a| {
            !previous.assignments_of(&before.order_id).any(|p| p.technician_id == a.technician_id && p.day == a.day)
        });
        let took_the_slot =
            |id: &str| next.assignments_of(id).any(|a| a.technician_id == before.technician_id && a.day == before.day);
        let reason = match cause {
            Cause::NewOrder(o) => {
                let alert = o.alert_id.as_deref().map(|a| format!(", alerte {a}")).unwrap_or_default();
                let what = format!("l'ordre {} {} ({}{alert})", o.priority.label_fr(), o.id, o.equipement_id);
                if took_the_slot(&o.id) {
                    format!("cède sa place chez {} le {} à {what}", before.technician_id, before.day)
                } else {
                    format!("déplacé pour faire de la place à {what} (jours re-planifiés : {})", days.join(", "))
                }
            }
            Cause::Pin { order, technician } => {
                if took_the_slot(order) {
                    format!(
                        "cède sa place chez {} le {} à l'ordre {order}, épinglé à la main chez {technician}",
                        before.technician_id, before.day
                    )
                } else {
                    format!("déplacé par l'épinglage manuel de {order} chez {technician}")
                }
            }
        };
        let reason =
            if to.is_none() && now.is_empty() { format!("{reason} ; plus de créneau cette semaine") } else { reason };
        out.push(Move {
            order_id: before.order_id.clone(),
            from_technician: before.technician_id.clone(),
            from_day: before.day,
            to_technician: to.map(|a| a.technician_id.clone()),
            to_day: to.map(|a| a.day),
            reason,
        });
    }
    out
}
