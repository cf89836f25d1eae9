//! The gateway's alerts-stream entry decoding, fuzzed on stable Rust: replays the libFuzzer corpus
//! (`crates/alert-gateway/fuzz/corpus/decode_alert`, plus any crash files saved next to it) and runs a
//! bounded, seeded mutation loop over it (protobuf-level tokens spliced into valid entries)
//! through the same entry point as the libFuzzer target (`proact_alert_gateway::feed::fuzz_one`). The
//! coverage-guided run needs nightly: see `crates/alert-gateway/fuzz/Cargo.toml`.

use proact_alert_gateway::feed::fuzz_one;
use proact_testkit::fuzz::{corpus, mutations, replay, PROTOBUF_TOKENS};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn corpus_replays_without_panic() {
    replay(DIR, "decode_alert", fuzz_one);
}

#[test]
fn seeded_mutations_never_panic() {
    mutations(&corpus(DIR, "decode_alert"), PROTOBUF_TOKENS, 40_000, fuzz_one);
}
