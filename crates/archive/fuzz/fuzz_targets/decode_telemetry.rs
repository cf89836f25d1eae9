//! libFuzzer target: no bytes in a telemetry stream entry may make the archive's decoder
//! panic, or give a row that cannot be framed as binary COPY, or a malformed dead letter
//! (see `proact_archive::pipeline::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proact_archive::pipeline::fuzz_one(data);
});
