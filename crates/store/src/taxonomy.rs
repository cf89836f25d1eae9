//! The equipment taxonomy: equipment types, their nominal operating point and their AMDEC
//! failure modes, and the reference site's fleet with its deterministic failure schedule.
//!
//! One source of truth for everything that must agree on ids, types and failure modes: the
//! sample-data generator (dataprep writes the AMDEC table and the GMAO history from it), the
//! one-hot machine-type features, and the simulator (which publishes readings during the
//! same failure episodes, so archived telemetry plus the intervention history yield
//! training labels).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A kind of equipment, with its normal operating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EquipmentType {
    Pump,
    Compressor,
    Motor,
    Conveyor,
    Fan,
}

impl EquipmentType {
    pub const ALL: [EquipmentType; 5] = [
        EquipmentType::Pump,
        EquipmentType::Compressor,
        EquipmentType::Motor,
        EquipmentType::Conveyor,
        EquipmentType::Fan,
    ];

    /// Stable code used in the data files and the one-hot feature names.
    pub fn code(self) -> &'static str {
        match self {
            EquipmentType::Pump => "pump",
            EquipmentType::Compressor => "compressor",
            EquipmentType::Motor => "motor",
            EquipmentType::Conveyor => "conveyor",
            EquipmentType::Fan => "fan",
        }
    }

    /// French label, as a GMAO export would show it.
    pub fn label_fr(self) -> &'static str {
        match self {
            EquipmentType::Pump => "Pompe centrifuge",
            EquipmentType::Compressor => "Compresseur à vis",
            EquipmentType::Motor => "Moteur électrique",
            EquipmentType::Conveyor => "Convoyeur à bande",
            EquipmentType::Fan => "Ventilateur",
        }
    }

    /// Normal temperature (°C) and vibration (mm/s RMS) of this type.
    pub fn nominal(self) -> (f64, f64) {
        match self {
            EquipmentType::Pump => (62.0, 4.5),
            EquipmentType::Compressor => (70.0, 5.5),
            EquipmentType::Motor => (58.0, 3.0),
            EquipmentType::Conveyor => (45.0, 6.0),
            EquipmentType::Fan => (40.0, 3.5),
        }
    }

    /// Failure modes this type is known for (AMDEC).
    pub fn failure_modes(self) -> &'static [FailureMode] {
        match self {
            EquipmentType::Pump => &PUMP_MODES,
            EquipmentType::Compressor => &COMPRESSOR_MODES,
            EquipmentType::Motor => &MOTOR_MODES,
            EquipmentType::Conveyor => &CONVEYOR_MODES,
            EquipmentType::Fan => &FAN_MODES,
        }
    }
}

/// One AMDEC failure mode and how it shows in the signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureMode {
    /// Stable code, e.g. `BEARING_WEAR`.
    pub code: &'static str,
    pub component: &'static str,
    pub mode_fr: &'static str,
    pub effect_fr: &'static str,
    pub cause_fr: &'static str,
    pub action_fr: &'static str,
    /// AMDEC ratings, 1..=10.
    pub severity: u8,
    pub occurrence: u8,
    pub detection: u8,
    /// Rise at the peak of an episode above nominal: °C and mm/s.
    pub temp_rise: f64,
    pub vib_rise: f64,
    /// Skill a technician needs to repair it.
    pub skill: &'static str,
}

macro_rules! mode {
    ($code:expr, $comp:expr, $m:expr, $e:expr, $c:expr, $a:expr, $s:expr, $o:expr, $d:expr, $t:expr, $v:expr, $skill:expr) => {
        FailureMode {
            code: $code,
            component: $comp,
            mode_fr: $m,
            effect_fr: $e,
            cause_fr: $c,
            action_fr: $a,
            severity: $s,
            occurrence: $o,
            detection: $d,
            temp_rise: $t,
            vib_rise: $v,
            skill: $skill,
        }
    };
}

static PUMP_MODES: [FailureMode; 3] = [
    mode!(
        "CAVITATION",
        "Roue",
        "Cavitation",
        "Perte de débit, érosion de la roue",
        "NPSH disponible insuffisant",
        "Vérifier la pression d'aspiration, nettoyer le filtre",
        7,
        4,
        5,
        18.0,
        9.0,
        "mecanique"
    ),
    mode!(
        "BEARING_WEAR",
        "Roulement",
        "Usure des roulements",
        "Échauffement, vibrations, grippage",
        "Lubrification insuffisante",
        "Remplacer les roulements, revoir le plan de graissage",
        8,
        5,
        4,
        34.0,
        7.0,
        "mecanique"
    ),
    mode!(
        "SEAL_LEAK",
        "Garniture mécanique",
        "Fuite de garniture",
        "Fuite de fluide, arrêt de la pompe",
        "Usure des faces de frottement",
        "Remplacer la garniture mécanique",
        6,
        5,
        3,
        12.0,
        2.0,
        "mecanique"
    ),
];
static COMPRESSOR_MODES: [FailureMode; 2] = [
    mode!(
        "OVERHEATING",
        "Circuit de refroidissement",
        "Surchauffe",
        "Déclenchement thermique, arrêt de production",
        "Refroidisseur encrassé",
        "Nettoyer le refroidisseur, vérifier le niveau d'huile",
        8,
        4,
        3,
        30.0,
        2.5,
        "thermique"
    ),
    mode!(
        "VALVE_FAILURE",
        "Clapet",
        "Défaillance de clapet",
        "Perte de pression, surconsommation",
        "Fatigue du clapet",
        "Remplacer le clapet",
        6,
        3,
        6,
        14.0,
        6.0,
        "mecanique"
    ),
];
static MOTOR_MODES: [FailureMode; 3] = [
    mode!(
        "BEARING_WEAR",
        "Roulement",
        "Usure des roulements",
        "Échauffement, vibrations, grippage",
        "Lubrification insuffisante",
        "Remplacer les roulements",
        7,
        5,
        4,
        36.0,
        6.0,
        "mecanique"
    ),
    mode!(
        "WINDING_INSULATION",
        "Bobinage",
        "Défaut d'isolement du bobinage",
        "Court-circuit, arrêt du moteur",
        "Surchauffe prolongée, humidité",
        "Mesurer l'isolement, rebobiner",
        9,
        2,
        6,
        38.0,
        1.5,
        "electrique"
    ),
    mode!(
        "MISALIGNMENT",
        "Accouplement",
        "Désalignement",
        "Vibrations, usure prématurée",
        "Montage, dilatation",
        "Réaligner l'accouplement au laser",
        5,
        4,
        3,
        8.0,
        8.0,
        "mecanique"
    ),
];
static CONVEYOR_MODES: [FailureMode; 2] = [
    mode!(
        "BELT_MISALIGNMENT",
        "Bande",
        "Déport de bande",
        "Usure des bords, débordement",
        "Rouleaux mal réglés",
        "Régler les rouleaux, centrer la bande",
        5,
        6,
        2,
        6.0,
        7.0,
        "mecanique"
    ),
    mode!(
        "GEARBOX_WEAR",
        "Réducteur",
        "Usure du réducteur",
        "Bruit, échauffement, casse",
        "Huile dégradée",
        "Vidanger, remplacer les pignons",
        7,
        3,
        5,
        50.0,
        8.0,
        "mecanique"
    ),
];
static FAN_MODES: [FailureMode; 1] = [mode!(
    "IMBALANCE",
    "Hélice",
    "Balourd",
    "Vibrations, fissuration",
    "Encrassement des pales",
    "Nettoyer et équilibrer l'hélice",
    5,
    4,
    3,
    10.0,
    9.0,
    "mecanique"
)];

/// One machine of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Equipment {
    pub id: String,
    pub kind: EquipmentType,
    pub site: &'static str,
    pub line: &'static str,
}

/// The sample fleet: twelve machines on two lines.
pub fn fleet() -> Vec<Equipment> {
    let spec: [(&str, EquipmentType, &str); 12] = [
        ("PUMP-01", EquipmentType::Pump, "L1"),
        ("PUMP-02", EquipmentType::Pump, "L1"),
        ("PUMP-03", EquipmentType::Pump, "L2"),
        ("PUMP-04", EquipmentType::Pump, "L2"),
        ("COMP-01", EquipmentType::Compressor, "L1"),
        ("COMP-02", EquipmentType::Compressor, "L2"),
        ("MOTOR-01", EquipmentType::Motor, "L1"),
        ("MOTOR-02", EquipmentType::Motor, "L1"),
        ("MOTOR-03", EquipmentType::Motor, "L2"),
        ("CONV-01", EquipmentType::Conveyor, "L1"),
        ("CONV-02", EquipmentType::Conveyor, "L2"),
        ("FAN-01", EquipmentType::Fan, "L2"),
    ];
    spec.iter()
        .map(|(id, kind, line)| Equipment { id: (*id).to_string(), kind: *kind, site: "Usine-Nord", line })
        .collect()
}

/// A failure episode: the signals degrade from `start` to `end`, when the machine is
/// stopped and a corrective intervention (in the GMAO history) begins.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub equipement_id: String,
    pub mode: FailureMode,
    /// Seconds since the Unix epoch.
    pub start: i64,
    pub end: i64,
}

impl Episode {
    /// Degradation in [0, 1] at time `t` (0 outside the episode): a slow rise that
    /// accelerates towards the end, as wear does.
    pub fn degradation(&self, t: i64) -> f64 {
        if t < self.start || t >= self.end {
            return 0.0;
        }
        let x = (t - self.start) as f64 / (self.end - self.start).max(1) as f64;
        x * x
    }
}

/// Deterministic failure episodes of one equipment between `from` and `to` (seconds),
/// about one every `mean_gap_s` seconds, each lasting `duration_s`.
pub fn episodes(seed: u64, eq: &Equipment, from: i64, to: i64, mean_gap_s: i64, duration_s: i64) -> Vec<Episode> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv(&eq.id));
    let modes = eq.kind.failure_modes();
    let mut out = Vec::new();
    let mut t = from + rng.gen_range(0..mean_gap_s.max(1));
    while t + duration_s <= to {
        // Occurrence weights the choice of failure mode, as in the AMDEC.
        let total: u32 = modes.iter().map(|m| u32::from(m.occurrence)).sum();
        let mut pick = rng.gen_range(0..total);
        let mode = *modes
            .iter()
            .find(|m| {
                let o = u32::from(m.occurrence);
                if pick < o {
                    true
                } else {
                    pick -= o;
                    false
                }
            })
            .unwrap_or(&modes[0]);
        out.push(Episode { equipement_id: eq.id.clone(), mode, start: t, end: t + duration_s });
        let gap = (mean_gap_s as f64 * (0.5 + rng.gen::<f64>())) as i64;
        t += duration_s + gap.max(duration_s);
    }
    out
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_are_deterministic_and_disjoint() {
        let eq = &fleet()[0];
        let a = episodes(7, eq, 0, 90 * 86_400, 10 * 86_400, 2 * 86_400);
        let b = episodes(7, eq, 0, 90 * 86_400, 10 * 86_400, 2 * 86_400);
        assert_eq!(a, b);
        assert!(a.len() >= 3, "expected several episodes, got {}", a.len());
        for w in a.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
    }
}
