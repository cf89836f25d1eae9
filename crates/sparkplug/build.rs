//! Generates the Rust code of the Sparkplug B payload (`proto/sparkplug_b.proto`) with
//! protox, a pure-Rust protobuf compiler, like `crates/proto` does for ProAct's contracts.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let file = root.join("sparkplug_b.proto");
    let fds = protox::compile([&file], [&root])?;
    tonic_prost_build::configure().build_server(false).build_client(false).compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", file.display());
    Ok(())
}
