//! From question words to concepts: each word, its typo correction or split compound, its
//! synonyms in both languages, resolved against the vocabulary of the indexed rows, and the
//! tantivy query of a concept.

use std::collections::HashSet;

use tantivy::query::{BooleanQuery, BoostQuery, DisjunctionMaxQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use super::{KnowledgeBase, State, CORRECTION_WEIGHT, MODE_BOOST, PART_BOOST, SYNONYM_WEIGHT, TEXT_BOOST};
use crate::analysis::{self, fold, is_stop_word, Stems};
use crate::lexicon::Lexicon;
use crate::record::{Group, Record};

/// A question word once resolved against the vocabulary: the forms to search.
#[derive(Debug, Clone)]
pub(super) struct Concept {
    pub word: String,
    /// Each alternative: its folded words and its weight.
    pub alternatives: Vec<(Vec<String>, f32)>,
    /// Whether some alternative occurs in a part field of some row.
    pub in_parts: bool,
    /// Whether the word itself is unknown and was searched only through a correction.
    pub corrected: bool,
}

impl KnowledgeBase {
    /// Resolves question words into concepts; returns them and the words nothing resolves.
    pub(super) fn concepts(&self, state: &State, words: &[String], stems: &mut Stems) -> (Vec<Concept>, Vec<String>) {
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
    pub(super) fn concept_query(&self, c: &Concept, parts_only: bool, stems: &mut Stems) -> Box<dyn Query> {
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

/// Adds a record's words to the vocabulary.
pub(super) fn learn(state: &mut State, r: &Record, stems: &mut Stems) {
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
pub(super) fn query_terms(concepts: &[Concept], stems: &mut Stems) -> HashSet<String> {
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
