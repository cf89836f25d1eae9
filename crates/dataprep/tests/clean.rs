//! Each cleaning rule on a small fixture, idempotency, and the error messages.

use std::path::{Path, PathBuf};

use proact_dataprep::{clean_bytes, clean_file, Aliases, Cell, CleanOptions, Kind, PrepError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn clean(name: &str, kind: Kind) -> proact_dataprep::Cleaned {
    clean_file(&fixture(name), kind, &CleanOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn text<'a>(c: &'a proact_dataprep::Cleaned, row: usize, col: &str) -> &'a str {
    c.table.cell(row, col).as_str().unwrap_or("")
}

#[test]
fn latin1_file_with_accents_is_decoded_and_written_as_utf8() {
    let c = clean("amdec_latin1.csv", Kind::Amdec);
    assert_eq!(c.report.encoding, "windows-1252");
    assert_eq!(c.report.delimiter, ";");
    // French headers mapped through the alias table.
    let mapped: Vec<(&str, &str)> = c.report.columns.iter().map(|m| (m.raw.as_str(), m.canonical.as_str())).collect();
    assert!(mapped.contains(&("Gravité", "severity")), "{mapped:?}");
    assert!(mapped.contains(&("Détection", "detection")), "{mapped:?}");
    assert!(mapped.contains(&("IPR", "rpn")), "{mapped:?}");
    assert_eq!(text(&c, 0, "effect"), "Échauffement, vibrations");
    assert_eq!(text(&c, 1, "component"), "Garniture mécanique");
    // Equipment labels become the simulator's type codes.
    assert_eq!(text(&c, 0, "equipment_type"), "pump");
    assert_eq!(text(&c, 2, "equipment_type"), "motor");
    let csv = String::from_utf8(c.table.to_csv()).expect("output is UTF-8");
    assert!(csv.contains("Désalignement"));
}

#[test]
fn merged_equipment_cells_are_forward_filled() {
    let c = clean("amdec_latin1.csv", Kind::Amdec);
    assert_eq!(text(&c, 1, "equipement_id"), "PUMP-01");
    assert_eq!(text(&c, 1, "equipment_type"), "pump");
    // Lines 3 and 5; line 5 is dropped later (no severity), but the fill happens first
    // because the merged block is a property of the sheet, not of the row's validity.
    assert_eq!(c.report.forward_filled.get("equipement_id"), Some(&2));
}

#[test]
fn missing_rpn_is_computed_and_a_wrong_one_is_flagged() {
    let c = clean("amdec_latin1.csv", Kind::Amdec);
    // SEAL_LEAK had no IPR: 6 × 5 × 3.
    assert_eq!(c.table.cell(1, "rpn"), &Cell::Int(90));
    assert_eq!(c.report.rpn_computed, 1);
    // MISALIGNMENT stated 20 for 5 × 4 × 3.
    assert_eq!(c.report.rpn_mismatches.len(), 1);
    let m = &c.report.rpn_mismatches[0];
    assert_eq!((m.stated, m.computed, m.line), (20, 60, 4));
    assert!(m.file.ends_with("amdec_latin1.csv"));
    assert_eq!(c.table.cell(2, "rpn"), &Cell::Int(60));
    assert_eq!(c.table.cell(2, "rpn_stated_mismatch"), &Cell::Int(20));
    // A missing criticality class is derived from the RPN; French classes are mapped.
    assert_eq!(text(&c, 1, "criticality"), "medium");
    assert_eq!(text(&c, 0, "criticality"), "high");
}

#[test]
fn a_row_missing_a_critical_value_is_dropped_with_file_and_line() {
    let c = clean("amdec_latin1.csv", Kind::Amdec);
    assert_eq!((c.report.rows_read, c.report.rows_kept, c.report.rows_dropped), (4, 3, 1));
    let d = &c.report.drops[0];
    assert_eq!(d.line, 5);
    assert!(d.file.ends_with("amdec_latin1.csv"), "{d:?}");
    assert_eq!(d.column.as_deref(), Some("severity"));
    assert!(d.reason.contains("severity"), "{d:?}");
}

#[test]
fn semicolon_file_dates_numbers_and_imputation() {
    let c = clean("gmao_semicolon.csv", Kind::Gmao);
    assert_eq!(c.report.delimiter, ";");
    assert_eq!(c.report.encoding, "utf-8");
    let dates: Vec<String> = (0..c.table.len()).map(|r| c.table.cell(r, "started_at").render()).collect();
    // dd/mm/yyyy with time, ISO with a +01:00 offset (converted to UTC), ISO with a space.
    assert_eq!(dates, ["2025-03-04T10:05:06Z", "2025-03-10T07:00:00Z", "2025-03-11T09:00:00Z"]);
    // Decimal comma and thousands separator.
    assert_eq!(c.table.cell(0, "cost_eur"), &Cell::Float(1200.5));
    assert_eq!(c.table.cell(0, "duration_h"), &Cell::Float(2.5));
    // The missing end is start + duration; the missing duration is end − start.
    assert_eq!(c.table.cell(1, "ended_at").render(), "2025-03-10T08:30:00Z");
    assert_eq!(c.table.cell(2, "duration_h"), &Cell::Float(1.0));
    // The missing cost is the mean of the kept rows' costs.
    assert_eq!(c.table.cell(1, "cost_eur"), &Cell::Float(660.25));
    assert_eq!(c.report.cells_imputed.get("cost_eur"), Some(&1));
    assert_eq!(c.report.rows_imputed, 1);
    // Spellings of types and statuses.
    assert_eq!(text(&c, 0, "intervention_type"), "corrective");
    assert_eq!(text(&c, 1, "intervention_type"), "preventive");
    assert_eq!(text(&c, 2, "intervention_type"), "predictive");
    assert!((0..3).all(|r| text(&c, r, "status") == "closed"));
    // The unreadable start date drops the row, with its line.
    assert_eq!(c.report.rows_dropped, 1);
    assert_eq!(c.report.drops[0].line, 5);
    assert!(c.report.drops[0].reason.contains("le 12 mars"), "{:?}", c.report.drops[0]);
}

#[test]
fn merged_hierarchy_is_filled_level_by_level() {
    let c = clean("fmea_merged.csv", Kind::Amdec);
    assert_eq!(c.report.encoding, "utf-8-bom");
    let row = |r: usize| -> Vec<&str> {
        ["subsystem", "component", "sub_component", "failure_mode", "effect"]
            .iter()
            .map(|col| text(&c, r, col))
            .collect()
    };
    assert_eq!(row(1), ["Power Unit", "Fuel System", "Fuel Tank", "Cracked or leaking", "Fuel loss, fire"]);
    assert_eq!(row(2), ["Power Unit", "Fuel System", "Fuel Cooler", "Leaking", "Loss of power"]);
    // A new failure mode does not inherit the previous one's effect.
    assert_eq!(row(3), ["Power Unit", "Fuel System", "Fuel Cooler", "Dirt build-up", ""]);
    // A new component does not inherit the previous sub-component.
    assert_eq!(row(4), ["Power Unit", "Pumps", "", "Mechanical failure", "Reduced pressure"]);
    assert_eq!(row(5), ["Power Unit", "Pumps", "", "Mechanical failure", "Reduced pressure"]);
    assert_eq!(row(6)[0], "Load Frame");
    // CRLF and BOM do not shift line numbers: the wrong RPN is on line 7.
    assert_eq!(c.report.rpn_mismatches.len(), 1);
    assert_eq!((c.report.rpn_mismatches[0].line, c.report.rpn_mismatches[0].stated), (7, 0));
}

#[test]
fn cleaning_a_clean_file_changes_nothing() {
    for (name, kind) in [
        ("amdec_latin1.csv", Kind::Amdec),
        ("gmao_semicolon.csv", Kind::Gmao),
        ("fmea_merged.csv", Kind::Amdec),
        ("ai4i_small.csv", Kind::Ai4i),
    ] {
        let once = clean(name, kind).table.to_csv();
        let again = clean_bytes(&once, "clean.csv", kind, &CleanOptions::default()).unwrap();
        assert_eq!(String::from_utf8(again.table.to_csv()).unwrap(), String::from_utf8(once).unwrap(), "{name}");
        let r = &again.report;
        assert_eq!((r.rows_dropped, r.rows_imputed, r.rpn_computed), (0, 0, 0), "{name}: {r}");
        assert!(r.forward_filled.is_empty() && r.warnings.is_empty(), "{name}: {r}");
    }
}

#[test]
fn the_committed_clean_files_are_fixed_points() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    for (file, kind) in [
        ("AMDEC_clean.csv", Kind::Amdec),
        ("GMAO_integrator_clean.csv", Kind::Gmao),
        ("Workload_clean.csv", Kind::Workload),
    ] {
        let path = data.join(file);
        let bytes = std::fs::read(&path).unwrap();
        let c = clean_file(&path, kind, &CleanOptions::default()).unwrap();
        assert_eq!(c.table.to_csv(), bytes, "{file}");
        assert_eq!(c.report.rows_dropped, 0, "{file}");
    }
}

#[test]
fn an_unreadable_file_names_the_file() {
    let missing = fixture("does_not_exist.csv");
    let err = clean_file(&missing, Kind::Amdec, &CleanOptions::default()).unwrap_err();
    assert!(matches!(err, PrepError::Read { .. }));
    let msg = err.to_string();
    assert!(msg.contains("does_not_exist.csv") && msg.contains("check that the file exists"), "{msg}");
    let err = clean_bytes(b"  \n", "empty.csv", Kind::Gmao, &CleanOptions::default()).unwrap_err().to_string();
    assert!(err.contains("empty.csv is empty"), "{err}");
}

#[test]
fn a_header_with_no_known_column_says_what_to_do() {
    let err = clean_file(&fixture("no_known_column.csv"), Kind::Amdec, &CleanOptions::default()).unwrap_err();
    assert!(matches!(err, PrepError::NoKnownColumn { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no_known_column.csv"), "{msg}");
    assert!(msg.contains("--aliases") && msg.contains("foo | bar | baz"), "{msg}");
}

#[test]
fn a_missing_required_column_is_named() {
    let err = clean_bytes(b"Severity;Occurrence;RPN\n1;2;3\n", "partial.csv", Kind::Amdec, &CleanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("partial.csv") && err.contains("`failure_mode`") && err.contains("amdec,failure_mode,"),
        "{err}"
    );
}

#[test]
fn a_user_alias_file_maps_a_new_export_without_code() {
    let export = "Bauteil;Fehlerart;Schwere;Auftreten;Entdeckung\nLager;Verschleiss;8;5;4\n".as_bytes();
    let plain = clean_bytes(export, "de.csv", Kind::Amdec, &CleanOptions::default());
    assert!(matches!(plain, Err(PrepError::NoKnownColumn { .. })));
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases.csv");
    std::fs::write(
        &aliases,
        "kind,canonical,alias\namdec,component,Bauteil\namdec,failure_mode,Fehlerart\namdec,severity,Schwere\n\
         amdec,occurrence,Auftreten\namdec,detection,Entdeckung\n",
    )
    .unwrap();
    let mut table = Aliases::builtin();
    table.add_headers_file(&aliases).unwrap();
    let c = clean_bytes(export, "de.csv", Kind::Amdec, &CleanOptions { aliases: table }).unwrap();
    assert_eq!(c.table.cell(0, "rpn"), &Cell::Int(160));
}

#[test]
fn ai4i_one_hot_and_stratified_split() {
    let (m, report) = proact_dataprep::prepare_ai4i(&fixture("ai4i_small.csv")).unwrap();
    assert_eq!(report.encoding, "utf-8-bom");
    assert_eq!(&m.names[..3], ["type_L", "type_M", "type_H"]);
    assert_eq!(m.names.len(), 8);
    assert_eq!(m.x.len(), 50);
    // UDI 1 is type L (types[1]), UDI 9 is type H.
    assert_eq!(&m.x[0][..3], [1.0, 0.0, 0.0]);
    assert_eq!(&m.x[8][..3], [0.0, 0.0, 1.0]);
    assert_eq!(m.class_counts(), [45, 5]);
    let (train, test) = m.split(proact_dataprep::SPLIT_SEED);
    assert_eq!((train.x.len(), test.x.len()), (40, 10));
    assert_eq!(test.class_counts(), [9, 1]);
    assert_eq!(m.split(proact_dataprep::SPLIT_SEED), (train, test));
    let s = report.features.unwrap();
    assert_eq!((s.train_rows, s.test_rows, s.stratified), (40, 10, true));
}
