//! The planner: places each order on a technician and a day of the horizon.
//!
//! Two starts on the same pins, kept places and crews, each improved by a local search
//! ([`improve`]), the better kept:
//!
//! - rounds of assignment solved by Kuhn-Munkres (`pathfinding::kuhn_munkres`): each round
//!   matches the open orders to the technician-days that still have hours, at most one order
//!   per technician-day and per round, maximising the sum of the placements' values; rounds
//!   repeat until nothing more fits;
//! - the greedy earliest-deadline baseline.
//!
//! A placement's value orders the objectives lexicographically through its scale (the search
//! compares the same objectives as a tuple, with the orders planned after lateness):
//!
//! 1. priority-weighted lateness: `LATE` per weighted day saved against leaving it unplanned;
//! 2. commitments: an order started or announced (or, when re-planning, already planned) keeps
//!    its technician and day unless lateness says otherwise;
//! 3. balanced load: the increase of the technician's squared week hours over its capacity
//!    (see `Board::balance_increase`);
//! 4. earlier days first, as a tie-break.
//!
//! Orders with a place to keep (started, announced, or planned before a re-plan) go back to
//! it first; a critical order that then finds no hours takes them from lower-priority orders
//! (`make_room_for_critical`), which the next rounds place again.
//!
//! Why not one MILP: the proven MILP optimum (crate `good_lp`, `microlp` backend, see
//! [`crate::exact`]) takes seconds already on 6 technicians × 24 orders and gives no answer on
//! 8 × 40 or 30 × 200 within 20 s, while the planner plans 30 × 200 in tens of milliseconds at
//! the optimum's value where it is known (`docs/BENCHMARKS.md`, "Planning"; `docs/planning.md`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{Days, NaiveDate};

use crate::model::{Order, PlanInput, Priority};
pub(crate) use crate::plan::EPS;
pub use crate::plan::{Assignment, Issue, IssueCode, Move, Plan, TechnicianLoad};
use crate::PlanningError;

mod finish;
mod improve;
mod starts;

/// One weighted day of lateness. Everything else is worth less than one day of a low-priority order.
pub(crate) const LATE: i64 = 1_000_000;
/// Balance: the increase of Σ (week hours)² / (week capacity × `REFERENCE_WEEK`) times this.
const BALANCE: i64 = 100_000;
const REFERENCE_WEEK: f64 = 35.0;
/// Earlier days first, between otherwise equal placements.
const EARLY: i64 = 10;
/// Time each local search may take in a plan of the week, and in a re-plan.
const PLAN_BUDGET: Duration = Duration::from_millis(1000);
pub(crate) const REPLAN_BUDGET: Duration = Duration::from_millis(100);
const FORBIDDEN: i64 = -(1 << 50);

/// A technician's part of the balance term (see `Board::balance_increase`).
fn balance_term(hours: f64, capacity: f64) -> f64 {
    if capacity <= EPS {
        return 0.0;
    }
    BALANCE as f64 * hours * hours / (capacity * REFERENCE_WEEK)
}

/// Where an order should preferably stay, and what keeping it there is worth.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stay {
    pub tech: usize,
    pub day: usize,
    pub tech_bonus: i64,
    pub day_bonus: i64,
}

impl Stay {
    /// The worth of keeping an order where it is, by how far it has gone: below one weighted
    /// day of lateness, above any balance gain.
    pub(crate) fn for_order(o: &Order, tech: usize, day: usize) -> Stay {
        let (tech_bonus, day_bonus) = if o.started {
            (400_000, 100_000)
        } else if o.announced {
            (200_000, 200_000)
        } else {
            (60_000, 60_000)
        };
        Stay { tech, day, tech_bonus, day_bonus }
    }
}

/// How much making room on a technician-day costs: announced orders moved, their weight,
/// orders moved, the lateness of the critical order, the day.
type RoomKey = (usize, i64, usize, i64, usize);

/// What a re-plan keeps: placements taken as they are, and preferences.
#[derive(Debug, Clone, Default)]
pub(crate) struct Constraints {
    /// Order index → (technician, day) placements kept as they are.
    pub fixed: HashMap<usize, Vec<(usize, usize)>>,
    pub stay: HashMap<usize, Stay>,
}

/// An order as the solver sees it.
#[derive(Clone)]
struct Job {
    hours: f64,
    weight: i64,
    due: NaiveDate,
    techs: Vec<usize>,
    days: Vec<usize>,
    released_later: bool,
}

/// The solver's state: hours left, placements made so far.
#[derive(Clone)]
pub(crate) struct Board<'a> {
    pub input: &'a PlanInput,
    pub days: Vec<NaiveDate>,
    cap: Vec<Vec<f64>>,
    used: Vec<Vec<f64>>,
    week_cap: Vec<f64>,
    sites: Vec<Vec<BTreeSet<String>>>,
    /// The orders on each technician-day.
    slot_orders: Vec<Vec<Vec<usize>>>,
    jobs: Vec<Job>,
    placed: Vec<Vec<(usize, usize, f64)>>,
    pinned: Vec<bool>,
    issues: Vec<Issue>,
    tech_index: HashMap<&'a str, usize>,
}

impl<'a> Board<'a> {
    pub(crate) fn new(input: &'a PlanInput) -> Result<Board<'a>, PlanningError> {
        input.validate()?;
        let days = input.week.days();
        let first = days[0];
        let cap: Vec<Vec<f64>> =
            input.technicians.iter().map(|t| days.iter().map(|&d| t.hours_on(d)).collect()).collect();
        let week_cap = cap.iter().map(|c| c.iter().sum()).collect();
        let tech_index: HashMap<&str, usize> =
            input.technicians.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let mut issues = Vec::new();
        let jobs = input
            .orders
            .iter()
            .map(|o| {
                let release = o.release_on(first);
                let techs: Vec<usize> = match &o.pinned_technician {
                    Some(p) => {
                        let t = tech_index[p.as_str()];
                        if !input.technicians[t].has_skill(&o.skill) {
                            issues.push(Issue {
                                code: IssueCode::PinUnskilled,
                                order_id: o.id.clone(),
                                message: format!(
                                    "épinglé chez {p}, qui n'a pas la compétence « {} » (choix manuel conservé)",
                                    o.skill
                                ),
                            });
                        }
                        vec![t]
                    }
                    None => {
                        (0..input.technicians.len()).filter(|&t| input.technicians[t].has_skill(&o.skill)).collect()
                    }
                };
                let day_ok = |d: &NaiveDate| *d >= release && o.pinned_day.is_none_or(|p| p == *d);
                Job {
                    hours: o.estimated_hours,
                    weight: o.priority.weight(),
                    due: o.deadline_on(first),
                    techs,
                    days: days.iter().enumerate().filter(|(_, d)| day_ok(d)).map(|(i, _)| i).collect(),
                    released_later: release > *days.last().expect("five days"),
                }
            })
            .collect::<Vec<_>>();
        let n_t = input.technicians.len();
        Ok(Board {
            input,
            used: vec![vec![0.0; days.len()]; n_t],
            sites: vec![vec![BTreeSet::new(); days.len()]; n_t],
            slot_orders: vec![vec![Vec::new(); days.len()]; n_t],
            placed: vec![Vec::new(); jobs.len()],
            pinned: vec![false; jobs.len()],
            days,
            cap,
            week_cap,
            jobs,
            issues,
            tech_index,
        })
    }

    pub(crate) fn tech(&self, id: &str) -> Option<usize> {
        self.tech_index.get(id).copied()
    }

    pub(crate) fn day(&self, day: NaiveDate) -> Option<usize> {
        self.days.iter().position(|&d| d == day)
    }

    pub(crate) fn released_later(&self, o: usize) -> bool {
        self.jobs[o].released_later
    }

    pub(crate) fn weight(&self, o: usize) -> i64 {
        self.jobs[o].weight
    }

    /// The technicians allowed for an order (skilled, or the pinned one).
    pub(crate) fn techs(&self, o: usize) -> &[usize] {
        &self.jobs[o].techs
    }

    /// The days allowed for an order (released, or the pinned one), as indices.
    pub(crate) fn job_days(&self, o: usize) -> &[usize] {
        &self.jobs[o].days
    }

    fn order(&self, o: usize) -> &'a Order {
        &self.input.orders[o]
    }

    fn is_placed(&self, o: usize) -> bool {
        !self.placed[o].is_empty()
    }

    fn utilisation(&self, t: usize) -> f64 {
        if self.week_cap[t] > EPS {
            self.used[t].iter().sum::<f64>() / self.week_cap[t]
        } else {
            f64::INFINITY
        }
    }

    pub(crate) fn free(&self, t: usize, d: usize) -> f64 {
        self.cap[t][d] - self.used[t][d]
    }

    /// Travel the order adds to a technician's day: from the farthest site already visited
    /// that day (an upper bound of a route through them, kept simple on purpose: sites are few
    /// and a day holds two or three orders).
    pub(crate) fn travel(&self, o: usize, t: usize, d: usize) -> f64 {
        let Some(site) = &self.order(o).site else { return 0.0 };
        let visited = &self.sites[t][d];
        if visited.contains(site) {
            return 0.0;
        }
        visited.iter().map(|s| self.input.travel_hours(s, site)).fold(0.0, f64::max)
    }

    fn need(&self, o: usize, t: usize, d: usize) -> f64 {
        self.jobs[o].hours + self.travel(o, t, d)
    }

    pub(crate) fn fits(&self, o: usize, t: usize, d: usize) -> bool {
        self.free(t, d) + EPS >= self.need(o, t, d)
    }

    pub(crate) fn lateness(&self, o: usize, d: usize) -> i64 {
        (self.days[d] - self.jobs[o].due).num_days().max(0)
    }

    /// Lateness charged to an order left out: as if done next Monday.
    pub(crate) fn unplanned_lateness(&self, o: usize) -> i64 {
        let next_monday = self.days[0] + Days::new(7);
        (next_monday - self.jobs[o].due).num_days().max(1)
    }

    pub(crate) fn place(&mut self, o: usize, t: usize, d: usize) {
        let travel = self.travel(o, t, d);
        self.used[t][d] += self.jobs[o].hours + travel;
        if let Some(site) = &self.order(o).site {
            self.sites[t][d].insert(site.clone());
        }
        self.slot_orders[t][d].push(o);
        self.placed[o].push((t, d, travel));
    }

    /// Takes an order off the plan (a re-plan making room for a critical one).
    fn unplace(&mut self, o: usize) {
        for (t, d, travel) in std::mem::take(&mut self.placed[o]) {
            self.used[t][d] -= self.jobs[o].hours + travel;
            self.slot_orders[t][d].retain(|&p| p != o);
            if self.order(o).site.is_some() {
                let sites = self.slot_orders[t][d].iter().filter_map(|&p| self.order(p).site.clone()).collect();
                self.sites[t][d] = sites;
            }
        }
    }

    /// Orders with a known place (started, announced, or planned before a re-plan) go back
    /// to it first when it still fits: a round would give a technician-day to one of them
    /// and send the others elsewhere rather than wait for the next round.
    pub(crate) fn keep_places(&mut self, c: &Constraints) {
        let mut kept: Vec<(&usize, &Stay)> = c.stay.iter().collect();
        // Started first, then announced, then by priority.
        kept.sort_by_key(|(o, s)| (std::cmp::Reverse(s.tech_bonus + s.day_bonus), self.order(**o).priority, **o));
        for (&o, s) in kept {
            let allowed = self.jobs[o].techs.contains(&s.tech) && self.jobs[o].days.contains(&s.day);
            if !self.is_placed(o) && self.order(o).crew <= 1 && allowed && self.fits(o, s.tech, s.day) {
                self.place(o, s.tech, s.day);
            }
        }
    }

    /// A critical order that found no hours takes them from orders of lower priority that
    /// are not started nor pinned: on the technician-day where that moves the fewest
    /// announced orders, then the least weight, then the fewest orders, earliest first.
    /// The orders taken off are planned again by the next rounds. Returns whether any moved.
    pub(crate) fn make_room_for_critical(&mut self, c: &Constraints) -> bool {
        let waiting: Vec<usize> = (0..self.jobs.len())
            .filter(|&o| {
                self.order(o).priority == Priority::Critical
                    && !self.is_placed(o)
                    && self.order(o).crew <= 1
                    && !self.jobs[o].released_later
            })
            .collect();
        let mut moved = false;
        for o in waiting {
            let mut best: Option<(RoomKey, usize, usize, Vec<usize>)> = None;
            for &t in &self.jobs[o].techs {
                for &d in &self.jobs[o].days {
                    let need = self.need(o, t, d);
                    if self.cap[t][d] + EPS < need {
                        continue;
                    }
                    let mut movable: Vec<usize> = (0..self.jobs.len())
                        .filter(|&p| self.placed[p].len() == 1 && self.placed[p][0].0 == t && self.placed[p][0].1 == d)
                        .filter(|&p| {
                            let q = self.order(p);
                            !q.started
                                && !self.pinned[p]
                                && q.pinned_technician.is_none()
                                && q.pinned_day.is_none()
                                && q.priority > Priority::Critical
                                && !c.fixed.contains_key(&p)
                        })
                        .collect();
                    movable.sort_by(|&a, &b| {
                        let key = |p: usize| (self.order(p).announced, self.jobs[p].weight);
                        key(a).cmp(&key(b)).then(self.jobs[b].hours.total_cmp(&self.jobs[a].hours))
                    });
                    let mut free = self.free(t, d);
                    let mut taken = Vec::new();
                    for p in movable {
                        if free + EPS >= need {
                            break;
                        }
                        free += self.jobs[p].hours + self.placed[p][0].2;
                        taken.push(p);
                    }
                    if free + EPS < need {
                        continue;
                    }
                    let announced = taken.iter().filter(|&&p| self.order(p).announced).count();
                    let weight: i64 = taken.iter().map(|&p| self.jobs[p].weight).sum();
                    let key = (announced, weight, taken.len(), self.lateness(o, d), d);
                    if best.as_ref().is_none_or(|b| key < b.0) {
                        best = Some((key, t, d, taken));
                    }
                }
            }
            if let Some((_, t, d, taken)) = best {
                for p in taken {
                    self.unplace(p);
                }
                self.place(o, t, d);
                moved = true;
            }
        }
        moved
    }

    /// The balance term's increase when technician `t`'s week gains `hours` (negative: loses).
    /// The term is Σ (week hours)² / week capacity over technicians: at a given total its
    /// minimum is the same utilisation for everyone, where Σ squared utilisation would load
    /// the technicians with longer weeks more. Scaled to a 35 h week.
    pub(crate) fn balance_increase(&self, t: usize, hours: f64) -> f64 {
        let load: f64 = self.used[t].iter().sum();
        balance_term(load + hours, self.week_cap[t]) - balance_term(load, self.week_cap[t])
    }

    /// The value of placing order `o` on technician `t`, day `d` (see the module doc).
    fn value(&self, o: usize, t: usize, d: usize, stay: Option<&Stay>) -> i64 {
        let job = &self.jobs[o];
        let saved = self.unplanned_lateness(o) - self.lateness(o, d);
        let mut v = LATE * job.weight * saved;
        if let Some(s) = stay {
            if s.tech == t {
                v += s.tech_bonus;
                if s.day == d {
                    v += s.day_bonus;
                }
            }
        }
        v -= self.balance_increase(t, self.need(o, t, d)).round() as i64;
        v - EARLY * d as i64
    }

    pub(crate) fn apply_fixed(&mut self, c: &Constraints) {
        let mut fixed: Vec<_> = c.fixed.iter().collect();
        fixed.sort_by_key(|(o, _)| **o);
        for (&o, places) in fixed {
            for &(t, d) in places {
                self.place(o, t, d);
            }
        }
    }

    /// Orders pinned to a technician and a day go there, whatever the capacity says.
    pub(crate) fn place_pins(&mut self) {
        for o in 0..self.jobs.len() {
            let order = self.order(o);
            if self.is_placed(o) || order.crew > 1 {
                continue;
            }
            let (Some(tech), Some(day)) = (&order.pinned_technician, order.pinned_day) else { continue };
            let (t, d) = (self.tech_index[tech.as_str()], self.day(day).expect("validated"));
            self.place(o, t, d);
            self.pinned[o] = true;
            if self.free(t, d) < -EPS {
                self.issues.push(Issue {
                    code: IssueCode::PinOverload,
                    order_id: order.id.clone(),
                    message: format!(
                        "épinglé chez {tech} le {day} : la journée dépasse sa capacité de {:.1} h",
                        -self.free(t, d)
                    ),
                });
            }
        }
    }

    /// Orders needing several technicians the same day: the earliest day where enough skilled
    /// technicians have the hours, and among them the ones with the most hours left.
    pub(crate) fn place_crews(&mut self) {
        let mut crews: Vec<usize> =
            (0..self.jobs.len()).filter(|&o| self.order(o).crew > 1 && !self.is_placed(o)).collect();
        crews.sort_by_key(|&o| (self.order(o).priority, self.jobs[o].due));
        for o in crews {
            let k = self.order(o).crew as usize;
            let pinned = self.order(o).pinned_technician.as_deref().and_then(|p| self.tech(p));
            let skilled: Vec<usize> = (0..self.input.technicians.len())
                .filter(|&t| self.input.technicians[t].has_skill(&self.order(o).skill) || Some(t) == pinned)
                .collect();
            for d in self.jobs[o].days.clone() {
                let mut fit: Vec<usize> = skilled.iter().copied().filter(|&t| self.fits(o, t, d)).collect();
                if pinned.is_some_and(|p| !fit.contains(&p)) {
                    continue;
                }
                fit.sort_by(|&a, &b| {
                    let key = |t: usize| (Some(t) != pinned, -self.free(t, d));
                    key(a).partial_cmp(&key(b)).expect("finite hours")
                });
                if fit.len() >= k {
                    for &t in &fit[..k] {
                        self.place(o, t, d);
                    }
                    break;
                }
            }
        }
    }
}

/// The week's plan for these inputs.
pub fn plan(input: &PlanInput) -> Result<Plan, PlanningError> {
    let mut c = Constraints::default();
    let board = Board::new(input)?;
    for (o, order) in input.orders.iter().enumerate() {
        if let (Some(t), Some(day)) = (order.current_technician.as_deref(), order.current_day) {
            let (Some(t), Some(d)) = (board.tech(t), board.day(day)) else { continue };
            c.stay.insert(o, Stay::for_order(order, t, d));
        } else if let Some(t) = order.current_technician.as_deref().and_then(|t| board.tech(t)) {
            let mut s = Stay::for_order(order, t, usize::MAX);
            s.day_bonus = 0;
            c.stay.insert(o, s);
        }
    }
    Ok(solve_with(board, &c, PLAN_BUDGET))
}

pub(crate) fn solve_with(mut board: Board<'_>, c: &Constraints, budget: Duration) -> Plan {
    board.apply_fixed(c);
    board.place_pins();
    board.keep_places(c);
    board.place_crews();
    // Two starts on the same pins, kept places and crews, each improved by the local search
    // (on its own thread: the rounds take longer than greedy); the better one is the plan.
    // Neither start wins everywhere: greedy's is usually later by weighted lateness, yet its
    // search sometimes ends ahead.
    let mut greedy = board.clone();
    let (rounds, greedy) = std::thread::scope(|s| {
        let greedy = s.spawn(move || {
            greedy.assign_greedy();
            if greedy.make_room_for_critical(c) {
                greedy.assign_greedy();
            }
            greedy.improve(c, budget);
            greedy
        });
        board.assign_rounds(c);
        if board.make_room_for_critical(c) {
            board.assign_rounds(c);
        }
        board.improve(c, budget);
        (board, greedy.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    if greedy.score(c) > rounds.score(c) { greedy } else { rounds }.finish()
}

/// The plan of the assignment rounds alone, without the greedy start and the local search:
/// for the benchmark, which shows what the search adds.
pub fn plan_rounds(input: &PlanInput) -> Result<Plan, PlanningError> {
    let mut board = Board::new(input)?;
    let c = Constraints::default();
    board.place_pins();
    board.place_crews();
    board.assign_rounds(&c);
    if board.make_room_for_critical(&c) {
        board.assign_rounds(&c);
    }
    Ok(board.finish())
}

/// The greedy earliest-deadline plan, for comparison.
pub fn plan_greedy(input: &PlanInput) -> Result<Plan, PlanningError> {
    let mut board = Board::new(input)?;
    board.place_pins();
    board.place_crews();
    board.assign_greedy();
    Ok(board.finish())
}
