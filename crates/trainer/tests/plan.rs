//! `proact-trainer plan` as a script runs it: the binary, the repository's data folder or the
//! database's reference tables (real PostgreSQL), JSON on stdout, clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

fn trainer(args: &[&str]) -> Output {
    trainer_on(args, None)
}

/// The binary with the database given the way a deployment gives it (the environment).
fn trainer_on(args: &[&str], database_url: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proact-trainer"));
    cmd.args(args).env("RUST_LOG", "warn");
    if let Some(url) = database_url {
        cmd.env("PROACT_DATABASE_URL", url);
    }
    cmd.output().expect("the binary runs")
}

fn plan_json(extra: &[&str]) -> Value {
    plan_json_on(extra, None)
}

fn plan_json_on(extra: &[&str], database_url: Option<&str>) -> Value {
    let data = data_dir();
    let mut args = vec!["plan", "--week", "2026-W45", "--json", "--data", data.to_str().unwrap()];
    args.extend(extra);
    let out = trainer_on(&args, database_url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON plan")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn plans_the_week_from_the_data_folder_with_the_orders_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let orders = write(
        dir.path(),
        "orders.csv",
        "id,equipement_id,failure_mode_code,skill,priority,estimated_hours,alert_id\n\
         OT-1,PUMP-01,BEARING_WEAR,mecanique,critical,4,alert-1\n\
         OT-2,MOTOR-01,WINDING_INSULATION,electrique,high,3,\n\
         OT-3,FAN-01,IMBALANCE,hydraulique,low,2,\n",
    );
    let plan = plan_json(&["--orders", orders.to_str().unwrap()]);
    assert_eq!(plan["week"], "2026-W45");
    let assignments = plan["assignments"].as_array().unwrap();
    let of = |id: &str| assignments.iter().find(|a| a["order_id"] == id).cloned();
    let ot1 = of("OT-1").expect("the critical order is planned");
    assert_eq!(ot1["lateness_days"], 0);
    assert!(of("OT-2").is_some());
    // Preventive orders due by the history's rhythm are in the plan too.
    assert!(assignments.iter().any(|a| a["order_id"].as_str().unwrap().starts_with("PM-")), "{plan:#}");
    // Nobody has the skill: reported with its reason, the rest planned.
    assert_eq!(plan["unplanned"], serde_json::json!(["OT-3"]));
    let issue = plan["issues"].as_array().unwrap().iter().find(|i| i["order_id"] == "OT-3").unwrap();
    assert_eq!(issue["code"], "no_skill");
    // The workload's eight technicians, each within their hours.
    let loads = plan["loads"].as_array().unwrap();
    assert_eq!(loads.len(), 8);
    for l in loads {
        for (h, c) in l["day_hours"].as_array().unwrap().iter().zip(l["day_capacity"].as_array().unwrap()) {
            assert!(h.as_f64().unwrap() <= c.as_f64().unwrap() + 1e-9, "{l}");
        }
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let out = trainer(&["plan", "--week", "2025-W53", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2025 has no ISO week 53"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let data = data_dir();
    let cases = [
        (
            "orders.csv",
            "id,skill,estimated_hours\nOT-1,mecanique,2\nOT-2,mecanique,deux\n",
            "orders.csv, line 3: field `estimated_hours`: `deux` is not a number",
        ),
        (
            "neg.json",
            r#"[{"id": "OT-9", "skill": "mecanique", "estimated_hours": -2}]"#,
            "order OT-9: estimated duration -2 h",
        ),
        (
            "pin.json",
            r#"[{"id": "OT-8", "skill": "mecanique", "estimated_hours": 2, "pinned_technician": "T99"}]"#,
            "order OT-8: unknown technician `T99`",
        ),
    ];
    for (name, text, expected) in cases {
        let orders = write(dir.path(), name, text);
        let args =
            ["plan", "--week", "2026-W45", "--data", data.to_str().unwrap(), "--orders", orders.to_str().unwrap()];
        let out = trainer(&args);
        // main logs a command's failure through tracing, whose text goes to stdout.
        let err = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && err.contains(expected), "{name}: {err}");
    }
}

#[tokio::test]
async fn the_database_gives_the_same_plan_as_the_files() {
    let pg = proact_testkit::Postgres::start().await.expect("PostgreSQL starts");
    let url = pg.url();
    let data = data_dir();
    let load = trainer_on(&["load-reference", "--data", data.to_str().unwrap()], Some(&url));
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let from_files = plan_json(&[]);
    let from_db = plan_json_on(&["--from-db"], Some(&url));
    assert!(!from_files["assignments"].as_array().unwrap().is_empty());
    assert_eq!(from_db, from_files);
}
