//! The retrieval evaluation (`just eval`): a question set written over a real FMEA table
//! (`eval/questions.jsonl`, gold rows chosen by reading the table), asked to the knowledge
//! base and, in the same run over the same rows, to two baselines: plain BM25 (tantivy's
//! default analysis over each row's text, no stemming, synonyms, typo tolerance or
//! conditions) and TF-IDF cosine similarity.
//!
//! Recall@k is the share of a question's gold rows in the first k results, out of at most k
//! (a question with 16 gold rows is fully answered by 10 of them in the first 10). MRR is
//! the mean of 1 / rank of the first gold row. Aggregations are right when the value (or,
//! per subsystem, the first group) is; no-answer questions when nothing is returned.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, Value, STORED, TEXT};
use tantivy::{Index, TantivyDocument};

use crate::error::KnowledgeError;
use crate::index::KnowledgeBase;
use crate::question::AggOp;
use crate::record::{Record, RowRef};

/// One question of the set.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EvalQuestion {
    pub id: String,
    pub lang: String,
    pub kind: String,
    pub question: String,
    #[serde(default)]
    pub gold: Vec<u64>,
    #[serde(default)]
    pub answer: Option<Expected>,
}

/// The expected answer of an aggregation.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Expected {
    pub op: AggOp,
    #[serde(default)]
    pub value: Option<f64>,
    /// For a per-subsystem question: the subsystem that comes first.
    #[serde(default)]
    pub top: Option<String>,
}

/// Reads a question file (JSON lines; blank lines skipped).
pub fn read_questions(path: &Path) -> anyhow::Result<Vec<EvalQuestion>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Scores of one system on one kind of question.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindScore {
    pub questions: usize,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    /// Aggregation and no-answer kinds: answered correctly.
    pub correct: usize,
}

/// The result of one system on one question.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionResult {
    pub id: String,
    pub system: String,
    pub ranked: Vec<u64>,
    pub correct: Option<bool>,
    pub detail: String,
}

/// The whole report: per system, per kind.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rows: usize,
    pub questions: usize,
    pub scores: BTreeMap<String, BTreeMap<String, KindScore>>,
    pub results: Vec<QuestionResult>,
}

const RANKED_KINDS: [&str; 3] = ["lookup", "cause_effect_action", "numeric"];

fn recall(ranked: &[u64], gold: &[u64], k: usize) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|r| gold.contains(r)).count();
    found as f64 / gold.len().min(k) as f64
}

fn reciprocal_rank(ranked: &[u64], gold: &[u64]) -> f64 {
    ranked.iter().position(|r| gold.contains(r)).map_or(0.0, |p| 1.0 / (p as f64 + 1.0))
}

fn rows_of(records: &[&Record]) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| match &r.row {
            Some(RowRef::Row(n)) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Runs the question set over the AMDEC rows of `records`.
pub fn run(records: Vec<Record>, questions: &[EvalQuestion]) -> Result<Report, KnowledgeError> {
    let n_rows = records.len();
    let bm25 = PlainBm25::new(&records)?;
    let tfidf = TfIdf::new(&records);
    let kb = KnowledgeBase::with_records(records)?;
    let mut results = Vec::new();
    for q in questions {
        // The knowledge base.
        let answer = kb.search(&q.question, 10)?;
        let ranked = rows_of(&answer.hits.iter().map(|h| &h.record).collect::<Vec<_>>());
        let (correct, detail) = match q.kind.as_str() {
            "aggregation" => {
                let exp = q.answer.as_ref();
                let got = answer.aggregate.as_ref();
                let ok = match (exp, got) {
                    (Some(e), Some(g)) => {
                        e.op == g.op
                            && e.value.is_none_or(|v| g.value.is_some_and(|x| (x - v).abs() < 0.01))
                            && e.top.as_ref().is_none_or(|t| g.groups.first().is_some_and(|f| &f.subsystem == t))
                    }
                    _ => false,
                };
                (Some(ok), serde_json::to_string(&got).unwrap_or_default())
            }
            "no_answer" => (
                Some(answer.hits.is_empty()),
                format!(
                    "{} {:?} unknown {:?}",
                    answer.no_answer.clone().unwrap_or_default(),
                    answer.searched,
                    answer.unknown_words
                ),
            ),
            _ => (None, format!("{} {:?}", answer.no_answer.clone().unwrap_or_default(), answer.searched)),
        };
        results.push(QuestionResult { id: q.id.clone(), system: "proact".into(), ranked, correct, detail });
        for (name, ranked) in [("bm25", bm25.search(&q.question, 10)?), ("tfidf", tfidf.search(&q.question, 10))] {
            let correct = match q.kind.as_str() {
                "no_answer" => Some(ranked.is_empty()),
                "aggregation" => Some(false),
                _ => None,
            };
            results.push(QuestionResult {
                id: q.id.clone(),
                system: name.into(),
                ranked,
                correct,
                detail: String::new(),
            });
        }
    }
    let by_id: HashMap<&str, &EvalQuestion> = questions.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut scores: BTreeMap<String, BTreeMap<String, KindScore>> = BTreeMap::new();
    for r in &results {
        let q = by_id[r.id.as_str()];
        let s = scores.entry(r.system.clone()).or_default().entry(q.kind.clone()).or_default();
        s.questions += 1;
        if RANKED_KINDS.contains(&q.kind.as_str()) {
            s.recall_at_5 += recall(&r.ranked, &q.gold, 5);
            s.recall_at_10 += recall(&r.ranked, &q.gold, 10);
            s.mrr += reciprocal_rank(&r.ranked, &q.gold);
        }
        if r.correct == Some(true) {
            s.correct += 1;
        }
    }
    for kinds in scores.values_mut() {
        for s in kinds.values_mut() {
            let n = s.questions.max(1) as f64;
            s.recall_at_5 /= n;
            s.recall_at_10 /= n;
            s.mrr /= n;
        }
    }
    Ok(Report { rows: n_rows, questions: questions.len(), scores, results })
}

impl Report {
    /// The side-by-side table, as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| kind | questions | system | Recall@5 | Recall@10 | MRR | correct |\n|---|---|---|---|---|---|---|\n",
        );
        let kinds = ["lookup", "cause_effect_action", "numeric", "aggregation", "no_answer"];
        for kind in kinds {
            for system in ["proact", "bm25", "tfidf"] {
                let Some(s) = self.scores.get(system).and_then(|k| k.get(kind)) else { continue };
                if RANKED_KINDS.contains(&kind) {
                    out.push_str(&format!(
                        "| {kind} | {} | {system} | {:.3} | {:.3} | {:.3} | |\n",
                        s.questions, s.recall_at_5, s.recall_at_10, s.mrr
                    ));
                } else {
                    out.push_str(&format!(
                        "| {kind} | {} | {system} | | | | {}/{} ({:.0} %) |\n",
                        s.questions,
                        s.correct,
                        s.questions,
                        100.0 * s.correct as f64 / s.questions.max(1) as f64
                    ));
                }
            }
        }
        out
    }
}

/// The text of a row for the baselines: every column, as the table writes it.
fn row_text(r: &Record) -> String {
    let mut parts: Vec<String> = r.text_fields().into_iter().map(|(_, _, v)| v.to_string()).collect();
    for n in [r.severity, r.occurrence, r.detection, r.rpn].into_iter().flatten() {
        parts.push(n.to_string());
    }
    parts.join(" ")
}

fn row_number(r: &Record) -> u64 {
    match &r.row {
        Some(RowRef::Row(n)) => *n,
        _ => 0,
    }
}

/// Plain BM25: tantivy with its default analysis, the question parsed leniently as OR terms.
struct PlainBm25 {
    index: Index,
    parser: QueryParser,
    row: tantivy::schema::Field,
}

impl PlainBm25 {
    fn new(records: &[Record]) -> Result<PlainBm25, KnowledgeError> {
        let mut sb = Schema::builder();
        let text = sb.add_text_field("text", TEXT);
        let row = sb.add_u64_field("row", STORED);
        let index = Index::create_in_ram(sb.build());
        let mut w = index.writer_with_num_threads(1, 20_000_000)?;
        for r in records {
            let mut d = TantivyDocument::default();
            d.add_text(text, row_text(r));
            d.add_u64(row, row_number(r));
            w.add_document(d)?;
        }
        w.commit()?;
        let parser = QueryParser::for_index(&index, vec![text]);
        Ok(PlainBm25 { index, parser, row })
    }

    fn search(&self, q: &str, k: usize) -> Result<Vec<u64>, KnowledgeError> {
        let cleaned: String = q.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
        let (query, _) = self.parser.parse_query_lenient(&cleaned);
        let searcher = self.index.reader()?.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(k))?;
        let mut out = Vec::new();
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            if let Some(n) = d.get_first(self.row).and_then(|v| v.as_u64()) {
                out.push(n);
            }
        }
        Ok(out)
    }
}

/// TF-IDF vectors (raw term frequency × ln(N / df)), cosine similarity, lowercase words.
struct TfIdf {
    docs: Vec<(u64, HashMap<String, f64>, f64)>,
    idf: HashMap<String, f64>,
}

fn tf(text: &str) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *m.entry(w.to_string()).or_insert(0.0) += 1.0;
    }
    m
}

impl TfIdf {
    fn new(records: &[Record]) -> TfIdf {
        let tfs: Vec<(u64, HashMap<String, f64>)> = records.iter().map(|r| (row_number(r), tf(&row_text(r)))).collect();
        let mut df: HashMap<String, f64> = HashMap::new();
        for (_, t) in &tfs {
            for w in t.keys() {
                *df.entry(w.clone()).or_insert(0.0) += 1.0;
            }
        }
        let n = tfs.len() as f64;
        let idf: HashMap<String, f64> = df.into_iter().map(|(w, d)| (w, (n / d).ln())).collect();
        let docs = tfs
            .into_iter()
            .map(|(row, t)| {
                let v: HashMap<String, f64> = t
                    .into_iter()
                    .map(|(w, c)| {
                        let x = c * idf[&w];
                        (w, x)
                    })
                    .collect();
                let norm = v.values().map(|x| x * x).sum::<f64>().sqrt();
                (row, v, norm)
            })
            .collect();
        TfIdf { docs, idf }
    }

    fn search(&self, q: &str, k: usize) -> Vec<u64> {
        let qv: HashMap<String, f64> =
            tf(q).into_iter().filter_map(|(w, c)| self.idf.get(&w).map(|i| (w, c * i))).collect();
        let qn = qv.values().map(|x| x * x).sum::<f64>().sqrt();
        if qn == 0.0 {
            return Vec::new();
        }
        let mut scored: Vec<(f64, u64)> = self
            .docs
            .iter()
            .filter_map(|(row, v, norm)| {
                let dot: f64 = qv.iter().filter_map(|(w, x)| v.get(w).map(|y| x * y)).sum();
                (dot > 0.0 && *norm > 0.0).then(|| (dot / (qn * norm), *row))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|s| s.1).collect()
    }
}
