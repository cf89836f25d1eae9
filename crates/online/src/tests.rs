//! Behaviour of the online detector on synthetic series whose truth is known.

use super::*;

/// Deterministic noise, roughly normal (sum of four uniforms, unit variance).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..4 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        }
        s * 3f64.sqrt()
    }
}

const STEP: i64 = 60_000_000;

/// Scores every value of a one-channel series in order (score, then learn).
fn run(series: &[f64], cfg: &OnlineConfig) -> Vec<f64> {
    let mut d = EquipmentDetector::default();
    series.iter().enumerate().map(|(i, &x)| d.observe(i as i64 * STEP, &[x], cfg).score).collect()
}

/// Indices where an episode opens: an alarming reading after at least `hold` calm ones.
fn onsets(scores: &[f64], threshold: f64, hold: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut calm = hold;
    for (i, &s) in scores.iter().enumerate() {
        if s >= threshold {
            if calm >= hold {
                out.push(i);
            }
            calm = 0;
        } else {
            calm += 1;
        }
    }
    out
}

fn seasonal(n: usize, noise: &mut Noise) -> Vec<f64> {
    (0..n).map(|i| 10.0 * (i as f64 * std::f64::consts::TAU / 48.0).sin() + 0.5 * noise.next()).collect()
}

#[test]
fn a_seasonal_series_with_a_level_shift_raises_one_episode_then_adapts() {
    let cfg = OnlineConfig::default();
    let mut series = seasonal(4000, &mut Noise(7));
    for x in &mut series[2500..] {
        *x += 25.0;
    }
    let scores = run(&series, &cfg);
    let episodes = onsets(&scores, cfg.threshold, 48);
    assert_eq!(
        episodes.iter().filter(|&&i| i >= 300).copied().collect::<Vec<_>>(),
        vec![2500],
        "one episode, at the shift"
    );
    assert!(scores[3500..].iter().all(|&s| s < cfg.threshold), "the new level is normal by the end");
}

#[test]
fn a_slow_drift_to_failure_is_caught_before_it_is_far_gone() {
    let cfg = OnlineConfig::default();
    let mut noise = Noise(11);
    let series: Vec<f64> = (0..4000)
        .map(|i| {
            let drift = if i >= 2500 { (i - 2500) as f64 * 0.01 } else { 0.0 };
            noise.next() + drift
        })
        .collect();
    let scores = run(&series, &cfg);
    assert!(onsets(&scores[300..2500], cfg.threshold, 48).len() <= 1, "quiet before the drift");
    let first = (2500..4000).find(|&i| scores[i] >= cfg.threshold).expect("the drift is caught");
    // Caught before it has moved five standard deviations (500 readings).
    assert!(first < 3000, "caught at {first}, {:.1} sigma into the drift", (first - 2500) as f64 * 0.01);
}

#[test]
fn an_anomaly_does_not_become_normal_within_the_hold_time() {
    let cfg = OnlineConfig::default();
    let mut noise = Noise(3);
    let mut series: Vec<f64> = (0..3000).map(|_| noise.next()).collect();
    for x in &mut series[2000..] {
        *x += 8.0;
    }
    let scores = run(&series, &cfg);
    let hold = cfg.freeze_readings as usize;
    assert!(
        scores[2000..2000 + hold].iter().all(|&s| s >= cfg.threshold),
        "the first {hold} readings of the anomaly all alarm: {:?}",
        &scores[2000..2000 + hold]
    );
    assert!(scores[2900..].iter().all(|&s| s < cfg.threshold), "a lasting level becomes normal after a while");
}

#[test]
fn scoring_never_uses_the_row_it_scores_or_later_ones() {
    let cfg = OnlineConfig::default();
    let a = seasonal(1500, &mut Noise(5));
    let mut b = a.clone();
    for x in &mut b[1000..] {
        *x = -*x * 3.0;
    }
    let (sa, sb) = (run(&a, &cfg), run(&b, &cfg));
    assert_eq!(sa[..1000], sb[..1000], "rows after 1000 change nothing before them");
    assert_ne!(sa[1000..], sb[1000..]);

    // Scoring changes nothing, and observe is score then learn.
    let mut d = EquipmentDetector::default();
    let mut e = EquipmentDetector::default();
    for (i, &x) in a.iter().enumerate() {
        let ts = i as i64 * STEP;
        let before = d.clone();
        let s = d.score(ts, &[x, -x], &cfg);
        assert_eq!(before, d);
        d.learn(ts, &[x, -x], &cfg);
        assert_eq!(e.observe(ts, &[x, -x], &cfg), s);
    }
    assert_eq!(d, e);
}

#[test]
fn a_missing_channel_is_neither_scored_nor_learned() {
    let cfg = OnlineConfig::default();
    let mut d = EquipmentDetector::default();
    for i in 0..500 {
        d.observe(i * STEP, &[1.0 + (i % 3) as f64, f64::NAN], &cfg);
    }
    let v = d.score(500 * STEP, &[2.0, f64::NAN], &cfg);
    assert_eq!(v.channel, Some(0));
    assert_eq!(d.score(500 * STEP, &[f64::NAN, f64::NAN], &cfg), Verdict { score: 0.0, channel: None });
}

#[test]
fn the_state_is_bounded_and_resumes_exactly_from_its_serialised_form() {
    let cfg = OnlineConfig::default();
    let mut noise = Noise(9);
    let mut d = EquipmentDetector::default();
    // A young state (its range not filled yet) serialises too.
    d.observe(0, &[1.0, 2.0], &cfg);
    let young: EquipmentDetector = serde_json::from_str(&serde_json::to_string(&d).unwrap()).expect("young state");
    assert_eq!(young, d);
    let mut sizes = Vec::new();
    for i in 1..20_000 {
        d.observe(i * STEP, &[noise.next(), 5.0 * noise.next()], &cfg);
        if i % 5000 == 0 {
            sizes.push(d.size_bytes());
        }
    }
    // Fixed but for a surprised stretch the likelihood holds (at most `transient_readings`
    // means of 4 bytes per channel, a vector's growth included).
    let spread = sizes.iter().max().unwrap() - sizes.iter().min().unwrap();
    assert!(spread <= 2 * 64 * 4, "bounded whatever the history: {sizes:?}");
    assert!(d.size_bytes() <= 64 * 1024, "{} bytes for two channels", d.size_bytes());

    let json = serde_json::to_string(&d).expect("serialise");
    let mut resumed: EquipmentDetector = serde_json::from_str(&json).expect("deserialise");
    for i in 20_000..21_000 {
        let x = [noise.next(), 5.0 * noise.next()];
        assert_eq!(resumed.observe(i * STEP, &x, &cfg), d.observe(i * STEP, &x, &cfg));
    }
}

#[test]
fn erfc_matches_known_values() {
    for (x, want) in
        [(0.0, 1.0), (1.0, 0.157_299_207_050_285_1), (3.0, 2.209_049_699_858_544e-5), (-1.0, 1.842_700_792_949_715)]
    {
        assert!((erfc(x) - want).abs() <= 2e-7 * want, "erfc({x}) = {} not {want}", erfc(x));
    }
}

/// Five-minute readings of a daily cycle: low at night, a peak around noon.
const FIVE_MIN: i64 = 300_000_000;

fn daily_cycle(i: usize, noise: &mut Noise) -> f64 {
    let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
    50.0 - 20.0 * phase.cos() + 0.5 * noise.next()
}

fn run_at(series: &[f64], step: i64, cfg: &OnlineConfig) -> Vec<f64> {
    let mut d = EquipmentDetector::default();
    series.iter().enumerate().map(|(i, &x)| d.observe(i as i64 * step, &[x], cfg).score).collect()
}

#[test]
fn a_normal_value_at_an_abnormal_time_of_day_is_caught() {
    let mut noise = Noise(17);
    let mut series: Vec<f64> = (0..288 * 10).map(|i| daily_cycle(i, &mut noise)).collect();
    // Day 8: the afternoon stays at the morning's level (values seen every day, at the wrong time).
    let (start, end) = (288 * 8 + 144, 288 * 8 + 200);
    for x in &mut series[start..end] {
        *x = 50.0 + 0.5 * noise.next();
    }
    let cfg = OnlineConfig::default();
    let scores = run_at(&series, FIVE_MIN, &cfg);
    assert!(onsets(&scores[288 * 3..start], cfg.threshold, 12).is_empty(), "quiet on normal days");
    let caught = (start..end).find(|&i| scores[i] >= cfg.threshold);
    assert!(caught.is_some(), "the flat afternoon is caught");

    // Without the contextual surprise the same stretch passes unseen: it is what catches it.
    let off = OnlineConfig { context_strength: 2.0, ..cfg.clone() };
    let scores = run_at(&series, FIVE_MIN, &off);
    assert!((start..end).all(|i| scores[i] < off.threshold), "caught without the context too");
}

#[test]
fn a_new_level_is_adopted_soon_after_the_freeze_when_asked() {
    let cfg = OnlineConfig { adopt_level: true, ..OnlineConfig::default() };
    let mut noise = Noise(23);
    let mut series: Vec<f64> = (0..3000).map(|_| noise.next()).collect();
    for x in &mut series[2000..] {
        *x += 8.0;
    }
    let scores = run(&series, &cfg);
    let hold = cfg.freeze_readings as usize;
    assert!(scores[2000..2000 + hold].iter().all(|&s| s >= cfg.threshold), "the young anomaly alarms");
    let calm = (2000..3000).find(|&i| scores[i..].iter().all(|&s| s < cfg.threshold)).expect("it ends");
    assert!(calm < 2000 + 10 * hold, "the new level is normal from {calm}");

    // Without adopting it, the old long-term mean judges the new level for much longer.
    let slow = OnlineConfig { adopt_level: false, ..cfg.clone() };
    let scores = run(&series, &slow);
    let calm_slow = (2000..3000).find(|&i| scores[i..].iter().all(|&s| s < slow.threshold)).unwrap_or(3000);
    assert!(calm_slow > calm, "adopting is faster ({calm} against {calm_slow})");
}

#[test]
fn a_checkpoint_written_before_the_contextual_profiles_still_resumes() {
    let cfg = OnlineConfig::default();
    let mut noise = Noise(31);
    let mut d = EquipmentDetector::default();
    for i in 0..2000 {
        d.observe(i * STEP, &[noise.next()], &cfg);
    }
    let mut json: serde_json::Value = serde_json::to_value(&d).expect("serialise");
    for channel in json["channels"].as_array_mut().expect("channels") {
        let c = channel.as_object_mut().expect("a channel is an object");
        assert!(c.remove("season").is_some() && c.remove("pending_sum").is_some());
    }
    let mut old: EquipmentDetector = serde_json::from_value(json).expect("an older checkpoint loads");
    // It keeps learning; its profiles start empty, so no contextual surprise before two days.
    for i in 2000..2100 {
        let x = [noise.next()];
        assert!(old.observe(i * STEP, &x, &cfg).score.is_finite());
    }
}
