//! `just bench planning`: the planner against the greedy earliest-deadline baseline and,
//! on small instances, the proven MILP optimum; plan and re-plan times. Instances come from
//! the workload data and the fleet's history (`data/`, see `proact_planning::instance`).
//!
//! Environment: `PLANNING_MILP_SECS` (time limit of each MILP, default 60),
//! `PLANNING_SEEDS` (instances per small shape, default 5), `PLANNING_FIRST_SEED` (default 1:
//! the reported seeds; tuning runs use other seeds, see docs/BENCHMARKS.md). Prints Markdown
//! tables and writes `target/bench-planning/results.json`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proact_planning::exact::optimum;
use proact_planning::instance::{generate, Reference, Shape};
use proact_planning::{add_order, plan, plan_greedy, plan_rounds, Order, Plan, Priority, Week};
use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64() * 1000.0)
}

/// The MILP optimum of a generated instance, in a child process (this same binary) killed
/// after `limit`: microlp cannot be interrupted, and a search left running would steal the
/// CPU from the timings that follow. Returns (Σ weighted lateness, spread, ms).
fn optimum_within(shape: Shape, limit: Duration) -> Option<(f64, f64, f64)> {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, format!("{},{},{},{}", shape.technicians, shape.orders, shape.load, shape.seed))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["lateness"].as_f64()?, v["spread"].as_f64()?, v["ms"].as_f64()?))
}

const CHILD: &str = "PLANNING_BENCH_MILP";

/// The child side of [`optimum_within`].
fn milp_child(spec: &str, reference: &Reference, week: Week) {
    let f: Vec<f64> = spec.split(',').map(|x| x.parse().unwrap()).collect();
    let shape = Shape { technicians: f[0] as usize, orders: f[1] as usize, load: f[2], seed: f[3] as u64 };
    let input = generate(reference, week, shape);
    let (p, ms) = timed(|| optimum(&input).expect("MILP"));
    println!("{}", json!({"lateness": p.weighted_lateness, "spread": p.load_spread_pct, "ms": ms}));
}

fn critical_order(input: &proact_planning::PlanInput, id: &str) -> Order {
    let mut o = Order::new(id, "mecanique", Priority::Critical, 4.0);
    o.release = Some(input.week.days()[2]);
    o.equipement_id = "PUMP-01".into();
    o.alert_id = Some(format!("alert-{id}"));
    o
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let week: Week = "2026-W10".parse().unwrap();
    let reference = Reference::from_dir(&root, week).expect("data/ has the clean CSVs");
    let milp_secs: f64 = env_or("PLANNING_MILP_SECS", 60.0);
    let seeds: u64 = env_or("PLANNING_SEEDS", 5);
    let first_seed: u64 = env_or("PLANNING_FIRST_SEED", 1);
    if let Ok(spec) = std::env::var(CHILD) {
        milp_child(&spec, &reference, week);
        return;
    }
    let mut results = Vec::new();

    println!(
        "\n### Small instances: planner and greedy against the MILP optimum (load 1.1, seeds {first_seed}..{})\n",
        first_seed + seeds - 1
    );
    println!("| shape | seeds proven | Σ lateness optimum | planner | greedy | planner gap | greedy gap | spread opt / planner / greedy (pts) | time MILP / planner (ms) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (techs, orders) in [(3, 12), (4, 16), (6, 24), (8, 40)] {
        let (mut opt, mut pl, mut gr, mut proven) = (0.0, 0.0, 0.0, 0);
        let (mut s_opt, mut s_pl, mut s_gr) = (Vec::new(), Vec::new(), Vec::new());
        let (mut t_opt, mut t_pl) = (Vec::new(), Vec::new());
        for seed in first_seed..first_seed + seeds {
            let shape = Shape { technicians: techs, orders, load: 1.1, seed };
            let input = generate(&reference, week, shape);
            let Some((exact, exact_spread, t)) = optimum_within(shape, Duration::from_secs_f64(milp_secs)) else {
                continue;
            };
            t_opt.push(t);
            let (p, t) = timed(|| plan(&input).unwrap());
            t_pl.push(t);
            let g = plan_greedy(&input).unwrap();
            proven += 1;
            opt += exact;
            pl += p.weighted_lateness;
            gr += g.weighted_lateness;
            s_opt.push(exact_spread);
            s_pl.push(p.load_spread_pct);
            s_gr.push(g.load_spread_pct);
            results.push(json!({"kind": "small", "technicians": techs, "orders": orders, "seed": seed,
                "optimum": exact, "planner": p.weighted_lateness,
                "greedy": g.weighted_lateness, "spread_optimum": exact_spread,
                "spread_planner": p.load_spread_pct, "spread_greedy": g.load_spread_pct}));
        }
        if proven == 0 {
            println!("| {techs} × {orders} × 5 | 0/{seeds} (none within {milp_secs} s) | | | | | | | |");
            continue;
        }
        let gap =
            |x: f64| if opt > 0.0 { format!("{:+.1} %", 100.0 * (x - opt) / opt) } else { format!("{x:+.0} (opt 0)") };
        println!(
            "| {techs} × {orders} × 5 | {proven}/{seeds} | {opt:.0} | {pl:.0} | {gr:.0} | {} | {} | {:.1} / {:.1} / {:.1} | {:.0} / {:.1} |",
            gap(pl),
            gap(gr),
            median(&s_opt),
            median(&s_pl),
            median(&s_gr),
            median(&t_opt),
            median(&t_pl)
        );
    }

    println!(
        "\n### Full-size instances: planner against the rounds alone and greedy (seeds {first_seed}..{})\n",
        first_seed + 2
    );
    println!("| shape | load | Σ lateness planner / rounds / greedy | unplanned planner / rounds / greedy | spread planner / rounds / greedy (pts) | plan ms planner / rounds / greedy (median) | re-plan ms (median) | moves per re-plan (median) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (techs, orders, load) in [(30, 200, 0.9), (30, 200, 1.1), (100, 1000, 0.9), (100, 1000, 1.1)] {
        let (mut lp, mut lr, mut lg, mut up, mut ur, mut ug) = (0.0, 0.0, 0.0, 0, 0, 0);
        let (mut sp, mut sr, mut sg) = (vec![], vec![], vec![]);
        let (mut tp, mut trd, mut tg, mut tr, mut moves) = (vec![], vec![], vec![], vec![], vec![]);
        for seed in first_seed..first_seed + 3 {
            let input = generate(&reference, week, Shape { technicians: techs, orders, load, seed });
            let mut p: Option<Plan> = None;
            for _ in 0..if techs <= 30 { 5 } else { 1 } {
                let (x, t) = timed(|| plan(&input).unwrap());
                tp.push(t);
                p = Some(x);
            }
            let p = p.unwrap();
            let (r, t) = timed(|| plan_rounds(&input).unwrap());
            trd.push(t);
            let (g, t) = timed(|| plan_greedy(&input).unwrap());
            tg.push(t);
            lp += p.weighted_lateness;
            lr += r.weighted_lateness;
            lg += g.weighted_lateness;
            up += p.unplanned.len();
            ur += r.unplanned.len();
            ug += g.unplanned.len();
            sp.push(p.load_spread_pct);
            sr.push(r.load_spread_pct);
            sg.push(g.load_spread_pct);
            for k in 0..if techs <= 30 { 20 } else { 3 } {
                let ((_, after), t) =
                    timed(|| add_order(&input, &p, critical_order(&input, &format!("URG-{k}"))).unwrap());
                tr.push(t);
                moves.push(after.moves.len() as f64);
            }
            results.push(json!({"kind": "full", "technicians": techs, "orders": orders, "load": load, "seed": seed,
                "planner": p.weighted_lateness, "rounds": r.weighted_lateness, "greedy": g.weighted_lateness,
                "unplanned_planner": p.unplanned.len(), "unplanned_rounds": r.unplanned.len(),
                "unplanned_greedy": g.unplanned.len(), "spread_planner": p.load_spread_pct,
                "spread_rounds": r.load_spread_pct, "spread_greedy": g.load_spread_pct}));
        }
        println!(
            "| {techs} × {orders} × 5 | {load} | {lp:.0} / {lr:.0} / {lg:.0} | {up} / {ur} / {ug} | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} / {:.1} | {:.0} | {:.1} |",
            median(&sp),
            median(&sr),
            median(&sg),
            median(&tp),
            median(&trd),
            median(&tg),
            median(&tr),
            median(&moves)
        );
        results.push(json!({"kind": "timing", "technicians": techs, "orders": orders, "load": load,
            "plan_ms": median(&tp), "rounds_ms": median(&trd), "greedy_ms": median(&tg), "replan_ms": median(&tr)}));
    }

    println!("\n### The MILP on the 30 × 200 instance (why it is not the planner)\n");
    let shape = Shape { technicians: 30, orders: 200, load: 1.1, seed: first_seed };
    let p = plan(&generate(&reference, week, shape)).unwrap();
    match optimum_within(shape, Duration::from_secs_f64(milp_secs)) {
        Some((lateness, _, ms)) => {
            println!("MILP: optimal in {ms:.0} ms, Σ lateness {lateness:.0} (planner {:.0})", p.weighted_lateness)
        }
        None => println!("MILP: no answer within {milp_secs} s (planner: Σ lateness {:.0})", p.weighted_lateness),
    }

    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-planning");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
}
