//! The online detectors in the engine: what an alarm of [`proact_online`] is called, and the
//! reason the dashboard shows for it.
//!
//! Each equipment's state carries one [`proact_online::EquipmentDetector`] over the engine's
//! channels (temperature, vibration, then the schema's extra channels): the live loop and
//! `replay` score a reading with it, then let it learn from the reading, in the same code path.

use proact_features::FeatureSchema;
use proact_online::{OnlineConfig, Verdict};

/// The rule of an alarm the online detector raised.
pub const RULE: &str = "model_online";

/// The version stamped on its alerts: the algorithm, since its state is per equipment and
/// has no trained version.
pub const VERSION: &str = "online-v1";

/// The alert's reason, in French as the dashboard is.
pub fn reason(schema: &FeatureSchema, verdict: Verdict, cfg: &OnlineConfig) -> String {
    let channel = verdict.channel.and_then(|i| schema.channels().get(i)).map_or("?", |c| c.as_str());
    format!("détection en ligne : {channel} inhabituel, score {:.2} ≥ {:.2}", verdict.score, cfg.threshold)
}
