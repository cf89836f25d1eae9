//! Offline replay goes through the live engine and is deterministic.

use proact_anomaly_detector::replay::{replay_file, ReplayArgs, Rules, Switch};

fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("pump.csv");
    let mut s = String::from("datetime;Temperature;Accelerometer1RMS;anomaly\n");
    for i in 0..600 {
        // Normal for 400 s, then a slow rise past 90 °C.
        let t = if i < 400 { 60.0 + (i % 7) as f64 * 0.3 } else { 60.0 + (i - 400) as f64 * 0.2 };
        let label = u8::from(i >= 450);
        s.push_str(&format!(
            "2020-03-09 10:{:02}:{:02};{t:.2};{:.3};{label}\n",
            i / 60,
            i % 60,
            0.2 + (i % 5) as f64 * 0.01
        ));
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn args(input: std::path::PathBuf, fit: Option<usize>) -> ReplayArgs {
    ReplayArgs {
        input,
        output: "unused.csv".into(),
        models: vec![],
        fit_first: fit,
        equipement_id: None,
        timestamp_column: None,
        temperature_column: None,
        vibration_column: None,
        label_column: Some("anomaly".into()),
        channels: vec![],
        rules: Rules::On,
        probation: 0,
        margin: 1.0,
        probation_model: Switch::On,
        online: Switch::On,
        online_set: vec![],
    }
}

#[test]
fn same_input_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let a = replay_file(&args(input.clone(), Some(400)), Default::default()).unwrap();
    let b = replay_file(&args(input, Some(400)), Default::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 600);
    // The rise is flagged; the normal part mostly is not.
    assert!(a[599].in_episode, "the end of the rise is in an episode");
    let early_flags = a[..400].iter().filter(|s| s.severity != proact_proto::v1::Severity::Unspecified).count();
    assert!(early_flags <= 20, "{early_flags} of the 400 normal rows flagged");
    assert_eq!(a[0].label.as_deref(), Some("0"));
}

#[test]
fn a_bad_row_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, "timestamp,temperature,vibration\n2024-01-01T00:00:00Z,50,1\n2024-01-01T00:00:01Z,hot,1\n")
        .unwrap();
    let mut a = args(p, None);
    a.label_column = None;
    let e = replay_file(&a, Default::default()).unwrap_err().to_string();
    assert!(e.contains("bad.csv:3"), "{e}");
    assert!(e.contains("temperature"), "{e}");
}

/// A NAB-like series: one `value` column sampled every 5 minutes, a daily cycle, two level
/// shifts (rows 600-659 and 800-859), no temperature nor vibration. After the first 300 rows
/// (a day and more) the cycle's amplitude stays inside what those rows saw, so a model fitted
/// on them finds nothing but the shifts.
fn one_column(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("one.csv");
    let mut s = String::from("timestamp,value\n");
    for i in 0..1000i64 {
        let amplitude = if i < 300 { 5.0 } else { 4.0 };
        let season = (i as f64 * std::f64::consts::TAU / 288.0).sin() * amplitude;
        let shift = if (600..660).contains(&i) || (800..860).contains(&i) { 60.0 } else { 0.0 };
        let ts = chrono::DateTime::from_timestamp(1_420_070_400 + i * 300, 0).unwrap().naive_utc();
        s.push_str(&format!("{},{:.3}\n", ts.format("%Y-%m-%d %H:%M:%S"), 50.0 + season + shift));
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// Replay of [`one_column`] with the rules off and no label.
fn one_column_args(dir: &std::path::Path) -> ReplayArgs {
    let mut a = args(one_column(dir), None);
    a.label_column = None;
    a.rules = Rules::Off;
    a
}

fn onsets(scored: &[proact_anomaly_detector::replay::Scored]) -> Vec<usize> {
    scored.iter().enumerate().filter(|(_, s)| s.onset).map(|(i, _)| i).collect()
}

#[test]
fn a_file_with_one_column_replays_and_marks_each_onset_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = one_column_args(dir.path());
    a.probation = 300;
    let scored = replay_file(&a, Default::default()).unwrap();
    assert_eq!(scored.len(), 1000);
    let onsets = onsets(&scored);
    assert!(onsets.contains(&600) && onsets.contains(&800), "each shift raises its episode at once: {onsets:?}");
    assert_eq!(onsets.len(), 2, "one onset per episode, none in between: {onsets:?}");
    assert!(scored[600..660].iter().all(|s| s.in_episode), "the episode holds through the shift");
    // The models' score is continuous: defined on normal rows too, higher in the shift.
    let normal = scored[300..590].iter().map(|s| s.model_score).fold(0.0, f64::max);
    assert!(normal > 0.0 && normal < 0.5, "normal rows score below the threshold but not 0: {normal}");
    assert!(scored[620].model_score > 0.5);
}

#[test]
fn probation_rows_learn_but_never_raise() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = one_column_args(dir.path());
    // Fitted on the first 300 rows, learning only until row 670: past the first shift.
    a.fit_first = Some(300);
    a.probation = 670;
    let scored = replay_file(&a, Default::default()).unwrap();
    assert!(scored[..670].iter().all(|s| !s.onset && !s.in_episode), "nothing raised in the probation");
    assert!(scored[620].model_score > 0.5, "rows in the probation are still scored");
    assert_eq!(onsets(&scored), vec![800]);
    // Judging starts in the middle of a shift: it is raised on the first judged row.
    a.probation = 650;
    let scored = replay_file(&a, Default::default()).unwrap();
    assert_eq!(onsets(&scored), vec![650, 800]);
}

#[test]
fn rules_off_leaves_a_hot_temperature_to_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let on = replay_file(&args(input.clone(), None), Default::default()).unwrap();
    assert!(on.iter().any(|s| s.rule == "temperature_critical"), "the rise passes 90 °C");
    let mut a = args(input, None);
    a.rules = Rules::Off;
    a.online = Switch::Off;
    let off = replay_file(&a, Default::default()).unwrap();
    assert!(off.iter().all(|s| s.rule.is_empty() && !s.in_episode), "no model, no rule: nothing fires");
    // The online detector, learning from the normal part, raises the rise on its own.
    a.online = Switch::On;
    let online = replay_file(&a, Default::default()).unwrap();
    let first = online.iter().position(|s| s.onset).expect("the online detector raises the rise");
    assert_eq!(online[first].rule, "model_online");
    assert!(first >= 400, "nothing raised in the normal part: first onset at row {first}");
}

#[test]
fn extra_columns_are_scored_and_label_columns_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pump.csv");
    let mut s = String::from("datetime;Temperature;Accelerometer1RMS;Pressure;anomaly;changepoint\n");
    for i in 0..600 {
        // Only the pressure moves: it drops at row 450. The label columns jump at row 420.
        let pressure = if i < 450 { 2.0 + (i % 3) as f64 * 0.01 } else { 0.5 };
        let label = u8::from(i >= 420);
        s.push_str(&format!("2020-03-09 10:{:02}:{:02};60;0.2;{pressure};{label};{label}\n", i / 60, i % 60));
    }
    std::fs::write(&p, s).unwrap();
    // The fitting rows are learned from, not judged (their first, half-filled windows are unlike
    // the model's full ones).
    let mut a = args(p, Some(400));
    a.probation = 400;
    let scored = replay_file(&a, Default::default()).unwrap();
    assert!(scored[..450].iter().all(|s| !s.in_episode), "labels are not channels: nothing before the drop");
    assert!(scored[452].in_episode, "the pressure drop alone raises an episode");
    a.channels = vec!["Temperature".into(), "Accelerometer1RMS".into()];
    let without = replay_file(&a, Default::default()).unwrap();
    assert!(without.iter().all(|s| !s.in_episode), "without the pressure channel nothing moves");
}
