//! Strings encoded as Go's `encoding/json` encodes them (HTML-safe escapes included), so JSON
//! that kiln prints matches what buildx prints byte for byte.

/// Appends `x` as a JSON string literal, escaped as Go's `json.Marshal` escapes it.
pub fn push_string(x: &str, s: &mut String) {
    s.push('"');
    for c in x.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\x08' => s.push_str("\\b"),
            '\x0c' => s.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                s.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_as_go_does() {
        let mut s = String::new();
        super::push_string("a\"b\\<&>\n\u{1}", &mut s);
        assert_eq!(s, r#""a\"b\\\u003c\u0026\u003e\n\u0001""#);
    }
}
