//! libFuzzer target: no Sparkplug B payload may make the session tracker panic or let a
//! reading through that the contract refuses (see `proact_ingest::sparkplug::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proact_ingest::sparkplug::fuzz_one(data);
});
