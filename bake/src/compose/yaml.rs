//! The YAML edge of the Compose reader: the only place that knows the YAML crate. Turns each
//! document of a file into a [`Node`] tree with string keys (as compose-go requires), merge
//! keys applied, and the `!reset` / `!override` tags recorded as paths.

use std::collections::BTreeMap;

use serde::Deserialize as _;
use serde_yaml_ng::Value;

/// A YAML value after loading: what compose-go works on (`map[string]any`, `[]any`, scalars).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(BTreeMap<String, Node>),
}

/// How a tagged node changes the merge with earlier files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: the earlier value is dropped and this one is null.
    Reset,
    /// `!override`: the earlier value is replaced instead of merged.
    Override,
}

/// One YAML document with the paths its `!reset` / `!override` tags apply to.
pub struct Document {
    pub root: Node,
    pub tags: Vec<(Vec<String>, Tag)>,
}

/// Every document of a file, in order; empty documents are skipped.
pub fn documents(name: &str, text: &str) -> Result<Vec<Document>, String> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let mut v =
            Value::deserialize(de).map_err(|e| format!("failed to parse {name}: yaml: {e}"))?;
        if v.is_null() {
            continue;
        }
        v.apply_merge()
            .map_err(|e| format!("failed to parse {name}: yaml: {e}"))?;
        let mut tags = Vec::new();
        let root = convert(v, &mut Vec::new(), &mut tags)?;
        out.push(Document { root, tags });
    }
    Ok(out)
}

fn location(path: &[String]) -> String {
    if path.is_empty() {
        "at top level".into()
    } else {
        format!("in {}", path.join("."))
    }
}

fn convert(
    v: Value,
    path: &mut Vec<String>,
    tags: &mut Vec<(Vec<String>, Tag)>,
) -> Result<Node, String> {
    Ok(match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Node::Int(i),
            None => Node::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Node::Str(s),
        Value::Sequence(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                list.push(convert(item, path, tags)?);
                path.pop();
            }
            Node::List(list)
        }
        Value::Mapping(m) => {
            let mut map = BTreeMap::new();
            for (k, v) in m {
                let key = match k {
                    Value::String(s) => s,
                    other => {
                        return Err(format!(
                            "non-string key {}: {}",
                            location(path),
                            scalar_text(&other)
                        ))
                    }
                };
                path.push(key.clone());
                let node = convert(v, path, tags)?;
                path.pop();
                map.insert(key, node);
            }
            Node::Map(map)
        }
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let kind = match tag.trim_start_matches('!') {
                "reset" => Some(Tag::Reset),
                "override" => Some(Tag::Override),
                _ => None,
            };
            if let Some(kind) = kind {
                tags.push((path.clone(), kind));
            }
            if kind == Some(Tag::Reset) {
                Node::Null
            } else {
                convert(t.value, path, tags)?
            }
        }
    })
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "<nil>".into(),
        _ => serde_yaml_ng::to_string(v)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_and_tags() {
        let docs = documents("c.yaml", "x: &a {k: 1}\ny:\n  <<: *a\n  j: !reset [1]\n").unwrap();
        let Node::Map(m) = &docs[0].root else {
            panic!()
        };
        let Node::Map(y) = &m["y"] else { panic!() };
        assert_eq!(y["k"], Node::Int(1));
        assert_eq!(y["j"], Node::Null);
        assert_eq!(docs[0].tags.len(), 1);
    }

    #[test]
    fn non_string_keys_are_refused() {
        let e = documents("c.yaml", "services:\n  1: {}\n").err().unwrap();
        assert_eq!(e, "non-string key in services: 1");
    }
}
