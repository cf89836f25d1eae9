//! The `knowledge` command of `proact-trainer`: `knowledge search "QUESTION" --amdec FILE
//! [--interventions FILE] --limit K --json`. With files it reads them through the cleaner
//! and needs no running service; without, it reads the reference tables in PostgreSQL.

use std::io::Write;
use std::path::PathBuf;

use crate::answer::Answer;
use crate::index::KnowledgeBase;
use crate::record::{load_amdec, load_interventions, Record};

/// `knowledge …` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KnowledgeCommand {
    /// Answer a question from the AMDEC and the intervention history, best results first.
    Search(SearchArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    /// The question, in French or English.
    pub question: String,
    /// AMDEC / FMEA export to search (CSV; any encoding, FR/EN headers, merged cells).
    #[arg(long)]
    pub amdec: Vec<PathBuf>,
    /// Intervention history to search: a GMAO export or a work-order log (CSV).
    #[arg(long)]
    pub interventions: Vec<PathBuf>,
    /// Most results to print.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// One JSON object per line (an aggregation's answer first, then the rows it cites).
    #[arg(long)]
    pub json: bool,
}

impl SearchArgs {
    /// Whether the files are given (else the database is searched).
    pub fn from_files(&self) -> bool {
        !self.amdec.is_empty() || !self.interventions.is_empty()
    }

    /// The records of the files given.
    pub fn load_files(&self) -> anyhow::Result<Vec<Record>> {
        let mut records = Vec::new();
        for p in &self.amdec {
            records.extend(load_amdec(p)?);
        }
        for p in &self.interventions {
            records.extend(load_interventions(p)?);
        }
        Ok(records)
    }
}

/// Runs a search over `records` and prints it; returns the exit code (0 with results, 1
/// when nothing matches, so scripts can tell).
pub fn print_search(args: &SearchArgs, records: Vec<Record>, out: &mut impl Write) -> anyhow::Result<u8> {
    let kb = KnowledgeBase::with_records(records)?;
    let answer = kb.search(&args.question, args.limit)?;
    print_answer(&answer, args.json, out)?;
    Ok(u8::from(answer.hits.is_empty() && answer.aggregate.is_none()))
}

/// Prints an answer as JSON lines or as text.
pub fn print_answer(answer: &Answer, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if json {
        if let Some(a) = &answer.aggregate {
            let mut v = serde_json::to_value(a)?;
            v["source"] = "aggregate".into();
            writeln!(out, "{v}")?;
        }
        if let Some(why) = &answer.no_answer {
            writeln!(
                out,
                "{}",
                serde_json::json!({"source": "none", "no_answer": why, "unknown_words": answer.unknown_words})
            )?;
        }
        for h in &answer.hits {
            writeln!(out, "{}", h.to_json())?;
        }
        return Ok(());
    }
    if let Some(a) = &answer.aggregate {
        let field = a.field.map_or("rows", |f| f.name());
        let value = a.value.map_or("none".to_string(), |v| v.to_string());
        writeln!(out, "{:?} of {field}: {value} (over {} rows)", a.op, a.rows)?;
        for g in &a.groups {
            writeln!(out, "  {}: {} ({} rows)", g.subsystem, g.value, g.rows)?;
        }
    }
    if let Some(why) = &answer.no_answer {
        writeln!(out, "nothing matches: {why}")?;
    }
    for (i, h) in answer.hits.iter().enumerate() {
        let r = &h.record;
        let row = r.row.as_ref().map(|x| x.to_string()).unwrap_or_default();
        let what = [&r.subsystem, &r.component, &r.sub_component, &r.equipement_id]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ");
        let mode = r.failure_mode.as_deref().or(r.description.as_deref()).unwrap_or("");
        writeln!(
            out,
            "{:>2}. [{} {} {row}] {what}: {mode} (score {:.2}; matched {})",
            i + 1,
            r.source().name(),
            r.origin,
            h.score,
            h.matched.join(", ")
        )?;
    }
    Ok(())
}
