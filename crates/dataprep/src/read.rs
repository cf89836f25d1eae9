//! Reading an export whatever the spreadsheet did to it: the encoding (UTF-8, UTF-8 with a
//! BOM, UTF-16 with a BOM, else Windows-1252, the superset of Latin-1 that French Excel
//! writes) and the delimiter.

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

/// Decodes `bytes` to text. Returns the text and the name of the encoding found.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        let name = if enc == UTF_8 { "utf-8-bom" } else { enc.name() };
        return (text.into_owned(), name);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "utf-8"),
        // Not UTF-8: an ANSI export. Windows-1252 decodes every Latin-1 letter the same way
        // and also maps the 0x80–0x9F range (€, œ, ’) that Latin-1 leaves to control codes.
        Err(_) => {
            let (text, _) = WINDOWS_1252.decode_without_bom_handling(bytes);
            (text.into_owned(), "windows-1252")
        }
    }
}

/// Picks the delimiter of a CSV text: the candidate (`,` `;` tab `|`) that splits the header
/// into the most fields and splits the next lines into the same number, ignoring quoted text.
pub fn detect_delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    let Some(header) = lines.first() else { return b',' };
    let mut best = (b',', 0usize, 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let n = count_outside_quotes(header, d);
        if n == 0 {
            continue;
        }
        let agree = lines[1..].iter().filter(|l| count_outside_quotes(l, d) == n).count();
        // More lines agreeing first, then more fields: a `;` file whose text has commas
        // splits the header on `;` consistently and on `,` erratically.
        if (agree, n) > (best.2, best.1) {
            best = (d, n, agree);
        }
    }
    best.0
}

fn count_outside_quotes(line: &str, d: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == d && !quoted {
            n += 1;
        }
    }
    n
}

/// Human name of a delimiter for the report.
pub fn delimiter_name(d: u8) -> &'static str {
    match d {
        b',' => ",",
        b';' => ";",
        b'\t' => "tab",
        b'|' => "|",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(decode(b"\xef\xbb\xbfUDI,Type").1, "utf-8-bom");
        assert_eq!(decode(b"\xef\xbb\xbfUDI,Type").0, "UDI,Type");
        assert_eq!(decode("Gravité".as_bytes()), ("Gravité".to_string(), "utf-8"));
        assert_eq!(decode(b"Gravit\xe9;D\xe9tection"), ("Gravité;Détection".to_string(), "windows-1252"));
    }

    #[test]
    fn delimiters() {
        assert_eq!(detect_delimiter("a;b;c\n1;2;3\n"), b';');
        assert_eq!(detect_delimiter("a,b,c\n1,2,3\n"), b',');
        assert_eq!(detect_delimiter("a;b;c\n\"x, y\";2;3\n1,5;2;3"), b';');
        assert_eq!(detect_delimiter("Effet;Cause\nFuite, arrêt;Usure\n"), b';');
    }
}
