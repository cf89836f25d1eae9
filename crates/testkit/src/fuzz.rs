//! The stable half of the fuzzing (nightly-only cargo-fuzz targets live in `crates/*/fuzz`):
//! a target's corpus, replayed, and a bounded, seeded mutation loop over it, both through
//! the same `fuzz_one` entry point as the libFuzzer target. A failure reproduces: same
//! corpus, same seed, same inputs.

use std::path::Path;

/// The seed corpus of fuzz target `target` of the crate at `manifest_dir`
/// (`fuzz/corpus/<target>`), plus any crash files libFuzzer saved (`fuzz/artifacts/<target>`).
/// Panics when there are fewer than 10 seeds: a lost corpus must not pass silently.
pub fn corpus(manifest_dir: &str, target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let dir = Path::new(manifest_dir).join("fuzz").join(dir).join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        // Directory order is the file system's: sort, so the mutation loop is reproducible.
        paths.sort();
        for p in paths {
            out.push(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        }
    }
    assert!(out.len() >= 10, "the seed corpus of {target} is in place ({} files)", out.len());
    out
}

/// Runs every input of the corpus of `target` (see [`corpus`]) through `run`.
pub fn replay(manifest_dir: &str, target: &str, mut run: impl FnMut(&[u8])) {
    for input in corpus(manifest_dir, target) {
        run(&input);
    }
}

/// Tokens for inputs that are protobuf messages (the stream entries): field tags, extreme
/// varints, NaN and infinite doubles, a map entry, empty and overlong lengths, broken UTF-8.
pub const PROTOBUF_TOKENS: &[&[u8]] = &[
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

/// Runs `cases` mutated inputs through `run`: each one of the `seeds` with up to four
/// byte-level mutations (flip a bit, insert one of `tokens`, delete a span, splice another
/// seed's tail), drawn from a fixed xorshift seed.
pub fn mutations(seeds: &[Vec<u8>], tokens: &[&[u8]], cases: usize, mut run: impl FnMut(&[u8])) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..cases {
        let mut input = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..=(next() % 4) {
            let at = if input.is_empty() { 0 } else { (next() % input.len() as u64) as usize };
            match next() % 4 {
                0 if !input.is_empty() => input[at] ^= 1 << (next() % 8),
                1 => {
                    let t = tokens[(next() % tokens.len() as u64) as usize];
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
        run(&input);
    }
}
