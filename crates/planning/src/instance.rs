//! Planning instances generated from the workload data and the fleet's history, at any
//! size, for the benchmark and the tests: technicians cloned from the real profiles
//! (skills, hours a day), orders drawn from the AMDEC failure modes with the durations and
//! skills their past repairs had, and the preventive rhythm of the history.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Days;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{self, AmdecAction, Intervention};
use crate::model::{Order, PlanInput, Priority, Technician, Week};
use crate::PlanningError;

/// A kind of work order the fleet produces.
#[derive(Debug, Clone)]
pub struct OrderKind {
    pub equipement_id: String,
    pub failure_mode_code: String,
    pub skill: String,
    pub priority: Priority,
    /// Median hours of its past repairs.
    pub hours: f64,
    pub preventive: bool,
}

/// What the generator draws from.
#[derive(Debug, Clone)]
pub struct Reference {
    pub technicians: Vec<Technician>,
    pub kinds: Vec<OrderKind>,
}

impl Reference {
    /// From the clean CSVs of a data folder.
    pub fn from_dir(dir: &Path, week: Week) -> Result<Reference, PlanningError> {
        let s = data::Sources::from_dir(dir)?;
        Ok(Reference::from_rows(data::technicians_for_week(&s.workload, week), &s.amdec, &s.history))
    }

    pub fn from_rows(technicians: Vec<Technician>, amdec: &[AmdecAction], history: &[Intervention]) -> Reference {
        let skills_of =
            |id: &str| technicians.iter().find(|t| t.id == id).map(|t| t.skills.clone()).unwrap_or_default();
        let profile = |filter: &dyn Fn(&Intervention) -> bool| {
            let mut hours: Vec<f64> = Vec::new();
            let mut skills: BTreeMap<String, usize> = BTreeMap::new();
            for i in history.iter().filter(|i| filter(i)) {
                hours.extend(i.duration_h.filter(|h| *h > 0.0));
                for s in skills_of(&i.technician_id) {
                    *skills.entry(s).or_default() += 1;
                }
            }
            hours.sort_by(f64::total_cmp);
            let median = hours.get(hours.len() / 2).copied();
            let skill = skills.into_iter().max_by_key(|(s, n)| (*n, std::cmp::Reverse(s.clone()))).map(|(s, _)| s);
            (median, skill)
        };
        let mut kinds = Vec::new();
        for a in amdec {
            let (hours, skill) =
                profile(&|i| i.failure_mode_code == a.failure_mode_code && i.intervention_type != "preventive");
            let (Some(hours), Some(skill)) = (hours, skill) else { continue };
            let priority = match a.criticality.as_str() {
                "high" => Priority::High,
                "medium" => Priority::Medium,
                _ => Priority::Low,
            };
            kinds.push(OrderKind {
                equipement_id: a.equipement_id.clone(),
                failure_mode_code: a.failure_mode_code.clone(),
                skill,
                priority,
                hours,
                preventive: false,
            });
        }
        let mut equipments: Vec<&str> = amdec.iter().map(|a| a.equipement_id.as_str()).collect();
        equipments.sort_unstable();
        equipments.dedup();
        for e in equipments {
            let (hours, skill) = profile(&|i| i.equipement_id == e && i.intervention_type == "preventive");
            let (Some(hours), Some(skill)) = (hours, skill) else { continue };
            kinds.push(OrderKind {
                equipement_id: e.to_string(),
                failure_mode_code: String::new(),
                skill,
                priority: Priority::Low,
                hours,
                preventive: true,
            });
        }
        Reference { technicians, kinds }
    }
}

/// Shape of a generated instance.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub technicians: usize,
    pub orders: usize,
    /// Order hours over the technicians' hours of the week (1.0 = exactly full).
    pub load: f64,
    pub seed: u64,
}

/// An instance of the given shape: technicians cloned from the reference profiles (hours
/// ± 10 %, one absent day in twenty), orders drawn from the fleet's kinds (one in ten
/// corrective ones critical, a third of them released during the week; preventive ones due
/// within the week or the next days), hours scaled to the asked load.
pub fn generate(reference: &Reference, week: Week, shape: Shape) -> PlanInput {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let days = week.days();
    let technicians: Vec<Technician> = (0..shape.technicians)
        .map(|i| {
            let base = &reference.technicians[i % reference.technicians.len()];
            let mut t = base.clone();
            t.id = format!("T{:03}", i + 1);
            t.name = format!("{} #{}", base.name, i / reference.technicians.len() + 1);
            t.daily_hours = (base.daily_hours * rng.gen_range(0.9..1.1) * 4.0).round() / 4.0;
            t.absent_days = days.iter().copied().filter(|_| rng.gen_bool(0.05)).collect();
            t
        })
        .collect();
    // Each skill's share of the week's hours (a technician with two skills gives half to
    // each): orders are drawn per skill in that proportion and their hours scaled to it, so
    // the asked load holds for every trade and not only in total.
    let mut share: BTreeMap<&str, f64> = BTreeMap::new();
    for t in &technicians {
        let hours: f64 = days.iter().map(|&d| t.hours_on(d)).sum();
        for s in &t.skills {
            *share.entry(s).or_default() += hours / t.skills.len() as f64;
        }
    }
    share.retain(|s, _| reference.kinds.iter().any(|k| k.skill == *s));
    let skills: Vec<(&str, f64)> = share.iter().map(|(s, h)| (*s, *h)).collect();
    let total: f64 = skills.iter().map(|s| s.1).sum();
    let mut orders: Vec<Order> = (0..shape.orders)
        .map(|i| {
            let mut pick = rng.gen_range(0.0..total);
            let skill = skills.iter().find(|s| {
                pick -= s.1;
                pick < 0.0
            });
            let skill = skill.unwrap_or(skills.last().expect("a skill")).0;
            let of_skill: Vec<&OrderKind> = reference.kinds.iter().filter(|k| k.skill == skill).collect();
            let kind = of_skill.choose(&mut rng).expect("kinds of that skill");
            let hours = (kind.hours * rng.gen_range(0.5..1.5)).max(0.5);
            let priority = if !kind.preventive && rng.gen_bool(0.1) { Priority::Critical } else { kind.priority };
            let mut o = Order::new(&format!("OT-{:05}", i + 1), &kind.skill, priority, hours);
            o.equipement_id = kind.equipement_id.clone();
            o.failure_mode_code = kind.failure_mode_code.clone();
            if kind.preventive {
                o.deadline = Some(days[0] + Days::new(rng.gen_range(0..7)));
            } else if rng.gen_bool(0.33) {
                o.release = Some(days[rng.gen_range(1..4)]);
            }
            o
        })
        .collect();
    let longest_day = technicians.iter().map(|t| t.daily_hours).fold(0.0, f64::max);
    for (skill, hours) in &skills {
        let asked: f64 = orders.iter().filter(|o| o.skill == *skill).map(|o| o.estimated_hours).sum();
        if asked <= 0.0 {
            continue;
        }
        let scale = shape.load * hours / asked;
        for o in orders.iter_mut().filter(|o| o.skill == *skill) {
            o.estimated_hours = ((o.estimated_hours * scale * 4.0).round() / 4.0).clamp(0.25, longest_day.max(0.25));
        }
    }
    PlanInput { week, technicians, orders, travel: Vec::new() }
}
