//! Inputs the importer's fuzzing found (crates/dataprep/fuzz), each kept as a test of the
//! fix: a number too large for what is computed from it must not stop a whole import.

use proact_dataprep::{clean_bytes, CleanOptions, Kind};

#[test]
fn an_rpn_that_overflows_is_not_a_crash() {
    let csv = "equipement_id,component,failure_mode,severity,occurrence,detection\n\
               PUMP-01,Roue,Cavitation,8000000000000000,8000000000000000,2\n\
               PUMP-01,Roulement,Usure,8,5,4\n";
    let c = clean_bytes(csv.as_bytes(), "overflow.csv", Kind::Amdec, &CleanOptions::default()).unwrap();
    proact_dataprep::clean::fuzz_one(&[&[0u8][..], csv.as_bytes()].concat());
    assert_eq!(c.table.cell(1, "rpn").as_i64(), Some(160), "the other rows are computed as before");
}

#[test]
fn a_duration_past_the_calendar_is_not_a_crash() {
    let csv = "intervention_id,equipement_id,intervention_type,started_at,ended_at,duration_h\n\
               OT-1,PUMP-01,corrective,2025-01-01T08:00:00Z,,1e300\n\
               OT-2,PUMP-01,corrective,2025-01-01T08:00:00Z,,1e12\n\
               OT-3,PUMP-01,corrective,2025-01-01T08:00:00Z,,2.5\n";
    proact_dataprep::clean::fuzz_one(&[&[1u8][..], csv.as_bytes()].concat());
    let c = clean_bytes(csv.as_bytes(), "far.csv", Kind::Gmao, &CleanOptions::default()).unwrap();
    assert_eq!(c.table.len(), 3);
}

#[test]
fn a_mean_too_large_for_a_float_is_not_infinite() {
    let csv = "technician_id,period_start,planned_hours,actual_hours\n\
               T01,2025-01-01,1e308,1\n\
               T01,2025-02-01,1e308,2\n\
               T01,2025-03-01,,3\n";
    proact_dataprep::clean::fuzz_one(&[&[2u8][..], csv.as_bytes()].concat());
    let c = clean_bytes(csv.as_bytes(), "huge.csv", Kind::Workload, &CleanOptions::default()).unwrap();
    assert_eq!(c.table.len(), 3, "no row is lost to the overflow");
    let imputed = c.table.cell(2, "planned_hours").as_f64();
    assert!(imputed.is_some_and(f64::is_finite), "the missing value is imputed with a finite mean: {imputed:?}");
}
