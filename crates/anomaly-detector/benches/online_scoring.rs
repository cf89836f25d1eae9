//! `just bench online`: the scoring loop's throughput with the online detectors on and off,
//! side by side in one run, and the online state's size per equipment.
//!
//! 1,000 equipment (so states do not all sit in the L1 cache) send two channels (temperature,
//! vibration: a cycle, noise, a drift on one equipment in ten) once a second of event time;
//! `Engine::observe` runs on one thread, rules on, no trained model, first with the online
//! detectors off, then on (the same readings, a fresh engine each), then on alone
//! (`proact_online::EquipmentDetector::observe`, no window nor episode). Readings/s per
//! core and the ratios are printed. The state size is `EquipmentDetector::size_bytes` after
//! the run (fixed whatever the history) and the length of its JSON form.
//! `PROACT_BENCH_READINGS` sets the readings per pass (default 2,000,000).

use std::time::Instant;

use proact_anomaly_detector::engine::{channel_values, Engine, EngineConfig};
use proact_online::{EquipmentDetector, OnlineConfig};
use proact_proto::v1::Telemetry;

const EQUIPMENT: usize = 1000;

fn reading(k: usize) -> Telemetry {
    let (e, i) = (k % EQUIPMENT, (k / EQUIPMENT) as i64);
    // A cheap deterministic noise: the fractional part of a large multiple.
    let noise = ((k as f64 * 0.618_033_988_7).fract() - 0.5) * 2.0;
    let cycle = (i as f64 * std::f64::consts::TAU / 600.0 + e as f64).sin();
    let drift = if e % 10 == 0 { i as f64 * 0.002 } else { 0.0 };
    Telemetry {
        equipement_id: format!("EQ-{e:04}"),
        ts_micros: 1_700_000_000_000_000 + i * 1_000_000,
        temperature: 60.0 + 5.0 * cycle + noise + drift,
        vibration: 3.0 + 0.5 * cycle.abs() + 0.2 * noise,
        ..Default::default()
    }
}

fn engine_pass(readings: &[Telemetry], online: bool) -> f64 {
    let mut engine = Engine::new(EngineConfig { max_future_micros: i64::MAX, ..Default::default() });
    engine.set_online(online.then(OnlineConfig::default));
    let start = Instant::now();
    let mut transitions = 0usize;
    for t in readings {
        transitions += engine.observe(t, "", t.ts_micros).len();
    }
    let per_s = readings.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "engine, online {}: {:.0} readings/s on one core ({transitions} transitions)",
        if online { "on " } else { "off" },
        per_s
    );
    per_s
}

fn main() {
    let n: usize = std::env::var("PROACT_BENCH_READINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let readings: Vec<Telemetry> = (0..n).map(reading).collect();
    println!("{n} readings of {EQUIPMENT} equipment, two channels each");
    let off = engine_pass(&readings, false);
    let on = engine_pass(&readings, true);

    let cfg = OnlineConfig::default();
    let schema = proact_features::FeatureSchema::base();
    let mut states: Vec<EquipmentDetector> = vec![EquipmentDetector::default(); EQUIPMENT];
    let mut values = Vec::with_capacity(2);
    let start = Instant::now();
    let mut alarms = 0usize;
    for (k, t) in readings.iter().enumerate() {
        channel_values(&schema, t, &mut values);
        alarms += usize::from(states[k % EQUIPMENT].observe(t.ts_micros, &values, &cfg).score >= cfg.threshold);
    }
    let alone = n as f64 / start.elapsed().as_secs_f64();
    println!("online detectors alone: {alone:.0} readings/s on one core ({alarms} alarming readings)");
    println!("ratios: engine online on / off = {:.2}; online alone / engine online on = {:.2}", on / off, alone / on);

    let sizes: Vec<usize> = states.iter().map(EquipmentDetector::size_bytes).collect();
    let json = serde_json::to_vec(&states[1]).expect("serialise").len();
    let stored: Vec<usize> = states.iter().map(|s| proact_anomaly_detector::checkpoint::encode(s).len()).collect();
    println!(
        "online state per equipment (two channels): {} bytes in memory (max over {EQUIPMENT}: {}), {json} bytes as JSON, \
         {} bytes as checkpointed (max over {EQUIPMENT}: {})",
        sizes[1],
        sizes.iter().max().copied().unwrap_or(0),
        stored[1],
        stored.iter().max().copied().unwrap_or(0)
    );
}
