//! The proven optimum of small instances, as a MILP (crate `good_lp`, pure-Rust `microlp`
//! backend), for the benchmark to measure the planner's gap against.
//!
//! Variables: `x[o,t,d]` = order `o` done by technician `t` on day `d` (only where the skill,
//! the release and a day's capacity allow it), `u[o]` = order left out, and the highest and
//! lowest utilisation. Objective, lexicographic through its scale: priority-weighted
//! lateness (×100, an integer step outweighs any spread), then the load spread. Crews,
//! pins, travel and commitments are not modelled: the benchmark's instances have none.
//!
//! The `microlp` of `good_lp` 1.14 has no time limit: a caller that must bound the search
//! runs it on its own thread (the benchmark does).

use good_lp::{constraint, microlp, variable, Expression, ProblemVariables, Solution, SolverModel, Variable};

use crate::model::PlanInput;
use crate::solve::{Board, Plan};
use crate::PlanningError;

/// The optimal plan (proven: branch and bound runs to the end).
pub fn optimum(input: &PlanInput) -> Result<Plan, PlanningError> {
    let unsupported = input.orders.iter().find(|o| {
        o.crew > 1 || o.pinned_technician.is_some() || o.pinned_day.is_some() || o.current_technician.is_some()
    });
    if let Some(o) = unsupported {
        return Err(PlanningError::Invalid {
            what: format!("order {}", o.id),
            reason: "the exact model has no crews, pins or commitments".into(),
        });
    }
    if !input.travel.is_empty() {
        return Err(PlanningError::Invalid {
            what: "travel".into(),
            reason: "the exact model has no travel times".into(),
        });
    }
    let mut board = Board::new(input)?;
    let n_t = input.technicians.len();
    let n_d = board.days.len();
    let mut vars = ProblemVariables::new();
    let mut x: Vec<(usize, usize, usize, Variable)> = Vec::new();
    let mut out: Vec<Option<Variable>> = Vec::new();
    let mut lateness = Expression::from(0.0);
    for (o, order) in input.orders.iter().enumerate() {
        if board.released_later(o) {
            out.push(None);
            continue;
        }
        let u = vars.add(variable().binary());
        lateness += (board.weight(o) * board.unplanned_lateness(o)) as f64 * u;
        out.push(Some(u));
        for &t in board.techs(o) {
            for &d in board.job_days(o) {
                if board.free(t, d) + 1e-9 >= order.estimated_hours {
                    let v = vars.add(variable().binary());
                    lateness += (board.weight(o) * board.lateness(o, d)) as f64 * v;
                    x.push((o, t, d, v));
                }
            }
        }
    }
    let hi = vars.add(variable().min(0.0));
    let lo = vars.add(variable().min(0.0));
    let mut model = vars.minimise(100.0 * lateness + hi - lo).using(microlp);
    for (o, u) in out.iter().enumerate() {
        let Some(u) = u else { continue };
        let sum: Expression = x.iter().filter(|e| e.0 == o).map(|e| e.3).sum();
        model = model.with(constraint!(sum + *u == 1.0));
    }
    let mut day_load = vec![vec![Expression::from(0.0); n_d]; n_t];
    for &(o, t, d, v) in &x {
        day_load[t][d] += input.orders[o].estimated_hours * v;
    }
    for (t, days) in day_load.into_iter().enumerate() {
        let week_cap: f64 = (0..n_d).map(|d| board.free(t, d)).sum();
        let mut week = Expression::from(0.0);
        for (d, load) in days.into_iter().enumerate() {
            week += load.clone();
            model = model.with(constraint!(load <= board.free(t, d)));
        }
        if week_cap > 1e-9 {
            model = model.with(constraint!(week.clone() / week_cap <= hi));
            model = model.with(constraint!(week / week_cap >= lo));
        }
    }
    let solution = model.solve().map_err(|e| PlanningError::Solver(e.to_string()))?;
    for &(o, t, d, v) in &x {
        if solution.value(v) > 0.5 {
            board.place(o, t, d);
        }
    }
    Ok(board.finish())
}
