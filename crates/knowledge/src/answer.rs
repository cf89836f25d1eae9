//! What a search answers: the ranked hits with their citations, the computed value of an
//! aggregation question, and how the question was understood.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::question::{AggOp, Parsed};
use crate::record::{NumField, Record};

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

pub(crate) fn empty_aggregate(p: &Parsed) -> AggregateAnswer {
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
