//! libFuzzer target: no bytes in an alerts-stream entry may make the gateway's decoder panic
//! or give a WebSocket message the dashboard cannot read (see
//! `proact_alert_gateway::feed::fuzz_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proact_alert_gateway::feed::fuzz_one(data);
});
