//! JSON as Go's `encoding/json` writes it: serde_json's layout (which matches `Marshal` and
//! `MarshalIndent(v, "", "  ")`) with Go's HTML-safe escaping of `<`, `>`, `&`, U+2028, U+2029.

use serde_json::Value;

/// `json.Marshal`.
pub fn go_compact(v: &Value) -> String {
    html_escape(&serde_json::to_string(v).unwrap_or_default())
}

/// `json.MarshalIndent(v, "", "  ")` (no trailing newline).
pub fn go_indent(v: &Value) -> String {
    html_escape(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// These characters only occur inside strings in serialised JSON, so replacing them
/// everywhere is the same as escaping them in strings.
fn html_escape(s: &str) -> String {
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let v = serde_json::json!({"b": "a && b <c>", "a": [1]});
        assert_eq!(
            go_compact(&v),
            r#"{"b":"a \u0026\u0026 b \u003cc\u003e","a":[1]}"#
        );
        assert_eq!(
            go_indent(&serde_json::json!({"a": {}, "b": []})),
            "{\n  \"a\": {},\n  \"b\": []\n}"
        );
    }
}
