//! Text analysis shared by the index and the questions: accent folding, the tokenizers
//! registered in tantivy (one English and one French stemmer over the same folded tokens),
//! and the words a question is made of but a row is not (stop words).
//!
//! Rows are indexed twice, once per stemmer, because a row's language is not known (the
//! UWA FMEA is English, our AMDEC and work orders are French, users mix both) and a
//! question is searched in both: the score is the better of the two readings.

use std::collections::HashSet;
use std::sync::OnceLock;

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};

/// Tokenizer names registered on the index.
pub const FOLDED: &str = "proact_folded";
pub const ENGLISH: &str = "proact_en";
pub const FRENCH: &str = "proact_fr";

/// Lowercase without accents (`Détection` → `detection`, `Œil` → `oeil`): the form every
/// comparison of words uses.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => out.push('a'),
            'ç' => out.push('c'),
            'è' | 'é' | 'ê' | 'ë' => out.push('e'),
            'ì' | 'í' | 'î' | 'ï' => out.push('i'),
            'ñ' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => out.push('o'),
            'ù' | 'ú' | 'û' | 'ü' => out.push('u'),
            'ý' | 'ÿ' => out.push('y'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            '’' | '‘' => out.push('\''),
            _ => out.push(c),
        }
    }
    out
}

/// The folded words of `text` (letters and digits; everything else separates), as the
/// index's tokenizer cuts them.
pub fn words(text: &str) -> Vec<String> {
    fold(text).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

fn analyzer(language: Option<Language>) -> TextAnalyzer {
    let base = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    match language {
        Some(l) => base.filter(Stemmer::new(l)).build(),
        None => base.build(),
    }
}

/// The three analyzers, by name, for registration on an index.
pub fn analyzers() -> [(&'static str, TextAnalyzer); 3] {
    [(FOLDED, analyzer(None)), (ENGLISH, analyzer(Some(Language::English))), (FRENCH, analyzer(Some(Language::French)))]
}

/// Stems a folded word the way the index did.
#[derive(Clone)]
pub struct Stems {
    en: TextAnalyzer,
    fr: TextAnalyzer,
}

impl Default for Stems {
    fn default() -> Self {
        Stems { en: analyzer(Some(Language::English)), fr: analyzer(Some(Language::French)) }
    }
}

impl Stems {
    /// The English and French stems of one word.
    pub fn of(&mut self, word: &str) -> (String, String) {
        (first_token(&mut self.en, word), first_token(&mut self.fr, word))
    }
}

fn first_token(a: &mut TextAnalyzer, word: &str) -> String {
    let mut ts = a.token_stream(word);
    if ts.advance() {
        ts.token().text.clone()
    } else {
        word.to_string()
    }
}

/// Words that carry no subject in a question, English and French: question words, verbs of
/// asking, articles, and the names of the table's own columns (they say which field is
/// asked about, not what it contains).
pub fn is_stop_word(word: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOP_WORDS.split_whitespace().collect()).contains(word)
}

const STOP_WORDS: &str = "
a an the of on in at to for from by with without into onto about as and or not no nor is are was were be been being
has have had do does did can could should would may might must will shall this that these those there here it its
what which who whom whose when where why how whats list show give tell find me us we i you my our your their them they
any all each every some other others more most less least than then so such only also very much many few
please know get got need needs let lets see look looking happen happens happened happening occur occurs occurred
typical typically usually usual common commonly often possible possibly potential potentially likely cause causes caused causing
effect effects consequence consequences result results resulting impact impacts outcome outcomes
action actions recommended recommend recommendation recommendations suggested suggest measure measures
control controls current existing detect detected detection mode modes failure failures fail fails failed
component components subcomponent subcomponents sub part parts item items equipment system subsystem subsystems
row rows entry entries record records case cases issue issues problem problems
le la les l un une des du de d au aux a à en dans sur sous par pour avec sans et ou ni ne pas plus moins que qui quoi
quel quelle quels quelles quand ou comment pourquoi est sont etait etaient etre ete a ont avoir fait font peut peuvent
ce cet cette ces il elle ils elles on nous vous je tu se sa son ses leur leurs y
donne donner montre montrer liste lister indique indiquer trouve trouver cherche chercher existe existent
typique typiquement souvent frequent frequents frequente possible possibles potentiel potentielle potentiels
cause causes causee provoque provoquee provoquent entraine entrainent effet effets consequence consequences resultat
action actions recommandee recommandees recommande preconisee preconisees preconisation mesure mesures
maitrise controles detection mode modes defaillance defaillances panne pannes
composant composants sous-composant element elements equipement equipements systeme sous-systeme sous-systemes organe organes
ligne lignes cas probleme problemes quoi maintenance
";
