//! libFuzzer target: no bytes on an MQTT topic may make the payload parser panic or accept
//! something the contract refuses (see `proact_ingest::validate::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proact_ingest::validate::fuzz_one(data);
});
