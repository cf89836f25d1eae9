//! The knowledge base at the boundary its users touch: files in (through the data
//! preparation's cleaner), ranked and cited answers out.

use std::path::{Path, PathBuf};

use proact_knowledge::index::MAX_QUESTION_BYTES;
use proact_knowledge::{load_amdec, load_interventions, KnowledgeBase, KnowledgeError, Record, RowRef, Source};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/truck_fmea.csv")
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)
}

fn truck() -> KnowledgeBase {
    KnowledgeBase::with_records(load_amdec(&fixture()).unwrap()).unwrap()
}

fn rows(kb: &KnowledgeBase, q: &str, k: usize) -> Vec<u64> {
    kb.search(q, k)
        .unwrap()
        .hits
        .iter()
        .map(|h| match &h.record.row {
            Some(RowRef::Row(n)) => *n,
            other => panic!("not a file row: {other:?}"),
        })
        .collect()
}

#[test]
fn citations_point_at_the_data_row_and_the_fields_that_matched() {
    let kb = truck();
    let answer = kb.search("fuel cooler leaking", 3).unwrap();
    let top = &answer.hits[0];
    // Data row 2 spans lines 3–4 of the file (a line break inside its effect cell): the
    // citation is the row a spreadsheet shows, not the physical line.
    assert_eq!(top.record.row, Some(RowRef::Row(2)));
    assert_eq!(top.record.source(), Source::Amdec);
    assert!(top.record.origin.ends_with("truck_fmea.csv"));
    // The merged cells were filled by the cleaner.
    assert_eq!(top.record.subsystem.as_deref(), Some("Power Unit"));
    assert_eq!(top.record.component.as_deref(), Some("Fuel System"));
    assert_eq!(top.record.sub_component.as_deref(), Some("Fuel Cooler"));
    assert_eq!(top.record.failure_mode.as_deref(), Some("Leaking"));
    for f in ["sub_component", "failure_mode"] {
        assert!(top.matched.iter().any(|m| m == f), "{f} not in {:?}", top.matched);
    }
    let json = top.to_json();
    assert_eq!(json["source"], "amdec");
    assert_eq!(json["row"], 2);
    assert_eq!(json["rpn"], 16);
    assert!(json.get("recommended_action").is_some());
    // The last row, after the multi-line cell.
    assert_eq!(rows(&kb, "ECU overloading", 1), [11]);
}

#[test]
fn french_and_english_questions_with_typos_find_the_same_rows() {
    let kb = truck();
    let pairs = [
        ("airconditioner condensor leak", "fuite du condenseur de la climatisation"),
        ("water pump bearing", "roulement de la pompe à eau"),
        ("starter motr corrosion", "corrosion du démarreur"),
        ("radiator leaks", "fuite du radiateur"),
    ];
    for (en, fr) in pairs {
        let (a, b) = (rows(&kb, en, 1), rows(&kb, fr, 1));
        assert!(!a.is_empty(), "{en}: nothing");
        assert_eq!(a, b, "`{en}` and `{fr}` disagree");
    }
    assert_eq!(rows(&kb, "airconditioner condensor leak", 1), [7]);
    assert_eq!(rows(&kb, "roulement de la pompe à eau", 1), [4]);
}

#[test]
fn numeric_conditions_filter_exactly() {
    let records = load_amdec(&fixture()).unwrap();
    let kb = KnowledgeBase::with_records(records.clone()).unwrap();
    type Pred = fn(&Record) -> bool;
    let cases: [(&str, Pred); 6] = [
        ("failure modes with RPN over 20", |r| r.rpn.unwrap() > 20),
        ("severity of 3 or above", |r| r.severity.unwrap() >= 3),
        ("modes avec une gravité supérieure à 3", |r| r.severity.unwrap() > 3),
        ("hard to detect", |r| r.detection.unwrap() >= 4),
        ("RPN between 18 and 24 with no recommended action", |r| {
            (18..=24).contains(&r.rpn.unwrap()) && r.recommended_action.is_none()
        }),
        ("occurrence at most 2 in the power unit", |r| {
            r.occurrence.unwrap() <= 2 && r.subsystem.as_deref() == Some("Power Unit")
        }),
    ];
    for (q, pred) in cases {
        let mut want: Vec<u64> = records
            .iter()
            .filter(|r| pred(r))
            .map(|r| match r.row {
                Some(RowRef::Row(n)) => n,
                _ => unreachable!(),
            })
            .collect();
        let mut got = rows(&kb, q, 100);
        want.sort();
        got.sort();
        assert_eq!(got, want, "{q}");
    }
    // A condition with words: only the rows meeting it, ranked by the words.
    let mut leaks = rows(&kb, "leaks with RPN of 16 or more", 10);
    leaks.sort();
    assert_eq!(leaks, [2, 5, 7]);
}

#[test]
fn aggregations_are_computed_over_the_rows_in_scope() {
    let kb = truck();
    let a = kb.search("How many failure modes in the electrical system?", 5).unwrap().aggregate.unwrap();
    assert_eq!((a.value, a.rows), (Some(4.0), 4));
    let a = kb.search("highest RPN in the power unit", 5).unwrap();
    assert_eq!(a.aggregate.as_ref().unwrap().value, Some(36.0));
    assert_eq!(a.hits[0].record.row, Some(RowRef::Row(4)), "the row holding the maximum is cited first");
    let a = kb.search("average severity per subsystem", 5).unwrap().aggregate.unwrap();
    assert_eq!(a.groups[0].subsystem, "Power Unit");
    assert!((a.groups[0].value - 3.6).abs() < 1e-9);
}

#[test]
fn questions_about_nothing_the_base_knows_return_no_rows() {
    let kb = truck();
    for q in
        ["turbocharger wastegate", "failure modes with RPN over 100", "leaks that are hard to detect", "bétonnière"]
    {
        let a = kb.search(q, 10).unwrap();
        assert!(a.hits.is_empty(), "{q}: {:?}", a.hits.iter().map(|h| &h.record.row).collect::<Vec<_>>());
        assert!(a.no_answer.is_some(), "{q}");
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    let kb = truck();
    let e = kb.search("   ", 10).unwrap_err();
    assert!(matches!(e, KnowledgeError::EmptyQuestion));
    assert!(e.to_string().contains("empty"));
    let big = "leak ".repeat(100 * 1024 / 5);
    let e = kb.search(&big, 10).unwrap_err();
    assert!(matches!(e, KnowledgeError::QuestionTooLong { max: MAX_QUESTION_BYTES, .. }), "{e}");
    assert!(e.to_string().contains("shorter"), "{e}");
    assert!(matches!(kb.search("leak", 0), Err(KnowledgeError::BadLimit { .. })));
    let missing = load_amdec(Path::new("/nonexistent/fmea.csv")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/fmea.csv"), "{missing}");
}

#[test]
fn a_new_intervention_is_searchable_at_once_and_an_update_replaces_it() {
    let mut records = load_amdec(&sample("AMDEC_clean.csv")).unwrap();
    records.extend(load_interventions(&sample("raw/GMAO_integrator_raw.csv")).unwrap());
    let kb = KnowledgeBase::with_records(records).unwrap();
    let before = kb.len();
    assert!(kb.search("débitmètre ultrasonique", 5).unwrap().hits.is_empty());

    let new = Record {
        source: Some(Source::Intervention),
        origin: "gmao".into(),
        row: Some(RowRef::Id("OT-99999".into())),
        equipement_id: Some("PUMP-01".into()),
        equipment_type: Some("pump".into()),
        intervention_type: Some("corrective".into()),
        description: Some("Remplacement du débitmètre ultrasonique encrassé".into()),
        technician_id: Some("T03".into()),
        status: Some("open".into()),
        ..Record::default()
    };
    kb.upsert(vec![new.clone()]).unwrap();
    let hits = kb.search("débitmètre ultrasonique", 5).unwrap().hits;
    assert_eq!(hits[0].record.row, Some(RowRef::Id("OT-99999".into())));
    assert!(hits[0].matched.contains(&"description".to_string()));
    assert_eq!(kb.len(), before + 1);

    // Closing it with another description: the old text is gone, no duplicate.
    let closed = Record {
        description: Some("Capteur de débit remplacé, essai conforme".into()),
        status: Some("closed".into()),
        ..new
    };
    kb.upsert(vec![closed]).unwrap();
    assert_eq!(kb.len(), before + 1);
    assert!(kb.search("ultrasonique", 5).unwrap().hits.is_empty());
    let hits = kb.search("capteur de débit remplacé", 3).unwrap().hits;
    assert_eq!(hits[0].record.row, Some(RowRef::Id("OT-99999".into())));
    assert_eq!(hits[0].record.status.as_deref(), Some("closed"));
}

#[test]
fn the_project_sample_loads_through_the_cleaner_from_raw_french_exports() {
    // The raw AMDEC is Windows-1252 with French headers and merged equipment cells; the
    // knowledge base holds exactly the rows the cleaning report kept.
    let cleaned =
        proact_dataprep::clean_file(&sample("raw/AMDEC_raw.csv"), proact_dataprep::Kind::Amdec, &Default::default())
            .unwrap();
    let records = load_amdec(&sample("raw/AMDEC_raw.csv")).unwrap();
    assert_eq!(records.len(), cleaned.report.rows_kept);
    let kb = KnowledgeBase::with_records(records).unwrap();
    let a = kb.search("bearing wear on the pumps", 5).unwrap();
    assert!(a.hits.iter().any(|h| h.record.failure_mode_code.as_deref() == Some("BEARING_WEAR")), "{:?}", a.hits);
}
