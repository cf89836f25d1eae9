//! The planner on small hand-made weeks: constraints, infeasible inputs, pins, re-planning,
//! explanations, bad input.

use std::collections::HashSet;

use chrono::{Days, NaiveDate};
use proact_planning::{
    add_order, explain, pin, plan, IssueCode, Order, PlanInput, PlanningError, Priority, Technician, Travel, Week,
};

fn week() -> Week {
    "2026-W10".parse().unwrap()
}

fn day(i: u64) -> NaiveDate {
    week().monday() + Days::new(i)
}

fn order(id: &str, skill: &str, priority: Priority, hours: f64) -> Order {
    Order::new(id, skill, priority, hours)
}

fn input(technicians: Vec<Technician>, orders: Vec<Order>) -> PlanInput {
    PlanInput { week: week(), technicians, orders, travel: Vec::new() }
}

/// A week generated from the sample data of `data/` (`proact_planning::instance`).
fn generated(technicians: usize, orders: usize, load: f64, seed: u64) -> PlanInput {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let reference = proact_planning::instance::Reference::from_dir(&dir, week()).unwrap();
    proact_planning::instance::generate(
        &reference,
        week(),
        proact_planning::instance::Shape { technicians, orders, load, seed },
    )
}

/// Hours planned per (technician, day) never exceed the day's hours.
fn assert_capacity(p: &proact_planning::Plan) {
    for l in &p.loads {
        for (h, c) in l.day_hours.iter().zip(&l.day_capacity) {
            assert!(h <= &(c + 1e-9), "{} over capacity: {h} > {c}", l.technician_id);
        }
    }
}

#[test]
fn every_order_goes_to_a_skilled_technician_within_capacity() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["electrique"], 8.0)];
    let orders: Vec<Order> = (0..8)
        .map(|i| order(&format!("M{i}"), if i % 2 == 0 { "mecanique" } else { "electrique" }, Priority::Medium, 3.0))
        .collect();
    let p = plan(&input(techs, orders)).unwrap();
    assert!(p.unplanned.is_empty(), "{:?}", p.issues);
    for a in &p.assignments {
        let want = if a.order_id[1..].parse::<u32>().unwrap() % 2 == 0 { "T1" } else { "T2" };
        assert_eq!(a.technician_id, want, "{a:?}");
    }
    assert_capacity(&p);
    assert_eq!(p.weighted_lateness, 0.0);
}

#[test]
fn load_is_balanced_between_equal_technicians() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["mecanique"], 8.0)];
    let orders = (0..6).map(|i| order(&format!("M{i}"), "mecanique", Priority::Low, 4.0)).collect();
    let p = plan(&input(techs, orders)).unwrap();
    let hours: Vec<f64> = p.loads.iter().map(|l| l.planned_hours).collect();
    assert_eq!(hours, vec![12.0, 12.0], "{:?}", p.assignments);
    assert_eq!(p.load_spread_pct, 0.0);
}

#[test]
fn a_technician_with_a_shorter_week_is_loaded_as_much_as_the_others() {
    // 18 h of work for a 40 h week and a 20 h week: 30 % each is 12 h and 6 h.
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["mecanique"], 4.0)];
    let orders = (0..12).map(|i| order(&format!("M{i}"), "mecanique", Priority::Low, 1.5)).collect();
    let p = plan(&input(techs, orders)).unwrap();
    assert!(p.unplanned.is_empty());
    let hours: Vec<f64> = p.loads.iter().map(|l| l.planned_hours).collect();
    assert_eq!(hours, vec![12.0, 6.0], "{:?}", p.assignments);
    assert_eq!(p.load_spread_pct, 0.0);
}

#[test]
fn urgent_orders_come_first_when_capacity_is_short() {
    // One technician, 8 h a day for 5 days = 40 h; 48 h of work: the low-priority ones wait.
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0)];
    let mut orders: Vec<Order> = (0..10).map(|i| order(&format!("L{i}"), "mecanique", Priority::Low, 4.0)).collect();
    for i in 0..2 {
        let mut c = order(&format!("C{i}"), "mecanique", Priority::Critical, 4.0);
        c.release = Some(day(2));
        orders.push(c);
    }
    let p = plan(&input(techs, orders)).unwrap();
    for c in ["C0", "C1"] {
        let a = p.assignments_of(c).next().unwrap_or_else(|| panic!("{c} unplanned"));
        assert_eq!(a.lateness_days, 0, "{a:?}");
        assert!(a.day >= day(2), "not before its release: {a:?}");
    }
    assert_eq!(p.unplanned.len(), 2);
    assert!(p.unplanned.iter().all(|o| o.starts_with('L')));
    assert!(p.issues.iter().any(|i| i.code == IssueCode::NoCapacity));
    assert_capacity(&p);
}

#[test]
fn infeasible_orders_are_reported_with_their_reason_and_the_rest_is_planned() {
    let mut t2 = Technician::new("T2", &["thermique"], 8.0);
    t2.absent_days = week().days();
    let techs = vec![Technician::new("T1", &["mecanique"], 6.0), t2];
    let mut late = order("CRIT", "mecanique", Priority::Critical, 6.0);
    late.deadline = Some(day(0));
    let mut blocker = order("PIN", "mecanique", Priority::Low, 6.0);
    blocker.pinned_technician = Some("T1".into());
    blocker.pinned_day = Some(day(0));
    let orders = vec![
        order("HYD", "hydraulique", Priority::High, 2.0),
        order("TH", "thermique", Priority::High, 2.0),
        late,
        blocker,
        order("OK", "mecanique", Priority::Medium, 2.0),
    ];
    let p = plan(&input(techs, orders)).unwrap();
    let code = |id: &str| p.issues.iter().filter(|i| i.order_id == id).map(|i| i.code).collect::<Vec<_>>();
    assert_eq!(code("HYD"), vec![IssueCode::NoSkill]);
    assert!(p.issues.iter().any(|i| i.order_id == "HYD" && i.message.contains("hydraulique")));
    assert_eq!(code("TH"), vec![IssueCode::NoAvailability]);
    assert_eq!(code("CRIT"), vec![IssueCode::DeadlineMissed], "{:?}", p.issues);
    assert_eq!(p.assignments_of("CRIT").next().unwrap().lateness_days, 1, "placed as early as it can");
    assert!(p.assignments_of("OK").next().is_some(), "the rest is planned");
    assert_eq!(p.unplanned, vec!["HYD".to_string(), "TH".to_string()]);
}

#[test]
fn pins_are_respected_even_against_the_objective() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["mecanique"], 8.0)];
    let mut a = order("A", "mecanique", Priority::Low, 5.0);
    a.pinned_technician = Some("T2".into());
    a.pinned_day = Some(day(3));
    let mut b = order("B", "mecanique", Priority::Low, 5.0);
    b.pinned_technician = Some("T2".into());
    b.pinned_day = Some(day(3));
    let mut c = order("C", "mecanique", Priority::Low, 2.0);
    c.pinned_technician = Some("T1".into());
    let p = plan(&input(techs, vec![a, b, c])).unwrap();
    for id in ["A", "B"] {
        let x = p.assignments_of(id).next().unwrap();
        assert_eq!((x.technician_id.as_str(), x.day, x.pinned), ("T2", day(3), true));
    }
    assert_eq!(p.assignments_of("C").next().unwrap().technician_id, "T1");
    assert!(p.issues.iter().any(|i| i.code == IssueCode::PinOverload), "10 h on an 8 h day is reported");
}

#[test]
fn a_crew_order_gets_several_technicians_the_same_day() {
    let techs = (1..=3).map(|i| Technician::new(&format!("T{i}"), &["mecanique"], 8.0)).collect();
    let mut big = order("BIG", "mecanique", Priority::High, 6.0);
    big.crew = 2;
    let p = plan(&input(techs, vec![big])).unwrap();
    let a: Vec<_> = p.assignments_of("BIG").collect();
    assert_eq!(a.len(), 2);
    assert_ne!(a[0].technician_id, a[1].technician_id);
    assert_eq!(a[0].day, a[1].day);
}

#[test]
fn travel_between_sites_takes_capacity() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0)];
    let mut orders = Vec::new();
    for (id, site) in [("A", "Nord"), ("B", "Sud")] {
        let mut o = order(id, "mecanique", Priority::Medium, 3.5);
        o.site = Some(site.into());
        o.pinned_day = Some(day(0));
        orders.push(o);
    }
    let mut i = input(techs, orders);
    i.travel = vec![Travel { from: "Nord".into(), to: "Sud".into(), hours: 1.5 }];
    let p = plan(&i).unwrap();
    // 3.5 + 3.5 + 1.5 > 8: the second one cannot go on Monday, its only allowed day.
    assert_eq!(p.assignments.len(), 1, "{:?}", p.assignments);
    assert_eq!(p.unplanned.len(), 1);
}

#[test]
fn a_critical_order_replans_only_the_affected_days_and_says_what_moved() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["mecanique"], 8.0)];
    // 8 h a day each, every day full with two 4 h orders: 20 orders.
    let mut orders: Vec<Order> = (0..20).map(|i| order(&format!("O{i:02}"), "mecanique", Priority::Low, 4.0)).collect();
    for o in &mut orders {
        o.deadline = Some(day(6));
    }
    let before_input = input(techs, orders);
    let before = plan(&before_input).unwrap();
    assert!(before.unplanned.is_empty());
    // Mark Monday's and Tuesday's orders as started / announced.
    let mut with_status = before_input.clone();
    for o in &mut with_status.orders {
        let a = before.assignments_of(&o.id).next().unwrap();
        if a.day <= day(1) {
            o.announced = true;
            o.current_technician = Some(a.technician_id.clone());
            o.current_day = Some(a.day);
        }
    }
    let mut urgent = order("URG", "mecanique", Priority::Critical, 4.0);
    urgent.release = Some(day(2));
    urgent.alert_id = Some("alert-42".into());
    urgent.equipement_id = "PUMP-01".into();
    let (next_input, after) = add_order(&with_status, &before, urgent).unwrap();
    assert_eq!(next_input.orders.len(), 21);
    let u = after.assignments_of("URG").next().expect("the critical order is planned");
    assert_eq!(u.lateness_days, 0);
    assert!(u.day >= day(2) && u.day <= day(3), "{u:?}");
    assert_eq!(after.trigger_alert_id.as_deref(), Some("alert-42"));
    // Something had to give exactly 4 h; nothing on Monday or Tuesday moved.
    assert_eq!(after.moves.len(), 1, "{:#?}", after.moves);
    let m = &after.moves[0];
    assert!(m.from_day >= day(2) && m.from_day <= day(3));
    assert!(m.reason.contains("URG") && m.reason.contains("alerte alert-42"), "{}", m.reason);
    let moved: HashSet<&str> = after.moves.iter().map(|m| m.order_id.as_str()).collect();
    for a in &before.assignments {
        if !moved.contains(a.order_id.as_str()) {
            let now = after.assignments_of(&a.order_id).next().unwrap();
            assert_eq!(
                (&now.technician_id, now.day),
                (&a.technician_id, a.day),
                "{} moved without being listed",
                a.order_id
            );
        }
    }
    assert_capacity(&after);
}

#[test]
fn a_started_order_keeps_its_technician() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["mecanique"], 8.0)];
    let mut running = order("RUN", "mecanique", Priority::Low, 4.0);
    running.started = true;
    running.current_technician = Some("T2".into());
    // T2 already has more to do than T1: balance alone would hand RUN over to T1.
    let mut busy = order("BUSY", "mecanique", Priority::Low, 8.0);
    busy.pinned_technician = Some("T2".into());
    let p = plan(&input(techs, vec![running, busy])).unwrap();
    assert_eq!(p.assignments_of("RUN").next().unwrap().technician_id, "T2");
    assert_eq!(p.handovers, 0);
}

#[test]
fn a_manual_pin_replans_and_is_kept() {
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["mecanique"], 8.0)];
    let orders = (0..4).map(|i| order(&format!("O{i}"), "mecanique", Priority::Low, 4.0)).collect();
    let i = input(techs, orders);
    let p = plan(&i).unwrap();
    let (next, after) = pin(&i, &p, "O0", "T1", Some(day(4))).unwrap();
    let a = after.assignments_of("O0").next().unwrap();
    assert_eq!((a.technician_id.as_str(), a.day, a.pinned), ("T1", day(4), true));
    assert_eq!(next.orders[0].pinned_technician.as_deref(), Some("T1"));
    assert!(matches!(pin(&i, &p, "O0", "T9", None), Err(PlanningError::UnknownTechnician { .. })));
    assert!(matches!(pin(&i, &p, "NOPE", "T1", None), Err(PlanningError::UnknownOrder(_))));
}

#[test]
fn explanations_say_why_and_why_not() {
    let mut t3 = Technician::new("T3", &["mecanique"], 8.0);
    t3.absent_days = week().days();
    let techs = vec![Technician::new("T1", &["mecanique"], 8.0), Technician::new("T2", &["electrique"], 8.0), t3];
    let i = input(techs, vec![order("A", "mecanique", Priority::High, 3.0)]);
    let p = plan(&i).unwrap();
    let e = explain(&i, &p, "A").unwrap();
    assert!(e.text.contains("T1") && e.text.contains("dans les délais"), "{}", e.text);
    assert!(e.alternatives.iter().any(|l| l.starts_with("T2") && l.contains("compétence")), "{:?}", e.alternatives);
    assert!(e.alternatives.iter().any(|l| l.starts_with("T3") && l.contains("absent")), "{:?}", e.alternatives);
    assert!(matches!(explain(&i, &p, "Z"), Err(PlanningError::UnknownOrder(_))));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let techs = || vec![Technician::new("T1", &["mecanique"], 8.0)];
    let mut unknown = order("A", "mecanique", Priority::Low, 2.0);
    unknown.pinned_technician = Some("T9".into());
    let e = plan(&input(techs(), vec![unknown])).unwrap_err().to_string();
    assert_eq!(e, "order A: unknown technician `T9`");
    let e = plan(&input(techs(), vec![order("B", "mecanique", Priority::Low, -1.0)])).unwrap_err().to_string();
    assert!(e.contains("order B") && e.contains("-1"), "{e}");
    let e = plan(&input(
        techs(),
        vec![order("C", "mecanique", Priority::Low, 2.0), order("C", "mecanique", Priority::Low, 2.0)],
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("order C") && e.contains("twice"), "{e}");
    let mut saturday = order("D", "mecanique", Priority::Low, 2.0);
    saturday.pinned_day = Some(day(5));
    let e = plan(&input(techs(), vec![saturday])).unwrap_err().to_string();
    assert!(e.contains("not a working day of 2026-W10"), "{e}");
    let e = "2025-W53".parse::<Week>().unwrap_err().to_string();
    assert_eq!(e, "invalid week `2025-W53`: 2025 has no ISO week 53");
}

#[test]
fn generated_instances_are_valid_and_the_planner_beats_greedy() {
    for seed in 1..=3 {
        let input = generated(30, 200, 1.1, seed);
        assert_eq!((input.technicians.len(), input.orders.len()), (30, 200));
        let p = plan(&input).unwrap();
        let g = proact_planning::plan_greedy(&input).unwrap();
        assert_capacity(&p);
        assert!(
            p.weighted_lateness <= g.weighted_lateness,
            "seed {seed}: {} > greedy {}",
            p.weighted_lateness,
            g.weighted_lateness
        );
    }
}

#[test]
fn an_overloaded_week_leaves_out_fewer_orders_than_greedy_with_a_more_even_load() {
    // Eight orders per technician at 110 % of their hours: the assignment rounds alone
    // fragmented the days and left out more orders than greedy (73 against 61 here).
    let input = generated(50, 400, 1.1, 11);
    let p = plan(&input).unwrap();
    let g = proact_planning::plan_greedy(&input).unwrap();
    assert_capacity(&p);
    assert!(p.weighted_lateness <= g.weighted_lateness, "{} > greedy {}", p.weighted_lateness, g.weighted_lateness);
    assert!(p.unplanned.len() <= g.unplanned.len(), "{} left out, greedy {}", p.unplanned.len(), g.unplanned.len());
    assert!(p.load_spread_pct <= g.load_spread_pct, "spread {} > greedy {}", p.load_spread_pct, g.load_spread_pct);
}

#[test]
fn a_replan_of_a_generated_week_moves_few_orders() {
    let input = generated(30, 200, 0.9, 1);
    let before = plan(&input).unwrap();
    let mut urgent = order("URG", "mecanique", Priority::Critical, 4.0);
    urgent.release = Some(day(2));
    let (_, after) = add_order(&input, &before, urgent).unwrap();
    assert_eq!(after.assignments_of("URG").next().map(|a| a.lateness_days), Some(0));
    // Four hours to find on Wednesday or Thursday: at most a couple of orders give way.
    assert!(after.moves.len() <= 2, "{} moves: {:#?}", after.moves.len(), after.moves);
    let moved: HashSet<&str> = after.moves.iter().map(|m| m.order_id.as_str()).collect();
    let unchanged = before.assignments.iter().filter(|a| !moved.contains(a.order_id.as_str()));
    for a in unchanged {
        assert!(after.assignments.contains(a), "{} moved without being listed", a.order_id);
    }
}
