//! Regular expression functions (`regex`, `regexall`, `regex_replace`) with Go's RE2 dialect
//! on top of the `regex` crate: Perl classes (`\d \w \s \b`) are ASCII-only as in Go, `[` is
//! literal inside a class, and syntax errors are worded as Go's `regexp/syntax` words them.

use hcl::{Map, Value};
use regex_syntax::ast::ErrorKind;

use super::value::str_of;
use super::FuncError;

type R = Result<Value, FuncError>;

/// A Go syntax error: its code and the offending part of the pattern.
struct SyntaxError {
    code: String,
    expr: String,
}

/// A Go pattern rewritten for the `regex` crate.
struct Translation {
    pattern: String,
    /// Group names the rewrite changed (Go allows a name twice, the regex crate does not),
    /// as `(new, original)`.
    renames: Vec<(String, String)>,
}

/// Rewrites a Go pattern into the `regex` crate's syntax with the same meaning.
fn translate(pattern: &str) -> Translation {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut names: Vec<String> = Vec::new();
    let mut renames = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !in_class && c == '{' {
            let ahead: String = chars[i..chars.len().min(i + 24)].iter().collect();
            if repeat_op_len(ahead.as_bytes(), 0).is_none() {
                // Not a count in Go's eyes: a literal brace.
                out.push_str("\\{");
                i += 1;
                continue;
            }
        }
        if !in_class && c == '(' && chars.get(i + 1) == Some(&'?') {
            let named = match (chars.get(i + 2), chars.get(i + 3)) {
                (Some('P'), Some('<')) => Some(i + 4),
                (Some('<'), _) => Some(i + 3),
                _ => None,
            };
            if let Some(start) = named {
                if let Some(len) = chars[start..].iter().position(|c| *c == '>') {
                    let name: String = chars[start..start + len].iter().collect();
                    let mut written = name.clone();
                    if names.contains(&name) {
                        written = format!("kilndup{}", renames.len());
                        renames.push((written.clone(), name.clone()));
                    }
                    names.push(name);
                    out.push_str("(?P<");
                    out.push_str(&written);
                    out.push('>');
                    i = start + len + 1;
                    continue;
                }
            }
        }
        if c == '\\' && i + 1 < chars.len() {
            let e = chars[i + 1];
            let repl = match (e, in_class) {
                ('d', false) => Some("[0-9]"),
                ('D', false) => Some("[^0-9]"),
                ('w', false) => Some("[0-9A-Za-z_]"),
                ('W', false) => Some("[^0-9A-Za-z_]"),
                ('s', false) => Some("[\\t\\n\\f\\r ]"),
                ('S', false) => Some("[^\\t\\n\\f\\r ]"),
                ('b', false) => Some("(?-u:\\b)"),
                ('B', false) => Some("(?-u:\\B)"),
                ('d', true) => Some("0-9"),
                ('w', true) => Some("0-9A-Za-z_"),
                ('s', true) => Some("\\t\\n\\f\\r "),
                ('D', true) => Some("[^0-9]"),
                ('W', true) => Some("[^0-9A-Za-z_]"),
                ('S', true) => Some("[^\\t\\n\\f\\r ]"),
                _ => None,
            };
            match repl {
                Some(r) => out.push_str(r),
                None => {
                    out.push(c);
                    out.push(e);
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
                out.push(c);
            } else if c == '[' && chars.get(i + 1) == Some(&':') {
                // A POSIX class like [:alpha:], copied through to its closing ":]".
                let rest: String = chars[i..].iter().collect();
                match rest.find(":]") {
                    Some(end) => {
                        out.push_str(&rest[..end + 2]);
                        i += rest[..end + 2].chars().count();
                        continue;
                    }
                    None => out.push_str("\\["),
                }
            } else if matches!(c, '[' | '&' | '~') || (c == '-' && chars.get(i + 1) == Some(&'-')) {
                // Literal in Go, set syntax in the regex crate.
                out.push('\\');
                out.push(c);
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        if c == '[' {
            in_class = true;
            out.push(c);
            i += 1;
            if chars.get(i) == Some(&'^') {
                out.push('^');
                i += 1;
            }
            // A `]` first in a class is a literal in Go.
            if chars.get(i) == Some(&']') {
                out.push_str("\\]");
                i += 1;
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    Translation {
        pattern: out,
        renames,
    }
}

/// Go's description of why `original` does not compile; `pattern` is its translation, whose
/// spans locate the problem.
fn syntax_error(original: &str, pattern: &str) -> Option<SyntaxError> {
    let err = regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .err()?;
    let span = err.span();
    let at = |s: usize, e: usize| pattern.get(s..e).unwrap_or("").to_string();
    let (code, expr) = match err.kind() {
        ErrorKind::GroupUnclosed => ("missing closing )", original.to_string()),
        ErrorKind::GroupUnopened => ("unexpected )", original.to_string()),
        ErrorKind::ClassUnclosed => ("missing closing ]", at(span.start.offset, pattern.len())),
        ErrorKind::RepetitionMissing => (
            "missing argument to repetition operator",
            at(span.start.offset, span.end.offset),
        ),
        ErrorKind::EscapeUnexpectedEof => {
            ("trailing backslash at end of expression", String::new())
        }
        ErrorKind::EscapeUnrecognized
        | ErrorKind::ClassEscapeInvalid
        | ErrorKind::UnsupportedBackreference => (
            "invalid escape sequence",
            at(span.start.offset, span.end.offset),
        ),
        ErrorKind::ClassRangeInvalid | ErrorKind::ClassRangeLiteral => (
            "invalid character class range",
            at(span.start.offset, span.end.offset),
        ),
        ErrorKind::RepetitionCountInvalid
        | ErrorKind::RepetitionCountUnclosed
        | ErrorKind::RepetitionCountDecimalEmpty => (
            "invalid repeat count",
            at(span.start.offset, span.end.offset),
        ),
        ErrorKind::GroupNameEmpty
        | ErrorKind::GroupNameInvalid
        | ErrorKind::GroupNameUnexpectedEof
        | ErrorKind::GroupNameDuplicate { .. } => {
            // Go quotes the group's opening up to the end of its name.
            let open = pattern[..span.start.offset].rfind('(').unwrap_or(0);
            let close = pattern[span.start.offset..]
                .find('>')
                .map_or(pattern.len(), |i| span.start.offset + i + 1);
            ("invalid named capture", at(open, close))
        }
        ErrorKind::UnicodeClassInvalid => (
            "invalid character class range",
            at(span.start.offset, span.end.offset),
        ),
        ErrorKind::FlagUnrecognized
        | ErrorKind::FlagDanglingNegation
        | ErrorKind::FlagDuplicate { .. }
        | ErrorKind::FlagRepeatedNegation { .. }
        | ErrorKind::FlagUnexpectedEof
        | ErrorKind::UnsupportedLookAround => {
            // Go quotes from the group's `(` through the offending character.
            let open = pattern[..span.start.offset.min(pattern.len())]
                .rfind('(')
                .unwrap_or(span.start.offset);
            (
                "invalid or unsupported Perl syntax",
                at(open, span.end.offset),
            )
        }
        _ => (
            "invalid escape sequence",
            at(span.start.offset, span.end.offset),
        ),
    };
    Some(SyntaxError {
        code: code.to_string(),
        expr,
    })
}

/// Length in bytes of a Go repetition operator starting at `i` (`*`, `+`, `?`, `{n}`, `{n,}`,
/// `{n,m}`), with its non-greedy `?`; `None` when there is none (a `{` that does not parse as a
/// count is a literal in Go).
fn repeat_op_len(b: &[u8], i: usize) -> Option<usize> {
    let mut j = match b.get(i)? {
        b'*' | b'+' | b'?' => i + 1,
        b'{' => {
            let mut j = i + 1;
            // Go's parseInt: digits without a leading zero.
            let digits = |j: &mut usize| {
                let s = *j;
                while b.get(*j).is_some_and(u8::is_ascii_digit) {
                    *j += 1;
                }
                *j > s && !(*j - s >= 2 && b[s] == b'0')
            };
            if !digits(&mut j) {
                return None;
            }
            if b.get(j) == Some(&b',') {
                j += 1;
                let s = j;
                if !digits(&mut j) && j > s {
                    return None;
                }
            }
            if b.get(j) != Some(&b'}') {
                return None;
            }
            j + 1
        }
        _ => return None,
    };
    if b.get(j) == Some(&b'?') {
        j += 1;
    }
    Some(j - i)
}

/// Go's checks on repetition operators that the regex crate does not share: one applied to
/// another (`a**`), and the operator text Go quotes when one has nothing to repeat.
fn repeat_error(pattern: &str) -> Option<SyntaxError> {
    let b = pattern.as_bytes();
    let mut i = 0;
    // Start of the previous token when it was a repetition operator.
    let mut prev_repeat: Option<usize> = None;
    // Whether a repetition here would have nothing to repeat.
    let mut at_start = true;
    while i < b.len() {
        if let Some(len) = repeat_op_len(b, i) {
            let op = &pattern[i..i + len];
            if let Some(count) = op.strip_prefix('{') {
                let count = count.trim_end_matches('?').trim_end_matches('}');
                let (min, max) = match count.split_once(',') {
                    Some((min, "")) => (min, None),
                    Some((min, max)) => (min, Some(max)),
                    None => (count, Some(count)),
                };
                let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
                let (min, max) = (num(min), max.map(num));
                if min > 1000 || max.is_some_and(|m| m > 1000 || min > m) {
                    return Some(SyntaxError {
                        code: "invalid repeat count".into(),
                        expr: op.trim_end_matches('?').to_string(),
                    });
                }
            }
            if at_start {
                return Some(SyntaxError {
                    code: "missing argument to repetition operator".into(),
                    expr: op.into(),
                });
            }
            if let Some(start) = prev_repeat {
                return Some(SyntaxError {
                    code: "invalid nested repetition operator".into(),
                    expr: pattern[start..i + len].into(),
                });
            }
            prev_repeat = Some(i);
            i += len;
            continue;
        }
        prev_repeat = None;
        at_start = false;
        match b[i] {
            b'\\' => i += 2,
            b'[' => {
                // Skip the class: a leading `]` is literal, `[:name:]` nests.
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                while i < b.len() && b[i] != b']' {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b'[' && b.get(i + 1) == Some(&b':') {
                        if let Some(end) = pattern[i..].find(":]") {
                            let name = &pattern[i..i + end + 2];
                            const POSIX: [&str; 14] = [
                                "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph",
                                "lower", "print", "punct", "space", "upper", "word", "xdigit",
                            ];
                            let bare = name[2..name.len() - 2].trim_start_matches('^');
                            if !POSIX.contains(&bare) {
                                return Some(SyntaxError {
                                    code: "invalid character class range".into(),
                                    expr: name.to_string(),
                                });
                            }
                            i += end + 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            b'(' => {
                // Skip a group's `?flags:` / `?P<name>` header; nothing to repeat after it.
                i += 1;
                if b.get(i) == Some(&b'?') {
                    while i < b.len() && !matches!(b[i], b':' | b')' | b'>') {
                        i += 1;
                    }
                    i += 1;
                }
                at_start = true;
            }
            b'|' => {
                i += 1;
                at_start = true;
            }
            _ => i += 1,
        }
    }
    None
}

/// A compiled pattern with Go's names for its groups.
struct Compiled {
    re: regex::Regex,
    renames: Vec<(String, String)>,
}

impl Compiled {
    /// Go's name of each group after the whole match (`None` for unnamed groups).
    fn names(&self) -> Vec<Option<&str>> {
        self.re
            .capture_names()
            .skip(1)
            .map(|n| {
                n.map(|n| {
                    self.renames
                        .iter()
                        .find(|(new, _)| new == n)
                        .map_or(n, |(_, orig)| orig.as_str())
                })
            })
            .collect()
    }
}

/// Compiles a Go pattern, or says why Go would not.
fn compile(pattern: &str) -> Result<Compiled, SyntaxError> {
    let t = translate(pattern);
    if let Some(e) = repeat_error(pattern).or_else(|| syntax_error(pattern, &t.pattern)) {
        return Err(e);
    }
    match regex::Regex::new(&t.pattern) {
        Ok(re) => Ok(Compiled {
            re,
            renames: t.renames,
        }),
        Err(regex::Error::CompiledTooBig(_)) => Err(SyntaxError {
            code: "expression too large".into(),
            expr: pattern.to_string(),
        }),
        Err(other) => {
            // Unknown Unicode classes fail only when translated, past the AST parse.
            if let Err(regex_syntax::Error::Translate(e)) =
                regex_syntax::ParserBuilder::new().build().parse(&t.pattern)
            {
                let span = e.span();
                return Err(SyntaxError {
                    code: "invalid character class range".into(),
                    expr: t
                        .pattern
                        .get(span.start.offset..span.end.offset)
                        .unwrap_or("")
                        .to_string(),
                });
            }
            Err(SyntaxError {
                code: other.to_string(),
                expr: pattern.to_string(),
            })
        }
    }
}

/// The shape of `regex`'s result for a pattern: a string, a tuple or an object.
enum Shape {
    Whole,
    Tuple,
    Object,
}

fn shape(pattern: &str) -> Result<(Compiled, Shape), FuncError> {
    let compiled = compile(pattern).map_err(|e| {
        FuncError::arg(
            0,
            format!("invalid regexp pattern: {} in {}", e.code, e.expr),
        )
    })?;
    let names = compiled.names();
    let named = names.iter().filter(|n| n.is_some()).count();
    let unnamed = names.len() - named;
    let shape = match (unnamed, named) {
        (0, 0) => Shape::Whole,
        (u, n) if u > 0 && n > 0 => {
            return Err(FuncError::arg(
                0,
                "invalid regexp pattern: cannot mix both named and unnamed capture groups",
            ))
        }
        (_, 0) => Shape::Tuple,
        _ => Shape::Object,
    };
    Ok((compiled, shape))
}

fn result(names: &[Option<&str>], shape: &Shape, caps: &regex::Captures) -> Value {
    let group = |i: usize| {
        caps.get(i)
            .map_or(Value::Null, |m| Value::String(m.as_str().to_string()))
    };
    match shape {
        Shape::Whole => group(0),
        Shape::Tuple => Value::Array((1..caps.len()).map(group).collect()),
        Shape::Object => {
            // A name used twice takes its last group's value, as in cty.
            let mut attrs: Map<String, Value> = Map::new();
            for (i, name) in names.iter().enumerate() {
                if let Some(name) = name {
                    attrs.insert(name.to_string(), group(i + 1));
                }
            }
            attrs.sort_keys();
            Value::Object(attrs)
        }
    }
}

pub fn regex(args: Vec<Value>) -> R {
    let (compiled, shape) = shape(str_of(&args[0]))?;
    let caps = compiled
        .re
        .captures(str_of(&args[1]))
        .ok_or_else(|| FuncError::call("pattern did not match any part of the given string"))?;
    Ok(result(&compiled.names(), &shape, &caps))
}

pub fn regexall(args: Vec<Value>) -> R {
    let (compiled, shape) = shape(str_of(&args[0]))?;
    let names = compiled.names();
    Ok(Value::Array(
        compiled
            .re
            .captures_iter(str_of(&args[1]))
            .map(|caps| result(&names, &shape, &caps))
            .collect(),
    ))
}

pub fn regex_replace(args: Vec<Value>) -> R {
    let compiled = compile(str_of(&args[1]))
        .map_err(|e| FuncError::call(format!("error parsing regexp: {}: `{}`", e.code, e.expr)))?;
    Ok(Value::String(
        compiled
            .re
            .replace_all(str_of(&args[0]), str_of(&args[2]))
            .into_owned(),
    ))
}
