//! The seeded sample-data generator: the AMDEC table, the GMAO intervention history and the
//! technicians' workload of the simulator's fleet, written first as the messy exports a real
//! site would hand over (`data/raw/`), then cleaned by this crate's own pipeline into
//! `data/*_clean.csv`. So the clean files are exactly what the cleaner makes of the raw ones.
//!
//! Coherence with the live simulator: the fleet, types and failure modes come from
//! [`proact_store::taxonomy`], and every corrective intervention starts at the `end` of a
//! failure episode given by `episodes(seed, eq, HISTORY_FROM, HISTORY_TO,
//! EPISODE_MEAN_GAP_S, EPISODE_DURATION_S)` — the same call with the same seed reproduces the
//! telemetry that led to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use encoding_rs::WINDOWS_1252;
use proact_store::taxonomy::{episodes, fleet, Episode, Equipment, EquipmentType, FailureMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clean::{clean_bytes, criticality_class, write_file, CleanOptions, CleanTable};
use crate::error::Result;
use crate::report::Report;
use crate::schema::Kind;

/// Start of the sample history, 2025-01-01T00:00:00Z (Unix seconds).
pub const HISTORY_FROM: i64 = 1_735_689_600;
/// End of the sample history, 2026-11-01T00:00:00Z (Unix seconds).
pub const HISTORY_TO: i64 = 1_793_491_200;
/// Mean gap between two failure episodes of one machine: 30 days.
pub const EPISODE_MEAN_GAP_S: i64 = 30 * 86_400;
/// Length of a failure episode (degradation until the machine is stopped): 2 days.
pub const EPISODE_DURATION_S: i64 = 2 * 86_400;
/// The default seed, the one the committed files were generated with.
pub const DEFAULT_SEED: u64 = 42;

/// Files written by [`generate`], relative to the output directory.
pub const AMDEC_CLEAN: &str = "AMDEC_clean.csv";
pub const GMAO_CLEAN: &str = "GMAO_integrator_clean.csv";
pub const WORKLOAD_CLEAN: &str = "Workload_clean.csv";
pub const AMDEC_RAW: &str = "raw/AMDEC_raw.csv";
pub const GMAO_RAW: &str = "raw/GMAO_integrator_raw.csv";
pub const WORKLOAD_RAW: &str = "raw/Workload_raw.csv";

/// A technician of the sample maintenance team.
#[derive(Debug, Clone, PartialEq)]
pub struct Technician {
    pub id: &'static str,
    pub name: &'static str,
    /// Skills, the `skill` values of the simulator's failure modes.
    pub skills: &'static [&'static str],
}

/// The sample team: every failure-mode skill (mecanique, electrique, thermique) is covered
/// by at least two people.
pub fn technicians() -> Vec<Technician> {
    const T: [(&str, &str, &[&str]); 8] = [
        ("T01", "Martin Dubois", &["mecanique"]),
        ("T02", "Sophie Lefèvre", &["mecanique"]),
        ("T03", "Karim Benali", &["mecanique", "thermique"]),
        ("T04", "Julie Moreau", &["electrique"]),
        ("T05", "Thomas Girard", &["electrique", "mecanique"]),
        ("T06", "Camille Rousseau", &["thermique"]),
        ("T07", "Nicolas Fabre", &["mecanique"]),
        ("T08", "Élodie Perrin", &["thermique", "electrique"]),
    ];
    T.iter().map(|(id, name, skills)| Technician { id, name, skills }).collect()
}

/// The failure episodes behind the sample history, per the documented seed convention.
pub fn history_episodes(seed: u64) -> Vec<Episode> {
    fleet()
        .iter()
        .flat_map(|eq| episodes(seed, eq, HISTORY_FROM, HISTORY_TO, EPISODE_MEAN_GAP_S, EPISODE_DURATION_S))
        .collect()
}

/// What [`generate`] wrote.
#[derive(Debug)]
pub struct Generated {
    /// (path, data rows) of every file written.
    pub files: Vec<(PathBuf, usize)>,
    /// The cleaning reports of the three raw files.
    pub reports: Vec<Report>,
}

/// Writes the raw exports and their clean counterparts under `out`.
pub fn generate(out: &Path, seed: u64) -> Result<Generated> {
    let fleet = fleet();
    let techs = technicians();
    let history = gmao_history(seed, &fleet, &techs);
    let workload = workload(seed, &techs, &history);

    let raws: [(&str, &str, Kind, Vec<u8>); 3] = [
        (AMDEC_RAW, AMDEC_CLEAN, Kind::Amdec, amdec_raw(seed, &fleet)),
        (GMAO_RAW, GMAO_CLEAN, Kind::Gmao, gmao_raw(seed, &history)),
        (WORKLOAD_RAW, WORKLOAD_CLEAN, Kind::Workload, workload_raw(seed, &workload)),
    ];
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for (raw_name, clean_name, kind, bytes) in raws {
        let raw_path = out.join(raw_name);
        write_file(&raw_path, &bytes)?;
        let cleaned = clean_bytes(&bytes, &format!("data/{raw_name}"), kind, &CleanOptions::default())?;
        files.push((raw_path, cleaned.report.rows_read));
        let clean_path = out.join(clean_name);
        cleaned.table.write(&clean_path)?;
        files.push((clean_path, cleaned.table.len()));
        reports.push(cleaned.report);
    }
    Ok(Generated { files, reports })
}

/// One intervention of the history, before it is written in any format.
#[derive(Debug, Clone)]
pub struct Intervention {
    pub id: String,
    pub equipement_id: String,
    pub kind: EquipmentType,
    pub start: DateTime<Utc>,
    pub duration_h: f64,
    pub itype: &'static str,
    pub mode: Option<FailureMode>,
    pub description: String,
    pub technician: &'static str,
    pub cost_eur: f64,
}

impl Intervention {
    fn end(&self) -> DateTime<Utc> {
        self.start + Duration::seconds((self.duration_h * 3600.0).round() as i64)
    }
}

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().expect("in range")
}

fn quarter_hours(x: f64) -> f64 {
    (x * 4.0).round() / 4.0
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn pick_tech<'a>(techs: &'a [Technician], skill: &str, rng: &mut ChaCha8Rng) -> &'a Technician {
    let able: Vec<&Technician> = techs.iter().filter(|t| t.skills.contains(&skill)).collect();
    able[rng.gen_range(0..able.len())]
}

fn preventive_plan(kind: EquipmentType) -> (&'static str, &'static str) {
    match kind {
        EquipmentType::Pump => ("Graissage des roulements, contrôle de la garniture", "mecanique"),
        EquipmentType::Compressor => ("Nettoyage du refroidisseur, vidange d'huile", "thermique"),
        EquipmentType::Motor => ("Contrôle d'isolement, graissage des paliers", "electrique"),
        EquipmentType::Conveyor => ("Réglage des rouleaux, contrôle du réducteur", "mecanique"),
        EquipmentType::Fan => ("Nettoyage des pales, contrôle d'équilibrage", "mecanique"),
    }
}

/// The intervention history: a corrective one at the end of every failure episode, a
/// preventive one every 60 days and a predictive inspection every 91 days per machine,
/// skipping planned work that would fall while the machine is degrading or under repair.
pub fn gmao_history(seed: u64, fleet: &[Equipment], techs: &[Technician]) -> Vec<Intervention> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x474d_414f)); // "GMAO"
    let mut out = Vec::new();
    for (i, eq) in fleet.iter().enumerate() {
        let eps = episodes(seed, eq, HISTORY_FROM, HISTORY_TO, EPISODE_MEAN_GAP_S, EPISODE_DURATION_S);
        for ep in &eps {
            let m = ep.mode;
            let duration_h = quarter_hours(rng.gen_range(2.0..(3.0 + f64::from(m.severity))));
            let tech = pick_tech(techs, m.skill, &mut rng);
            let parts = rng.gen_range(50.0..(150.0 * f64::from(m.severity)));
            out.push(Intervention {
                id: String::new(),
                equipement_id: eq.id.clone(),
                kind: eq.kind,
                start: ts(ep.end),
                duration_h,
                itype: "corrective",
                mode: Some(m),
                description: format!("{} : {}", m.mode_fr, m.action_fr),
                technician: tech.id,
                cost_eur: cents(duration_h * 68.0 + parts),
            });
        }
        // A planned job is skipped if it falls in an episode or the day after it.
        let busy = |t: i64| eps.iter().any(|e| t + 4 * 3600 >= e.start && t <= e.end + 86_400);
        let mut t = HISTORY_FROM + (i as i64) * 5 * 86_400 + 8 * 3600;
        while t < HISTORY_TO {
            if !busy(t) {
                let (plan, skill) = preventive_plan(eq.kind);
                let duration_h = quarter_hours(rng.gen_range(1.5..3.5));
                out.push(Intervention {
                    id: String::new(),
                    equipement_id: eq.id.clone(),
                    kind: eq.kind,
                    start: ts(t),
                    duration_h,
                    itype: "preventive",
                    mode: None,
                    description: format!("Maintenance préventive : {}", plan.to_lowercase()),
                    technician: pick_tech(techs, skill, &mut rng).id,
                    cost_eur: cents(duration_h * 68.0 + rng.gen_range(20.0..120.0)),
                });
            }
            t += 60 * 86_400;
        }
        let mut t = HISTORY_FROM + 30 * 86_400 + (i as i64) * 3 * 86_400 + 9 * 3600;
        while t < HISTORY_TO {
            if !busy(t) {
                out.push(Intervention {
                    id: String::new(),
                    equipement_id: eq.id.clone(),
                    kind: eq.kind,
                    start: ts(t),
                    duration_h: 1.0,
                    itype: "predictive",
                    mode: None,
                    description: "Analyse vibratoire et thermographie, relevé des tendances".into(),
                    technician: pick_tech(techs, "electrique", &mut rng).id,
                    cost_eur: 120.0,
                });
            }
            t += 91 * 86_400;
        }
    }
    out.sort_by(|a, b| (a.start, &a.equipement_id).cmp(&(b.start, &b.equipement_id)));
    for (n, iv) in out.iter_mut().enumerate() {
        iv.id = format!("OT-{:05}", n + 1);
    }
    out
}

/// One technician-month of the workload table.
#[derive(Debug, Clone)]
pub struct WorkloadRow {
    pub tech: Technician,
    pub period: NaiveDate,
    pub planned_hours: f64,
    pub actual_hours: f64,
    pub interventions: usize,
    pub availability_pct: f64,
}

/// Monthly workload per technician, counting the history's interventions.
pub fn workload(seed: u64, techs: &[Technician], history: &[Intervention]) -> Vec<WorkloadRow> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x574c)); // "WL"
    let mut per: BTreeMap<(&str, NaiveDate), (usize, f64)> = BTreeMap::new();
    for iv in history {
        let month = NaiveDate::from_ymd_opt(iv.start.year(), iv.start.month(), 1).expect("valid");
        let e = per.entry((iv.technician, month)).or_default();
        e.0 += 1;
        e.1 += iv.duration_h;
    }
    let first = ts(HISTORY_FROM).date_naive();
    let last = ts(HISTORY_TO).date_naive();
    let mut out = Vec::new();
    for t in techs {
        let mut month = first;
        while month < last {
            const WORKING_DAYS: f64 = 21.0;
            let absent = if month.month() == 8 { 10.0 } else { f64::from(rng.gen_range(0u8..=3)) };
            let planned = 7.0 * (WORKING_DAYS - absent);
            let (n, hours) = per.get(&(t.id, month)).copied().unwrap_or((0, 0.0));
            let actual = (planned * rng.gen_range(0.9..1.08)).max(hours);
            out.push(WorkloadRow {
                tech: t.clone(),
                period: month,
                planned_hours: cents(planned),
                actual_hours: (actual * 10.0).round() / 10.0,
                interventions: n,
                availability_pct: (1000.0 * (WORKING_DAYS - absent) / WORKING_DAYS).round() / 10.0,
            });
            month = month.checked_add_months(chrono::Months::new(1)).expect("valid");
        }
    }
    out
}

// ---- raw exports, with the defects the cleaner fixes ----

fn french_criticality(rpn: i64) -> &'static str {
    match criticality_class(rpn) {
        "high" => "Critique",
        "medium" => "Majeure",
        _ => "Mineure",
    }
}

/// A French spreadsheet's AMDEC export: Windows-1252, `;`, CRLF, French headers, equipment
/// cells merged over their failure modes, some RPNs missing, one stated wrong, some
/// criticality classes missing, and a trailing empty row.
fn amdec_raw(seed: u64, fleet: &[Equipment]) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x414d)); // "AM"
    let rows: Vec<(&Equipment, &FailureMode)> =
        fleet.iter().flat_map(|eq| eq.kind.failure_modes().iter().map(move |m| (eq, m))).collect();
    let wrong = rng.gen_range(0..rows.len());
    let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record([
        "Équipement",
        "Type d'équipement",
        "Composant",
        "Code mode",
        "Mode de défaillance",
        "Effet",
        "Cause",
        "Gravité",
        "Occurrence",
        "Détection",
        "IPR",
        "Niveau de criticité",
        "Action recommandée",
    ])
    .expect("in memory");
    let mut last_eq = "";
    for (i, (eq, m)) in rows.iter().enumerate() {
        let first = eq.id != last_eq;
        last_eq = &eq.id;
        let rpn = i64::from(m.severity) * i64::from(m.occurrence) * i64::from(m.detection);
        let stated = if i == wrong {
            // The classic slip: the detection rating left out of the product.
            (i64::from(m.severity) * i64::from(m.occurrence)).to_string()
        } else if rng.gen_bool(0.2) {
            String::new()
        } else {
            rpn.to_string()
        };
        let crit = if rng.gen_bool(0.15) { "" } else { french_criticality(rpn) };
        w.write_record([
            if first { eq.id.as_str() } else { "" },
            if first { eq.kind.label_fr() } else { "" },
            m.component,
            m.code,
            m.mode_fr,
            m.effect_fr,
            m.cause_fr,
            &m.severity.to_string(),
            &m.occurrence.to_string(),
            &m.detection.to_string(),
            &stated,
            crit,
            m.action_fr,
        ])
        .expect("in memory");
    }
    w.write_record(["", "", "", "", "", "", "", "", "", "", "", "", ""]).expect("in memory");
    let text = String::from_utf8(w.into_inner().expect("in memory")).expect("utf-8");
    let (bytes, _, unmappable) = WINDOWS_1252.encode(&text);
    debug_assert!(!unmappable, "AMDEC text fits Windows-1252");
    bytes.into_owned()
}

fn raw_date(d: DateTime<Utc>, style: u32) -> String {
    match style % 4 {
        0 => d.format("%d/%m/%Y %H:%M:%S").to_string(),
        1 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        2 => d.format("%Y-%m-%d %H:%M:%S").to_string(),
        // Local time in Paris (UTC+1 in winter, +2 in summer, roughly), with its offset.
        _ => {
            let hours = if (4..=10).contains(&d.month()) { 2 } else { 1 };
            let off = FixedOffset::east_opt(hours * 3600).expect("valid offset");
            d.with_timezone(&off).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }
}

/// A CMMS export: UTF-8 with a BOM, `,`, headers half French half English, four date
/// styles (one with a local offset), type and status spelt several ways, some ends,
/// durations, costs and technicians missing, and a totals line at the bottom.
fn gmao_raw(seed: u64, history: &[Intervention]) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x4f54)); // "OT"
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record([
        "N° OT",
        "Equipment",
        "Type équipement",
        "Date début",
        "End date",
        "Type d'intervention",
        "Failure mode",
        "Description",
        "Technicien",
        "Durée (h)",
        "Cost (€)",
        "Statut",
    ])
    .expect("in memory");
    let mut total = 0.0;
    for iv in history {
        let spellings: [&str; 3] = match iv.itype {
            "corrective" => ["Correctif", "corrective", "Curatif"],
            "preventive" => ["Préventif", "preventive", "Systématique"],
            _ => ["Prédictif", "predictive", "Conditionnel"],
        };
        let gap: f64 = rng.gen();
        let (no_end, no_duration) = (gap < 0.03, (0.03..0.06).contains(&gap));
        let no_cost = rng.gen_bool(0.05);
        let no_tech = rng.gen_bool(0.01);
        total += iv.cost_eur;
        w.write_record([
            iv.id.as_str(),
            &iv.equipement_id,
            if rng.gen_bool(0.5) { iv.kind.label_fr() } else { iv.kind.code() },
            &raw_date(iv.start, rng.gen_range(0..4)),
            &if no_end { String::new() } else { raw_date(iv.end(), rng.gen_range(0..4)) },
            spellings[rng.gen_range(0..3)],
            iv.mode.map_or("", |m| m.code),
            &iv.description,
            if no_tech { "" } else { iv.technician },
            &if no_duration { String::new() } else { iv.duration_h.to_string() },
            &if no_cost { String::new() } else { format!("{:.2}", iv.cost_eur) },
            ["Clôturé", "closed", "Terminé"][rng.gen_range(0..3)],
        ])
        .expect("in memory");
    }
    w.write_record(["", "", "", "", "", "", "", "TOTAL", "", "", &format!("{total:.2}"), ""]).expect("in memory");
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(w.into_inner().expect("in memory"));
    bytes
}

/// A planner's workload sheet: Latin-1, `;`, decimal commas, French and English headers,
/// the technician's cells merged over their months, periods with and without a time, in
/// day-first and ISO styles, and some hours and availabilities missing.
fn workload_raw(seed: u64, rows: &[WorkloadRow]) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x5257)); // "RW"
    let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record([
        "Matricule",
        "Nom",
        "Skills",
        "Période",
        "Heures planifiées",
        "Actual hours",
        "Nb interventions",
        "Disponibilité (%)",
    ])
    .expect("in memory");
    let comma = |x: f64| x.to_string().replace('.', ",");
    let mut last = "";
    for r in rows {
        let first = r.tech.id != last;
        last = r.tech.id;
        let period = match rng.gen_range(0..4) {
            0 => r.period.format("%d/%m/%Y").to_string(),
            1 => r.period.format("%Y-%m-%d").to_string(),
            2 => r.period.format("%Y-%m-%d 00:00").to_string(),
            _ => r.period.format("%d/%m/%Y 00:00").to_string(),
        };
        let skills = r.tech.skills.join("|");
        w.write_record([
            if first { r.tech.id } else { "" },
            if first { r.tech.name } else { "" },
            if first { skills.as_str() } else { "" },
            &period,
            &if rng.gen_bool(0.04) { String::new() } else { comma(r.planned_hours) },
            &if rng.gen_bool(0.04) { String::new() } else { comma(r.actual_hours) },
            &r.interventions.to_string(),
            &if rng.gen_bool(0.03) { String::new() } else { comma(r.availability_pct) },
        ])
        .expect("in memory");
    }
    let text = String::from_utf8(w.into_inner().expect("in memory")).expect("utf-8");
    let (bytes, _, unmappable) = WINDOWS_1252.encode(&text);
    debug_assert!(!unmappable, "workload text fits Latin-1");
    bytes.into_owned()
}

/// The clean GMAO table of a seed, without touching the disk (for tests and the trainer).
pub fn clean_history(seed: u64) -> Result<CleanTable> {
    let history = gmao_history(seed, &fleet(), &technicians());
    Ok(clean_bytes(&gmao_raw(seed, &history), GMAO_RAW, Kind::Gmao, &CleanOptions::default())?.table)
}
