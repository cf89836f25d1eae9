//! Simulated readings: what a machine of the fleet ([`proact_store::taxonomy`]) measures at
//! a given time, nominal or degrading during one of its failure episodes.

use proact_store::taxonomy::{Equipment, FailureMode};
use rand::Rng;

/// A reading of `eq` at time `t` (seconds), `degradation` in [0, 1] for the episode's `mode`.
pub fn reading(eq: &Equipment, t: i64, mode: Option<&FailureMode>, degradation: f64, rng: &mut impl Rng) -> Sample {
    let (t0, v0) = eq.kind.nominal();
    // A daily cycle of a few degrees plus sensor noise.
    let day = (t.rem_euclid(86_400)) as f64 / 86_400.0 * std::f64::consts::TAU;
    let mut temperature = t0 + 3.0 * day.sin() + rng.gen_range(-1.0..1.0);
    let mut vibration = v0 + rng.gen_range(-0.4..0.4);
    if let Some(m) = mode {
        temperature += m.temp_rise * degradation;
        vibration += m.vib_rise * degradation;
    }
    let pressure = 4.0 + rng.gen_range(-0.1..0.1)
        - if mode.is_some_and(|m| m.code == "CAVITATION") { 1.5 * degradation } else { 0.0 };
    let current = 30.0 + rng.gen_range(-0.5..0.5) + 6.0 * degradation;
    Sample {
        temperature: round2(temperature),
        vibration: round2(vibration.max(0.0)),
        pressure: round2(pressure),
        current: round2(current),
    }
}

/// One simulated reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub temperature: f64,
    pub vibration: f64,
    pub pressure: f64,
    pub current: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proact_store::taxonomy::fleet;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_late_episode_runs_hot() {
        let eq = &fleet()[6]; // MOTOR-01: every mode rises
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mode = &eq.kind.failure_modes()[0];
        let s = reading(eq, 0, Some(mode), 1.0, &mut rng);
        assert!(s.temperature > 90.0, "{s:?}");
        let n = reading(eq, 0, None, 0.0, &mut rng);
        assert!(n.temperature < 70.0, "{n:?}");
    }
}
