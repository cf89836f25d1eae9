//! `proact-prepare`: generate the sample data, clean an export, load the reference tables,
//! or run the cleaner on the real datasets. Thin: the work is in the `proact_dataprep` library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proact_dataprep::{clean, eval, features, generate, load, Aliases, CleanOptions, Kind};

#[derive(Parser)]
#[command(name = "proact-prepare", version, about = "ProAct batch data preparation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the seeded sample datasets (raw exports and clean files).
    Generate {
        #[arg(long, default_value = "data")]
        out: PathBuf,
        #[arg(long, env = "PROACT_SEED", default_value_t = generate::DEFAULT_SEED)]
        seed: u64,
    },
    /// Clean one CSV export and print its report.
    Clean {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, value_parser = parse_kind)]
        kind: Kind,
        #[arg(long)]
        out: PathBuf,
        /// Where to write the JSON report.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Extra header aliases: CSV lines `kind,canonical,alias`.
        #[arg(long, env = "PROACT_ALIASES")]
        aliases: Option<PathBuf>,
        /// Extra value aliases: CSV lines `kind,column,alias,canonical`.
        #[arg(long, env = "PROACT_VALUE_ALIASES")]
        value_aliases: Option<PathBuf>,
        /// Also write the feature matrix (one-hot types, numeric columns, label, split).
        #[arg(long)]
        features: Option<PathBuf>,
        #[arg(long, default_value_t = features::SPLIT_SEED)]
        seed: u64,
    },
    /// Load data/*_clean.csv into the PostgreSQL reference tables (idempotent).
    Load {
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[arg(
            long,
            env = "PROACT_DATABASE_URL",
            default_value = "postgres://proact@127.0.0.1:5432/proact",
            hide_env_values = true
        )]
        database_url: String,
    },
    /// Clean the real datasets and print the reports.
    Eval {
        #[arg(long, env = "PROACT_DATASETS", default_value = "../shared/datasets")]
        datasets: PathBuf,
        #[arg(long, default_value = "target/eval")]
        out: PathBuf,
    },
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse().map_err(|e: proact_dataprep::PrepError| e.to_string())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate { out, seed } => {
            let g = generate::generate(&out, seed)?;
            for r in &g.reports {
                println!("{r}");
            }
            for (path, rows) in &g.files {
                println!("wrote {} ({rows} rows)", path.display());
            }
        }
        Command::Clean { input, kind, out, report, aliases, value_aliases, features, seed } => {
            let mut table = Aliases::builtin();
            if let Some(p) = &aliases {
                table.add_headers_file(p)?;
            }
            if let Some(p) = &value_aliases {
                table.add_values_file(p)?;
            }
            let mut cleaned = clean::clean_file(&input, kind, &CleanOptions { aliases: table })?;
            cleaned.table.write(&out)?;
            if let Some(fpath) = &features {
                let build = features::features_for(kind)
                    .with_context(|| format!("--features: no feature matrix is defined for {kind} files"))?;
                let m = build(&cleaned.table)?;
                write_features(fpath, &m, seed)?;
                cleaned.report.features = Some(m.summary(seed));
            }
            println!("{}", cleaned.report);
            if let Some(p) = &report {
                std::fs::write(p, cleaned.report.to_json()).with_context(|| format!("writing {}", p.display()))?;
            }
        }
        Command::Load { data, database_url } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let summaries = rt.block_on(async {
                let mut client = load::connect(&database_url).await?;
                load::load_dir(&mut client, &data).await
            })?;
            for s in summaries {
                println!(
                    "{}: {} rows in {}, {} inserted or changed, {} rows in the table",
                    s.table,
                    s.rows,
                    s.file.display(),
                    s.written,
                    s.table_rows
                );
            }
        }
        Command::Eval { datasets, out } => {
            let reports = eval::eval(&datasets, &out).with_context(|| {
                format!("real-data evaluation over {} (set --datasets or PROACT_DATASETS)", datasets.display())
            })?;
            for r in &reports {
                println!("{r}");
            }
            println!("reports and clean files written under {}", out.display());
        }
    }
    Ok(())
}

/// Writes a feature matrix as CSV: the features, the label and the split side.
fn write_features(path: &std::path::Path, m: &features::FeatureMatrix, seed: u64) -> anyhow::Result<()> {
    let split = features::split_indices(m.x.len(), Some(&m.y), seed, features::TEST_FRACTION);
    let mut test = vec![false; m.x.len()];
    for &i in &split.test {
        test[i] = true;
    }
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_path(path)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut header = m.names.clone();
    header.extend([m.label.clone(), "split".into()]);
    w.write_record(&header)?;
    for (i, row) in m.x.iter().enumerate() {
        let mut rec: Vec<String> = row.iter().map(|v| proact_dataprep::parse::format_float(*v)).collect();
        rec.push(m.classes[m.y[i]].clone());
        rec.push(if test[i] { "test" } else { "train" }.into());
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}
