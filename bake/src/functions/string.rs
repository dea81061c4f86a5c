//! String functions: case, trimming, splitting and joining, substrings (counted in grapheme
//! clusters, as cty counts "characters"), `sanitize`, and the `bytes` functions that no bake
//! value can reach.

use hcl::Value;
use unicode_segmentation::UnicodeSegmentation;

use super::value::{num, str_of, to_int};
use super::FuncError;

type R = Result<Value, FuncError>;

fn s(v: String) -> R {
    Ok(Value::String(v))
}

/// Go's simple (one rune to one rune) case mapping: where Unicode's full mapping would change
/// the length (`ß` → `SS`), Go leaves the rune alone.
fn map_simple(c: char, up: bool) -> char {
    if !up && c == '\u{130}' {
        // Dotted capital I: its only lowercase mapping longer than one rune.
        return 'i';
    }
    let mut it: Box<dyn Iterator<Item = char>> = if up {
        Box::new(c.to_uppercase())
    } else {
        Box::new(c.to_lowercase())
    };
    match (it.next(), it.next()) {
        (Some(m), None) => m,
        _ => c,
    }
}

pub fn upper(args: Vec<Value>) -> R {
    s(str_of(&args[0])
        .chars()
        .map(|c| map_simple(c, true))
        .collect())
}

pub fn lower(args: Vec<Value>) -> R {
    s(str_of(&args[0])
        .chars()
        .map(|c| map_simple(c, false))
        .collect())
}

pub fn reverse(args: Vec<Value>) -> R {
    s(str_of(&args[0]).graphemes(true).rev().collect())
}

pub fn strlen(args: Vec<Value>) -> R {
    Ok(Value::from(str_of(&args[0]).graphemes(true).count()))
}

pub fn substr(args: Vec<Value>) -> R {
    let text = str_of(&args[0]);
    let mut offset = to_int(&args[1]).map_err(FuncError::call)?;
    let length = to_int(&args[2]).map_err(FuncError::call)?;
    let clusters: Vec<&str> = text.graphemes(true).collect();
    if offset < 0 {
        offset += clusters.len() as i64;
    } else if length == 0 {
        return s(String::new());
    }
    // cty walks `offset` clusters forward; a still-negative offset starts at the beginning.
    let start = offset.max(0) as usize;
    if start >= clusters.len() && offset > 0 {
        return s(String::new());
    }
    let rest = &clusters[start.min(clusters.len())..];
    if length < 0 {
        return s(rest.concat());
    }
    // A zero length after a negative offset never stops cty's loop: it takes the rest.
    let take = if length == 0 {
        rest.len()
    } else {
        (length as usize).min(rest.len())
    };
    s(rest[..take].concat())
}

pub fn join(args: Vec<Value>) -> R {
    let sep = str_of(&args[0]);
    let lists = &args[1..];
    if lists.is_empty() {
        return Err(FuncError::call("at least one list is required"));
    }
    let mut items: Vec<&str> = Vec::new();
    for (ai, list) in lists.iter().enumerate() {
        let Value::Array(elems) = list else {
            continue;
        };
        for (ei, v) in elems.iter().enumerate() {
            match v {
                Value::String(x) => items.push(x),
                _ if lists.len() > 1 => {
                    return Err(FuncError::arg(
                        ai + 1,
                        format!(
                            "element {ei} of list {} is null; cannot concatenate null values",
                            ai + 1
                        ),
                    ))
                }
                _ => {
                    return Err(FuncError::arg(
                        ai + 1,
                        format!("element {ei} is null; cannot concatenate null values"),
                    ))
                }
            }
        }
    }
    s(items.join(sep))
}

pub fn sort(args: Vec<Value>) -> R {
    let Value::Array(elems) = &args[0] else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut list: Vec<String> = Vec::with_capacity(elems.len());
    for (i, v) in elems.iter().enumerate() {
        match v {
            Value::String(x) => list.push(x.clone()),
            _ => {
                return Err(FuncError::call(format!(
                    "given list element {i} is null; a null string cannot be sorted"
                )))
            }
        }
    }
    list.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(Value::Array(list.into_iter().map(Value::String).collect()))
}

pub fn split(args: Vec<Value>) -> R {
    let sep = str_of(&args[0]);
    let text = str_of(&args[1]);
    let parts: Vec<Value> = if sep.is_empty() {
        // Go splits into single runes when the separator is empty.
        text.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        text.split(sep)
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

pub fn chomp(args: Vec<Value>) -> R {
    s(str_of(&args[0]).trim_end_matches(['\r', '\n']).to_string())
}

pub fn indent(args: Vec<Value>) -> R {
    let spaces = to_int(&args[0]).map_err(FuncError::call)?;
    if spaces < 0 {
        // Go's strings.Repeat panics on a negative count; cty reports the panic.
        return Err(FuncError::call(
            "panic in function implementation: strings: negative Repeat count",
        ));
    }
    let pad = format!("\n{}", " ".repeat(spaces as usize));
    s(str_of(&args[1]).replace('\n', &pad))
}

/// Go's `strings.Title` word boundary test.
fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphabetic() || c.is_numeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's `unicode.ToTitle`: like uppercase except for the Latin digraphs, whose title case is
/// capital-then-small.
fn map_title(c: char) -> char {
    match c {
        '\u{1c4}'..='\u{1c6}' => '\u{1c5}',
        '\u{1c7}'..='\u{1c9}' => '\u{1c8}',
        '\u{1ca}'..='\u{1cc}' => '\u{1cb}',
        '\u{1f1}'..='\u{1f3}' => '\u{1f2}',
        c => map_simple(c, true),
    }
}

pub fn title(args: Vec<Value>) -> R {
    let mut prev = ' ';
    let out = str_of(&args[0])
        .chars()
        .map(|c| {
            let mapped = if is_separator(prev) { map_title(c) } else { c };
            prev = c;
            mapped
        })
        .collect();
    s(out)
}

pub fn trimspace(args: Vec<Value>) -> R {
    s(str_of(&args[0]).trim().to_string())
}

pub fn trim(args: Vec<Value>) -> R {
    let cutset = str_of(&args[1]);
    s(str_of(&args[0])
        .trim_matches(|c| cutset.contains(c))
        .to_string())
}

pub fn trimprefix(args: Vec<Value>) -> R {
    let text = str_of(&args[0]);
    s(text
        .strip_prefix(str_of(&args[1]))
        .unwrap_or(text)
        .to_string())
}

pub fn trimsuffix(args: Vec<Value>) -> R {
    let text = str_of(&args[0]);
    s(text
        .strip_suffix(str_of(&args[1]))
        .unwrap_or(text)
        .to_string())
}

pub fn replace(args: Vec<Value>) -> R {
    s(str_of(&args[0]).replace(str_of(&args[1]), str_of(&args[2])))
}

/// buildx's `sanitize`: everything but `[a-zA-Z0-9_-]` becomes `_` (one per character).
pub fn sanitize(args: Vec<Value>) -> R {
    s(str_of(&args[0])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect())
}

/// `byteslen` and `bytesslice` take go-cty's `bytes` capsule, which no bake expression can
/// produce: their argument conversion always fails first, except for null, which cty rejects
/// as null.
pub fn byteslen(_args: Vec<Value>) -> R {
    Err(FuncError::arg(0, "argument must not be null"))
}

pub fn bytesslice(args: Vec<Value>) -> R {
    let _ = num(&args[1]);
    Err(FuncError::arg(0, "argument must not be null"))
}
