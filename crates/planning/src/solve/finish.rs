//! Turning the solver's final board into the [`Plan`]: assignments, orders left out and why
//! (in French, for the supervisor), loads and figures.

use super::{Board, EPS};
use crate::model::Priority;
use crate::plan::{Assignment, Issue, IssueCode, Plan, TechnicianLoad};

impl Board<'_> {
    /// Reports what could not be done and computes the plan's figures.
    pub(crate) fn finish(mut self) -> Plan {
        let mut assignments = Vec::new();
        let mut unplanned = Vec::new();
        let mut weighted = 0i64;
        let mut handovers = 0;
        for o in 0..self.jobs.len() {
            let order = self.order(o);
            let job = &self.jobs[o];
            if job.released_later {
                unplanned.push(order.id.clone());
                self.issues.push(Issue {
                    code: IssueCode::ReleasedLater,
                    order_id: order.id.clone(),
                    message: format!("disponible seulement à partir du {}", order.release_on(self.days[0])),
                });
                continue;
            }
            if self.placed[o].is_empty() {
                unplanned.push(order.id.clone());
                weighted += job.weight * self.unplanned_lateness(o);
                let issue = self.why_unplanned(o);
                self.issues.push(issue);
                if order.priority == Priority::Critical {
                    self.issues.push(self.deadline_missed(o, None));
                }
                continue;
            }
            let day = self.placed[o].iter().map(|p| p.1).max().expect("placed");
            let late = self.lateness(o, day);
            weighted += job.weight * late;
            if late > 0 && order.priority == Priority::Critical {
                self.issues.push(self.deadline_missed(o, Some(day)));
            }
            if order.started {
                if let Some(cur) = order.current_technician.as_deref() {
                    if !self.placed[o].iter().any(|p| self.input.technicians[p.0].id == cur) {
                        handovers += 1;
                    }
                }
            }
            for &(t, d, travel) in &self.placed[o] {
                assignments.push(Assignment {
                    order_id: order.id.clone(),
                    technician_id: self.input.technicians[t].id.clone(),
                    day: self.days[d],
                    hours: job.hours,
                    travel_hours: travel,
                    lateness_days: self.lateness(o, d),
                    pinned: self.pinned[o] || order.pinned_technician.is_some() || order.pinned_day.is_some(),
                });
            }
        }
        assignments.sort_by(|a, b| (a.day, &a.technician_id, &a.order_id).cmp(&(b.day, &b.technician_id, &b.order_id)));
        let loads: Vec<TechnicianLoad> = self
            .input
            .technicians
            .iter()
            .enumerate()
            .map(|(t, tech)| TechnicianLoad {
                technician_id: tech.id.clone(),
                planned_hours: self.used[t].iter().sum(),
                capacity_hours: self.week_cap[t],
                day_hours: self.used[t].clone(),
                day_capacity: self.cap[t].clone(),
            })
            .collect();
        let utils: Vec<f64> = loads.iter().filter_map(TechnicianLoad::utilisation_pct).collect();
        let spread = match (utils.iter().copied().reduce(f64::max), utils.iter().copied().reduce(f64::min)) {
            (Some(hi), Some(lo)) => hi - lo,
            _ => 0.0,
        };
        Plan {
            week: self.input.week,
            days: self.days.clone(),
            assignments,
            unplanned,
            issues: self.issues,
            loads,
            weighted_lateness: weighted as f64,
            load_spread_pct: spread,
            handovers,
            moves: Vec::new(),
            trigger_alert_id: None,
        }
    }

    fn why_unplanned(&self, o: usize) -> Issue {
        let order = self.order(o);
        let job = &self.jobs[o];
        let (code, message) = if job.techs.is_empty() {
            (IssueCode::NoSkill, format!("aucun technicien n'a la compétence « {} »", order.skill))
        } else if job.techs.iter().all(|&t| job.days.iter().all(|&d| self.cap[t][d] <= EPS)) {
            (
                IssueCode::NoAvailability,
                format!("les techniciens compétents en « {} » sont absents les jours possibles", order.skill),
            )
        } else {
            let best = job.techs.iter().flat_map(|&t| job.days.iter().map(move |&d| (t, d)));
            let most_free = best.map(|(t, d)| self.free(t, d)).fold(0.0, f64::max);
            (
                IssueCode::NoCapacity,
                format!(
                    "pas de créneau : besoin de {:.1} h{}, au plus {:.1} h libres chez un technicien compétent",
                    job.hours,
                    if order.crew > 1 { format!(" pour {} techniciens", order.crew) } else { String::new() },
                    most_free
                ),
            )
        };
        Issue { code, order_id: order.id.clone(), message }
    }

    fn deadline_missed(&self, o: usize, day: Option<usize>) -> Issue {
        let order = self.order(o);
        let when = match day {
            Some(d) => format!("planifié au plus tôt le {}", self.days[d]),
            None => "non planifié cette semaine".to_string(),
        };
        Issue {
            code: IssueCode::DeadlineMissed,
            order_id: order.id.clone(),
            message: format!(
                "échéance du {} intenable avec la capacité des techniciens en « {} » : {when}",
                self.jobs[o].due, order.skill
            ),
        }
    }
}
