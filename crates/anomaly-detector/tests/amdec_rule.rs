//! The detector's AMDEC rule and the shipped sample AMDEC agree: with the default
//! `PROACT_RPN_CRITICAL`, a model warning is raised critical on the equipment whose modes the
//! AMDEC classes `high`, and stays a warning on the others. (The rule's old default, 200, sat
//! above every RPN in `data/`, so it never fired on our own data.)

use std::collections::BTreeMap;

use clap::Parser;
use proact_anomaly_detector::engine::EngineConfig;

#[test]
fn the_default_threshold_splits_the_sample_fleet_where_the_amdec_classes_it() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/AMDEC_clean.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (eq, rpn, class) = (col("equipement_id"), col("rpn"), col("criticality"));
    let mut max_rpn: BTreeMap<String, i64> = BTreeMap::new();
    let mut high_equipment: Vec<String> = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        let r: i64 = row[rpn].parse().unwrap();
        let m = max_rpn.entry(row[eq].to_string()).or_default();
        *m = (*m).max(r);
        if &row[class] == "high" && !high_equipment.contains(&row[eq].to_string()) {
            high_equipment.push(row[eq].to_string());
        }
    }
    let threshold = EngineConfig::default().rpn_critical;
    let config = proact_anomaly_detector::Config::try_parse_from(["proact-anomaly-detector"]).unwrap();
    assert_eq!(config.rules.rpn_critical, threshold, "the flag's default is the engine's");
    let critical: Vec<&String> = max_rpn.iter().filter(|(_, &r)| r as f64 >= threshold).map(|(e, _)| e).collect();
    assert!(!critical.is_empty(), "the rule fires on some of the sample fleet (threshold {threshold}, {max_rpn:?})");
    assert!(critical.len() < max_rpn.len(), "and not on all of it");
    high_equipment.sort();
    let critical: Vec<String> = critical.into_iter().cloned().collect();
    assert_eq!(critical, high_equipment, "critical equipment = equipment with a `high` AMDEC mode");
    assert!(critical.contains(&"PUMP-01".to_string()) && !critical.contains(&"FAN-01".to_string()));
}
