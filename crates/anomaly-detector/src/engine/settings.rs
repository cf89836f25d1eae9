//! What the engine is set up with: the rules' thresholds (default and per equipment type),
//! episode timing and limits, what the AMDEC says of each equipment, and the trained models.

use std::collections::HashMap;
use std::sync::Arc;

use proact_features::WindowConfig;
use proact_models::Scorer;

/// Thresholds of the rules, for one equipment type (or the default).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub temperature_warning: f64,
    pub temperature_critical: f64,
    pub vibration_warning: f64,
    pub vibration_critical: f64,
}

impl Thresholds {
    /// Limits no reading can cross: the rules are off and only the models judge (backtests of
    /// series whose channels are not temperatures or vibrations, `replay --rules off`).
    pub fn off() -> Self {
        Self {
            temperature_warning: f64::INFINITY,
            temperature_critical: f64::INFINITY,
            vibration_warning: f64::INFINITY,
            vibration_critical: f64::INFINITY,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        // The seed's rule is temperature > 90 °C; vibration limits follow ISO 10816 zone C/D
        // for medium machines (mm/s RMS).
        Self {
            temperature_warning: 80.0,
            temperature_critical: 90.0,
            vibration_warning: 11.0,
            vibration_critical: 18.0,
        }
    }
}

/// How episodes open and close.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub default_thresholds: Thresholds,
    /// Per equipment type (AMDEC `equipment_type`), overriding the default.
    pub type_thresholds: HashMap<String, Thresholds>,
    /// Margin below a threshold a reading must reach to count as normal again.
    pub hysteresis: f64,
    /// Normal readings needed for this long (event time) before an episode clears, µs.
    pub clear_after_micros: i64,
    /// No reading for this long (wall clock) raises a no-data alarm, µs; 0 disables it.
    pub silence_after_micros: i64,
    /// Equipment whose AMDEC RPN is at least this turn a model warning into critical.
    pub rpn_critical: f64,
    pub window: WindowConfig,
    /// Readings dated further ahead of the wall clock than this are not scored, µs: the event
    /// time of an equipment never runs ahead of the clock by more (ingest's bound, again here
    /// for every other writer of the streams and for clock skew between hosts).
    pub max_future_micros: i64,
    /// Equipment tracked at most; a new id beyond it is scored only if the reference data
    /// knows it (the reference is bounded, random ids are not).
    pub max_tracked: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_thresholds: Thresholds::default(),
            type_thresholds: HashMap::new(),
            hysteresis: 2.0,
            clear_after_micros: 60_000_000,
            silence_after_micros: 0,
            rpn_critical: f64::from(proact_store::reference::RPN_HIGH),
            window: WindowConfig::default(),
            max_future_micros: 300_000_000,
            max_tracked: 100_000,
        }
    }
}

/// What the engine knows of an equipment from the reference data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EquipmentInfo {
    pub equipment_type: String,
    /// Highest RPN of its AMDEC failure modes.
    pub max_rpn: f64,
}

/// The models in use.
#[derive(Debug, Clone, Default)]
pub struct Models {
    /// Supervised anomaly model over the shared features (e.g. `anomaly-rf`).
    pub forest: Option<Arc<dyn Scorer>>,
    /// Normal-behaviour models by equipment.
    pub normal: HashMap<String, Arc<dyn Scorer>>,
}

impl Models {
    /// `name=version` of every model, for status and alerts.
    pub fn versions(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.forest.iter().map(|m| (m.name().to_string(), m.version().to_string())).collect();
        v.extend(self.normal.values().map(|m| (m.name().to_string(), m.version().to_string())));
        v.sort();
        v
    }
}
