//! Offline replay goes through the live engine and is deterministic.

use proact_anomaly_detector::replay::{replay_file, ReplayArgs};

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
