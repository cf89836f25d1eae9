//! The archive's telemetry entry decoding, fuzzed on stable Rust: replays the libFuzzer corpus
//! (`crates/archive/fuzz/corpus/decode_telemetry`, plus any crash files saved next to it) and runs a
//! bounded, seeded mutation loop over it through the same entry point as the libFuzzer
//! target (`proact_archive::pipeline::fuzz_one`). The coverage-guided run needs nightly: see
//! `crates/archive/fuzz/Cargo.toml`.

use proact_archive::pipeline::fuzz_one;
use proact_testkit::fuzz::{corpus, mutations};

const TARGET: &str = "decode_telemetry";

#[test]
fn corpus_replays_without_panic() {
    for input in corpus(env!("CARGO_MANIFEST_DIR"), TARGET) {
        fuzz_one(&input);
    }
}

/// Protobuf-level tokens (tags, extreme varints, NaN and infinite doubles, a map entry,
/// broken UTF-8) spliced into valid entries, from a fixed seed so a failure reproduces.
#[test]
fn seeded_mutations_never_panic() {
    const TOKENS: &[&[u8]] = &[
        b"\x08\x01",
        b"\x0a\x07PUMP-01",
        b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        b"\x10\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\x19\x00\x00\x00\x00\x00\x00\xf8\x7f",
        b"\x21\x00\x00\x00\x00\x00\x00\xf0\x7f",
        b"\x2a\x0b\x0a\x01k\x11\x00\x00\x00\x00\x00\x00\xf0\x3f",
        b"\x12\x00",
        b"\x1a\x00",
        b"\xff\xff\xff\xff\x0f",
        b"\x80",
        b"\x00",
        b"\xc3\xa9",
        b"\xed\xa0\x80",
        b"\"",
        b"\\",
    ];
    mutations(&corpus(env!("CARGO_MANIFEST_DIR"), TARGET), TOKENS, 40_000, fuzz_one);
}
