//! The detector's scoring of stream entries, fuzzed on stable Rust: replays the libFuzzer
//! corpus (`crates/anomaly-detector/fuzz/corpus/score_entries`, plus any crash files saved
//! next to it) and runs a bounded, seeded mutation loop over it (protobuf-level tokens
//! spliced into sequences of entries) through the same entry point as the libFuzzer target
//! (`engine::fuzz_one`). The coverage-guided run needs nightly: see
//! `crates/anomaly-detector/fuzz/Cargo.toml`.

use proact_anomaly_detector::engine::fuzz_one;
use proact_testkit::fuzz::{corpus, mutations, replay, PROTOBUF_TOKENS};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn corpus_replays_without_panic() {
    replay(DIR, "score_entries", fuzz_one);
}

#[test]
fn seeded_mutations_never_panic() {
    mutations(&corpus(DIR, "score_entries"), PROTOBUF_TOKENS, 20_000, fuzz_one);
}
