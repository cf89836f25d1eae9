//! The harness's command line: a bad setting stops it before anything starts, with exit
//! code 64 and a message naming the setting. (Also what makes `cargo test` build the
//! `proact-chaos` binary that `just chaos` runs.)

use std::process::Command;

fn refused(args: &[&str], setting: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_proact-chaos")).args(args).output().expect("the binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
    assert!(err.contains(setting), "{args:?} names {setting}: {err}");
}

#[test]
fn bad_settings_are_refused_by_name() {
    refused(&["--rate", "5"], "PROACT_CHAOS_RATE");
    refused(&["--equipment", "2"], "PROACT_CHAOS_EQUIPMENT");
    refused(&["--freeze-secs", "0"], "PROACT_CHAOS_FREEZE_SECS");
    refused(&["--bin-dir", "/nonexistent/proact"], "PROACT_CHAOS_BIN_DIR");
}
