//! libFuzzer target: no sequence of telemetry stream entries may make the detector's scoring
//! panic (see `proact_anomaly_detector::engine::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proact_anomaly_detector::engine::fuzz_one(data);
});
