//! libFuzzer target: no bytes of a CSV export may make the importer panic or produce a table
//! the loaders cannot trust (see `proact_dataprep::clean::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proact_dataprep::clean::fuzz_one(data);
});
