//! What a question asks besides words: conditions on the ratings ("RPN over 35", "severity
//! of 3 or above", "hard to detect"), missing columns ("no recommended action"), the
//! subsystem it is about ("in the power train"), the source ("interventions", "AMDEC") and
//! an aggregation ("how many", "average", "highest", "per subsystem"), in English or French.
//! What is left are the words to search.
//!
//! The parser works on folded words (see [`crate::analysis::fold`]) and general phrase
//! lists; nothing in it names a row of any table.

use serde::Serialize;

use crate::analysis::{fold, Stems};
use crate::lexicon::Lexicon;
use crate::record::{NumField, Source};

mod phrases;
use phrases::{
    AFTER_NUMBER, AMDEC_WORDS, AVG, BEFORE_NUMBER, COUNT, EASY_TO_DETECT, FIELD_WORDS, HARD_TO_DETECT,
    INTERVENTION_WORDS, LEAST, MAX, MIN, MOST, NO_ACTION, NO_CONTROLS, PER_SUBSYSTEM,
};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

/// A condition on one rating column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Condition {
    pub field: NumField,
    pub cmp: Cmp,
    pub value: f64,
}

impl Condition {
    pub fn holds(&self, v: i64) -> bool {
        let v = v as f64;
        match self.cmp {
            Cmp::Gt => v > self.value,
            Cmp::Ge => v >= self.value,
            Cmp::Lt => v < self.value,
            Cmp::Le => v <= self.value,
            Cmp::Eq => v == self.value,
        }
    }

    /// The inclusive integer range the condition admits.
    pub fn range(&self) -> (i64, i64) {
        let v = self.value;
        match self.cmp {
            Cmp::Gt => (v.floor() as i64 + 1, i64::MAX),
            Cmp::Ge => (v.ceil() as i64, i64::MAX),
            Cmp::Lt => (i64::MIN, v.ceil() as i64 - 1),
            Cmp::Le => (i64::MIN, v.floor() as i64),
            Cmp::Eq if v.fract() == 0.0 => (v as i64, v as i64),
            Cmp::Eq => (1, 0),
        }
    }
}

/// The operation of an aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    Count,
    Avg,
    Max,
    Min,
}

/// An aggregation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Aggregation {
    pub op: AggOp,
    /// The column aggregated (none for a count).
    pub field: Option<NumField>,
    pub per_subsystem: bool,
    /// For a per-subsystem answer, whether the question wants the largest first.
    pub descending: bool,
}

/// A question once understood.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parsed {
    pub conditions: Vec<Condition>,
    pub no_recommended_action: bool,
    pub no_current_controls: bool,
    /// The subsystem named, as the table writes it.
    pub subsystem: Option<String>,
    pub sources: Option<Vec<Source>>,
    pub aggregation: Option<Aggregation>,
    /// The words left to search, folded, in order.
    #[serde(skip)]
    pub words: Vec<String>,
}

impl Parsed {
    /// Whether anything restricts the rows besides words.
    pub fn has_filters(&self) -> bool {
        !self.conditions.is_empty()
            || self.no_recommended_action
            || self.no_current_controls
            || self.subsystem.is_some()
    }
}

/// What the parser needs to know about the table: its subsystems and its rating scale.
pub struct Context<'a> {
    /// Subsystem names as written in the table.
    pub subsystems: &'a [String],
    /// Highest detection rating in the table (5 on the UWA scale, 10 on ours).
    pub detection_max: i64,
    /// For subsystem names said in the other language ("groupe motopropulseur").
    pub lexicon: &'a Lexicon,
}

/// The tokens of a question: folded words, numbers (with a decimal point or comma) and the
/// comparison signs.
pub fn tokens(question: &str) -> Vec<String> {
    let folded = fold(question);
    let chars: Vec<char> = folded.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || ((chars[j] == '.' || chars[j] == ',')
                        && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                        && j > i))
            {
                j += 1;
            }
            // A number glued to letters (`3rd`, `500h`, `pump01`) stays one word.
            while j < chars.len() && chars[j].is_alphanumeric() {
                j += 1;
            }
            out.push(chars[i..j].iter().collect::<String>().replace(',', "."));
            i = j;
        } else if c.is_alphanumeric() {
            let mut j = i;
            while j < chars.len() && chars[j].is_alphanumeric() {
                j += 1;
            }
            out.push(chars[i..j].iter().collect());
            i = j;
        } else if matches!(c, '<' | '>') && chars.get(i + 1) == Some(&'=') {
            out.push(format!("{c}="));
            i += 2;
        } else {
            if matches!(c, '<' | '>' | '=' | '≥' | '≤' | '+') {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// Where `phrase` (space-separated tokens) occurs in `toks` at `at`, not over used tokens.
fn matches_at(toks: &[String], used: &[bool], at: usize, phrase: &str) -> Option<usize> {
    let words: Vec<&str> = phrase.split(' ').collect();
    if at + words.len() > toks.len() {
        return None;
    }
    for (k, w) in words.iter().enumerate() {
        if used[at + k] || toks[at + k] != *w {
            return None;
        }
    }
    Some(words.len())
}

/// The first occurrence of any of `phrases` (longest first at each position): position, length, index.
fn find_any(toks: &[String], used: &[bool], phrases: &[&str]) -> Option<(usize, usize, usize)> {
    for at in 0..toks.len() {
        let mut best: Option<(usize, usize)> = None;
        for (p, phrase) in phrases.iter().enumerate() {
            if let Some(n) = matches_at(toks, used, at, phrase) {
                if best.is_none_or(|(_, bn)| n > bn) {
                    best = Some((p, n));
                }
            }
        }
        if let Some((p, n)) = best {
            return Some((at, n, p));
        }
    }
    None
}

fn mark(used: &mut [bool], at: usize, n: usize) {
    used[at..at + n].iter_mut().for_each(|u| *u = true);
}

/// Consumes every occurrence of the phrases; true when one was found.
fn take_all(toks: &[String], used: &mut [bool], phrases: &[&str]) -> bool {
    let mut found = false;
    while let Some((at, n, _)) = find_any(toks, used, phrases) {
        mark(used, at, n);
        found = true;
    }
    found
}

fn number(tok: &str) -> Option<f64> {
    tok.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Understands a question.
pub fn parse(question: &str, ctx: &Context<'_>) -> Parsed {
    let toks = tokens(question);
    let mut used = vec![false; toks.len()];
    let mut p = Parsed::default();

    let hard = (ctx.detection_max as f64 * 0.7).ceil().max(2.0);
    if take_all(&toks, &mut used, HARD_TO_DETECT) {
        p.conditions.push(Condition { field: NumField::Detection, cmp: Cmp::Ge, value: hard });
    }
    if take_all(&toks, &mut used, EASY_TO_DETECT) {
        let easy = (ctx.detection_max as f64 * 0.3).round().max(1.0);
        p.conditions.push(Condition { field: NumField::Detection, cmp: Cmp::Le, value: easy });
    }
    p.no_recommended_action = take_all(&toks, &mut used, NO_ACTION);
    p.no_current_controls = take_all(&toks, &mut used, NO_CONTROLS);
    if take_all(&toks, &mut used, INTERVENTION_WORDS) {
        p.sources = Some(vec![Source::Intervention, Source::WorkOrder]);
    } else if take_all(&toks, &mut used, AMDEC_WORDS) {
        p.sources = Some(vec![Source::Amdec]);
    }

    // Per-subsystem aggregations before the subsystem filter, so "per subsystem" is not
    // read as a subsystem name.
    let per_subsystem = take_all(&toks, &mut used, PER_SUBSYSTEM);
    let count = find_any(&toks, &used, COUNT);
    let avg = find_any(&toks, &used, AVG);
    let max = find_any(&toks, &used, MAX);
    let min = find_any(&toks, &used, MIN);
    let op_at = [(avg, AggOp::Avg), (max, AggOp::Max), (min, AggOp::Min), (count, AggOp::Count)]
        .into_iter()
        .find_map(|(f, op)| f.map(|f| (op, f)));
    let mut agg_field_hint: Option<NumField> = None;
    if let Some((_, (at, n, idx))) = op_at {
        // "most severe" / "plus grave" say the column themselves.
        let phrase = [MAX, MIN].iter().find_map(|l| l.get(idx).filter(|p| toks[at..at + n].join(" ") == **p));
        if let Some(ph) = phrase {
            if ph.contains("severe") || ph.contains("grave") {
                agg_field_hint = Some(NumField::Severity);
            } else if ph.contains("critic") || ph.contains("risk") {
                agg_field_hint = Some(NumField::Rpn);
            }
        }
    }

    // Numeric conditions: a column word, then a comparison and a number before the next
    // column word.
    let mut mentioned: Vec<(usize, NumField)> = Vec::new();
    let mut at = 0;
    while at < toks.len() {
        let Some((fat, fn_, fi)) =
            find_any(&toks[at..], &used[at..], &FIELD_WORDS.iter().map(|f| f.0).collect::<Vec<_>>())
        else {
            break;
        };
        let fat = at + fat;
        let field = FIELD_WORDS[fi].1;
        mark(&mut used, fat, fn_);
        let start = fat + fn_;
        let mut end = start;
        while end < toks.len() && end < start + 8 && number(&toks[end]).is_none() {
            let is_field = FIELD_WORDS.iter().any(|(w, _)| matches_at(&toks, &used, end, w).is_some());
            if is_field {
                break;
            }
            end += 1;
        }
        let Some(value) = toks.get(end).and_then(|t| number(t)) else {
            mentioned.push((fat, field));
            at = start;
            continue;
        };
        // "between A and B" / "entre A et B"
        let between = (start..end).find(|&k| (toks[k] == "between" || toks[k] == "entre") && !used[k]);
        if let (Some(b), Some(hi)) = (between, toks.get(end + 2).and_then(|t| number(t))) {
            if matches!(toks.get(end + 1).map(String::as_str), Some("and" | "et")) {
                p.conditions.push(Condition { field, cmp: Cmp::Ge, value: value.min(hi) });
                p.conditions.push(Condition { field, cmp: Cmp::Le, value: value.max(hi) });
                mark(&mut used, b, end + 3 - b);
                at = end + 3;
                continue;
            }
        }
        let between_words = &toks[start..end];
        let mut cmp = Cmp::Eq;
        let before = BEFORE_NUMBER
            .iter()
            .filter(|(ph, _)| {
                let w: Vec<&str> = ph.split(' ').collect();
                between_words.windows(w.len()).any(|win| win.iter().zip(&w).all(|(a, b)| a == b))
            })
            .max_by_key(|(ph, _)| ph.len());
        if let Some((_, c)) = before {
            cmp = *c;
        }
        let mut consumed_to = end + 1;
        if let Some((aat, an, ai)) =
            find_any(&toks[end + 1..], &used[end + 1..], &AFTER_NUMBER.iter().map(|a| a.0).collect::<Vec<_>>())
        {
            if aat == 0 {
                cmp = AFTER_NUMBER[ai].1;
                consumed_to = end + 1 + an;
            }
        }
        p.conditions.push(Condition { field, cmp, value });
        mark(&mut used, start, consumed_to - start);
        at = consumed_to;
    }

    if let Some((op, (oat, on, _))) = op_at {
        mark(&mut used, oat, on);
        let field = match op {
            AggOp::Count => None,
            _ => agg_field_hint
                .or_else(|| mentioned.iter().min_by_key(|(m, _)| m.abs_diff(oat)).map(|m| m.1))
                .or(Some(NumField::Rpn)),
        };
        let descending = !(op == AggOp::Min || find_any(&toks, &used, LEAST).is_some());
        p.aggregation = Some(Aggregation { op, field, per_subsystem, descending });
    } else if per_subsystem {
        // "which subsystem has the most failure modes": a count per subsystem.
        let descending = find_any(&toks, &used, LEAST).is_none();
        take_all(&toks, &mut used, MOST);
        take_all(&toks, &mut used, LEAST);
        let field = mentioned.first().map(|m| m.1);
        let op = if field.is_some() { AggOp::Avg } else { AggOp::Count };
        p.aggregation = Some(Aggregation { op, field, per_subsystem: true, descending });
    }

    // The subsystem: its words, in any order, side by side in the question (French puts
    // the adjective after: "système électrique").
    for name in ctx.subsystems {
        let want: Vec<String> = crate::analysis::words(name);
        if want.is_empty() {
            continue;
        }
        let n = want.len();
        for at in 0..toks.len().saturating_sub(n - 1) {
            if used[at..at + n].iter().any(|u| *u) {
                continue;
            }
            let window = &toks[at..at + n];
            if want.iter().all(|w| window.iter().any(|t| same_word(t, w))) {
                p.subsystem = Some(name.clone());
                mark(&mut used, at, n);
                break;
            }
        }
        if p.subsystem.is_some() {
            break;
        }
    }
    if p.subsystem.is_none() {
        p.subsystem = subsystem_by_lexicon(&toks, &mut used, ctx);
    }

    p.words = toks
        .into_iter()
        .zip(used)
        .filter(|(t, u)| !u && number(t).is_none_or(|_| t.len() > 2))
        .map(|(t, _)| t)
        .collect();
    p.words.retain(|w| w.chars().any(char::is_alphanumeric));
    p
}

/// A subsystem named through the lexicon: a phrase of the question whose concept has the
/// subsystem's name (or the name without its trailing "system") among its entries.
fn subsystem_by_lexicon(toks: &[String], used: &mut [bool], ctx: &Context<'_>) -> Option<String> {
    let mut stems = Stems::default();
    let names: Vec<(String, Vec<String>)> = ctx
        .subsystems
        .iter()
        .map(|s| {
            let mut w = crate::analysis::words(s);
            if w.len() > 1 && w.last().is_some_and(|l| l == "system") {
                w.pop();
            }
            (s.clone(), w)
        })
        .collect();
    for n in (1..=ctx.lexicon.longest_entry().min(toks.len())).rev() {
        for at in 0..=toks.len() - n {
            if used[at..at + n].iter().any(|u| *u) {
                continue;
            }
            let concepts = if n == 1 {
                ctx.lexicon.word(&toks[at], &mut stems)
            } else {
                ctx.lexicon.phrase(&toks[at..at + n].join(" ")).to_vec()
            };
            for c in concepts {
                let entries = ctx.lexicon.entries(c);
                if let Some((name, _)) = names.iter().find(|(_, w)| w.len() > 1 && entries.iter().any(|e| e == w)) {
                    mark(used, at, n);
                    return Some(name.clone());
                }
            }
        }
    }
    None
}

/// Whether a question word names a subsystem word, across the two languages
/// (`electrique` ~ `electrical`, `systeme` ~ `system`, `hydraulique` ~ `hydraulic`).
fn same_word(question: &str, table: &str) -> bool {
    if question == table {
        return true;
    }
    let stem = |w: &str| {
        let w = w.trim_end_matches('s');
        for suffix in ["ique", "ical", "ic", "al", "e"] {
            if let Some(s) = w.strip_suffix(suffix) {
                return s.to_string();
            }
        }
        w.to_string()
    };
    let (a, b) = (stem(question), stem(table));
    a.len() >= 4 && a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        static SUBS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let subs = SUBS.get_or_init(|| {
            ["Power Train", "Electrical System", "Power Unit", "Hydraulic System"].map(String::from).to_vec()
        });
        static LEX: std::sync::OnceLock<Lexicon> = std::sync::OnceLock::new();
        Context { subsystems: subs, detection_max: 5, lexicon: LEX.get_or_init(Lexicon::default) }
    }

    fn cond(q: &str) -> Vec<(NumField, Cmp, f64)> {
        parse(q, &ctx()).conditions.into_iter().map(|c| (c.field, c.cmp, c.value)).collect()
    }

    #[test]
    fn comparisons_in_english_and_french() {
        assert_eq!(cond("failure modes with RPN over 35"), [(NumField::Rpn, Cmp::Gt, 35.0)]);
        assert_eq!(cond("severity of 3 or above"), [(NumField::Severity, Cmp::Ge, 3.0)]);
        assert_eq!(cond("modes dont la gravité est supérieure à 3"), [(NumField::Severity, Cmp::Gt, 3.0)]);
        assert_eq!(
            cond("IPR >= 24 et occurrence au moins 3"),
            [(NumField::Rpn, Cmp::Ge, 24.0), (NumField::Occurrence, Cmp::Ge, 3.0)]
        );
        assert_eq!(cond("rpn between 10 and 12"), [(NumField::Rpn, Cmp::Ge, 10.0), (NumField::Rpn, Cmp::Le, 12.0)]);
        assert_eq!(cond("detection rating of 1"), [(NumField::Detection, Cmp::Eq, 1.0)]);
        assert_eq!(cond("hard to detect leaks"), [(NumField::Detection, Cmp::Ge, 4.0)]);
        assert_eq!(cond("average rpn for severity 4"), [(NumField::Severity, Cmp::Eq, 4.0)]);
    }

    #[test]
    fn subsystems_aggregations_and_words() {
        let p = parse("How many failure modes in the système électrique have no recommended action?", &ctx());
        assert_eq!(p.subsystem.as_deref(), Some("Electrical System"));
        assert!(p.no_recommended_action);
        assert_eq!(p.aggregation.map(|a| a.op), Some(AggOp::Count));
        let p = parse("Which subsystem has the highest average RPN?", &ctx());
        let a = p.aggregation.unwrap();
        assert!(a.per_subsystem && a.op == AggOp::Avg && a.field == Some(NumField::Rpn) && a.descending);
        assert_eq!(parse("IPR dans le groupe motopropulseur", &ctx()).subsystem.as_deref(), Some("Power Train"));
        let p = parse("fuel cooler leaking in the power train", &ctx());
        assert_eq!(p.subsystem.as_deref(), Some("Power Train"));
        assert_eq!(p.words, ["fuel", "cooler", "leaking", "in", "the"]);
    }
}
