//! `proact-model-eval`: evaluates the models on public datasets (`just eval`) and drives the
//! Rust side of the scikit-learn benchmark (`bench/trainer/run.sh`).
//!
//! - `skab`: SKAB outlier detection with the leaderboard protocol (first 400 rows of each file
//!   train a per-file normal-behaviour model on the shared window features; the rest is test;
//!   pooled F1/FAR/MAR), printed beside the published leaderboard. The configuration is chosen
//!   from a fixed grid by `models::selection`, and the score reported is that of files the
//!   selection did not see (leave-one-group-out over the subfolders, and the other declared
//!   splits); `--fixed` scores one configuration given on the command line instead.
//! - `ai4i`: AI4I 2020 failure prediction (Type one-hot, stratified 80/20), beside
//!   scikit-learn's F1 on the same split when the benchmark has produced it.
//! - `nab`: NAB's scoring of a detector's per-row outputs on the 51 development series
//!   (`nab_cmd`), checked against NAB's own per-row scores of the HTM detector.
//! - `export` / `bench`: write the benchmark's train/test CSVs, then time one configuration.

mod ai4i;
mod bench_cmd;
mod nab_cmd;
mod skab;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Evaluate ProAct models on SKAB, AI4I 2020 and NAB, and benchmark the forest")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// SKAB outlier detection, leaderboard protocol.
    Skab(skab::SkabArgs),
    /// AI4I 2020 machine-failure prediction.
    Ai4i(ai4i::Ai4iArgs),
    /// NAB development series: a detector's per-row outputs scored with NAB's rules.
    Nab(nab_cmd::NabArgs),
    /// Write the benchmark datasets (AI4I split and synthetic) as CSV for both implementations.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        data: DataDir,
        #[arg(long, default_value_t = 50_000)]
        synthetic_rows: usize,
    },
    /// Time fit, batch and single-event prediction on an exported train/test pair; prints JSON.
    Bench(bench_cmd::BenchArgs),
}

#[derive(clap::Args)]
pub(crate) struct DataDir {
    /// Datasets directory (holding SKAB/, AI4I2020/ and NAB_dev/).
    #[arg(long = "datasets", env = "PROACT_DATASETS", default_value = "../shared/datasets")]
    pub dir: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Skab(a) => skab::skab(&a),
        Cmd::Ai4i(a) => ai4i::ai4i(&a),
        Cmd::Nab(a) => nab_cmd::nab(&a),
        Cmd::Export { out, data, synthetic_rows } => bench_cmd::export(&out, &data.dir, synthetic_rows),
        Cmd::Bench(a) => bench_cmd::bench(&a),
    }
}
