//! The bilingual maintenance vocabulary (`assets/lexicon.txt`): concepts whose words, in
//! French and English, a question may use for one another (fuite/leak, usure/wear,
//! roulement/bearing). A word matches an entry by its folded form or by its English or
//! French stem, so plurals and conjugations need no line of their own.

use std::collections::HashMap;

use crate::analysis::{fold, words, Stems};

const BUILT_IN: &str = include_str!("../assets/lexicon.txt");

/// The concepts, and an index from word, stem or phrase to the concepts that hold it.
#[derive(Clone)]
pub struct Lexicon {
    /// Each concept's entries, each entry as its folded words.
    concepts: Vec<Vec<Vec<String>>>,
    by_word: HashMap<String, Vec<usize>>,
    by_stem: HashMap<String, Vec<usize>>,
    /// Longest entry, in words, for the greedy phrase match.
    longest: usize,
}

impl Default for Lexicon {
    fn default() -> Self {
        Lexicon::parse(BUILT_IN)
    }
}

impl Lexicon {
    /// Reads a lexicon: one concept a line, entries separated by `|`, `#` comments.
    pub fn parse(text: &str) -> Lexicon {
        let mut stems = Stems::default();
        let mut lex = Lexicon { concepts: Vec::new(), by_word: HashMap::new(), by_stem: HashMap::new(), longest: 1 };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let id = lex.concepts.len();
            let entries: Vec<Vec<String>> = line.split('|').map(words).filter(|w| !w.is_empty()).collect();
            for e in &entries {
                lex.longest = lex.longest.max(e.len());
                push_unique(lex.by_word.entry(e.join(" ")).or_default(), id);
                if e.len() == 1 {
                    let (en, fr) = stems.of(&e[0]);
                    push_unique(lex.by_stem.entry(format!("en:{en}")).or_default(), id);
                    push_unique(lex.by_stem.entry(format!("fr:{fr}")).or_default(), id);
                }
            }
            lex.concepts.push(entries);
        }
        lex
    }

    pub fn longest_entry(&self) -> usize {
        self.longest
    }

    /// The concepts of a folded phrase (`words` joined by spaces), as written or with its
    /// words' plural `s` dropped (`essuie glaces` → `essuie glace`).
    pub fn phrase(&self, phrase: &str) -> &[usize] {
        if let Some(ids) = self.by_word.get(phrase) {
            return ids;
        }
        let singular: Vec<&str> =
            phrase.split(' ').map(|w| if w.len() > 3 { w.strip_suffix('s').unwrap_or(w) } else { w }).collect();
        self.by_word.get(&singular.join(" ")).map_or(&[], Vec::as_slice)
    }

    /// The concepts of one word: by its folded form, else by its stems.
    pub fn word(&self, word: &str, stems: &mut Stems) -> Vec<usize> {
        let w = fold(word);
        if let Some(ids) = self.by_word.get(&w) {
            return ids.clone();
        }
        let (en, fr) = stems.of(&w);
        let mut ids = self.by_stem.get(&format!("en:{en}")).cloned().unwrap_or_default();
        for id in self.by_stem.get(&format!("fr:{fr}")).into_iter().flatten() {
            push_unique(&mut ids, *id);
        }
        ids
    }

    /// Every one-word entry, for the typo tolerance.
    pub fn single_words(&self) -> impl Iterator<Item = &str> {
        self.concepts.iter().flatten().filter(|e| e.len() == 1).map(|e| e[0].as_str())
    }

    /// The entries of a concept, each as its folded words.
    pub fn entries(&self, concept: usize) -> &[Vec<String>] {
        &self.concepts[concept]
    }
}

fn push_unique(v: &mut Vec<usize>, id: usize) {
    if !v.contains(&id) {
        v.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_and_english_words_meet() {
        let lex = Lexicon::default();
        let mut stems = Stems::default();
        let leak = lex.word("leaking", &mut stems);
        assert!(!leak.is_empty());
        assert!(lex.word("fuites", &mut stems).iter().any(|c| leak.contains(c)));
        assert!(lex.word("Roulements", &mut stems).iter().any(|c| lex.entries(*c).iter().any(|e| e == &["bearing"])));
        assert!(!lex.phrase("air conditioner").is_empty());
    }
}
