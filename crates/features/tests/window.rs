use proact_features::{
    features, features_over_series, FeatureError, FeatureSchema, FeatureVector, Placement, Window, WindowConfig,
    FEATURE_SCHEMA, STATS,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cfg(span: i64, len: usize, tol: i64) -> WindowConfig {
    WindowConfig { max_span_ms: span, max_len: len, tolerance_ms: tol }
}

/// Straightforward recomputation over the retained samples, to check the running sums.
fn brute(samples: &[(i64, Vec<f64>)]) -> Vec<f64> {
    let n = samples.len() as f64;
    let c = samples[0].1.len();
    let mut out = Vec::new();
    let t: Vec<f64> = samples.iter().map(|s| s.0 as f64 / 1000.0).collect();
    let tm = t.iter().sum::<f64>() / n;
    for ch in 0..c {
        let x: Vec<f64> = samples.iter().map(|s| s.1[ch]).collect();
        let mean = x.iter().sum::<f64>() / n;
        let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let min = x.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let stt: f64 = t.iter().map(|v| (v - tm).powi(2)).sum();
        let slope = if samples.len() > 1 {
            t.iter().zip(&x).map(|(a, b)| (a - tm) * (b - mean)).sum::<f64>() / stt
        } else {
            0.0
        };
        let last = *x.last().unwrap();
        let prev = if x.len() > 1 { x[x.len() - 2] } else { last };
        let z = if std > 1e-9 * (1.0 + mean.abs()) { (last - mean) / std } else { 0.0 };
        out.extend_from_slice(&[last, mean, std, min, max, slope, last - prev, z]);
    }
    out
}

fn assert_close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = 1e-6 * (1.0 + x.abs().max(y.abs()));
        assert!((x - y).abs() <= tol, "feature {i} ({}): {x} vs {y}", STATS[i % STATS.len()]);
    }
}

#[test]
fn base_schema_is_the_published_constant() {
    let s = FeatureSchema::base();
    assert_eq!(s.names(), FEATURE_SCHEMA);
    assert_eq!(s.channels(), ["temperature", "vibration"]);
    assert!(s.id().starts_with("proact-features/1:"));
}

#[test]
fn schema_id_is_independent_of_extra_channel_order_and_round_trips() {
    let a = FeatureSchema::with_extra_channels(&["pressure", "current"]).unwrap();
    let b = FeatureSchema::with_extra_channels(&["current", "pressure", "temperature"]).unwrap();
    assert_eq!(a.id(), b.id());
    assert_ne!(a.id(), FeatureSchema::base().id());
    assert_eq!(a.channels()[2], "current");
    let back = FeatureSchema::from_names(a.names()).unwrap();
    assert_eq!(back, a);
    assert!(FeatureSchema::with_extra_channels(&["bad name"]).is_err());
    assert!(FeatureSchema::from_names(&["x_mean"]).is_err());
}

#[test]
fn running_features_match_a_brute_force_recomputation() {
    let schema = FeatureSchema::with_extra_channels(&["pressure"]).unwrap();
    let config = cfg(30_000, 50, 3_000);
    let mut w = Window::new(&schema, config);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut kept: Vec<(i64, Vec<f64>)> = Vec::new();
    let mut t = 1_700_000_000_000i64;
    let mut fv = FeatureVector::default();
    for i in 0..3_000 {
        t += rng.gen_range(200..1_500);
        // Every 7th event arrives up to 2.5 s late: inside the tolerance.
        let ts = if i % 7 == 3 { t - rng.gen_range(1..2_500) } else { t };
        let v = vec![80.0 + rng.gen::<f64>() * 10.0, 1e6 + rng.gen::<f64>(), -3.0 + (i as f64) * 0.01];
        let p = w.push(ts, &v).unwrap();
        if !p.accepted() {
            continue;
        }
        if let Err(pos) = kept.binary_search_by_key(&ts, |s| s.0) {
            kept.insert(pos, (ts, v));
        }
        let newest = kept.last().unwrap().0;
        kept.retain(|s| newest - s.0 <= config.max_span_ms);
        while kept.len() > config.max_len {
            kept.remove(0);
        }
        assert_eq!(w.len(), kept.len());
        w.features_into(&mut fv).unwrap();
        assert_close(&fv, &brute(&kept));
    }
}

#[test]
fn out_of_order_within_tolerance_is_placed_by_event_time() {
    let schema = FeatureSchema::base();
    let mut ordered = Window::new(&schema, cfg(60_000, 100, 5_000));
    let mut shuffled = ordered.clone();
    for (t, v) in [(0, 1.0), (1_000, 2.0), (2_000, 4.0), (3_000, 8.0)] {
        assert_eq!(ordered.push(t, &[v, -v]).unwrap(), Placement::Appended);
    }
    for (t, v) in [(0, 1.0), (2_000, 4.0), (3_000, 8.0)] {
        assert_eq!(shuffled.push(t, &[v, -v]).unwrap(), Placement::Appended);
    }
    assert_eq!(shuffled.push(1_000, &[2.0, -2.0]).unwrap(), Placement::Reordered { behind_ms: 2_000 });
    assert_eq!(features(&ordered).unwrap(), features(&shuffled).unwrap());
    let f = features(&shuffled).unwrap();
    assert_eq!(f[0], 8.0, "last is the newest by event time, not by arrival");
    assert_eq!(f[6], 4.0, "delta is against the previous sample by event time");
    assert_eq!(shuffled.stats().reordered, 1);
}

#[test]
fn too_late_and_duplicate_events_are_reported_not_placed() {
    let schema = FeatureSchema::base();
    let mut w = Window::new(&schema, cfg(60_000, 100, 5_000));
    assert!(w.push(10_000, &[1.0, 1.0]).unwrap().accepted());
    assert!(w.push(20_000, &[2.0, 1.0]).unwrap().accepted());
    let before = features(&w).unwrap();
    assert_eq!(w.push(14_000, &[99.0, 99.0]).unwrap(), Placement::TooLate { behind_ms: 6_000 });
    assert_eq!(w.push(20_000, &[99.0, 99.0]).unwrap(), Placement::Duplicate);
    assert_eq!(w.push(i64::MIN, &[99.0, 99.0]).unwrap(), Placement::TooLate { behind_ms: i64::MAX });
    assert_eq!(features(&w).unwrap(), before);
    assert_eq!(w.stats().too_late, 2);
    assert_eq!(w.stats().duplicates, 1);
    assert_eq!(w.push(1, &[1.0]), Err(FeatureError::ChannelCount { expected: 2, got: 1 }));
}

#[test]
fn memory_is_bounded_by_count_and_span() {
    let schema = FeatureSchema::base();
    let mut by_count = Window::new(&schema, cfg(i64::MAX / 4, 64, 1_000));
    let mut by_span = Window::new(&schema, cfg(10_000, 1_000_000, 1_000));
    for i in 0..100_000i64 {
        let _ = by_count.push(i * 10, &[i as f64, 0.0]).unwrap();
        let _ = by_span.push(i * 100, &[i as f64, 0.0]).unwrap();
        assert!(by_count.len() <= 64);
        assert!(by_span.len() <= 101);
    }
    assert_eq!(by_count.len(), 64);
    let (lo, hi) = by_span.time_range().unwrap();
    assert_eq!(hi - lo, 10_000);
    // A big offset (epoch ms, large values) must not wreck std after many updates.
    let f = features(&by_count).unwrap();
    let expected_std = ((64.0f64 * 64.0 - 1.0) / 12.0).sqrt();
    assert!((f[2] - expected_std).abs() < 1e-6, "{} vs {expected_std}", f[2]);
}

#[test]
fn missing_values_are_carried_forward() {
    let schema = FeatureSchema::base();
    let mut w = Window::new(&schema, cfg(60_000, 100, 5_000));
    assert_eq!(w.push(0, &[f64::NAN, 1.0]).unwrap(), Placement::Incomplete);
    assert!(w.push(1_000, &[5.0, 1.0]).unwrap().accepted());
    assert!(w.push(2_000, &[f64::NAN, 2.0]).unwrap().accepted());
    let f = features(&w).unwrap();
    assert_eq!(f[0], 5.0);
    assert!(f.iter().all(|v| v.is_finite()));
}

#[test]
fn series_replay_equals_the_live_loop() {
    let schema = FeatureSchema::base();
    let config = cfg(5_000, 20, 2_000);
    let ts: Vec<i64> = (0..200).map(|i| if i % 11 == 5 { i * 500 - 1_200 } else { i * 500 }).collect();
    let values: Vec<f64> = (0..400).map(|i| ((i * 37) % 101) as f64).collect();
    let series = features_over_series(&schema, config, &ts, &values).unwrap();
    assert_eq!(series.rows(), 200);
    let mut w = Window::new(&schema, config);
    let mut fv = FeatureVector::default();
    for i in 0..200 {
        if w.push(ts[i], &values[i * 2..i * 2 + 2]).unwrap().accepted() {
            w.features_into(&mut fv).unwrap();
        }
        assert_eq!(series.row(i), fv.as_slice(), "row {i}");
    }
    assert!(features_over_series(&schema, config, &ts, &values[1..]).is_err());
}

#[test]
fn a_single_sample_window_has_no_spread_whatever_passed_before() {
    // Samples 5 minutes apart in a 60 s window: each window holds one sample, but the running
    // sums still carry the rounding of the huge value that left.
    let schema = FeatureSchema::base();
    let mut w = Window::new(&schema, WindowConfig::default());
    for (i, v) in [50.0, 1e6, 50.3].into_iter().enumerate() {
        assert!(w.push(i as i64 * 300_000, &[v, 1.0]).unwrap().accepted());
    }
    assert_eq!(w.len(), 1);
    let f = features(&w).unwrap();
    let temperature = &f.values[..STATS.len()];
    assert_eq!(temperature, &[50.3, 50.3, 0.0, 50.3, 50.3, 0.0, 0.0, 0.0], "last mean std min max slope delta z");
}
