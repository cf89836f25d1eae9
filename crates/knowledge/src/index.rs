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

use serde::Serialize;
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, DisjunctionMaxQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::analysis::{self, fold, is_stop_word, Stems};
use crate::error::KnowledgeError;
use crate::lexicon::Lexicon;
use crate::question::{self, AggOp, Context, Parsed};
use crate::record::{Group, NumField, Record, Source};

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

/// One result, with its citation.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub record: Record,
    pub score: f32,
    /// The record's fields that matched a word of the question (or the condition's column).
    pub matched: Vec<String>,
}

impl Hit {
    /// The JSON line of the CLI and the HTTP API: citation, score, matched fields, columns.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = self.record.to_json();
        map.insert("score".into(), serde_json::json!((self.score * 1000.0).round() / 1000.0));
        map.insert("matched".into(), serde_json::json!(self.matched));
        serde_json::Value::Object(map)
    }
}

/// One group of a per-subsystem aggregation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AggGroup {
    pub subsystem: String,
    pub value: f64,
    pub rows: usize,
}

/// The computed answer of an aggregation question.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AggregateAnswer {
    pub op: AggOp,
    pub field: Option<NumField>,
    /// The value over all rows in scope (none when the scope is empty).
    pub value: Option<f64>,
    /// Rows the value was computed over.
    pub rows: usize,
    /// Per subsystem, best first as the question asked, when asked.
    pub groups: Vec<AggGroup>,
}

/// What a search returns.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub hits: Vec<Hit>,
    pub aggregate: Option<AggregateAnswer>,
    /// Set when nothing matches, saying why; `hits` is then empty.
    pub no_answer: Option<String>,
    /// How the question was understood.
    pub understood: Parsed,
    /// Question words the knowledge base does not know (after typo correction and synonyms).
    pub unknown_words: Vec<String>,
    /// Each searched word and the forms it was searched as (corrections, synonyms).
    pub searched: Vec<(String, Vec<String>)>,
}

/// A question word once resolved against the vocabulary: the forms to search.
#[derive(Debug, Clone)]
struct Concept {
    word: String,
    /// Each alternative: its folded words and its weight.
    alternatives: Vec<(Vec<String>, f32)>,
    /// Whether some alternative occurs in a part field of some row.
    in_parts: bool,
    /// Whether the word itself is unknown and was searched only through a correction.
    corrected: bool,
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

    /// Resolves question words into concepts; returns them and the words nothing resolves.
    fn concepts(&self, state: &State, words: &[String], stems: &mut Stems) -> (Vec<Concept>, Vec<String>) {
        let mut concepts: Vec<Concept> = Vec::new();
        let mut unknown = Vec::new();
        let known_word = |w: &str, stems: &mut Stems| -> bool {
            if state.vocab.contains_key(w) {
                return true;
            }
            let (en, fr) = stems.of(w);
            state.stems.contains(&format!("en:{en}")) || state.stems.contains(&format!("fr:{fr}"))
        };
        let in_parts = |alt: &[String]| alt.iter().all(|w| state.vocab.get(w).is_some_and(|c| c.1 > 0));
        let mut i = 0;
        while i < words.len() {
            // A lexicon phrase ("air conditioner", "court circuit") first, longest first.
            let mut phrase_len = 0;
            let mut ids: Vec<usize> = Vec::new();
            for n in (2..=self.lexicon.longest_entry().min(words.len() - i)).rev() {
                let ph = words[i..i + n].join(" ");
                let found = self.lexicon.phrase(&ph);
                if !found.is_empty() {
                    phrase_len = n;
                    ids = found.to_vec();
                    break;
                }
            }
            let (word_forms, consumed): (Vec<String>, usize) = if phrase_len > 0 {
                (words[i..i + phrase_len].to_vec(), phrase_len)
            } else {
                (vec![words[i].clone()], 1)
            };
            i += consumed;
            let w = word_forms.join(" ");
            if phrase_len == 0 && (is_stop_word(&w) || w.len() < 2) {
                continue;
            }
            let mut alternatives: Vec<(Vec<String>, f32)> = Vec::new();
            let direct_known = word_forms.iter().all(|x| known_word(x, stems));
            let mut corrected = false;
            if direct_known {
                alternatives.push((word_forms.clone(), 1.0));
            }
            if phrase_len == 0 {
                ids = self.lexicon.word(&w, stems);
            }
            if !direct_known && ids.is_empty() {
                if let Some(c) = &correct(state, &self.lexicon, &w) {
                    corrected = true;
                    if c.iter().all(|x| known_word(x, stems)) {
                        alternatives.push((c.clone(), CORRECTION_WEIGHT));
                    }
                    if c.len() == 1 {
                        ids = self.lexicon.word(&c[0], stems);
                    }
                }
            }
            for id in ids {
                for entry in self.lexicon.entries(id) {
                    if entry.iter().all(|x| known_word(x, stems)) && !alternatives.iter().any(|(a, _)| a == entry) {
                        alternatives.push((entry.clone(), SYNONYM_WEIGHT));
                    }
                }
            }
            if alternatives.is_empty() {
                unknown.push(w);
                continue;
            }
            let parts = alternatives.iter().any(|(a, _)| in_parts(a));
            concepts.push(Concept { word: w, alternatives, in_parts: parts, corrected });
        }
        (concepts, unknown)
    }

    /// The query of one concept: the best of its alternatives, each summed over the field
    /// groups (only the part fields when `parts_only`), each group the better of its two
    /// stemmings.
    fn concept_query(&self, c: &Concept, parts_only: bool, stems: &mut Stems) -> Box<dyn Query> {
        let mut alts: Vec<Box<dyn Query>> = Vec::new();
        for (words, weight) in &c.alternatives {
            let mut groups: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (g, boost) in [(0, PART_BOOST), (1, MODE_BOOST), (2, TEXT_BOOST)] {
                if parts_only && g != 0 {
                    continue;
                }
                let mut langs: Vec<Box<dyn Query>> = Vec::new();
                for lang in 0..2 {
                    let field = self.fields.text[g][lang];
                    let terms: Vec<Box<dyn Query>> = words
                        .iter()
                        .map(|w| {
                            let (en, fr) = stems.of(w);
                            let t = Term::from_field_text(field, if lang == 0 { &en } else { &fr });
                            Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)) as Box<dyn Query>
                        })
                        .collect();
                    let q: Box<dyn Query> = if terms.len() == 1 {
                        terms.into_iter().next().expect("one term")
                    } else {
                        Box::new(BooleanQuery::new(terms.into_iter().map(|t| (Occur::Must, t)).collect()))
                    };
                    langs.push(q);
                }
                groups.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(DisjunctionMaxQuery::new(langs)), boost * weight)),
                ));
            }
            alts.push(Box::new(BooleanQuery::new(groups)));
        }
        Box::new(DisjunctionMaxQuery::new(alts))
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

/// Adds a record's words to the vocabulary.
fn learn(state: &mut State, r: &Record, stems: &mut Stems) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut in_parts: HashSet<String> = HashSet::new();
    for (_, group, value) in r.text_fields() {
        for w in analysis::words(value) {
            if group == Group::Part {
                in_parts.insert(w.clone());
            }
            seen.insert(w);
        }
    }
    for w in seen {
        let entry = state.vocab.entry(w.clone()).or_insert((0, 0));
        if entry.0 == 0 {
            let (en, fr) = stems.of(&w);
            state.stems.insert(format!("en:{en}"));
            state.stems.insert(format!("fr:{fr}"));
        }
        entry.0 += 1;
        if in_parts.contains(&w) {
            entry.1 += 1;
        }
    }
    if let Some(s) = r.subsystem.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        state.subsystems.entry(fold(s)).or_insert_with(|| s.to_string());
    }
    if let Some(d) = r.detection {
        state.detection_max = state.detection_max.max(d);
    }
}

/// The vocabulary word closest to an unknown word: one edit for words of 4–7 letters, two
/// for 8–11, three from 12 (`airconditioner` → `airconditioning`). Lexicon words count, so a
/// misspelt French word finds its English synonyms; a compound written as one word is split
/// when its halves are a lexicon phrase (`driveshaft` → `drive shaft`).
fn correct(state: &State, lexicon: &Lexicon, w: &str) -> Option<Vec<String>> {
    let n = w.chars().count();
    if n < 4 || w.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let max = match n {
        0..=7 => 1,
        8..=11 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, u32, &str)> = None;
    for (v, (df, _)) in &state.vocab {
        let m = v.chars().count();
        if m.abs_diff(n) > max || m < 3 {
            continue;
        }
        let d = strsim::damerau_levenshtein(w, v);
        if d <= max && best.is_none_or(|(bd, bdf, _)| d < bd || (d == bd && *df > bdf)) {
            best = Some((d, *df, v));
        }
    }
    if best.is_none() {
        for v in lexicon.single_words() {
            let m = v.chars().count();
            if m.abs_diff(n) > max || m < 4 {
                continue;
            }
            let d = strsim::damerau_levenshtein(w, v);
            if d <= max && best.is_none_or(|(bd, _, _)| d < bd) {
                best = Some((d, 0, v));
            }
        }
    }
    if let Some((_, _, v)) = best {
        return Some(vec![v.to_string()]);
    }
    if n >= 6 {
        let chars: Vec<char> = w.chars().collect();
        for cut in 3..=n - 3 {
            let (a, b): (String, String) = (chars[..cut].iter().collect(), chars[cut..].iter().collect());
            if !lexicon.phrase(&format!("{a} {b}")).is_empty() {
                return Some(vec![a, b]);
            }
        }
    }
    None
}

/// The stemmed terms a question searches, to tell which fields of a hit matched.
fn query_terms(concepts: &[Concept], stems: &mut Stems) -> HashSet<String> {
    let mut out = HashSet::new();
    for c in concepts {
        for (words, _) in &c.alternatives {
            for w in words {
                let (en, fr) = stems.of(w);
                out.insert(format!("en:{en}"));
                out.insert(format!("fr:{fr}"));
            }
        }
    }
    out
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

fn empty_aggregate(p: &Parsed) -> AggregateAnswer {
    let a = p.aggregation.expect("an aggregation");
    AggregateAnswer {
        op: a.op,
        field: a.field,
        value: if a.op == AggOp::Count { Some(0.0) } else { None },
        rows: 0,
        groups: Vec::new(),
    }
}

/// Computes an aggregation over rows.
pub fn aggregate(
    rows: &[&Record],
    op: AggOp,
    field: Option<NumField>,
    per_subsystem: bool,
    descending: bool,
) -> AggregateAnswer {
    let value_of = |rs: &[&Record]| -> Option<f64> {
        let vals: Vec<f64> = match field {
            Some(f) => rs.iter().filter_map(|r| r.number(f)).map(|v| v as f64).collect(),
            None => Vec::new(),
        };
        match op {
            AggOp::Count => Some(rs.len() as f64),
            AggOp::Avg if !vals.is_empty() => {
                Some((vals.iter().sum::<f64>() / vals.len() as f64 * 100.0).round() / 100.0)
            }
            AggOp::Max => vals.into_iter().reduce(f64::max),
            AggOp::Min => vals.into_iter().reduce(f64::min),
            AggOp::Avg => None,
        }
    };
    let mut groups = Vec::new();
    if per_subsystem {
        let mut by: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
        for r in rows {
            by.entry(r.subsystem.clone().unwrap_or_default()).or_default().push(r);
        }
        for (subsystem, rs) in by {
            if let Some(value) = value_of(&rs) {
                groups.push(AggGroup { subsystem, value, rows: rs.len() });
            }
        }
        groups.sort_by(|a, b| {
            let o = a.value.total_cmp(&b.value);
            (if descending { o.reverse() } else { o }).then_with(|| a.subsystem.cmp(&b.subsystem))
        });
    }
    AggregateAnswer { op, field, value: value_of(rows), rows: rows.len(), groups }
}
