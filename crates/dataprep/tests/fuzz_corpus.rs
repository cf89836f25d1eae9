//! The CSV importer's fuzzing on stable Rust: replays the libFuzzer corpus
//! (`crates/dataprep/fuzz/corpus/import_csv`, plus any crash files saved next to it) and runs
//! a bounded, seeded mutation loop over it through the same entry point as the libFuzzer
//! target (`clean::fuzz_one`: no panic, and no table the loaders could not trust). The
//! coverage-guided run needs nightly: see `crates/dataprep/fuzz/Cargo.toml`.

use proact_dataprep::clean::fuzz_one;
use proact_testkit::fuzz::{corpus, mutations, replay};

const TARGET: &str = "import_csv";

#[test]
fn corpus_replays_without_panic() {
    replay(env!("CARGO_MANIFEST_DIR"), TARGET, fuzz_one);
}

/// What spreadsheets put in exports: other delimiters, quotes, line endings, encodings,
/// numbers written every way (and far too large), dates in every format.
#[test]
fn seeded_mutations_never_panic() {
    const TOKENS: &[&[u8]] = &[
        b",",
        b";",
        b"\t",
        b"|",
        b"\"",
        b"\r\n",
        b"\n",
        b"\r",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xe9",
        b"\xc3\xa9",
        b"1e308",
        b"-1e308",
        b"9999999999999999",
        b"1 234,5",
        b"85 %",
        b"NaN",
        b"inf",
        b"0",
        b"-",
        b"31/12/9999 23:59",
        b"+262143-12-31",
        b"2025-01-01T00:00:00+14:00",
        b"29/02/2023",
    ];
    // Cleaning a file is heavier than parsing one MQTT payload: fewer cases, same budget.
    mutations(&corpus(env!("CARGO_MANIFEST_DIR"), TARGET), TOKENS, 10_000, fuzz_one);
}
