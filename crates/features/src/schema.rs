//! The named, versioned feature schema.

use crate::FeatureError;

/// Version of the feature *definitions* (the statistics and how they are computed). Bump it
/// whenever `Window::features_into` changes meaning, so that old artefacts are refused.
pub const FEATURE_SCHEMA_VERSION: &str = "proact-features/1";

/// The two channels every telemetry message carries (see the MQTT contract); they always come
/// first, in this order, so that a model trained without extra channels reads the same columns.
pub const BASE_CHANNELS: [&str; 2] = ["temperature", "vibration"];

/// Statistics computed per channel over the window, in schema order.
///
/// - `last`: newest value by event time
/// - `mean`, `std` (population), `min`, `max`: over the window
/// - `slope`: least-squares slope against event time, in units per second
/// - `delta`: newest value minus the one before it (0 with a single sample)
/// - `zscore`: `(last - mean) / std` (0 when the window is flat)
pub const STATS: [&str; 8] = ["last", "mean", "std", "min", "max", "slope", "delta", "zscore"];

/// The feature names for the base channels (temperature, vibration), i.e. the schema of
/// `FeatureSchema::base()`. Extra channels append `<channel>_<stat>` names in the same pattern.
pub const FEATURE_SCHEMA: &[&str] = &[
    "temperature_last",
    "temperature_mean",
    "temperature_std",
    "temperature_min",
    "temperature_max",
    "temperature_slope",
    "temperature_delta",
    "temperature_zscore",
    "vibration_last",
    "vibration_mean",
    "vibration_std",
    "vibration_min",
    "vibration_max",
    "vibration_slope",
    "vibration_delta",
    "vibration_zscore",
];

/// The schema of a feature vector: which channels feed it and the resulting feature names.
///
/// Two schemas are compatible exactly when their [`FeatureSchema::id`] strings are equal: the id
/// is the definitions version plus a hash of the ordered names, so the detector can compare an
/// artefact's schema against its own without knowing the channel list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSchema {
    channels: Vec<String>,
    names: Vec<String>,
    id: String,
}

impl FeatureSchema {
    /// Schema over temperature and vibration only; its names are [`FEATURE_SCHEMA`].
    pub fn base() -> Self {
        Self::with_extra_channels::<&str>(&[]).expect("base channels are valid")
    }

    /// Schema over temperature, vibration and extra numeric channels (pressure, current…).
    ///
    /// Extras are sorted and de-duplicated so that the same set of channels always yields the
    /// same schema whatever order the fields arrived in.
    pub fn with_extra_channels<S: AsRef<str>>(extra: &[S]) -> Result<Self, FeatureError> {
        let mut extras: Vec<String> = Vec::with_capacity(extra.len());
        for e in extra {
            let name = e.as_ref();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !valid {
                return Err(FeatureError::BadChannel(name.to_string()));
            }
            if BASE_CHANNELS.contains(&name) {
                continue;
            }
            extras.push(name.to_string());
        }
        extras.sort();
        extras.dedup();
        let channels: Vec<String> = BASE_CHANNELS.iter().map(|s| s.to_string()).chain(extras).collect();
        let names: Vec<String> = channels.iter().flat_map(|c| STATS.iter().map(move |s| format!("{c}_{s}"))).collect();
        let id = format!("{FEATURE_SCHEMA_VERSION}:{:016x}", fnv1a(&names));
        Ok(FeatureSchema { channels, names, id })
    }

    /// Rebuilds a schema from its feature names (as stored in an artefact), checking they follow
    /// the `<channel>_<stat>` pattern of this version.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, FeatureError> {
        let mut extras = Vec::new();
        for chunk in names.chunks(STATS.len()) {
            let first = chunk[0].as_ref();
            let channel = first.strip_suffix("_last").ok_or_else(|| FeatureError::BadChannel(first.to_string()))?;
            extras.push(channel.to_string());
        }
        let schema = Self::with_extra_channels(&extras)?;
        let same = schema.names.len() == names.len() && schema.names.iter().zip(names).all(|(a, b)| a == b.as_ref());
        if !same {
            return Err(FeatureError::BadChannel("feature names do not follow the schema pattern".to_string()));
        }
        Ok(schema)
    }

    /// Channel names in the order [`crate::Window::push`] expects the values.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Index of a channel in the value slice, if the schema has it.
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c == name)
    }

    /// Feature names, in feature-vector order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of features (`channels × STATS.len()`).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true: a schema has at least the base channels. Present for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Version plus hash of the names, e.g. `proact-features/1:9c3e…`. Equal ids ⇔ compatible.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// FNV-1a over the names; a stable, dependency-free fingerprint (not a security hash: the
/// artefact's sha256 covers tampering, this only detects a different column layout).
fn fnv1a(names: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for n in names {
        for b in n.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
