//! The two constructive starts the local search improves: rounds of assignment solved by
//! Kuhn-Munkres, and the greedy earliest-deadline baseline (see the parent module's doc).

use std::collections::HashMap;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use super::{Board, Constraints, EPS, FORBIDDEN};
use crate::model::Priority;

impl Board<'_> {
    /// The rounds of assignment (see the module doc).
    pub(crate) fn assign_rounds(&mut self, c: &Constraints) {
        // A round gives each technician-day one order at most, so a first round over every
        // order would put a small one on each day and leave no whole day for the large ones.
        // Large orders (over half a day of their technicians) and critical ones go first.
        // Orders with a place to keep go first too, so the levels never take it from them.
        let first = |b: &Board<'_>, o: usize| {
            let day = b.jobs[o].techs.iter().map(|&t| b.input.technicians[t].daily_hours).fold(0.0, f64::max);
            b.order(o).priority == Priority::Critical || b.jobs[o].hours > 0.5 * day || c.stay.contains_key(&o)
        };
        self.rounds(c, &first, f64::INFINITY);
        // Then the rest, filling technicians level by level: a round fills every open
        // technician-day, so without levels the hours would go by day count, not by
        // utilisation, and a technician with fewer hours or more skills would stay idle.
        for level in [0.8, f64::INFINITY] {
            self.rounds(c, &|_, _| true, level);
        }
    }

    /// Rounds over the open orders `phase` selects, on the technicians whose utilisation is
    /// below `level`, until nothing more fits.
    fn rounds(&mut self, c: &Constraints, phase: &dyn Fn(&Board<'_>, usize) -> bool, level: f64) {
        loop {
            let open: Vec<usize> = (0..self.jobs.len())
                .filter(|&o| !self.is_placed(o) && self.order(o).crew <= 1 && !self.jobs[o].released_later)
                .filter(|&o| phase(self, o))
                .collect();
            let slots: Vec<(usize, usize)> = (0..self.input.technicians.len())
                .flat_map(|t| (0..self.days.len()).map(move |d| (t, d)))
                .filter(|&(t, d)| self.free(t, d) > EPS && self.utilisation(t) < level)
                .collect();
            if open.is_empty() || slots.is_empty() {
                return;
            }
            let slot_index: HashMap<(usize, usize), usize> = slots.iter().enumerate().map(|(i, &s)| (s, i)).collect();
            let mut value = vec![FORBIDDEN; open.len() * slots.len()];
            let mut any = false;
            for (i, &o) in open.iter().enumerate() {
                let stay = c.stay.get(&o);
                for &t in &self.jobs[o].techs {
                    for &d in &self.jobs[o].days {
                        let Some(&s) = slot_index.get(&(t, d)) else { continue };
                        if self.fits(o, t, d) {
                            value[i * slots.len() + s] = self.value(o, t, d, stay);
                            any = true;
                        }
                    }
                }
            }
            if !any {
                return;
            }
            // Kuhn-Munkres wants rows ≤ columns: the smaller side is the rows, and each row
            // gets a private "nothing this round" column worth 0.
            let orders_are_rows = open.len() <= slots.len();
            let (rows, cols) = if orders_are_rows { (open.len(), slots.len()) } else { (slots.len(), open.len()) };
            let at = |r: usize, c: usize| {
                if orders_are_rows {
                    value[r * slots.len() + c]
                } else {
                    value[c * slots.len() + r]
                }
            };
            let weights = Matrix::from_fn(rows, cols + rows, |(r, c)| {
                if c < cols {
                    at(r, c)
                } else if c - cols == r {
                    0
                } else {
                    FORBIDDEN
                }
            });
            let (_, matched) = kuhn_munkres(&weights);
            let mut placed_any = false;
            for (r, &c) in matched.iter().enumerate() {
                if c >= cols || at(r, c) <= 0 {
                    continue;
                }
                let (i, s) = if orders_are_rows { (r, c) } else { (c, r) };
                let (o, (t, d)) = (open[i], slots[s]);
                self.place(o, t, d);
                placed_any = true;
            }
            if !placed_any {
                return;
            }
        }
    }

    /// Greedy earliest-deadline placement (the benchmark's baseline): by deadline then
    /// priority, each order on its earliest day, with the skilled technician who has the
    /// most hours left that day.
    pub(crate) fn assign_greedy(&mut self) {
        let mut open: Vec<usize> = (0..self.jobs.len())
            .filter(|&o| !self.is_placed(o) && self.order(o).crew <= 1 && !self.jobs[o].released_later)
            .collect();
        open.sort_by_key(|&o| (self.jobs[o].due, self.order(o).priority));
        for o in open {
            let best = self.jobs[o].days.iter().find_map(|&d| {
                self.jobs[o]
                    .techs
                    .iter()
                    .copied()
                    .filter(|&t| self.fits(o, t, d))
                    .max_by(|&a, &b| self.free(a, d).partial_cmp(&self.free(b, d)).expect("finite hours"))
                    .map(|t| (t, d))
            });
            if let Some((t, d)) = best {
                self.place(o, t, d);
            }
        }
    }
}
