//! Which AMDEC failure modes of an equipment an alert points at.
//!
//! The AMDEC has no "signal" column, so the match reads the mode's own words: its code and
//! name, the component, the effect and the cause (French or English). A temperature alert
//! points at overheating and cooling modes, a vibration alert at bearings, imbalance and
//! misalignment. A word in the mode's name counts more than one in its effect, which counts
//! more than one in its cause: "Surchauffe" (the mode) beats a bearing whose effect is
//! "échauffement", which beats a winding whose cause is "surchauffe prolongée". Ties go to the
//! higher RPN.

use proact_proto::v1::Alert;
use proact_store::work_orders::AmdecMode;

/// The measurement an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Temperature,
    Vibration,
    /// A model alert, a no-data alarm: no particular mode.
    Other,
}

const TEMPERATURE_WORDS: &[&str] = &[
    "overheat",
    "cooling",
    "temperature",
    "thermal",
    "surchauffe",
    "échauffement",
    "echauffement",
    "refroidi",
    "thermique",
    "température",
];

const VIBRATION_WORDS: &[&str] = &[
    "vibration",
    "bearing",
    "imbalance",
    "unbalance",
    "misalign",
    "roulement",
    "balourd",
    "désalign",
    "desalign",
    "alignement",
];

/// The signal of an alert, from its rule id (`temperature_critical`, `vibration_warning`).
pub fn signal_of(alert: &Alert) -> Signal {
    let rule = alert.rule.to_lowercase();
    if rule.starts_with("temperature") {
        Signal::Temperature
    } else if rule.starts_with("vibration") {
        Signal::Vibration
    } else {
        Signal::Other
    }
}

/// How strongly `mode` names `signal`: 3 in its code or name, 2 in its component or effect,
/// 1 in its cause, 0 not at all.
pub fn strength(mode: &AmdecMode, signal: Signal) -> u8 {
    let words = match signal {
        Signal::Temperature => TEMPERATURE_WORDS,
        Signal::Vibration => VIBRATION_WORDS,
        Signal::Other => return 0,
    };
    let names = |text: &str| {
        let t = text.to_lowercase().replace('_', " ");
        words.iter().any(|w| t.contains(w))
    };
    if names(&mode.failure_mode_code) || names(&mode.failure_mode) {
        3
    } else if names(&mode.component) || names(&mode.effect) {
        2
    } else if names(&mode.cause) {
        1
    } else {
        0
    }
}

/// The modes ranked for `signal`: matching ones first (strongest, then highest RPN), then
/// the others by RPN. Each with its match strength.
pub fn rank(modes: &[AmdecMode], signal: Signal) -> Vec<(&AmdecMode, u8)> {
    let mut ranked: Vec<(&AmdecMode, u8)> = modes.iter().map(|m| (m, strength(m, signal))).collect();
    ranked.sort_by(|a, b| {
        b.1.cmp(&a.1).then(b.0.rpn.cmp(&a.0.rpn)).then_with(|| a.0.failure_mode_code.cmp(&b.0.failure_mode_code))
    });
    ranked
}

/// The mode pre-selected for `signal`: the best matching one, none when nothing matches
/// (guessing would put a wrong mode on the order that the technician may not correct).
pub fn preselect(modes: &[AmdecMode], signal: Signal) -> Option<&AmdecMode> {
    rank(modes, signal).into_iter().find(|(_, s)| *s > 0).map(|(m, _)| m)
}

/// The modes an alert's priority is judged on: those matching its signal, or every mode of
/// the equipment when none does (the fault could be any of them).
pub fn relevant(modes: &[AmdecMode], signal: Signal) -> Vec<&AmdecMode> {
    let matching: Vec<&AmdecMode> = modes.iter().filter(|m| strength(m, signal) > 0).collect();
    if matching.is_empty() {
        modes.iter().collect()
    } else {
        matching
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The sample AMDEC (`data/AMDEC_clean.csv`) as the store returns it.
    pub(crate) fn sample_amdec() -> Vec<AmdecMode> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/AMDEC_clean.csv");
        let mut rdr = csv::Reader::from_path(path).expect("data/AMDEC_clean.csv");
        let h = rdr.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|c| c == n).unwrap_or_else(|| panic!("column {n}"));
        rdr.records()
            .map(|r| {
                let r = r.unwrap();
                let s = |n: &str| r.get(col(n)).unwrap_or("").to_string();
                let i = |n: &str| s(n).parse::<i32>().unwrap();
                AmdecMode {
                    equipement_id: s("equipement_id"),
                    equipment_type: s("equipment_type"),
                    failure_mode_code: s("failure_mode_code"),
                    failure_mode: s("failure_mode"),
                    component: s("component"),
                    effect: s("effect"),
                    cause: s("cause"),
                    severity: i("severity"),
                    occurrence: i("occurrence"),
                    detection: i("detection"),
                    rpn: i("rpn"),
                    criticality: s("criticality"),
                }
            })
            .collect()
    }

    pub(crate) fn modes_of(eq: &str) -> Vec<AmdecMode> {
        sample_amdec().into_iter().filter(|m| m.equipement_id == eq).collect()
    }

    fn pick(eq: &str, s: Signal) -> Option<String> {
        preselect(&modes_of(eq), s).map(|m| m.failure_mode_code.clone())
    }

    #[test]
    fn the_signal_preselects_the_modes_that_name_it() {
        assert_eq!(pick("COMP-01", Signal::Temperature).as_deref(), Some("OVERHEATING"));
        assert_eq!(pick("PUMP-01", Signal::Vibration).as_deref(), Some("BEARING_WEAR"));
        // Bearings and misalignment both name vibration in the mode: the higher RPN wins.
        assert_eq!(pick("MOTOR-01", Signal::Vibration).as_deref(), Some("BEARING_WEAR"));
        assert_eq!(pick("FAN-01", Signal::Vibration).as_deref(), Some("IMBALANCE"));
        assert_eq!(pick("CONV-01", Signal::Vibration).as_deref(), Some("BELT_MISALIGNMENT"));
        // A motor running hot: the bearing's effect names heating, the winding only in its cause.
        assert_eq!(pick("MOTOR-01", Signal::Temperature).as_deref(), Some("BEARING_WEAR"));
        assert_eq!(pick("COMP-01", Signal::Vibration), None, "no compressor mode names vibration");
        assert_eq!(pick("PUMP-01", Signal::Other), None);
    }

    #[test]
    fn ranking_puts_matches_first_then_rpn() {
        let modes = modes_of("MOTOR-01");
        let r: Vec<&str> =
            rank(&modes, Signal::Temperature).iter().map(|(m, _)| m.failure_mode_code.as_str()).collect();
        assert_eq!(r, ["BEARING_WEAR", "WINDING_INSULATION", "MISALIGNMENT"]);
        let all: Vec<&str> = rank(&modes, Signal::Other).iter().map(|(m, _)| m.failure_mode_code.as_str()).collect();
        assert_eq!(all, ["BEARING_WEAR", "WINDING_INSULATION", "MISALIGNMENT"], "by RPN");
        assert_eq!(relevant(&modes_of("COMP-01"), Signal::Vibration).len(), 2, "none match: all count");
    }

    #[test]
    fn signal_comes_from_the_rule() {
        let a = |rule: &str| Alert { rule: rule.into(), ..Default::default() };
        assert_eq!(signal_of(&a("temperature_critical")), Signal::Temperature);
        assert_eq!(signal_of(&a("vibration_warning")), Signal::Vibration);
        assert_eq!(signal_of(&a("model_forest")), Signal::Other);
        assert_eq!(signal_of(&a("no_data")), Signal::Other);
    }
}
