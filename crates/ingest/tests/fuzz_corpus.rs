//! The payload parser's fuzzing on stable Rust: replays the libFuzzer corpus
//! (`crates/ingest/fuzz/corpus/parse_mqtt`, plus any crash files saved next to it) and runs
//! a bounded, seeded mutation loop over it through the same entry point as the libFuzzer
//! target (`validate::fuzz_one`: no panic, and nothing accepted that breaks the contract).
//! The real coverage-guided run needs nightly: see `crates/ingest/fuzz/Cargo.toml`.

use std::path::Path;

use proact_ingest::validate::fuzz_one;

fn corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["fuzz/corpus/parse_mqtt", "fuzz/artifacts/parse_mqtt"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            out.push(std::fs::read(e.path()).unwrap());
        }
    }
    assert!(out.len() >= 10, "the seed corpus is in place");
    out
}

#[test]
fn corpus_replays_without_panic() {
    for input in corpus() {
        fuzz_one(&input);
    }
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
    let seeds = corpus();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..40_000 {
        let mut input = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..=(next() % 4) {
            let at = if input.is_empty() { 0 } else { (next() % input.len() as u64) as usize };
            match next() % 4 {
                0 if !input.is_empty() => input[at] ^= 1 << (next() % 8),
                1 => {
                    let t = TOKENS[(next() % TOKENS.len() as u64) as usize];
                    input.splice(at..at, t.iter().copied());
                }
                2 if !input.is_empty() => {
                    let end = (at + 1 + (next() % 16) as usize).min(input.len());
                    input.drain(at..end);
                }
                _ => {
                    let other = &seeds[(next() % seeds.len() as u64) as usize];
                    let from = (next() % (other.len() as u64 + 1)) as usize;
                    input.truncate(at);
                    input.extend_from_slice(&other[from..]);
                }
            }
        }
        fuzz_one(&input);
    }
}
