//! The payload parser's fuzzing on stable Rust: replays the libFuzzer corpus
//! (`crates/ingest/fuzz/corpus/parse_mqtt`, plus any crash files saved next to it) and runs
//! a bounded, seeded mutation loop over it through the same entry point as the libFuzzer
//! target (`validate::fuzz_one`: no panic, and nothing accepted that breaks the contract).
//! The real coverage-guided run needs nightly: see `crates/ingest/fuzz/Cargo.toml`.

use proact_ingest::validate::fuzz_one;
use proact_testkit::fuzz::{corpus, mutations, replay};

const TARGET: &str = "parse_mqtt";

#[test]
fn corpus_replays_without_panic() {
    replay(env!("CARGO_MANIFEST_DIR"), TARGET, fuzz_one);
}

/// Byte-level mutations (flip, insert a JSON-ish token, delete a span, splice two seeds),
/// from a fixed seed so a failure reproduces; 40,000 cases in well under a second or two.
#[test]
fn seeded_mutations_never_panic() {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"-",
        b"1e308",
        b"1e999",
        b"NaN",
        b"null",
        b"true",
        b"\\u0000",
        b"\\ud800",
        b"\"timestamp\":",
        b"\"equipement_id\":",
        b"9999-12-31T23:59:59Z",
        b"+14:00",
        b"\xff",
        b"\xc3\xa9",
    ];
    mutations(&corpus(env!("CARGO_MANIFEST_DIR"), TARGET), TOKENS, 40_000, fuzz_one);
}

/// The Sparkplug B decoder (`sparkplug::fuzz_one`): its corpus replayed, then mutated with
/// protobuf-shaped tokens (keys of the payload's and metric's fields, varints, doubles).
#[test]
fn sparkplug_corpus_and_mutations_never_panic() {
    const SPARKPLUG: &str = "sparkplug";
    replay(env!("CARGO_MANIFEST_DIR"), SPARKPLUG, proact_ingest::sparkplug::fuzz_one);
    const TOKENS: &[&[u8]] = &[
        b"\x08",
        b"\x12",
        b"\x18",
        b"\x0a\x05Temperature",
        b"\x10\x01",
        b"\x10\x09",
        b"\x20\x0a",
        b"\x20\x01",
        b"\x38\x01",
        b"\x28\x01",
        b"\x69\x00\x00\x00\x00\x00\x00\xf8\x7f",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x7a\x03hot",
    ];
    let seeds = corpus(env!("CARGO_MANIFEST_DIR"), SPARKPLUG);
    mutations(&seeds, TOKENS, 20_000, proact_ingest::sparkplug::fuzz_one);
}
