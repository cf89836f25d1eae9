//! The declarative alias tables: which header names mean which canonical column, and which
//! cell values mean which canonical value. Both are data (`assets/aliases.csv`,
//! `assets/values.csv`, embedded at build time) and a user extends them with their own files
//! of the same shape, so importing a new CMMS export is adding lines, not code.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{PrepError, Result};
use crate::schema::Kind;

const BUILTIN_HEADERS: &str = include_str!("../assets/aliases.csv");
const BUILTIN_VALUES: &str = include_str!("../assets/values.csv");

/// Header and value aliases, keyed by normalised text (see [`norm_key`]).
#[derive(Debug, Clone)]
pub struct Aliases {
    /// (kind, normalised header) → canonical column.
    headers: BTreeMap<(Kind, String), &'static str>,
    /// (kind, column, normalised value) → canonical value.
    values: BTreeMap<(Kind, &'static str, String), String>,
}

impl Default for Aliases {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Aliases {
    /// The built-in tables. Canonical names are always their own alias.
    pub fn builtin() -> Self {
        let mut a = Aliases { headers: BTreeMap::new(), values: BTreeMap::new() };
        for kind in Kind::ALL {
            for c in kind.columns() {
                a.headers.insert((kind, norm_key(c.name)), c.name);
            }
        }
        a.add_headers_csv(BUILTIN_HEADERS, "assets/aliases.csv").expect("built-in alias table is valid");
        a.add_values_csv(BUILTIN_VALUES, "assets/values.csv").expect("built-in value table is valid");
        a
    }

    /// Adds header aliases from a user file (`kind,canonical,alias`, header row optional,
    /// `kind` may be `*` for every kind that has that column).
    pub fn add_headers_file(&mut self, path: &Path) -> Result<()> {
        let text = read_text(path)?;
        self.add_headers_csv(&text, &path.display().to_string())
    }

    /// Adds value aliases from a user file (`kind,column,alias,canonical`).
    pub fn add_values_file(&mut self, path: &Path) -> Result<()> {
        let text = read_text(path)?;
        self.add_values_csv(&text, &path.display().to_string())
    }

    pub fn add_headers_csv(&mut self, text: &str, origin: &str) -> Result<()> {
        for (line, rec) in records(text, origin)? {
            let [kind, canonical, alias] = fields::<3>(&rec, origin, line, "kind,canonical,alias")?;
            if kind == "kind" && canonical == "canonical" {
                continue;
            }
            for k in kinds(&kind, origin, line)? {
                let Some(spec) = k.column(&canonical) else {
                    if kind == "*" {
                        continue;
                    }
                    return Err(unknown_column(origin, line, k, &canonical));
                };
                self.headers.insert((k, norm_key(&alias)), spec.name);
            }
        }
        Ok(())
    }

    pub fn add_values_csv(&mut self, text: &str, origin: &str) -> Result<()> {
        for (line, rec) in records(text, origin)? {
            let [kind, column, alias, canonical] = fields::<4>(&rec, origin, line, "kind,column,alias,canonical")?;
            if kind == "kind" && column == "column" {
                continue;
            }
            for k in kinds(&kind, origin, line)? {
                let Some(spec) = k.column(&column) else {
                    if kind == "*" {
                        continue;
                    }
                    return Err(unknown_column(origin, line, k, &column));
                };
                self.values.insert((k, spec.name, norm_key(&alias)), canonical.clone());
            }
        }
        Ok(())
    }

    /// The canonical column a raw header means for `kind`, if any.
    pub fn header(&self, kind: Kind, raw: &str) -> Option<&'static str> {
        self.headers.get(&(kind, norm_key(raw))).copied()
    }

    /// Whether `column` of `kind` has a value table (then unknown values are reported).
    pub fn has_values(&self, kind: Kind, column: &str) -> bool {
        self.values.keys().any(|(k, c, _)| *k == kind && *c == column)
    }

    /// The canonical value of a raw cell, if the table knows it.
    pub fn value(&self, kind: Kind, column: &'static str, raw: &str) -> Option<&str> {
        self.values.get(&(kind, column, norm_key(raw))).map(String::as_str)
    }

    /// Every known header name of one canonical column, for error messages.
    pub fn names_of(&self, kind: Kind, column: &str) -> Vec<String> {
        self.headers.iter().filter(|((k, _), c)| *k == kind && **c == column).map(|((_, n), _)| n.clone()).collect()
    }
}

/// Normalises a header or value for matching: accents folded, lower case, every run of other
/// characters turned into one `_` (so `Gravité`, `GRAVITE` and ` gravite ` match, and
/// `Air temperature [K]` becomes `air_temperature_k`).
pub fn norm_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for ch in s.trim_start_matches('\u{feff}').chars() {
        let folded: &str = match ch {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
            'ç' | 'Ç' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
            'ñ' | 'Ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => "o",
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
            'ý' | 'ÿ' | 'Ý' => "y",
            'œ' | 'Œ' => "oe",
            'æ' | 'Æ' => "ae",
            '€' => "eur",
            _ => "",
        };
        if !folded.is_empty() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push_str(folded);
        } else if ch.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.extend(ch.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|error| PrepError::Read { path: path.to_path_buf(), error })?;
    Ok(crate::read::decode(&bytes).0)
}

fn records(text: &str, origin: &str) -> Result<Vec<(u64, Vec<String>)>> {
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).comment(Some(b'#')).from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| PrepError::Alias {
            path: origin.to_string(),
            line: e.position().map_or(0, |p| p.line()),
            detail: e.to_string(),
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let fields: Vec<String> = rec.iter().map(|f| f.trim().to_string()).collect();
        if fields.iter().all(String::is_empty) {
            continue;
        }
        out.push((line, fields));
    }
    Ok(out)
}

fn fields<const N: usize>(rec: &[String], origin: &str, line: u64, shape: &str) -> Result<[String; N]> {
    if rec.len() != N || rec.iter().any(String::is_empty) {
        return Err(PrepError::Alias {
            path: origin.to_string(),
            line,
            detail: format!("expected {N} non-empty fields `{shape}`, got {rec:?}"),
        });
    }
    Ok(std::array::from_fn(|i| rec[i].clone()))
}

fn kinds(kind: &str, origin: &str, line: u64) -> Result<Vec<Kind>> {
    if kind == "*" {
        return Ok(Kind::ALL.to_vec());
    }
    kind.parse::<Kind>().map(|k| vec![k]).map_err(|e| PrepError::Alias {
        path: origin.to_string(),
        line,
        detail: e.to_string(),
    })
}

fn unknown_column(origin: &str, line: u64, kind: Kind, column: &str) -> PrepError {
    let known: Vec<&str> = kind.columns().iter().map(|c| c.name).collect();
    PrepError::Alias {
        path: origin.to_string(),
        line,
        detail: format!("`{column}` is not a {kind} column (known: {})", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_accents_case_and_punctuation() {
        assert_eq!(norm_key("Gravité"), "gravite");
        assert_eq!(norm_key(" GRAVITÉ "), "gravite");
        assert_eq!(norm_key("Air temperature [K]"), "air_temperature_k");
        assert_eq!(norm_key("\u{feff}UDI"), "udi");
        assert_eq!(norm_key("Coût (€)"), "cout_eur");
        assert_eq!(norm_key("N° OT"), "n_ot");
    }

    #[test]
    fn builtin_tables_map_french_and_english() {
        let a = Aliases::builtin();
        assert_eq!(a.header(Kind::Amdec, "Gravité"), Some("severity"));
        assert_eq!(a.header(Kind::Amdec, "Severity"), Some("severity"));
        assert_eq!(a.header(Kind::Amdec, "Détection"), Some("detection"));
        assert_eq!(a.header(Kind::Amdec, "IPR"), Some("rpn"));
        assert_eq!(a.header(Kind::Amdec, "RPN"), Some("rpn"));
        assert_eq!(a.header(Kind::Ai4i, "Machine failure"), Some("machine_failure"));
        assert_eq!(a.value(Kind::Gmao, "intervention_type", "Préventif"), Some("preventive"));
    }

    #[test]
    fn every_simulator_type_label_maps_to_its_code() {
        let a = Aliases::builtin();
        for t in proact_store::taxonomy::EquipmentType::ALL {
            for kind in [Kind::Amdec, Kind::Gmao] {
                assert_eq!(a.value(kind, "equipment_type", t.label_fr()), Some(t.code()), "{t:?}");
                assert_eq!(a.value(kind, "equipment_type", t.code()), Some(t.code()), "{t:?}");
            }
        }
    }

    #[test]
    fn a_user_alias_is_one_line_of_data() {
        let mut a = Aliases::builtin();
        assert_eq!(a.header(Kind::Amdec, "Schwere"), None);
        a.add_headers_csv("amdec,severity,Schwere\n", "user.csv").unwrap();
        assert_eq!(a.header(Kind::Amdec, "Schwere"), Some("severity"));
        let err = a.add_headers_csv("amdec,nope,X\n", "user.csv").unwrap_err().to_string();
        assert!(err.contains("user.csv, line 1") && err.contains("`nope`"), "{err}");
    }
}
