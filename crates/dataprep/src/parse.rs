//! Cell parsers for what exports actually contain: decimal commas, thousands separators,
//! percent signs, and dates in several formats with or without a time or an offset.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Parses a number written the French or the English way: `1 234,5`, `1234.5`, `85 %`.
pub fn number(raw: &str) -> Option<f64> {
    let s: String =
        raw.trim().trim_end_matches('%').chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '€')).collect();
    if s.is_empty() {
        return None;
    }
    // One comma and no dot is a decimal comma; with a dot, commas group thousands.
    let s = if s.contains('.') {
        s.replace(',', "")
    } else if s.matches(',').count() == 1 {
        s.replace(',', ".")
    } else {
        s
    };
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Parses an integer; accepts `3`, `3.0`, `3,0` but not `3.5`.
pub fn integer(raw: &str) -> Option<i64> {
    let x = number(raw)?;
    (x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x as i64)
}

/// Parses a date or a date-time. Day-first for slashed dates, as a French export writes
/// them; a date without a time is midnight; a time without an offset is taken as UTC.
pub fn date(raw: &str) -> Option<DateTime<Utc>> {
    // `%Y` also reads `-2025` or `+12025`: no export means those, and they would not
    // survive the way dates are written out (RFC 3339 has years 0000-9999 only).
    parse_date(raw).filter(|d| (1..=9999).contains(&d.year()))
}

fn parse_date(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M%:z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    const DATETIMES: [&str; 10] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M",
        "%d-%m-%Y %H:%M:%S",
        "%d-%m-%Y %H:%M",
        "%d.%m.%Y %H:%M",
    ];
    for f in DATETIMES {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&d));
        }
    }
    for f in ["%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
        }
    }
    None
}

/// The one output format of dates.
pub fn format_date(d: &DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The one output format of floats: the shortest text that reads back to the same value,
/// so that cleaning a clean file changes nothing.
pub fn format_float(x: f64) -> String {
    let x = if x == 0.0 { 0.0 } else { x };
    format!("{x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("151,5"), Some(151.5));
        assert_eq!(number("1 234,5"), Some(1234.5));
        assert_eq!(number("1,234.5"), Some(1234.5));
        assert_eq!(number("85 %"), Some(85.0));
        assert_eq!(number("-3"), Some(-3.0));
        assert_eq!(number("abc"), None);
        assert_eq!(number("NaN"), None);
        assert_eq!(integer("3.0"), Some(3));
        assert_eq!(integer("3.5"), None);
    }

    #[test]
    fn dates() {
        let want = "2025-03-04T10:05:06Z";
        for s in ["2025-03-04T10:05:06Z", "2025-03-04 10:05:06", "04/03/2025 10:05:06", "2025-03-04T11:05:06+01:00"] {
            assert_eq!(date(s).map(|d| format_date(&d)).as_deref(), Some(want), "{s}");
        }
        assert_eq!(date("04/03/2025").map(|d| format_date(&d)).as_deref(), Some("2025-03-04T00:00:00Z"));
        assert_eq!(date("2025-03-04").map(|d| format_date(&d)).as_deref(), Some("2025-03-04T00:00:00Z"));
        assert_eq!(date("31/02/2025"), None);
        // Found by the fuzzing (crates/dataprep/fuzz): these read as dates but cannot be written back.
        assert_eq!(date("-2025-01-01"), None);
        assert_eq!(date("+12025-01-01T00:00:00"), None);
        assert!(date("9999-12-31T23:59:59Z").is_some());
        assert_eq!(date("soon"), None);
    }
}
