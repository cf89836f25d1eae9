//! The online detectors in the engine: what an alarm of [`proact_online`] is called, and the
//! reason the dashboard shows for it.
//!
//! Each equipment's state carries one [`proact_online::EquipmentDetector`] over the engine's
//! channels (temperature, vibration, then the schema's extra channels): the live loop and
//! `replay` score a reading with it, then let it learn from the reading, in the same code path.
//! Its state is checkpointed and restored through the engine (see [`crate::checkpoint`]).

use proact_features::FeatureSchema;
use proact_online::{EquipmentDetector, OnlineConfig, Verdict};

use super::Engine;

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

impl Engine {
    /// Restores an equipment's online detectors from a checkpoint (call before the shard's
    /// warm-up: the readings it re-reads that the checkpoint already learned, up to its last
    /// one, are not learned twice).
    pub fn restore_online(&mut self, equipement_id: &str, state: EquipmentDetector) {
        self.states.remove(equipement_id);
        self.restored.entry(equipement_id.to_string()).or_default().online = Some(state);
    }

    /// The online states learned since they were last taken, to checkpoint; taking them
    /// marks them clean.
    pub fn take_online_changes(&mut self) -> Vec<(String, EquipmentDetector)> {
        self.take_online_changes_of(|_| true)
    }

    /// As [`Engine::take_online_changes`], for the equipment `select` picks only (a slice of
    /// them, so that a checkpoint is spread over its interval).
    pub fn take_online_changes_of(&mut self, select: impl Fn(&str) -> bool) -> Vec<(String, EquipmentDetector)> {
        let dirty = self.states.iter_mut().filter(|(id, st)| st.online_dirty && select(id));
        dirty
            .map(|(id, st)| {
                st.online_dirty = false;
                (id.clone(), st.online.clone())
            })
            .collect()
    }
}
