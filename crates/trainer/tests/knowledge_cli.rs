//! `proact-trainer knowledge search` on files: no service running (the database URL points
//! at a closed port), one JSON object per result, best first, with its citation.

use std::path::Path;
use std::process::Command;

fn search(args: &[&str]) -> (i32, String) {
    let fmea = Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge/tests/fixtures/truck_fmea.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_proact-trainer"))
        .env("PROACT_DATABASE_URL", "postgres://proact@127.0.0.1:1/none")
        .env("PROACT_REDIS_URL", "redis://127.0.0.1:1")
        .args(["knowledge", "search"])
        .args(args)
        .arg("--amdec")
        .arg(&fmea)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn prints_one_cited_json_object_per_result_best_first() {
    let (code, out) = search(&["fuel cooler leaking", "--limit", "3", "--json"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    let top = &lines[0];
    assert_eq!(top["source"], "amdec");
    assert_eq!(top["row"], 2);
    for col in
        ["subsystem", "component", "sub_component", "failure_mode", "effect", "cause", "rpn", "recommended_action"]
    {
        assert!(top.get(col).is_some(), "no {col} in {top}");
    }
    assert_eq!(top["sub_component"], "Fuel Cooler");
    let scores: Vec<f64> = lines.iter().map(|l| l["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[test]
fn says_when_nothing_matches_and_refuses_an_empty_question() {
    let (code, out) = search(&["turbocharger wastegate", "--json"]);
    assert_eq!(code, 1, "{out}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["source"], "none");
    let (code, out) = search(&["", "--json"]);
    assert_ne!(code, 0);
    assert!(out.contains("empty"), "{out}");
}
