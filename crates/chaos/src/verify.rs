//! The checks after recovery, on what was counted: rows archived ⊇ messages acked to the
//! publisher, rows archived ⊆ messages published, no duplicate rows, and each hot episode
//! raised exactly once to the connected client. Pure functions over the counts, so the
//! checks themselves are tested to fail.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::plan::Plan;
use crate::publisher::Ledger;
use crate::watcher::Delivered;

/// One row of `telemetry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub equipement_id: String,
    pub ts_micros: i64,
    pub temperature: f64,
}

/// A `raised` event found in the alerts stream itself (to tell a detector duplicate from a
/// delivery duplicate).
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub alert_id: String,
    pub equipement_id: String,
    pub start_micros: i64,
}

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub published: u64,
    pub acked: u64,
    pub resent: u64,
    pub archived: u64,
    pub duplicate_rows: u64,
    pub missing_acked: u64,
    /// Published, not acknowledged, archived anyway (at-least-once at work).
    pub archived_unacked: u64,
    pub episodes_expected: u64,
    /// Episodes with hot readings published but none acknowledged: may or may not be raised.
    pub episodes_unacked: u64,
    pub episodes_delivered: u64,
    pub raised_events: u64,
    pub cleared_events: u64,
    pub events_delivered: u64,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub counts: Counts,
    pub violations: Vec<String>,
}

/// Violations of one kind are listed up to this many, then counted.
const SHOW: usize = 8;

fn push_all(out: &mut Vec<String>, what: &str, items: Vec<String>) {
    if items.is_empty() {
        return;
    }
    let n = items.len();
    let shown: Vec<String> = items.into_iter().take(SHOW).collect();
    let more = if n > SHOW { format!(" (and {} more)", n - SHOW) } else { String::new() };
    out.push(format!("{what}: {n}: {}{more}", shown.join("; ")));
}

pub fn check(plan: &Plan, ledger: &Ledger, rows: &[Row], delivered: &[Delivered], stream: &[Raised]) -> Verdict {
    let mut v = Verdict::default();
    let c = &mut v.counts;
    c.published = ledger.sent;
    c.acked = ledger.acked_count;
    c.resent = ledger.resent;
    let acked = |i: u64| ledger.acked.get(i as usize).copied().unwrap_or(false);

    // Rows.
    let mut keys: HashSet<(&str, i64)> = HashSet::with_capacity(rows.len());
    let mut not_published = Vec::new();
    let mut wrong_value = Vec::new();
    let mut duplicates = Vec::new();
    for r in rows {
        if !keys.insert((r.equipement_id.as_str(), r.ts_micros)) {
            duplicates.push(format!("{} @ {}", r.equipement_id, r.ts_micros));
            continue;
        }
        match plan.index_of(&r.equipement_id, r.ts_micros) {
            Some(i) if i < ledger.sent => {
                if !acked(i) {
                    c.archived_unacked += 1;
                }
                let want = plan.reading(i).temperature;
                if (r.temperature - want).abs() > 1e-9 {
                    wrong_value.push(format!("reading {i}: temperature {} stored, {want} sent", r.temperature));
                }
            }
            _ => not_published.push(format!("{} @ {}", r.equipement_id, r.ts_micros)),
        }
    }
    c.archived = keys.len() as u64;
    c.duplicate_rows = duplicates.len() as u64;
    let mut missing = Vec::new();
    for i in 0..ledger.sent {
        if acked(i) {
            let r = plan.reading(i);
            if !keys.contains(&(plan.equipment[r.equipment].as_str(), r.ts_micros)) {
                missing.push(format!("reading {i} ({} @ {})", plan.equipment[r.equipment], r.ts_micros));
            }
        }
    }
    c.missing_acked = missing.len() as u64;
    push_all(&mut v.violations, "acked to the publisher but not archived", missing);
    push_all(&mut v.violations, "archived but never published", not_published);
    push_all(&mut v.violations, "duplicate rows", duplicates);
    push_all(&mut v.violations, "archived with another value", wrong_value);

    // Episodes: which have hot readings acked, which were only published.
    let mut acked_hot: BTreeMap<u64, bool> = BTreeMap::new();
    for i in 0..ledger.sent {
        if let Some(k) = plan.reading(i).episode {
            *acked_hot.entry(k).or_default() |= acked(i);
        }
    }
    c.episodes_expected = acked_hot.values().filter(|a| **a).count() as u64;
    c.episodes_unacked = acked_hot.values().filter(|a| !**a).count() as u64;
    let episode_of = |equipment: &str, start: i64| {
        acked_hot.keys().copied().find(|&k| {
            let (lo, hi) = plan.episode_span(k);
            // The gateway sends times in milliseconds.
            plan.episode_equipment(k) == equipment && start > lo - 1_000 && start < hi + 1_000
        })
    };

    let mut ids = HashSet::new();
    let mut twice = Vec::new();
    let mut raised: BTreeMap<u64, Vec<&Delivered>> = BTreeMap::new();
    let mut spurious = Vec::new();
    c.events_delivered = delivered.len() as u64;
    for d in delivered {
        if !ids.insert(d.event_id.as_str()) {
            twice.push(format!("event {} ({} of {})", d.event_id, d.kind, d.alert_id));
        }
        match d.kind.as_str() {
            "raised" => {
                c.raised_events += 1;
                match episode_of(&d.equipement_id, d.start_micros) {
                    Some(k) => raised.entry(k).or_default().push(d),
                    None => spurious.push(format!("{} ({}, rule {})", d.alert_id, d.event_id, d.rule)),
                }
            }
            "cleared" => c.cleared_events += 1,
            _ => {}
        }
    }
    let in_stream = |k: u64| stream.iter().filter(|r| episode_of(&r.equipement_id, r.start_micros) == Some(k)).count();
    let mut not_delivered = Vec::new();
    let mut raised_more = Vec::new();
    for (&k, &was_acked) in &acked_hot {
        let got = raised.get(&k).map(Vec::len).unwrap_or(0);
        let (start, _) = plan.episode_span(k);
        if got > 0 {
            c.episodes_delivered += 1;
        }
        if got == 0 && was_acked {
            not_delivered.push(format!(
                "episode {k} ({} from {start}; {} raise(s) in the alerts stream)",
                plan.episode_equipment(k),
                in_stream(k)
            ));
        }
        if got > 1 {
            let events: Vec<String> = raised[&k].iter().map(|d| format!("{} as {}", d.alert_id, d.event_id)).collect();
            raised_more.push(format!(
                "episode {k} ({}): {got} raised delivered [{}], {} in the alerts stream",
                plan.episode_equipment(k),
                events.join(", "),
                in_stream(k)
            ));
        }
    }
    push_all(&mut v.violations, "episodes with an acked hot reading never raised to the client", not_delivered);
    push_all(&mut v.violations, "episodes raised more than once", raised_more);
    push_all(&mut v.violations, "raised alerts matching no planned episode", spurious);
    push_all(&mut v.violations, "events delivered twice", twice);
    v
}

/// Rows by equipment, to print which equipment lost what.
pub fn missing_by_equipment(plan: &Plan, ledger: &Ledger, rows: &[Row]) -> HashMap<String, u64> {
    let keys: HashSet<(&str, i64)> = rows.iter().map(|r| (r.equipement_id.as_str(), r.ts_micros)).collect();
    let mut out = HashMap::new();
    for i in 0..ledger.sent {
        if ledger.acked.get(i as usize).copied().unwrap_or(false) {
            let r = plan.reading(i);
            let id = &plan.equipment[r.equipment];
            if !keys.contains(&(id.as_str(), r.ts_micros)) {
                *out.entry(id.clone()).or_default() += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 100;

    /// 40 s of a clean run: every reading published, acked, archived, each episode raised once.
    fn clean() -> (Plan, Ledger, Vec<Row>, Vec<Delivered>) {
        let plan = Plan::new(1_764_000_000_000_000, RATE, 8);
        let n = 40 * RATE as u64;
        let ledger = Ledger { sent: n, acked: vec![true; n as usize], acked_count: n, ..Default::default() };
        let rows = (0..n)
            .map(|i| {
                let r = plan.reading(i);
                Row {
                    equipement_id: plan.equipment[r.equipment].clone(),
                    ts_micros: r.ts_micros,
                    temperature: r.temperature,
                }
            })
            .collect();
        let mut seen = BTreeMap::new();
        for i in 0..n {
            let r = plan.reading(i);
            if let Some(k) = r.episode {
                seen.entry(k).or_insert(r);
            }
        }
        let delivered = seen
            .into_iter()
            .map(|(k, r)| Delivered {
                event_id: format!("{k}-0"),
                kind: "raised".into(),
                alert_id: format!("{}-{}", plan.equipment[r.equipment], r.ts_micros),
                equipement_id: plan.equipment[r.equipment].clone(),
                start_micros: r.ts_micros,
                rule: "temperature_critical".into(),
            })
            .collect();
        (plan, ledger, rows, delivered)
    }

    #[test]
    fn a_clean_run_passes() {
        let (plan, ledger, rows, delivered) = clean();
        let v = check(&plan, &ledger, &rows, &delivered, &[]);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.counts.episodes_expected, 3, "episodes at 6, 18 and 30 s");
        assert_eq!(v.counts.episodes_delivered, 3);
        assert_eq!(v.counts.archived, 4000);
    }

    #[test]
    fn a_lost_acked_row_fails_and_an_unacked_one_does_not() {
        let (plan, mut ledger, mut rows, delivered) = clean();
        rows.remove(10);
        let v = check(&plan, &ledger, &rows, &delivered, &[]);
        assert_eq!(v.counts.missing_acked, 1);
        assert!(v.violations[0].starts_with("acked to the publisher but not archived: 1"), "{:?}", v.violations);
        ledger.acked[10] = false;
        ledger.acked_count -= 1;
        assert!(check(&plan, &ledger, &rows, &delivered, &[]).violations.is_empty());
    }

    #[test]
    fn duplicates_and_rows_never_published_fail() {
        let (plan, ledger, mut rows, delivered) = clean();
        rows.push(rows[3].clone());
        rows.push(Row { equipement_id: "CHAOS-01".into(), ts_micros: 1, temperature: 1.0 });
        let mut changed = rows[5].clone();
        rows.remove(5);
        changed.temperature += 1.0;
        rows.push(changed);
        let v = check(&plan, &ledger, &rows, &delivered, &[]);
        assert_eq!(v.counts.duplicate_rows, 1);
        let all = v.violations.join("\n");
        assert!(all.contains("duplicate rows: 1"), "{all}");
        assert!(all.contains("archived but never published: 1"), "{all}");
        assert!(all.contains("archived with another value: 1"), "{all}");
    }

    #[test]
    fn episodes_must_be_raised_exactly_once() {
        let (plan, ledger, rows, mut delivered) = clean();
        let lost = delivered.remove(0);
        let mut again = delivered[0].clone();
        again.event_id = "99-0".into();
        again.alert_id = "other".into();
        delivered.push(again);
        let mut replayed = delivered[1].clone();
        replayed.kind = "raised".into();
        delivered.push(replayed);
        delivered.push(Delivered { equipement_id: "CHAOS-07".into(), event_id: "100-0".into(), ..lost.clone() });
        let v = check(&plan, &ledger, &rows, &delivered, &[]);
        let all = v.violations.join("\n");
        assert!(all.contains("never raised to the client: 1"), "{all}");
        assert!(all.contains("raised more than once: 2"), "{all}");
        assert!(all.contains("matching no planned episode: 1"), "{all}");
        assert!(all.contains("events delivered twice: 1"), "{all}");
    }

    #[test]
    fn an_episode_with_nothing_acked_need_not_be_raised() {
        let (plan, mut ledger, rows, mut delivered) = clean();
        for i in 0..ledger.sent {
            if plan.reading(i).episode == Some(0) {
                ledger.acked[i as usize] = false;
            }
        }
        delivered.remove(0);
        let v = check(&plan, &ledger, &rows, &delivered, &[]);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.counts.episodes_expected, v.counts.episodes_unacked), (2, 1));
    }
}
