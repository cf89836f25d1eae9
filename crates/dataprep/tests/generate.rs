//! The sample-data generator: deterministic, identical to the committed files, and
//! coherent with the simulator's fleet and failure episodes.

use std::collections::BTreeMap;
use std::path::Path;

use proact_dataprep::generate::{self, history_episodes, technicians, DEFAULT_SEED};
use proact_dataprep::{clean_file, CleanOptions, Kind};
use proact_store::taxonomy::{fleet, EquipmentType};

#[test]
fn generation_is_deterministic_and_matches_the_committed_data() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ga = generate::generate(a.path(), DEFAULT_SEED).unwrap();
    generate::generate(b.path(), DEFAULT_SEED).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    for (path, rows) in &ga.files {
        let rel = path.strip_prefix(a.path()).unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes, std::fs::read(b.path().join(rel)).unwrap(), "{} differs between two runs", rel.display());
        let mine = std::fs::read(committed.join(rel)).unwrap_or_default();
        assert!(
            bytes == mine,
            "data/{} is not what the generator writes: run `cargo run -p proact-dataprep --bin proact-prepare -- generate` and commit",
            rel.display()
        );
        assert!(*rows > 0);
    }
    let other = tempfile::tempdir().unwrap();
    generate::generate(other.path(), 7).unwrap();
    assert_ne!(
        std::fs::read(other.path().join(generate::GMAO_CLEAN)).unwrap(),
        std::fs::read(a.path().join(generate::GMAO_CLEAN)).unwrap()
    );
}

#[test]
fn the_raw_files_carry_the_defects_the_cleaner_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate::generate(dir.path(), DEFAULT_SEED).unwrap();
    let [amdec, gmao, workload] = [&g.reports[0], &g.reports[1], &g.reports[2]];
    assert_eq!((amdec.encoding, amdec.delimiter), ("windows-1252", ";"));
    assert_eq!((gmao.encoding, gmao.delimiter), ("utf-8-bom", ","));
    assert_eq!((workload.encoding, workload.delimiter), ("windows-1252", ";"));
    assert!(amdec.forward_filled.contains_key("equipement_id"));
    assert!(workload.forward_filled.contains_key("technician_id"));
    assert!(amdec.rpn_computed > 0);
    assert_eq!(amdec.rpn_mismatches.len(), 1);
    assert!(!gmao.cells_imputed.is_empty() && !workload.cells_imputed.is_empty());
    assert!(gmao.derived.contains_key("ended_at") && gmao.derived.contains_key("duration_h"));
    // Only the junk lines go: the empty row of the AMDEC sheet and the GMAO totals line.
    assert_eq!(amdec.drops.len(), 1);
    assert_eq!(gmao.drops.len(), 1);
    assert_eq!(workload.drops.len(), 0);
}

#[test]
fn corrective_interventions_start_where_the_simulator_episodes_end() {
    let history = generate::clean_history(DEFAULT_SEED).unwrap();
    let mut correctives: Vec<(String, i64, String)> = (0..history.len())
        .filter(|&r| history.cell(r, "intervention_type").as_str() == Some("corrective"))
        .map(|r| {
            (
                history.cell(r, "equipement_id").as_str().unwrap().to_string(),
                history.cell(r, "started_at").as_date().unwrap().timestamp(),
                history.cell(r, "failure_mode_code").as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut episodes: Vec<(String, i64, String)> =
        history_episodes(DEFAULT_SEED).into_iter().map(|e| (e.equipement_id, e.end, e.mode.code.to_string())).collect();
    correctives.sort();
    episodes.sort();
    assert!(episodes.len() > 100, "{}", episodes.len());
    assert_eq!(correctives, episodes);
}

#[test]
fn amdec_covers_the_fleet_and_workload_covers_the_skills() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let amdec = clean_file(&data.join(generate::AMDEC_CLEAN), Kind::Amdec, &CleanOptions::default()).unwrap().table;
    let want: usize = fleet().iter().map(|e| e.kind.failure_modes().len()).sum();
    assert_eq!(amdec.len(), want);
    for r in 0..amdec.len() {
        let id = amdec.cell(r, "equipement_id").as_str().unwrap();
        let eq = fleet().into_iter().find(|e| e.id == id).expect("a fleet id");
        assert_eq!(amdec.cell(r, "equipment_type").as_str(), Some(eq.kind.code()));
    }
    let skills: std::collections::BTreeSet<&str> =
        EquipmentType::ALL.iter().flat_map(|t| t.failure_modes().iter().map(|m| m.skill)).collect();
    for s in skills {
        assert!(technicians().iter().filter(|t| t.skills.contains(&s)).count() >= 2, "skill {s}");
    }
    // Interventions per technician-month equal the history's.
    let history = generate::clean_history(DEFAULT_SEED).unwrap();
    let mut per: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in 0..history.len() {
        if let Some(t) = history.cell(r, "technician_id").as_str() {
            let month = history.cell(r, "started_at").as_date().unwrap().format("%Y-%m").to_string();
            *per.entry((t.to_string(), month)).or_default() += 1;
        }
    }
    let workload =
        clean_file(&data.join(generate::WORKLOAD_CLEAN), Kind::Workload, &CleanOptions::default()).unwrap().table;
    let mut checked = 0;
    for r in 0..workload.len() {
        let t = workload.cell(r, "technician_id").as_str().unwrap().to_string();
        let month = workload.cell(r, "period_start").as_date().unwrap().format("%Y-%m").to_string();
        let n = workload.cell(r, "interventions").as_i64().unwrap();
        // A few raw rows lose their technician; their month can only count fewer.
        assert!(per.get(&(t, month)).copied().unwrap_or(0) <= n);
        checked += 1;
    }
    assert_eq!(checked, technicians().len() * 22);
}

#[test]
fn amdec_feature_matrix_for_the_criticality_model() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let (m, _) = proact_dataprep::prepare_amdec(&data.join(generate::AMDEC_CLEAN)).unwrap();
    assert_eq!(m.names.len(), 5 + 3);
    assert_eq!(m.names[0], "equipment_type_pump");
    assert_eq!(m.classes, ["low", "medium", "high"]);
    assert!(m.class_counts().iter().all(|&n| n > 0), "{:?}", m.class_counts());
    assert!(m.x.iter().all(|row| row[..5].iter().sum::<f64>() == 1.0));
}
