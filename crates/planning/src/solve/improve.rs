//! Local search over a constructed plan (each of the planner's two starts, see `solve`).
//!
//! The assignment rounds place at most one order per technician-day per round. When a week
//! holds two or three orders per technician-day that fragments the days (1.5 h left on many
//! days while 3 h orders wait), and an overloaded week then leaves more orders out than the
//! greedy baseline. The search repeats these moves until none improves the plan or the
//! budget is spent:
//!
//! - insert an order left out: directly, or by taking one placed order off a technician-day,
//!   which goes to its best other place or, when it weighs less, out of the week;
//! - relocate a placed order to its best place;
//! - swap two placed orders.
//!
//! A move is made only when it improves the plan's [`Score`], compared lexicographically:
//! weighted lateness, then the number of orders planned, then commitments (the `Stay`
//! bonuses), then the last field, with earlier days as the tie-break. That last field is
//! first packing (free hours in few large holes, where more orders fit), then balance
//! (`Board::balance_increase`): two stages, as balancing first spreads the free hours thin.
//! The result is never later, by weighted lateness, than the plan the search started from.
//! Orders fixed by a re-plan, pinned to a technician-day, or worked by a crew do not move.

use std::collections::HashMap;
use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

use super::{balance_term, Board, Constraints, Stay, EARLY, EPS};

/// A change of balance below this is rounding noise, not an improvement.
const MIN_GAIN: f64 = 1e-3;
/// At most this many passes over all the moves (each pass that improves nothing ends the search).
const MAX_PASSES: usize = 50;

/// What the search's moves favour after lateness, orders planned and commitments.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// Free hours in few large holes rather than many small ones, where more orders fit:
    /// Σ (free hours of a technician-day)².
    Pack,
    /// Even utilisation (`Board::balance_increase`).
    Balance,
}

/// Weight of packing against the early-day tie-break.
const PACK: f64 = 1_000.0;

/// What a plan, or a change of it, is worth; the fields compare in order (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub(crate) struct Score {
    /// Σ priority weight × days saved against leaving the order out.
    saved: i64,
    /// Orders planned.
    planned: i64,
    /// Bonuses for orders left where they were started, announced or planned.
    commitments: i64,
    /// −BALANCE × Σ squared utilisation − EARLY × day index.
    rest: f64,
}

impl Score {
    /// Whether a change worth this is an improvement.
    fn improves(self) -> bool {
        let head = (self.saved, self.planned, self.commitments);
        head > (0, 0, 0) || (head == (0, 0, 0) && self.rest > MIN_GAIN)
    }

    fn rest(rest: f64) -> Score {
        Score { rest, ..Score::default() }
    }
}

impl Add for Score {
    type Output = Score;
    fn add(self, o: Score) -> Score {
        Score {
            saved: self.saved + o.saved,
            planned: self.planned + o.planned,
            commitments: self.commitments + o.commitments,
            rest: self.rest + o.rest,
        }
    }
}

impl Sub for Score {
    type Output = Score;
    fn sub(self, o: Score) -> Score {
        Score {
            saved: self.saved - o.saved,
            planned: self.planned - o.planned,
            commitments: self.commitments - o.commitments,
            rest: self.rest - o.rest,
        }
    }
}

/// A move of the search: the orders to take off, then the placements to make.
struct Move {
    off: Vec<usize>,
    on: Vec<(usize, usize, usize)>,
    gain: Score,
}

impl Board<'_> {
    /// What order `o` on technician `t`, day `d` is worth, balance aside.
    fn merit(&self, o: usize, t: usize, d: usize, stay: Option<&Stay>) -> Score {
        let saved = self.unplanned_lateness(o) - self.lateness(o, d);
        let commitments =
            stay.filter(|s| s.tech == t).map_or(0, |s| s.tech_bonus + if s.day == d { s.day_bonus } else { 0 });
        Score { saved: self.jobs[o].weight * saved, planned: 1, commitments, rest: -((EARLY * d as i64) as f64) }
    }

    /// What the last field of the score gains when technicians' days change by these hours
    /// (`(technician, day, hours)`): balance, or packing.
    fn shape_change(&self, goal: Goal, changes: &[(usize, usize, f64)]) -> f64 {
        let mut total = 0.0;
        for (i, &(t, d, _)) in changes.iter().enumerate() {
            match goal {
                Goal::Balance => {
                    if changes[..i].iter().any(|&(u, _, _)| u == t) {
                        continue;
                    }
                    let dh: f64 = changes.iter().filter(|&&(u, _, _)| u == t).map(|&(_, _, h)| h).sum();
                    total -= self.balance_increase(t, dh);
                }
                Goal::Pack => {
                    if changes[..i].iter().any(|&(u, e, _)| (u, e) == (t, d)) {
                        continue;
                    }
                    let dh: f64 = changes.iter().filter(|&&(u, e, _)| (u, e) == (t, d)).map(|&(_, _, h)| h).sum();
                    let free = self.free(t, d).max(0.0);
                    total += PACK * ((free - dh).max(0.0).powi(2) - free.powi(2));
                }
            }
        }
        total
    }

    /// The whole plan's score, to choose the search's start.
    pub(crate) fn score(&self, c: &Constraints) -> Score {
        let mut s = Score::default();
        for o in 0..self.jobs.len() {
            if let Some(&(t, d, _)) = self.placed[o].iter().max_by_key(|p| p.1) {
                s = s + self.merit(o, t, d, c.stay.get(&o));
            }
        }
        let balance: f64 =
            (0..self.used.len()).map(|t| balance_term(self.used[t].iter().sum(), self.week_cap[t])).sum();
        s + Score::rest(-balance)
    }

    /// Whether the search may place, move or take off this order.
    fn movable(&self, o: usize, c: &Constraints) -> bool {
        self.order(o).crew <= 1
            && !self.pinned[o]
            && !self.jobs[o].released_later
            && self.placed[o].len() <= 1
            && !c.fixed.contains_key(&o)
    }

    /// Whether the search may leave this placed order out to make room for a heavier one:
    /// not a started order, nor one a supervisor pinned.
    fn may_leave_out(&self, o: usize) -> bool {
        let order = self.order(o);
        !order.started && order.pinned_technician.is_none() && order.pinned_day.is_none()
    }

    /// Improves the plan by local search: first packing the days so that more orders fit,
    /// then balancing the load, each until no move improves the plan, `MAX_PASSES` passes are
    /// done, or the `budget` is spent.
    pub(crate) fn improve(&mut self, c: &Constraints, budget: Duration) {
        let until = Instant::now() + budget;
        for goal in [Goal::Pack, Goal::Balance] {
            for _ in 0..MAX_PASSES {
                match self.pass(c, goal, until) {
                    Some(true) => {}
                    Some(false) => break,
                    None => return,
                }
            }
        }
    }

    /// One pass of every move; whether any improved the plan (`None`: out of time).
    fn pass(&mut self, c: &Constraints, goal: Goal, until: Instant) -> Option<bool> {
        let mut improved = false;
        let mut open: Vec<usize> =
            (0..self.jobs.len()).filter(|&o| self.placed[o].is_empty() && self.movable(o, c)).collect();
        // Heaviest first, then the earliest due, the small before the large.
        open.sort_by(|&a, &b| {
            (self.jobs[b].weight, self.jobs[a].due)
                .cmp(&(self.jobs[a].weight, self.jobs[b].due))
                .then(self.jobs[a].hours.total_cmp(&self.jobs[b].hours))
        });
        let mut alternatives = HashMap::new();
        for u in open {
            if Instant::now() > until {
                return None;
            }
            if let Some(m) = self.best_insertion(u, c, goal, &mut alternatives) {
                improved |= self.apply(m);
                alternatives.clear();
            }
        }
        for o in 0..self.jobs.len() {
            if Instant::now() > until {
                return None;
            }
            if self.placed[o].len() == 1 && self.movable(o, c) {
                if let Some(m) = self.best_relocation(o, c, goal) {
                    improved |= self.apply(m);
                }
            }
        }
        improved |= self.swaps(c, goal, until)?;
        Some(improved)
    }

    /// Makes a move; undone (and `false`) if travel made it overflow a day.
    fn apply(&mut self, m: Move) -> bool {
        let before: Vec<(usize, usize, usize)> =
            m.off.iter().map(|&o| (o, self.placed[o][0].0, self.placed[o][0].1)).collect();
        for &o in &m.off {
            self.unplace(o);
        }
        for &(o, t, d) in &m.on {
            self.place(o, t, d);
        }
        if m.on.iter().all(|&(_, t, d)| self.free(t, d) >= -EPS) {
            return true;
        }
        for &(o, _, _) in &m.on {
            self.unplace(o);
        }
        for (o, t, d) in before {
            self.place(o, t, d);
        }
        false
    }

    /// The best place for `o` other than `skip`, scored as if `o` were not planned yet (so
    /// only the shape of the day it would join counts), with that score.
    fn best_place(
        &self,
        o: usize,
        skip: (usize, usize),
        stay: Option<&Stay>,
        goal: Goal,
    ) -> Option<(Score, usize, usize)> {
        let mut best: Option<(Score, usize, usize)> = None;
        for &t in &self.jobs[o].techs {
            for &d in &self.jobs[o].days {
                if (t, d) == skip || !self.fits(o, t, d) {
                    continue;
                }
                let s = self.merit(o, t, d, stay) + Score::rest(self.shape_change(goal, &[(t, d, self.need(o, t, d))]));
                if best.is_none_or(|b| s > b.0) {
                    best = Some((s, t, d));
                }
            }
        }
        best
    }

    /// The best improving way to plan the open order `u`: directly, or in the place of a
    /// placed order that goes elsewhere or out. `alternatives` caches each placed order's
    /// best other place while the plan does not change.
    fn best_insertion(
        &self,
        u: usize,
        c: &Constraints,
        goal: Goal,
        alternatives: &mut HashMap<usize, Option<(Score, usize, usize)>>,
    ) -> Option<Move> {
        let stay_u = c.stay.get(&u);
        if let Some((gain, t, d)) = self.best_place(u, (usize::MAX, usize::MAX), stay_u, goal) {
            if gain.improves() {
                return Some(Move { off: vec![], on: vec![(u, t, d)], gain });
            }
        }
        let mut best: Option<Move> = None;
        for &t in &self.jobs[u].techs {
            for &d in &self.jobs[u].days {
                let need_u = self.need(u, t, d);
                if self.cap[t][d] + EPS < need_u {
                    continue;
                }
                let merit_u = self.merit(u, t, d, stay_u);
                for &p in &self.slot_orders[t][d] {
                    if !self.movable(p, c) {
                        continue;
                    }
                    let freed = self.jobs[p].hours + self.placed[p][0].2;
                    if self.free(t, d) + freed + EPS < need_u {
                        continue;
                    }
                    let stay_p = c.stay.get(&p);
                    let base = merit_u - self.merit(p, t, d, stay_p);
                    // Cheap bound first: `p` at its best elsewhere, or out.
                    if !(base
                        + Score {
                            saved: self.jobs[p].weight * self.unplanned_lateness(p),
                            planned: 1,
                            commitments: 1_000_000,
                            rest: 0.0,
                        })
                    .improves()
                    {
                        continue;
                    }
                    let alt = *alternatives.entry(p).or_insert_with(|| self.best_place(p, (t, d), stay_p, goal));
                    let mut options = Vec::with_capacity(2);
                    if self.may_leave_out(p) {
                        let gain = base + Score::rest(self.shape_change(goal, &[(t, d, need_u - freed)]));
                        options.push(Move { off: vec![p], on: vec![(u, t, d)], gain });
                    }
                    if let Some((_, t2, d2)) = alt {
                        let need_p = self.need(p, t2, d2);
                        let gain = base
                            + self.merit(p, t2, d2, stay_p)
                            + Score::rest(self.shape_change(goal, &[(t, d, need_u - freed), (t2, d2, need_p)]));
                        options.push(Move { off: vec![p], on: vec![(u, t, d), (p, t2, d2)], gain });
                    }
                    for m in options {
                        if m.gain.improves() && best.as_ref().is_none_or(|b| m.gain > b.gain) {
                            best = Some(m);
                        }
                    }
                }
            }
        }
        best
    }

    /// The best improving other place for the placed order `o`.
    fn best_relocation(&self, o: usize, c: &Constraints, goal: Goal) -> Option<Move> {
        let (t0, d0, travel) = self.placed[o][0];
        let stay = c.stay.get(&o);
        let here = self.merit(o, t0, d0, stay);
        let freed = self.jobs[o].hours + travel;
        let mut best: Option<Move> = None;
        for &t in &self.jobs[o].techs {
            for &d in &self.jobs[o].days {
                if (t, d) == (t0, d0) || !self.fits(o, t, d) {
                    continue;
                }
                let gain = self.merit(o, t, d, stay) - here
                    + Score::rest(self.shape_change(goal, &[(t0, d0, -freed), (t, d, self.need(o, t, d))]));
                if gain.improves() && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Move { off: vec![o], on: vec![(o, t, d)], gain });
                }
            }
        }
        best
    }

    /// One pass of swaps between placed orders on different technician-days; whether any was
    /// made (`None`: out of time).
    fn swaps(&mut self, c: &Constraints, goal: Goal, until: Instant) -> Option<bool> {
        let placed: Vec<usize> =
            (0..self.jobs.len()).filter(|&o| self.placed[o].len() == 1 && self.movable(o, c)).collect();
        // Which technician-days each of them may take, as a table: the pairs are many.
        let (n_techs, n_days) = (self.cap.len(), self.days.len());
        let mut allowed = vec![false; self.jobs.len() * n_techs * n_days];
        for &o in &placed {
            for &t in &self.jobs[o].techs {
                for &d in &self.jobs[o].days {
                    allowed[(o * n_techs + t) * n_days + d] = true;
                }
            }
        }
        let allowed = |o: usize, t: usize, d: usize| allowed[(o * n_techs + t) * n_days + d];
        let mut improved = false;
        for (i, &p) in placed.iter().enumerate() {
            if Instant::now() > until {
                return None;
            }
            let mut best: Option<Move> = None;
            for &q in &placed[i + 1..] {
                let ((t1, d1, tr1), (t2, d2, tr2)) = (self.placed[p][0], self.placed[q][0]);
                if (t1, d1) == (t2, d2) || !allowed(p, t2, d2) || !allowed(q, t1, d1) {
                    continue;
                }
                let (out_p, out_q) = (self.jobs[p].hours + tr1, self.jobs[q].hours + tr2);
                let (in_p, in_q) = (self.need(p, t2, d2), self.need(q, t1, d1));
                if self.free(t1, d1) + out_p + EPS < in_q || self.free(t2, d2) + out_q + EPS < in_p {
                    continue;
                }
                let (sp, sq) = (c.stay.get(&p), c.stay.get(&q));
                let gain = self.merit(p, t2, d2, sp) + self.merit(q, t1, d1, sq)
                    - self.merit(p, t1, d1, sp)
                    - self.merit(q, t2, d2, sq)
                    + Score::rest(self.shape_change(goal, &[(t1, d1, in_q - out_p), (t2, d2, in_p - out_q)]));
                if gain.improves() && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Move { off: vec![p, q], on: vec![(p, t2, d2), (q, t1, d1)], gain });
                }
            }
            if let Some(m) = best {
                improved |= self.apply(m);
            }
        }
        Some(improved)
    }
}
