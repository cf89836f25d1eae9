//! Embeds `migrations/NNNN_name.sql` in version order, so adding a migration is adding a file.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(i32, String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("crates/store/migrations exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            let (num, name) = stem.split_once('_').unwrap_or_else(|| panic!("migration {stem}: name it NNNN_name.sql"));
            let v: i32 = num.parse().unwrap_or_else(|_| panic!("migration {stem}: NNNN must be a number"));
            (v, name.to_string(), p)
        })
        .collect();
    files.sort();
    for w in files.windows(2) {
        assert!(w[0].0 != w[1].0, "two migrations share version {}", w[0].0);
    }
    let mut out = String::from("static MIGRATIONS: &[(i32, &str, &str)] = &[\n");
    for (v, name, p) in &files {
        println!("cargo:rerun-if-changed={}", p.display());
        writeln!(out, "    ({v}, {name:?}, include_str!({:?})),", p.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(dest, out).unwrap();
}
