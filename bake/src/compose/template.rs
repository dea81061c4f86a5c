//! Compose variable substitution (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?err}`, `${VAR?err}`, `$$`), and `.env` files, as
//! compose-go's `template` and `dotenv` packages read them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::{Captures, Regex};

/// Why a substitution failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `${` not followed by a valid name: the whole template is reported.
    Invalid(String),
    /// `${VAR:?reason}` with `VAR` unset (or empty).
    Missing { variable: String, reason: String },
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Invalid(t) => write!(f, "Invalid template: {t:?}"),
            TemplateError::Missing { variable, reason } if reason.is_empty() => {
                write!(f, "required variable {variable} is missing a value")
            }
            TemplateError::Missing { variable, reason } => {
                write!(
                    f,
                    "required variable {variable} is missing a value: {reason}"
                )
            }
        }
    }
}

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|\{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)\}|(?P<invalid>)))",
        )
        .expect("valid pattern")
    })
}

/// Replaces every variable reference in `template`.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut first_err: Option<TemplateError> = None;
    let out = pattern().replace_all(template, |caps: &Captures<'_>| {
        match replace_one(&caps[0], lookup) {
            Ok(v) => v,
            Err(e) => {
                let e = match e {
                    TemplateError::Invalid(t) if t.is_empty() => {
                        TemplateError::Invalid(template.to_string())
                    }
                    e => e,
                };
                first_err.get_or_insert(e);
                String::new()
            }
        }
    });
    match first_err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

/// Index of the `}` closing the first `${`, counting nested braces.
fn first_closing_brace(s: &[u8]) -> Option<usize> {
    let mut open = 0i32;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if s[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

fn replace_one(
    matched: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let (head, rest) = match first_closing_brace(matched.as_bytes()) {
        Some(i) => (&matched[..=i], &matched[i + 1..]),
        None => (matched, ""),
    };
    let caps = pattern()
        .captures(head)
        .ok_or_else(|| TemplateError::Invalid(String::new()))?;
    if caps.name("escaped").is_some() {
        return Ok("$".into());
    }
    let (name, braced) = match (caps.name("named"), caps.name("braced")) {
        (Some(n), _) => (n.as_str(), false),
        (None, Some(b)) => (b.as_str(), true),
        _ => return Err(TemplateError::Invalid(String::new())),
    };
    if braced {
        if let Some(v) = apply_operator(name, lookup)? {
            return Ok(v + &substitute(rest, lookup)?);
        }
    }
    Ok(lookup(name).unwrap_or_default())
}

/// `NAME<op>word`: the result when an operator is present.
fn apply_operator(
    sub: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, TemplateError> {
    let name_end = sub
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(sub.len());
    let (name, op_and_word) = sub.split_at(name_end);
    let op = if op_and_word.starts_with(':') {
        op_and_word.get(..2).unwrap_or("")
    } else {
        op_and_word.get(..1).unwrap_or("")
    };
    if op.is_empty() {
        return Ok(None);
    }
    let word = substitute(&op_and_word[op.len()..], lookup)?;
    let value = lookup(name);
    Ok(Some(match op {
        ":-" => match value {
            Some(v) if !v.is_empty() => v,
            _ => word,
        },
        "-" => value.unwrap_or(word),
        ":+" => match value {
            Some(v) if !v.is_empty() => word,
            v => v.unwrap_or_default(),
        },
        "+" => match value {
            Some(_) => word,
            None => String::new(),
        },
        ":?" | "?" => match value {
            Some(v) if op == "?" || !v.is_empty() => v,
            _ => {
                return Err(TemplateError::Missing {
                    variable: name.to_string(),
                    reason: word,
                })
            }
        },
        _ => return Ok(None),
    }))
}

/// A `.env` file's variables, values interpolated from `lookup` first, then from the
/// variables defined above them, as compose-go's `dotenv.UnmarshalBytesWithLookup`.
pub fn parse_dotenv(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut rest = src;
    let mut line = 1usize;
    loop {
        // Skip blank space and comment lines.
        loop {
            let Some(pos) = rest.find(|c: char| !c.is_whitespace()) else {
                return Ok(out);
            };
            line += rest[..pos].matches('\n').count();
            rest = &rest[pos..];
            if !rest.starts_with('#') {
                break;
            }
            match rest.find('\n') {
                Some(p) => rest = &rest[p..],
                None => return Ok(out),
            }
        }
        if let Some(r) = rest.strip_prefix("export") {
            if r.starts_with([' ', '\t']) {
                rest = r.trim_start_matches([' ', '\t']);
            }
        }
        let mut key_end = None;
        for (i, c) in rest.char_indices() {
            if matches!(c, ' ' | '\t' | '\r') {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    key_end = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() => {}
                c => {
                    return Err(format!(
                        "line {line}: unexpected character {:?} in variable name {:?}",
                        c.to_string(),
                        rest.split('\n').next().unwrap_or("")
                    ))
                }
            }
        }
        let (end, sep) = key_end.unwrap_or((rest.len(), '\n'));
        let key = rest[..end].trim_end().to_string();
        if key.contains(' ') {
            return Err(format!("line {line}: key cannot contain a space"));
        }
        let after = rest.get(end + 1..).unwrap_or("");
        if sep == '\n' {
            // A bare name takes its value from the environment.
            if let Some(v) = lookup(&key) {
                out.insert(key, v);
            }
            line += 1;
            rest = after;
            continue;
        }
        let after = after.trim_start_matches([' ', '\t', '\r']);
        let lookup_all = |k: &str| lookup(k).or_else(|| out.get(k).cloned());
        let (value, remaining) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &after[1..];
                let mut chars = String::new();
                let mut escape = false;
                let mut close = None;
                for (i, c) in body.char_indices() {
                    if c == '\n' {
                        line += 1;
                    }
                    if c != q {
                        if !escape && c == '\\' {
                            escape = true;
                            continue;
                        }
                        if escape {
                            escape = false;
                            chars.push('\\');
                        }
                        chars.push(c);
                        continue;
                    }
                    if escape {
                        escape = false;
                        chars.push(c);
                        continue;
                    }
                    close = Some(i);
                    break;
                }
                let Some(i) = close else {
                    return Err(format!(
                        "line {line}: unterminated quoted value {}",
                        after.split('\n').next().unwrap_or("")
                    ));
                };
                let v = if q == '"' {
                    substitute(&expand_escapes(&chars), &lookup_all).map_err(|e| e.to_string())?
                } else {
                    chars
                };
                (v, &body[i + 1..])
            }
            _ => {
                let (v, r) = after.split_once('\n').unwrap_or((after, ""));
                line += 1;
                let v = v.split(" #").next().unwrap_or("").trim_end();
                (substitute(v, &lookup_all).map_err(|e| e.to_string())?, r)
            }
        };
        out.insert(key, value);
        rest = remaining;
    }
}

/// Backslash escapes inside double quotes (`\$` stays an escaped `$$`).
fn expand_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('$') => {
                chars.next();
                out.push_str("$$");
            }
            Some('c') => {
                chars.next();
                out.push_str("\\c");
            }
            Some(e @ ('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\\')) => {
                chars.next();
                out.push(match e {
                    'a' => '\x07',
                    'b' => '\x08',
                    'f' => '\x0c',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\x0b',
                    other => other,
                });
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn operators() {
        let s = |t: &str| substitute(t, &env);
        assert_eq!(s("a-${SET}-$SET-$$SET").unwrap(), "a-v-v-$SET");
        assert_eq!(s("${EMPTY:-d}|${EMPTY-d}|${NONE-d}").unwrap(), "d||d");
        assert_eq!(
            s("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}").unwrap(),
            "alt||alt"
        );
        assert_eq!(s("${NONE:-${SET}x}y").unwrap(), "vxy");
        assert_eq!(
            s("${NONE:?need it}").unwrap_err().to_string(),
            "required variable NONE is missing a value: need it"
        );
        assert!(s("${EMPTY?x}").is_ok());
        assert_eq!(
            s("a ${} b").unwrap_err(),
            TemplateError::Invalid("a ${} b".into())
        );
        assert_eq!(s("$1 and $").unwrap(), "$1 and $");
    }

    #[test]
    fn dotenv_values() {
        let m = parse_dotenv(
            "# c\nexport A=1 # note\nB=\"x\\ny ${A}\"\nC='${A}'\nD=${SET:-z}\nSET\n",
            &env,
        )
        .unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "x\ny 1");
        assert_eq!(m["C"], "${A}");
        assert_eq!(m["D"], "v");
        assert_eq!(m["SET"], "v");
    }
}
