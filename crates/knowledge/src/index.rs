//! The knowledge base: records in a tantivy index (BM25 over analysed text, rating columns
//! as fast fields), the vocabulary the typo tolerance corrects against, and the search that
//! turns a question into a ranked, cited answer.
//!
//! Retrieval is hybrid: each question word becomes a concept (the word, its typo correction
//! or split compound, its synonyms in both languages), searched in three field groups
//! (part > failure mode > other text) under an English and a French stemmer, the best
//! reading of each counted once (disjunction-max); the conditions the parser understood are
//! exact filters on the rating fast fields; aggregations run over the rows that match every
//! concept and every filter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::analysis::{self, fold, Stems};
use crate::answer::empty_aggregate;

mod concepts;
use crate::answer::{aggregate, Answer, Hit};
use crate::error::KnowledgeError;
use crate::lexicon::Lexicon;
use crate::question::{self, AggOp, Context, Parsed};
use crate::record::{Group, NumField, Record, Source};
use concepts::{learn, query_terms};

/// Longest question accepted, in bytes. A question is a sentence or two; a pasted document
/// is a mistake, and a query of thousands of terms would be slow for everyone.
pub const MAX_QUESTION_BYTES: usize = 2_000;
/// Most results one search returns.
pub const MAX_LIMIT: usize = 1_000;

/// Relative weight of a match by where it is.
const PART_BOOST: f32 = 2.0;
const MODE_BOOST: f32 = 1.5;
const TEXT_BOOST: f32 = 1.0;
/// Relative weight of what a question word became.
const SYNONYM_WEIGHT: f32 = 0.7;
const CORRECTION_WEIGHT: f32 = 0.9;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    key: Field,
    source: Field,
    subsystem: Field,
    equipment: Field,
    equipment_type: Field,
    has_action: Field,
    has_controls: Field,
    /// [group][language]: Part, Mode, Text × English, French.
    text: [[Field; 2]; 3],
    numbers: [Field; 4],
}

fn group_index(g: Group) -> usize {
    match g {
        Group::Part => 0,
        Group::Mode => 1,
        Group::Text => 2,
    }
}

fn num_index(f: NumField) -> usize {
    match f {
        NumField::Severity => 0,
        NumField::Occurrence => 1,
        NumField::Detection => 2,
        NumField::Rpn => 3,
    }
}

fn source_code(s: Source) -> u64 {
    match s {
        Source::Amdec => 0,
        Source::Intervention => 1,
        Source::WorkOrder => 2,
    }
}

#[derive(Default)]
struct State {
    records: HashMap<u64, Record>,
    keys: HashMap<String, u64>,
    next_id: u64,
    /// Folded word → (rows holding it anywhere, rows holding it in a part field).
    vocab: HashMap<String, (u32, u32)>,
    /// `en:stem` / `fr:stem` of every vocabulary word.
    stems: HashSet<String>,
    /// Subsystem names as written, by folded name.
    subsystems: BTreeMap<String, String>,
    detection_max: i64,
}

/// The searchable knowledge: AMDEC rows, interventions, work orders.
pub struct KnowledgeBase {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    state: RwLock<State>,
    lexicon: Lexicon,
}

/// Restricts a search to some rows.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub sources: Option<Vec<Source>>,
    /// An equipment id (exact, case and accents ignored).
    pub equipment: Option<String>,
    pub equipment_type: Option<String>,
}

impl KnowledgeBase {
    /// An empty knowledge base.
    pub fn new() -> Result<KnowledgeBase, KnowledgeError> {
        let mut sb = Schema::builder();
        let id = sb.add_u64_field("id", NumericOptions::default().set_indexed().set_fast().set_stored());
        let key = sb.add_text_field("key", STRING | STORED);
        let source = sb.add_u64_field("source", NumericOptions::default().set_indexed().set_fast());
        let subsystem = sb.add_text_field("subsystem", STRING);
        let equipment = sb.add_text_field("equipment", STRING);
        let equipment_type = sb.add_text_field("equipment_type", STRING);
        let has_action = sb.add_u64_field("has_action", NumericOptions::default().set_indexed());
        let has_controls = sb.add_u64_field("has_controls", NumericOptions::default().set_indexed());
        let opts = |tokenizer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(IndexRecordOption::WithFreqs),
            )
        };
        let mut text = [[id; 2]; 3];
        for (g, name) in ["part", "mode", "text"].iter().enumerate() {
            text[g][0] = sb.add_text_field(&format!("{name}_en"), opts(analysis::ENGLISH));
            text[g][1] = sb.add_text_field(&format!("{name}_fr"), opts(analysis::FRENCH));
        }
        let mut numbers = [id; 4];
        for f in NumField::ALL {
            numbers[num_index(f)] = sb.add_i64_field(f.name(), NumericOptions::default().set_indexed().set_fast());
        }
        let index = Index::create_in_ram(sb.build());
        for (name, analyzer) in analysis::analyzers() {
            index.tokenizers().register(name, analyzer);
        }
        // One indexing thread: updates are a few rows at a time, and the machine is shared.
        let writer = index.writer_with_num_threads(1, 50_000_000)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let fields =
            Fields { id, key, source, subsystem, equipment, equipment_type, has_action, has_controls, text, numbers };
        Ok(KnowledgeBase {
            reader,
            writer: Mutex::new(writer),
            fields,
            state: RwLock::new(State::default()),
            lexicon: Lexicon::default(),
        })
    }

    /// A knowledge base holding `records`.
    pub fn with_records(records: Vec<Record>) -> Result<KnowledgeBase, KnowledgeError> {
        let kb = KnowledgeBase::new()?;
        kb.upsert(records)?;
        Ok(kb)
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.state.read().expect("state lock").records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds records, replacing those with the same key (same source row, same intervention
    /// id), and makes them searchable before returning. Only these records are indexed:
    /// the cost is that of the batch, not of the knowledge base.
    pub fn upsert(&self, records: Vec<Record>) -> Result<(), KnowledgeError> {
        let mut writer = self.writer.lock().map_err(|_| KnowledgeError::Unavailable("index writer poisoned".into()))?;
        let mut state = self.state.write().expect("state lock");
        let mut stems = Stems::default();
        for record in records {
            let key = record.key();
            writer.delete_term(Term::from_field_text(self.fields.key, &key));
            let id = match state.keys.get(&key) {
                Some(id) => *id,
                None => {
                    state.next_id += 1;
                    let id = state.next_id;
                    state.keys.insert(key.clone(), id);
                    id
                }
            };
            writer.add_document(self.document(id, &key, &record))?;
            learn(&mut state, &record, &mut stems);
            state.records.insert(id, record);
        }
        writer.commit()?;
        drop(state);
        self.reader.reload()?;
        Ok(())
    }

    fn document(&self, id: u64, key: &str, r: &Record) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.id, id);
        doc.add_text(f.key, key);
        doc.add_u64(f.source, source_code(r.source()));
        if let Some(s) = &r.subsystem {
            doc.add_text(f.subsystem, fold(s.trim()));
        }
        if let Some(e) = &r.equipement_id {
            doc.add_text(f.equipment, fold(e.trim()));
        }
        if let Some(t) = &r.equipment_type {
            doc.add_text(f.equipment_type, fold(t.trim()));
        }
        doc.add_u64(f.has_action, u64::from(r.recommended_action.as_deref().is_some_and(|a| !a.trim().is_empty())));
        doc.add_u64(f.has_controls, u64::from(has_controls(r.current_controls.as_deref())));
        for (_, group, value) in r.text_fields() {
            for field in f.text[group_index(group)] {
                doc.add_text(field, value);
            }
        }
        for nf in NumField::ALL {
            if let Some(v) = r.number(nf) {
                doc.add_i64(f.numbers[num_index(nf)], v);
            }
        }
        doc
    }

    /// Answers a question with at most `limit` results, best first.
    pub fn search(&self, question: &str, limit: usize) -> Result<Answer, KnowledgeError> {
        self.search_in(question, limit, &Scope::default())
    }

    /// [`KnowledgeBase::search`] restricted to a scope.
    pub fn search_in(&self, question: &str, limit: usize, scope: &Scope) -> Result<Answer, KnowledgeError> {
        if question.trim().is_empty() {
            return Err(KnowledgeError::EmptyQuestion);
        }
        if question.len() > MAX_QUESTION_BYTES {
            return Err(KnowledgeError::QuestionTooLong { len: question.len(), max: MAX_QUESTION_BYTES });
        }
        if limit == 0 || limit > MAX_LIMIT {
            return Err(KnowledgeError::BadLimit { got: limit, max: MAX_LIMIT });
        }
        let state = self.state.read().expect("state lock");
        let subsystems: Vec<String> = state.subsystems.values().cloned().collect();
        let ctx =
            Context { subsystems: &subsystems, detection_max: state.detection_max.max(1), lexicon: &self.lexicon };
        let mut parsed = question::parse(question, &ctx);
        let mut stems = Stems::default();
        let (concepts, unknown) = self.concepts(&state, &parsed.words, &mut stems);
        let structured =
            parsed.has_filters() || parsed.aggregation.is_some_and(|a| a.field.is_some() || a.per_subsystem);
        if structured && parsed.sources.is_none() {
            // Ratings, actions and subsystems are AMDEC columns (and a count per subsystem
            // need not walk every intervention of the history to find none has one).
            parsed.sources = Some(vec![Source::Amdec]);
        }
        let searched =
            concepts.iter().map(|c| (c.word.clone(), c.alternatives.iter().map(|a| a.0.join(" ")).collect())).collect();
        let mut answer = Answer {
            hits: Vec::new(),
            aggregate: None,
            no_answer: None,
            understood: parsed.clone(),
            unknown_words: unknown,
            searched,
        };

        // Half or more of the words unknown: the question is about something the base does
        // not hold. A word found only by its typo correction counts as half unknown, since
        // the correction may be a different part (`crane` → `crank`).
        let doubt = 2 * answer.unknown_words.len() + concepts.iter().filter(|c| c.corrected).count();
        let total = 2 * (answer.unknown_words.len() + concepts.len());
        if !answer.unknown_words.is_empty() && 2 * doubt >= total {
            answer.no_answer = Some(format!(
                "nothing in the knowledge base mentions {}",
                answer.unknown_words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
            ));
            if parsed.aggregation.is_some() {
                answer.aggregate = Some(empty_aggregate(&parsed));
            }
            return Ok(answer);
        }
        if concepts.is_empty() && !parsed.has_filters() && parsed.aggregation.is_none() {
            answer.no_answer = Some("the question names nothing to look for".into());
            return Ok(answer);
        }

        let filters = self.filters(&parsed, scope);
        let searcher = self.reader.searcher();
        let terms = query_terms(&concepts, &mut stems);

        if let Some(agg) = parsed.aggregation {
            // Scope: every filter, and every word (in the part fields when it names a part).
            let mut clauses = filters;
            for c in &concepts {
                clauses.push((Occur::Must, self.concept_query(c, c.in_parts, &mut stems)));
            }
            let q: Box<dyn Query> =
                if clauses.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(clauses)) };
            let docs = searcher.search(&q, &DocSetCollector)?;
            let mut rows: Vec<&Record> =
                self.ids(&searcher, docs.into_iter())?.iter().filter_map(|id| state.records.get(id)).collect();
            rows.sort_by_key(|r| record_order(r));
            let result = aggregate(&rows, agg.op, agg.field, agg.per_subsystem, agg.descending);
            // The rows cited: those holding the extreme value first, for max and min.
            let mut cited: Vec<&Record> = rows.clone();
            if let (Some(field), Some(v)) = (agg.field, result.value) {
                match agg.op {
                    AggOp::Max | AggOp::Min => {
                        cited.sort_by_key(|r| r.number(field).map_or(1, |x| i64::from(x as f64 != v)))
                    }
                    _ => {}
                }
            }
            answer.hits = cited
                .into_iter()
                .take(limit)
                .map(|r| Hit { record: r.clone(), score: 1.0, matched: matched_fields(r, &terms, &parsed, &mut stems) })
                .collect();
            if result.rows == 0 {
                answer.no_answer = Some("no row matches the question's conditions".into());
            }
            answer.aggregate = Some(result);
            return Ok(answer);
        }

        let mut hits: Vec<(f32, &Record)> = if concepts.is_empty() {
            // Conditions only: every row that meets them, ordered by the column compared.
            let q: Box<dyn Query> = Box::new(BooleanQuery::new(filters));
            let docs = searcher.search(&q, &DocSetCollector)?;
            let mut rows: Vec<&Record> =
                self.ids(&searcher, docs.into_iter())?.iter().filter_map(|id| state.records.get(id)).collect();
            let order =
                parsed.conditions.first().map(|c| (c.field, matches!(c.cmp, question::Cmp::Lt | question::Cmp::Le)));
            rows.sort_by_key(|r| {
                let v = match order {
                    Some((f, true)) => r.number(f).unwrap_or(i64::MAX),
                    Some((f, false)) => -r.number(f).unwrap_or(i64::MIN + 1),
                    None => -r.rpn.unwrap_or(0),
                };
                (v, record_order(r))
            });
            rows.into_iter().take(limit).map(|r| (1.0, r)).collect()
        } else {
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for c in &concepts {
                any.push((Occur::Should, self.concept_query(c, false, &mut stems)));
            }
            let mut clauses = filters;
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
            let q = BooleanQuery::new(clauses);
            let top = searcher.search(&q, &TopDocs::with_limit(limit))?;
            let ids = self.ids(&searcher, top.iter().map(|(_, a)| *a))?;
            top.iter().zip(ids).filter_map(|((s, _), id)| state.records.get(&id).map(|r| (*s, r))).collect()
        };
        // Equal scores: the table's order, so results are stable from run to run.
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| record_order(a.1).cmp(&record_order(b.1))));
        answer.hits = hits
            .into_iter()
            .map(|(score, r)| Hit { record: r.clone(), score, matched: matched_fields(r, &terms, &parsed, &mut stems) })
            .collect();
        if answer.hits.is_empty() {
            answer.no_answer = Some(if parsed.has_filters() {
                "no row meets the question's conditions".into()
            } else {
                "no row matches the question".into()
            });
        }
        Ok(answer)
    }

    /// The records with these ids (for briefings and tests).
    pub fn records_where(&self, pred: impl Fn(&Record) -> bool) -> Vec<Record> {
        let state = self.state.read().expect("state lock");
        let mut v: Vec<Record> = state.records.values().filter(|r| pred(r)).cloned().collect();
        v.sort_by_key(record_order);
        v
    }

    fn ids(
        &self,
        searcher: &tantivy::Searcher,
        docs: impl Iterator<Item = DocAddress>,
    ) -> Result<Vec<u64>, KnowledgeError> {
        let mut out = Vec::new();
        let mut columns: HashMap<u32, tantivy::columnar::Column<u64>> = HashMap::new();
        for addr in docs {
            let col = match columns.get(&addr.segment_ord) {
                Some(c) => c,
                None => {
                    let c = searcher.segment_reader(addr.segment_ord).fast_fields().u64("id")?;
                    columns.entry(addr.segment_ord).or_insert(c)
                }
            };
            if let Some(id) = col.first(addr.doc_id) {
                out.push(id);
            } else {
                let doc: TantivyDocument = searcher.doc(addr)?;
                if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_u64()) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// The exact filters of a question and a scope.
    fn filters(&self, p: &Parsed, scope: &Scope) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let term_q = |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
        for c in &p.conditions {
            let (lo, hi) = c.range();
            let field = f.numbers[num_index(c.field)];
            let bound = |v: i64, inf: bool| {
                if inf {
                    Bound::Unbounded
                } else {
                    Bound::Included(Term::from_field_i64(field, v))
                }
            };
            out.push((Occur::Must, Box::new(RangeQuery::new(bound(lo, lo == i64::MIN), bound(hi, hi == i64::MAX)))));
        }
        if p.no_recommended_action {
            out.push((Occur::Must, term_q(Term::from_field_u64(f.has_action, 0))));
        }
        if p.no_current_controls {
            out.push((Occur::Must, term_q(Term::from_field_u64(f.has_controls, 0))));
        }
        if let Some(s) = &p.subsystem {
            out.push((Occur::Must, term_q(Term::from_field_text(f.subsystem, &fold(s.trim())))));
        }
        let sources = scope.sources.as_ref().or(p.sources.as_ref());
        if let Some(sources) = sources {
            let any: Vec<(Occur, Box<dyn Query>)> = sources
                .iter()
                .map(|s| (Occur::Should, term_q(Term::from_field_u64(f.source, source_code(*s)))))
                .collect();
            out.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if let Some(e) = &scope.equipment {
            out.push((Occur::Must, term_q(Term::from_field_text(f.equipment, &fold(e.trim())))));
        }
        if let Some(t) = &scope.equipment_type {
            out.push((Occur::Must, term_q(Term::from_field_text(f.equipment_type, &fold(t.trim())))));
        }
        out
    }
}

/// A record's controls count as absent when the cell is empty or says there are none.
fn has_controls(c: Option<&str>) -> bool {
    let Some(c) = c.map(fold) else { return false };
    let c = c.trim();
    !(c.is_empty() || c == "none" || c == "aucun" || c == "aucune" || c.starts_with("no ") || c.starts_with("aucun"))
}

/// Records sorted as their source lists them.
fn record_order(r: &Record) -> (u64, String, u64, String) {
    let (row, id) = match &r.row {
        Some(crate::record::RowRef::Row(n)) => (*n, String::new()),
        Some(crate::record::RowRef::Id(s)) => (0, s.clone()),
        None => (0, String::new()),
    };
    (source_code(r.source()), r.origin.clone(), row, id)
}

/// The fields of a record that hold a searched term, then the columns a condition read.
fn matched_fields(r: &Record, terms: &HashSet<String>, p: &Parsed, stems: &mut Stems) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, _, value) in r.text_fields() {
        let hit = analysis::words(value).iter().any(|w| {
            let (en, fr) = stems.of(w);
            terms.contains(&format!("en:{en}")) || terms.contains(&format!("fr:{fr}"))
        });
        if hit {
            out.push(name.to_string());
        }
    }
    for c in &p.conditions {
        if !out.iter().any(|o| o == c.field.name()) {
            out.push(c.field.name().to_string());
        }
    }
    if p.no_recommended_action {
        out.push("recommended_action".into());
    }
    if p.no_current_controls {
        out.push("current_controls".into());
    }
    if p.subsystem.is_some() && !out.iter().any(|o| o == "subsystem") {
        out.push("subsystem".into());
    }
    out
}
