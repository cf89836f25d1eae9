//! `proact-knowledge-eval`: the knowledge base's retrieval evaluation on a real FMEA table
//! (see `proact_knowledge::eval`), printed as a table and written as JSON.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Evaluate the knowledge base's retrieval against BM25 and TF-IDF baselines")]
struct Args {
    /// The shared datasets directory.
    #[arg(long, env = "PROACT_DATASETS", default_value = "../shared/datasets")]
    datasets: PathBuf,
    /// The FMEA file, relative to the datasets directory.
    #[arg(long, default_value = "UWA_mining_truck_FMEA/fmea_dataset_combined.csv")]
    fmea: PathBuf,
    /// The question set.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/questions.jsonl"))]
    questions: PathBuf,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/eval/knowledge.json")]
    out: PathBuf,
    /// Print every question's ranked rows.
    #[arg(long)]
    verbose: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let records = proact_knowledge::load_amdec(&args.datasets.join(&args.fmea))?;
    let questions = proact_knowledge::eval::read_questions(&args.questions)?;
    let report = proact_knowledge::eval::run(records, &questions)?;
    if args.verbose {
        for r in &report.results {
            println!("{} {:6} {:?} {:?} {}", r.id, r.system, r.ranked, r.correct, r.detail);
        }
    }
    println!("{} questions over {} rows of {}\n", report.questions, report.rows, args.fmea.display());
    print!("{}", report.table());
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("\nreport: {}", args.out.display());
    Ok(())
}
