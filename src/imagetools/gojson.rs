//! JSON written the way Go's `encoding/json` writes it (`MarshalIndent` with two spaces, HTML
//! characters escaped), so documents and `--format` output match buildx byte for byte. Object
//! keys are written in the order the value holds them: struct order for typed values, and
//! [`sort_keys`] for what Go would hold in a map.

use serde_json::Value;

/// `json.MarshalIndent(v, "", "  ")`.
pub fn marshal_indent(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0);
    out
}

/// Sorts every object's keys, as Go does for values it decoded into `map[string]any`.
pub fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

fn write_value(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_number(n)),
        Value::String(s) => kiln_bake::gojson::push_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                kiln_bake::gojson::push_string(k, out);
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Numbers as Go prints a float64 it decoded (integers stay integers).
fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{f:.0}");
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go writes exponents with at least two digits: 1e-07.
        let s = format!("{f:e}");
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("+", e),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        return s;
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indents_like_go() {
        let v = json!({"b": [1, {"x": []}], "a": {}, "s": "<a&b>"});
        assert_eq!(
            marshal_indent(&v),
            "{\n  \"b\": [\n    1,\n    {\n      \"x\": []\n    }\n  ],\n  \"a\": {},\n  \"s\": \"\\u003ca\\u0026b\\u003e\"\n}"
        );
    }

    #[test]
    fn maps_are_sorted_when_asked() {
        let v = sort_keys(json!({"b": 1, "a": {"d": 1, "c": 2}}));
        assert_eq!(
            marshal_indent(&v).replace([' ', '\n'], ""),
            r#"{"a":{"c":2,"d":1},"b":1}"#
        );
    }

    #[test]
    fn numbers_print_like_go_float64() {
        assert_eq!(marshal_indent(&json!(1.5)), "1.5");
        assert_eq!(marshal_indent(&json!(2.0)), "2");
        assert_eq!(marshal_indent(&json!(1e-7)), "1e-07");
    }
}
