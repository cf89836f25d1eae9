//! The `proact-prepare` binary: `clean` writes the clean file, the report and the features;
//! a bad input exits non-zero with a message naming the file.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_proact-prepare");

#[test]
fn clean_writes_output_report_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ai4i_small.csv");
    let (out, report, features) = (dir.path().join("o.csv"), dir.path().join("r.json"), dir.path().join("f.csv"));
    let run = Command::new(BIN)
        .args(["clean", "--kind", "ai4i", "--input"])
        .arg(&fixture)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .arg("--features")
        .arg(&features)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("rows read 50, kept 50"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["rows_kept"], 50);
    assert_eq!(json["features"]["test_rows"], 10);
    let f = std::fs::read_to_string(&features).unwrap();
    assert!(f.starts_with("type_L,type_M,type_H,air_temperature_k"));
    assert_eq!(f.lines().filter(|l| l.ends_with(",test")).count(), 10);
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("udi,product_id,type,"));
}

#[test]
fn a_missing_input_fails_with_the_file_name() {
    let run = Command::new(BIN)
        .args(["clean", "--kind", "amdec", "--input", "nowhere/AMDEC.csv", "--out", "x.csv"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("nowhere/AMDEC.csv") && err.contains("check that the file exists"), "{err}");
}
