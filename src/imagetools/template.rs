//! The subset of Go's `text/template` that `imagetools inspect --format` templates use, parsed
//! once into a tree and evaluated over a JSON value whose top-level keys are buildx's template
//! field names (`Name`, `Manifest`, `Image`, `Provenance`, `SBOM`).
//!
//! Supported: text, comments, trim markers, field chains, `.`, `$` and variables (`$x :=`,
//! `range $i, $v :=`), string/number/bool/nil literals, parentheses, pipelines (`|`),
//! `if`/`else if`/`else`, `range`/`else`, `with`/`else`, and the functions `json` (buildx's
//! own), `index`, `len`, `printf`, `print`, `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`,
//! `or`, `not`. Errors are worded as Go words them. Not supported: `define`/`template`/`block`,
//! `break`/`continue`, assignment with `=`, and printing a typed struct with `%v` (Go prints
//! those with pointer addresses, which a JSON value cannot reproduce): kiln asks for
//! `{{json ...}}` instead. `Provenance` and `SBOM` hold decoded JSON in buildx as well, so they
//! print as Go prints `any` values (`map[k:v]`).

use std::borrow::Cow;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::gojson;

/// The fields buildx's inspect template offers.
pub const FIELDS: [&str; 5] = ["Name", "Manifest", "Image", "Provenance", "SBOM"];

/// The exported fields of image-spec's `Descriptor`.
const DESCRIPTOR_FIELDS: &[&str] = &[
    "MediaType",
    "Digest",
    "Size",
    "URLs",
    "Annotations",
    "Data",
    "Platform",
    "ArtifactType",
];

/// The root key that says whether the root is buildx's multi-platform input type; not a field.
pub const MULTI_KEY: &str = "\u{0}multi";

const FUNCTIONS: [&str; 15] = [
    "json", "index", "len", "printf", "print", "println", "eq", "ne", "lt", "le", "gt", "ge",
    "and", "or", "not",
];

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    src: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        over: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    pos: usize,
    decl: Vec<String>,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    pos: usize,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty path: `.`), at `pos`.
    Field {
        pos: usize,
        path: Vec<String>,
    },
    /// `$x.A.B` (`$` alone is the root).
    Var {
        pos: usize,
        name: String,
        path: Vec<String>,
    },
    Func {
        pos: usize,
        name: String,
    },
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).A.B`.
    Sub(Box<Pipeline>, Vec<String>),
}

impl Template {
    /// Parses once; an unknown function, a bad action or a field the root does not have fails
    /// here, before anything is fetched.
    pub fn parse(src: &str) -> Result<Template> {
        let items = split(src)?;
        let mut p = Parser {
            src,
            items,
            at: 0,
            vars: vec!["$".into()],
        };
        let (nodes, end) = p.list()?;
        if let Some(end) = end {
            bail!("template: :{}: unexpected {{{{{end}}}}}", line_of(src, 0));
        }
        let t = Template {
            src: src.to_string(),
            nodes,
        };
        t.check_root_fields()?;
        Ok(t)
    }

    /// buildx prints its summary, not the template, when the template (as Go re-prints it)
    /// starts with `{{.Manifest` (the documented default `{{.Manifest}}` among them).
    pub fn is_manifest_summary(&self) -> bool {
        match self.nodes.first() {
            Some(Node::Action(p)) if p.decl.is_empty() => matches!(
                p.cmds.first().and_then(|c| c.args.first()),
                Some(Arg::Field { path, .. }) if path.first().is_some_and(|f| f.starts_with("Manifest"))
            ),
            _ => false,
        }
    }

    /// Whether evaluating may need the top-level field `name` (a bare `.` or `$` needs all).
    pub fn uses(&self, name: &str) -> bool {
        let mut found = false;
        visit_args(&self.nodes, &mut |a| match a {
            Arg::Field { path, .. } => {
                found |= path.is_empty() || path.iter().any(|p| p == name);
            }
            Arg::Var { path, .. } => {
                found |= path.is_empty() || path.iter().any(|p| p == name);
            }
            _ => {}
        });
        found
    }

    pub fn render(&self, root: &Value) -> Result<String> {
        let mut ex = Exec {
            src: &self.src,
            root,
            vars: vec![("$".into(), Val::Root)],
            out: String::new(),
        };
        ex.list(&self.nodes, &Val::Root)?;
        Ok(ex.out)
    }

    /// Top-level field chains (outside `range`/`with`, where `.` is the root) must name one
    /// of buildx's fields, as Go would find at run time.
    fn check_root_fields(&self) -> Result<()> {
        fn walk(src: &str, nodes: &[Node]) -> Result<()> {
            for n in nodes {
                let pipes: Vec<&Pipeline> = match n {
                    Node::Text(_) => vec![],
                    Node::Action(p) => vec![p],
                    Node::If {
                        cond,
                        then,
                        otherwise,
                    } => {
                        walk(src, then)?;
                        walk(src, otherwise)?;
                        vec![cond]
                    }
                    Node::With {
                        cond, otherwise, ..
                    } => {
                        walk(src, otherwise)?;
                        vec![cond]
                    }
                    Node::Range {
                        over, otherwise, ..
                    } => {
                        walk(src, otherwise)?;
                        vec![over]
                    }
                };
                for p in pipes {
                    check_pipeline(src, p)?;
                }
            }
            Ok(())
        }
        fn check_pipeline(src: &str, p: &Pipeline) -> Result<()> {
            for c in &p.cmds {
                for a in &c.args {
                    match a {
                        Arg::Field { pos, path } => {
                            if let Some(first) = path.first() {
                                if !FIELDS.contains(&first.as_str()) {
                                    bail!(
                                        "template: :{}:{}: executing \"\" at <.{}>: can't evaluate field {first} (the fields are {})",
                                        line_of(src, *pos),
                                        col_of(src, *pos),
                                        path.join("."),
                                        FIELDS.join(", ")
                                    );
                                }
                            }
                        }
                        Arg::Sub(inner, _) => check_pipeline(src, inner)?,
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        walk(&self.src, &self.nodes)
    }
}

fn visit_args(nodes: &[Node], f: &mut dyn FnMut(&Arg)) {
    fn pipe(p: &Pipeline, f: &mut dyn FnMut(&Arg)) {
        for c in &p.cmds {
            for a in &c.args {
                f(a);
                if let Arg::Sub(inner, _) = a {
                    pipe(inner, f);
                }
            }
        }
    }
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Action(p) => pipe(p, f),
            Node::If {
                cond,
                then,
                otherwise,
            }
            | Node::With {
                cond,
                then,
                otherwise,
            } => {
                pipe(cond, f);
                visit_args(then, f);
                visit_args(otherwise, f);
            }
            Node::Range {
                over,
                body,
                otherwise,
            } => {
                pipe(over, f);
                visit_args(body, f);
                visit_args(otherwise, f);
            }
        }
    }
}

fn line_of(src: &str, pos: usize) -> usize {
    1 + src[..pos.min(src.len())].matches('\n').count()
}

fn col_of(src: &str, pos: usize) -> usize {
    let before = &src[..pos.min(src.len())];
    match before.rfind('\n') {
        Some(nl) => pos - nl - 1,
        None => pos,
    }
}

/// Text and actions, with trim markers applied and comments dropped.
#[derive(Debug)]
enum Item {
    Text(String),
    /// The action's inside and the byte offset where it starts.
    Action(String, usize),
}

fn split(src: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut at = 0;
    let mut trim_next = false;
    while let Some(found) = src[at..].find("{{") {
        let start = at + found;
        let mut text = &src[at..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = start + 2;
        if src[inner..].starts_with("- ")
            || src[inner..].starts_with("-\t")
            || src[inner..].starts_with("-\n")
        {
            text = text.trim_end();
            inner += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let rest = &src[inner..];
        let trimmed = rest.trim_start();
        let (end, body_end) = if trimmed.starts_with("/*") {
            let skip = rest.len() - trimmed.len();
            let Some(close) = trimmed.find("*/") else {
                bail!("template: :{}: unclosed comment", line_of(src, start));
            };
            let after = inner + skip + close + 2;
            let tail = &src[after..];
            let t2 = tail.trim_start();
            let Some(close) = t2
                .strip_prefix("-}}")
                .map(|_| 3)
                .or(t2.strip_prefix("}}").map(|_| 2))
            else {
                bail!(
                    "template: :{}: comment ends before closing delimiter",
                    line_of(src, start)
                );
            };
            trim_next = t2.starts_with('-');
            at = after + (tail.len() - t2.len()) + close;
            continue;
        } else {
            let Some(close) = find_close(rest) else {
                bail!("template: :{}: unclosed action", line_of(src, start));
            };
            (inner + close, inner + close)
        };
        let mut body = &src[inner..body_end];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        items.push(Item::Action(body.to_string(), inner));
        at = end + 2;
    }
    let mut text = &src[at..];
    if trim_next {
        text = text.trim_start();
    }
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

/// Where `}}` closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.name`; `true` when it follows the previous token directly (a chain: `.A.B`).
    Field(String, bool),
    Var(String),
    Ident(String),
    Str(String),
    Num(String),
    Open,
    Close,
    Pipe,
    Declare,
    Comma,
}

fn tokens(src: &str, action: &str, base: usize) -> Result<Vec<(Tok, usize)>> {
    let line = line_of(src, base);
    let b = action.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        let pos = base + i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'.' if b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let j = number_end(b, i);
                out.push((Tok::Num(action[i..j].into()), pos));
                i = j;
            }
            b'.' => {
                let j = word(i + 1);
                let glued =
                    i > 0 && !matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'\r' | b'(' | b'|');
                out.push((Tok::Field(action[i + 1..j].into(), glued), pos));
                i = j;
            }
            b'$' => {
                let j = word(i + 1);
                out.push((Tok::Var(action[i..j].into()), pos));
                i = j;
            }
            b'(' => {
                out.push((Tok::Open, pos));
                i += 1;
            }
            b')' => {
                out.push((Tok::Close, pos));
                i += 1;
            }
            b'|' => {
                out.push((Tok::Pipe, pos));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, pos));
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                out.push((Tok::Declare, pos));
                i += 2;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= b.len() {
                    bail!("template: :{line}: unterminated quoted string");
                }
                let lit: String = serde_json::from_str(&action[i..=j]).map_err(|_| {
                    anyhow!("template: :{line}: invalid syntax in {}", &action[i..=j])
                })?;
                out.push((Tok::Str(lit), pos));
                i = j + 1;
            }
            b'`' => {
                let Some(len) = action[i + 1..].find('`') else {
                    bail!("template: :{line}: unterminated raw quoted string");
                };
                out.push((Tok::Str(action[i + 1..i + 1 + len].into()), pos));
                i += len + 2;
            }
            b'-' | b'+' | b'0'..=b'9' => {
                let j = number_end(b, i + 1);
                out.push((Tok::Num(action[i..j].into()), pos));
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let j = word(i);
                out.push((Tok::Ident(action[i..j].into()), pos));
                i = j;
            }
            _ => bail!(
                "template: :{line}: unexpected {:?} in command",
                action[i..].chars().next().unwrap_or(' ')
            ),
        }
        // A field chain continues straight after its word: `.A.B`, `$x.A`, `(...).A`.
    }
    Ok(out)
}

fn number_end(b: &[u8], mut j: usize) -> usize {
    while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'.' | b'_')) {
        j += 1;
    }
    j
}

struct Parser<'a> {
    src: &'a str,
    items: Vec<Item>,
    at: usize,
    vars: Vec<String>,
}

/// How a list of nodes ended: at `{{end}}`, `{{else}}` or `{{else if ...}}` (its action text).
type Ended = Option<String>;

impl Parser<'_> {
    fn list(&mut self) -> Result<(Vec<Node>, Ended)> {
        let mut nodes = Vec::new();
        while self.at < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.at], Item::Text(String::new()));
            self.at += 1;
            let (action, pos) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(a, pos) => (a, pos),
            };
            let trimmed = action.trim();
            let keyword = trimmed
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("");
            let rest = trimmed[keyword.len()..].trim_start();
            let rest_pos = pos + action.find(rest).unwrap_or(0);
            match keyword {
                "end" | "else" => return Ok((nodes, Some(trimmed.to_string()))),
                "if" | "with" | "range" => {
                    let marker = self.vars.len();
                    let cond = self.pipeline(rest, rest_pos, keyword == "range")?;
                    let (then, ended) = self.list()?;
                    let otherwise = self.branch_end(keyword, ended, marker)?;
                    self.vars.truncate(marker);
                    nodes.push(match keyword {
                        "if" => Node::If {
                            cond,
                            then,
                            otherwise,
                        },
                        "with" => Node::With {
                            cond,
                            then,
                            otherwise,
                        },
                        _ => Node::Range {
                            over: cond,
                            body: then,
                            otherwise,
                        },
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => bail!(
                    "template: :{}: {{{{{keyword}}}}} is not supported by kiln's --format",
                    line_of(self.src, pos)
                ),
                _ => {
                    if trimmed.is_empty() {
                        bail!(
                            "template: :{}: missing value for command",
                            line_of(self.src, pos)
                        );
                    }
                    nodes.push(Node::Action(self.pipeline(&action, pos, false)?));
                }
            }
        }
        Ok((nodes, None))
    }

    /// After a branch of `keyword`: the `else` part (an `else if` nests), through `{{end}}`.
    fn branch_end(&mut self, keyword: &str, ended: Ended, marker: usize) -> Result<Vec<Node>> {
        let line = line_of(self.src, 0);
        let Some(ended) = ended else {
            bail!("template: :{line}: unexpected EOF");
        };
        if ended == "end" {
            return Ok(Vec::new());
        }
        let rest = ended["else".len()..].trim();
        self.vars.truncate(marker);
        if rest.is_empty() {
            let (otherwise, end) = self.list()?;
            if end.as_deref() != Some("end") {
                bail!(
                    "template: :{line}: expected end; found {}",
                    end.unwrap_or("EOF".into())
                );
            }
            return Ok(otherwise);
        }
        // `else if X` / `else with X`: a nested branch that shares this one's `{{end}}`.
        let inner = rest.split_whitespace().next().unwrap_or("");
        if inner != keyword || keyword == "range" {
            bail!("template: :{line}: unexpected {{{{{ended}}}}}");
        }
        let cond_src = rest[inner.len()..].trim().to_string();
        let cond = self.pipeline(&cond_src, 0, false)?;
        let (then, ended) = self.list()?;
        let otherwise = self.branch_end(keyword, ended, marker)?;
        Ok(vec![if keyword == "if" {
            Node::If {
                cond,
                then,
                otherwise,
            }
        } else {
            Node::With {
                cond,
                then,
                otherwise,
            }
        }])
    }

    fn pipeline(&mut self, action: &str, pos: usize, range: bool) -> Result<Pipeline> {
        let toks = tokens(self.src, action, pos)?;
        let line = line_of(self.src, pos);
        let mut i = 0;
        let mut decl = Vec::new();
        // `$x :=` or (in range) `$i, $x :=`.
        let declares = toks.iter().position(|(t, _)| *t == Tok::Declare);
        if let Some(d) = declares {
            for (j, (t, _)) in toks[..d].iter().enumerate() {
                match t {
                    Tok::Var(v) if j % 2 == 0 => decl.push(v.clone()),
                    Tok::Comma if j % 2 == 1 && range => {}
                    _ => bail!("template: :{line}: unexpected {:?} in declaration", t),
                }
            }
            if decl.len() > if range { 2 } else { 1 } {
                bail!("template: :{line}: too many declarations in command");
            }
            i = d + 1;
        }
        let (p, used) = self.pipe_tokens(&toks[i..], pos, line)?;
        if used != toks.len() - i {
            bail!("template: :{line}: unexpected \")\" in command");
        }
        self.vars.extend(decl.iter().cloned());
        Ok(Pipeline { decl, ..p })
    }

    /// A pipeline from `toks`, up to an unmatched `)`; returns it and the tokens it used.
    fn pipe_tokens(
        &self,
        toks: &[(Tok, usize)],
        pos: usize,
        line: usize,
    ) -> Result<(Pipeline, usize)> {
        let mut cmds = Vec::new();
        let mut args = Vec::new();
        let mut cmd_pos = toks.first().map(|t| t.1).unwrap_or(pos);
        let mut i = 0;
        while i < toks.len() {
            let (t, at) = &toks[i];
            match t {
                Tok::Close => break,
                Tok::Pipe => {
                    if args.is_empty() {
                        bail!("template: :{line}: missing command");
                    }
                    cmds.push(Command {
                        pos: cmd_pos,
                        args: std::mem::take(&mut args),
                    });
                    cmd_pos = toks.get(i + 1).map(|t| t.1).unwrap_or(*at);
                    i += 1;
                    continue;
                }
                Tok::Open => {
                    let (inner, used) = self.pipe_tokens(&toks[i + 1..], *at, line)?;
                    if !matches!(toks.get(i + 1 + used), Some((Tok::Close, _))) {
                        bail!("template: :{line}: unclosed left paren");
                    }
                    i += used + 2;
                    let mut path = Vec::new();
                    while let Some((Tok::Field(f, true), _)) = toks.get(i) {
                        path.push(f.clone());
                        i += 1;
                    }
                    args.push(Arg::Sub(Box::new(inner), path));
                    continue;
                }
                Tok::Field(f, _) => {
                    let mut path = vec![];
                    if !f.is_empty() {
                        path.push(f.clone());
                    }
                    let mut last = *at;
                    i += 1;
                    while let Some((Tok::Field(f, true), p)) = toks.get(i) {
                        if f.is_empty() || path.is_empty() {
                            break;
                        }
                        // Go places a chain at its second segment.
                        if path.len() == 1 {
                            last = *p;
                        }
                        path.push(f.clone());
                        i += 1;
                    }
                    args.push(Arg::Field { pos: last, path });
                    continue;
                }
                Tok::Var(v) => {
                    if !self.vars.contains(v) {
                        bail!("template: :{line}: undefined variable \"{v}\"");
                    }
                    let mut path = Vec::new();
                    i += 1;
                    while let Some((Tok::Field(f, true), _)) = toks.get(i) {
                        path.push(f.clone());
                        i += 1;
                    }
                    args.push(Arg::Var {
                        pos: *at,
                        name: v.clone(),
                        path,
                    });
                    continue;
                }
                Tok::Ident(name) => match name.as_str() {
                    "true" => args.push(Arg::Bool(true)),
                    "false" => args.push(Arg::Bool(false)),
                    "nil" => args.push(Arg::Nil),
                    _ if FUNCTIONS.contains(&name.as_str()) => args.push(Arg::Func {
                        pos: *at,
                        name: name.clone(),
                    }),
                    _ => bail!("template: :{line}: function \"{name}\" not defined"),
                },
                Tok::Str(s) => args.push(Arg::Str(s.clone())),
                Tok::Num(n) => args.push(
                    parse_number(n)
                        .ok_or_else(|| anyhow!("template: :{line}: bad number syntax: \"{n}\""))?,
                ),
                Tok::Declare | Tok::Comma => {
                    bail!("template: :{line}: unexpected {t:?} in command")
                }
            }
            i += 1;
        }
        if args.is_empty() {
            bail!("template: :{line}: missing value for command");
        }
        cmds.push(Command { pos: cmd_pos, args });
        Ok((
            Pipeline {
                pos,
                decl: Vec::new(),
                cmds,
            },
            i,
        ))
    }
}

fn parse_number(n: &str) -> Option<Arg> {
    if let Ok(i) = n.parse::<i64>() {
        return Some(Arg::Int(i));
    }
    if let Some(hex) = n.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Arg::Int);
    }
    n.parse::<f64>().ok().map(Arg::Float)
}

/// A value during evaluation.
#[derive(Debug, Clone)]
enum Val<'a> {
    /// buildx's template input struct.
    Root,
    Json(Cow<'a, Value>),
    /// A missing map key: Go's zero value, printed `<no value>`.
    Missing,
}

impl Val<'_> {
    fn json(&self) -> Option<&Value> {
        match self {
            Val::Json(v) => Some(v),
            _ => None,
        }
    }
}

struct Exec<'a> {
    src: &'a str,
    root: &'a Value,
    vars: Vec<(String, Val<'a>)>,
    out: String,
}

impl<'a> Exec<'a> {
    fn fail(&self, pos: usize, at: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "template: :{}:{}: executing \"\" at <{at}>: {msg}",
            line_of(self.src, pos),
            col_of(self.src, pos)
        )
    }

    fn root_type(&self) -> &'static str {
        if self.root.get(MULTI_KEY).and_then(Value::as_bool) == Some(true) {
            "imagetools.tplInputs"
        } else {
            "imagetools.tplInput"
        }
    }

    /// `if` (and `with`, which also makes the condition's value the dot of its branch).
    fn branch(
        &mut self,
        cond: &Pipeline,
        then: &[Node],
        otherwise: &[Node],
        dot: &Val<'a>,
        rebind: bool,
    ) -> Result<()> {
        let marker = self.vars.len();
        let v = self.pipeline(cond, dot)?;
        if truthy(&v) {
            self.list(then, if rebind { &v } else { dot })?;
        } else {
            self.list(otherwise, dot)?;
        }
        self.vars.truncate(marker);
        Ok(())
    }

    fn list(&mut self, nodes: &[Node], dot: &Val<'a>) -> Result<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        let s = self.print(&v, p)?;
                        self.out.push_str(&s);
                    }
                }
                Node::If {
                    cond,
                    then,
                    otherwise,
                } => self.branch(cond, then, otherwise, dot, false)?,
                Node::With {
                    cond,
                    then,
                    otherwise,
                } => self.branch(cond, then, otherwise, dot, true)?,
                Node::Range {
                    over,
                    body,
                    otherwise,
                } => {
                    let marker = self.vars.len();
                    let v = self.pipeline_value(over, dot)?;
                    let is_struct = self.go_struct(&v).is_some();
                    // Items stay borrowed from the root where they can, so printing them can
                    // still tell where they came from.
                    let borrowed = match &v {
                        Val::Json(Cow::Borrowed(x)) => Some(*x),
                        _ => None,
                    };
                    let item = |x: &Value, from: Option<&'a Value>| -> Val<'a> {
                        match from {
                            Some(r) => Val::Json(Cow::Borrowed(r)),
                            None => Val::Json(Cow::Owned(x.clone())),
                        }
                    };
                    let items: Vec<(Value, Val<'a>)> = match v.json().filter(|_| !is_struct) {
                        Some(Value::Array(a)) => a
                            .iter()
                            .enumerate()
                            .map(|(i, x)| {
                                let from = borrowed.and_then(|b| b.as_array()).map(|b| &b[i]);
                                (Value::from(i), item(x, from))
                            })
                            .collect(),
                        Some(Value::Object(m)) => {
                            let mut keys: Vec<&String> = m.keys().collect();
                            keys.sort();
                            keys.into_iter()
                                .map(|k| {
                                    let from = borrowed.and_then(|b| b.get(k.as_str()));
                                    (Value::String(k.clone()), item(&m[k], from))
                                })
                                .collect()
                        }
                        Some(Value::Null) | None if !matches!(v, Val::Root) && !is_struct => {
                            Vec::new()
                        }
                        _ => {
                            return Err(self.fail(
                                over.cmds[0].pos,
                                &pipeline_text(over),
                                format!(
                                    "range can't iterate over {}",
                                    self.display(&v)
                                        .unwrap_or_else(|_| format!("a {}", self.type_of(&v)))
                                ),
                            ))
                        }
                    };
                    if items.is_empty() {
                        self.list(otherwise, dot)?;
                    }
                    for (k, item) in items {
                        match over.decl.as_slice() {
                            [one] => self.vars.push((one.clone(), item.clone())),
                            [key, value] => {
                                self.vars.push((key.clone(), Val::Json(Cow::Owned(k))));
                                self.vars.push((value.clone(), item.clone()));
                            }
                            _ => {}
                        }
                        self.list(body, &item)?;
                        self.vars.truncate(marker);
                    }
                    self.vars.truncate(marker);
                }
            }
        }
        Ok(())
    }

    /// Evaluates a pipeline and binds its declared variable, if any.
    fn pipeline(&mut self, p: &Pipeline, dot: &Val<'a>) -> Result<Val<'a>> {
        let v = self.pipeline_value(p, dot)?;
        if let [name] = p.decl.as_slice() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn pipeline_value(&mut self, p: &Pipeline, dot: &Val<'a>) -> Result<Val<'a>> {
        let mut prev: Option<Val<'a>> = None;
        for c in &p.cmds {
            prev = Some(self.command(c, dot, prev)?);
        }
        Ok(prev.unwrap_or(Val::Missing))
    }

    fn command(&mut self, c: &Command, dot: &Val<'a>, piped: Option<Val<'a>>) -> Result<Val<'a>> {
        let first = &c.args[0];
        if let Arg::Func { pos, name } = first {
            let mut args = Vec::new();
            for a in &c.args[1..] {
                args.push(self.arg(a, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(name, *pos, &command_text(c), args);
        }
        if c.args.len() > 1 || piped.is_some() {
            let at = command_text(c);
            return Err(self.fail(
                c.pos,
                &at,
                format!("can't give argument to non-function {}", arg_text(first)),
            ));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Val<'a>) -> Result<Val<'a>> {
        Ok(match a {
            Arg::Field { pos, path } => self.fields(dot.clone(), path, *pos, &arg_text(a))?,
            Arg::Var { pos, name, path } => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Val::Missing);
                self.fields(v, path, *pos, &arg_text(a))?
            }
            Arg::Func { pos, name } => self.call(name, *pos, name, Vec::new())?,
            Arg::Str(s) => Val::Json(Cow::Owned(Value::String(s.clone()))),
            Arg::Int(i) => Val::Json(Cow::Owned(Value::from(*i))),
            Arg::Float(f) => Val::Json(Cow::Owned(Value::from(*f))),
            Arg::Bool(b) => Val::Json(Cow::Owned(Value::Bool(*b))),
            Arg::Nil => Val::Json(Cow::Owned(Value::Null)),
            Arg::Sub(p, path) => {
                let v = self.pipeline_value(p, dot)?;
                self.fields(v, path, p.pos, &arg_text(a))?
            }
        })
    }

    fn fields(&self, mut v: Val<'a>, path: &[String], pos: usize, at: &str) -> Result<Val<'a>> {
        for name in path {
            if let Some((go_type, fields)) = self.go_struct(&v) {
                if !fields.contains(&name.as_str()) {
                    return Err(self.fail(
                        pos,
                        at,
                        format!("can't evaluate field {name} in type {go_type}"),
                    ));
                }
                // The attestation stubs hold `any` fields: an absent one is a nil interface.
                if go_type.starts_with("imagetools.")
                    && v.json().and_then(|x| x.get(name)).is_none()
                {
                    v = Val::Json(Cow::Owned(Value::Null));
                    continue;
                }
            }
            v = match v {
                Val::Root => {
                    if !FIELDS.contains(&name.as_str()) {
                        return Err(self.fail(
                            pos,
                            at,
                            format!("can't evaluate field {name} in type {}", self.root_type()),
                        ));
                    }
                    match self.root.get(name.as_str()) {
                        Some(x) => Val::Json(Cow::Borrowed(x)),
                        None => Val::Missing,
                    }
                }
                Val::Json(json) => {
                    match json.as_ref() {
                        Value::Object(_) => {}
                        Value::Null => {
                            return Err(self.fail(
                                pos,
                                at,
                                format!("nil pointer evaluating interface {{}}.{name}"),
                            ))
                        }
                        other => {
                            return Err(self.fail(
                                pos,
                                at,
                                format!("can't evaluate field {name} in type {}", go_type(other)),
                            ))
                        }
                    }
                    // Borrowed values stay borrowed from the root, so printing them can still
                    // tell where they came from.
                    let found: Option<Cow<'a, Value>> = match json {
                        Cow::Borrowed(x) => lookup(x, name).map(Cow::Borrowed),
                        Cow::Owned(x) => lookup(&x, name).cloned().map(Cow::Owned),
                    };
                    match found {
                        Some(f) if name == "Created" => match f.as_ref() {
                            Value::String(t) => Val::Json(Cow::Owned(Value::String(go_time(t)))),
                            _ => Val::Json(f),
                        },
                        Some(f) => Val::Json(f),
                        None => Val::Missing,
                    }
                }
                // Go's missing map entry is an invalid value, and fields of it are too.
                Val::Missing => Val::Missing,
            };
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, pos: usize, at: &str, args: Vec<Val<'a>>) -> Result<Val<'a>> {
        let owned = |v: Value| Ok(Val::Json(Cow::Owned(v)));
        let want = |n: usize| -> Result<()> {
            if args.len() != n {
                return Err(self.fail(
                    pos,
                    at,
                    format!(
                        "wrong number of args for {name}: want {n} got {}",
                        args.len()
                    ),
                ));
            }
            Ok(())
        };
        match name {
            "json" => {
                want(1)?;
                owned(Value::String(gojson::marshal_indent(
                    &self.as_json(&args[0]),
                )))
            }
            "len" => {
                want(1)?;
                let is_struct = self.go_struct(&args[0]).is_some();
                let n = match args[0].json().filter(|_| !is_struct) {
                    Some(Value::String(s)) => s.len(),
                    Some(Value::Array(a)) => a.len(),
                    Some(Value::Object(m)) => m.len(),
                    _ => {
                        return Err(self.fail(
                            pos,
                            at,
                            format!("error calling len: len of type {}", self.type_of(&args[0])),
                        ))
                    }
                };
                owned(Value::from(n))
            }
            "index" => {
                if args.is_empty() {
                    want(1)?;
                }
                let mut cur = args[0].clone();
                for key in &args[1..] {
                    let is_struct = self.go_struct(&cur).is_some();
                    // Stay borrowed from the root where possible (see `attestation_display`).
                    let base: Option<&'a Value> = match &cur {
                        Val::Json(Cow::Borrowed(b)) => Some(*b),
                        _ => None,
                    };
                    let found = |v: &Value, borrowed: Option<&'a Value>| match borrowed {
                        Some(r) => Val::Json(Cow::Borrowed(r)),
                        None => Val::Json(Cow::Owned(v.clone())),
                    };
                    cur = match (cur.json().filter(|_| !is_struct), key.json()) {
                        (Some(Value::Object(m)), Some(Value::String(k))) => {
                            m.get(k).map_or(Val::Missing, |v| {
                                found(v, base.and_then(|b| b.get(k.as_str())))
                            })
                        }
                        (Some(Value::Array(a)), Some(Value::Number(n))) => {
                            let i = n.as_u64().map(|i| i as usize);
                            match i.and_then(|i| a.get(i)) {
                                Some(v) => {
                                    found(v, base.and_then(|b| b.get(i.unwrap_or(usize::MAX))))
                                }
                                None => {
                                    return Err(self.fail(
                                        pos,
                                        at,
                                        format!("error calling index: index out of range: {n}"),
                                    ))
                                }
                            }
                        }
                        (Some(Value::Null), _) | (None, _)
                            if !matches!(cur, Val::Root) && !is_struct =>
                        {
                            return Err(self.fail(
                                pos,
                                at,
                                "error calling index: index of untyped nil",
                            ))
                        }
                        _ => {
                            return Err(self.fail(
                                pos,
                                at,
                                format!(
                                    "error calling index: can't index item of type {}",
                                    self.type_of(&cur)
                                ),
                            ))
                        }
                    };
                }
                Ok(cur)
            }
            "printf" => {
                if args.is_empty() {
                    want(1)?;
                }
                let Some(Value::String(f)) = args[0].json() else {
                    return Err(self.fail(pos, at, "wrong type for value; expected string"));
                };
                let f = f.clone();
                owned(Value::String(self.sprintf(&f, &args[1..], pos, at)?))
            }
            "print" | "println" => {
                let mut s = String::new();
                let mut prev_string = true;
                for (i, a) in args.iter().enumerate() {
                    let is_string = matches!(a.json(), Some(Value::String(_)));
                    if i > 0 && (name == "println" || (!is_string && !prev_string)) {
                        s.push(' ');
                    }
                    s.push_str(&self.display_at(a, pos, at)?);
                    prev_string = is_string;
                }
                if name == "println" {
                    s.push('\n');
                }
                owned(Value::String(s))
            }
            "not" => {
                want(1)?;
                owned(Value::Bool(!truthy(&args[0])))
            }
            "and" | "or" => {
                if args.is_empty() {
                    want(1)?;
                }
                let stop = |v: &Val| if name == "and" { !truthy(v) } else { truthy(v) };
                let chosen = args
                    .iter()
                    .find(|v| stop(v))
                    .unwrap_or(args.last().expect("checked"));
                Ok(chosen.clone())
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() < 2 {
                    want(2)?;
                }
                let a = &args[0];
                let ordering = |b: &Val| -> Result<std::cmp::Ordering> {
                    match (a.json(), b.json()) {
                        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
                        (Some(Value::Number(x)), Some(Value::Number(y))) => Ok(x
                            .as_f64()
                            .partial_cmp(&y.as_f64())
                            .unwrap_or(std::cmp::Ordering::Equal)),
                        (Some(Value::Bool(x)), Some(Value::Bool(y)))
                            if name == "eq" || name == "ne" =>
                        {
                            Ok(x.cmp(y))
                        }
                        _ => Err(self.fail(
                            pos,
                            at,
                            format!(
                                "error calling {name}: incompatible types for comparison: {} and {}",
                                self.type_of(a),
                                self.type_of(b)
                            ),
                        )),
                    }
                };
                let result = match name {
                    "eq" => {
                        let mut any = false;
                        for b in &args[1..] {
                            any |= ordering(b)?.is_eq();
                        }
                        any
                    }
                    "ne" => {
                        want(2)?;
                        !ordering(&args[1])?.is_eq()
                    }
                    "lt" => {
                        want(2)?;
                        ordering(&args[1])?.is_lt()
                    }
                    "le" => {
                        want(2)?;
                        ordering(&args[1])?.is_le()
                    }
                    "gt" => {
                        want(2)?;
                        ordering(&args[1])?.is_gt()
                    }
                    _ => {
                        want(2)?;
                        ordering(&args[1])?.is_ge()
                    }
                };
                owned(Value::Bool(result))
            }
            _ => Err(anyhow!("template: :1: function \"{name}\" not defined")),
        }
    }

    /// What `json` marshals: the root as buildx's input struct (`name`, `manifest`, `image`,
    /// each omitted when empty; its SBOM and Provenance are methods, not fields).
    fn as_json(&self, v: &Val) -> Value {
        match v {
            Val::Root => {
                let mut m = serde_json::Map::new();
                for (go, key) in [
                    ("Name", "name"),
                    ("Manifest", "manifest"),
                    ("Image", "image"),
                ] {
                    match self.root.get(go) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) if s.is_empty() => {}
                        Some(Value::Object(o)) if o.is_empty() && go == "Image" => {}
                        Some(x) => {
                            m.insert(key.into(), x.clone());
                        }
                    }
                }
                Value::Object(m)
            }
            Val::Json(v) => v.clone().into_owned(),
            Val::Missing => Value::Null,
        }
    }

    /// The Go struct behind one of the root's values, where buildx holds a typed struct: its
    /// type as Go names it in errors and its exported fields.
    fn go_struct(&self, v: &Val) -> Option<(&'static str, &'static [&'static str])> {
        let Val::Json(Cow::Borrowed(x)) = v else {
            return None;
        };
        let is = |key: &str| self.root.get(key).is_some_and(|r| std::ptr::eq(r, *x));
        let multi = self.root.get(MULTI_KEY).and_then(Value::as_bool) == Some(true);
        if is("Manifest") {
            // An index is an anonymous struct, an image manifest a Descriptor; both in `any`.
            let fields: &'static [&'static str] = if x.get("manifests").is_some() {
                &[
                    "SchemaVersion",
                    "MediaType",
                    "Digest",
                    "Size",
                    "Manifests",
                    "Annotations",
                ]
            } else {
                DESCRIPTOR_FIELDS
            };
            return Some(("interface {}", fields));
        }
        let in_index = self
            .root
            .get("Manifest")
            .and_then(|m| m.get("manifests"))
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|d| std::ptr::eq(d, *x)));
        if in_index {
            return Some(("v1.Descriptor", DESCRIPTOR_FIELDS));
        }
        if is("Provenance") && !multi {
            return Some(("imagetools.provenanceStub", &["SLSA"]));
        }
        if is("SBOM") && !multi {
            return Some(("imagetools.sbomStub", &["SPDX", "AdditionalSPDXs"]));
        }
        if is("Image") && !multi {
            return Some((
                "*v1.Image",
                &[
                    "Created",
                    "Author",
                    "Platform",
                    "Architecture",
                    "OS",
                    "OSVersion",
                    "OSFeatures",
                    "Variant",
                    "Config",
                    "RootFS",
                    "History",
                ],
            ));
        }
        None
    }

    fn type_of(&self, v: &Val) -> String {
        if let Some((go_type, _)) = self.go_struct(v) {
            // Functions see through the pointer: `len of type v1.Image`.
            if go_type != "interface {}" {
                return go_type.trim_start_matches('*').into();
            }
        }
        match v {
            Val::Root => self.root_type().into(),
            Val::Json(v) => go_type(v).into(),
            Val::Missing => "interface {}".into(),
        }
    }

    fn print(&self, v: &Val, p: &Pipeline) -> Result<String> {
        self.display_at(v, p.pos, &pipeline_text(p))
    }

    fn display_at(&self, v: &Val, pos: usize, at: &str) -> Result<String> {
        self.display(v).map_err(|e| self.fail(pos, at, e))
    }

    /// `%v` of a value: scalars and lists of scalars as Go prints them; structures need `json`.
    fn display(&self, v: &Val) -> Result<String> {
        match v {
            Val::Missing => Ok("<no value>".into()),
            Val::Root => bail!("kiln prints structures only as JSON: use {{{{json .}}}}"),
            Val::Json(Cow::Borrowed(x)) => match self.attestation_display(x) {
                Some(s) => Ok(s),
                None => display_json(x),
            },
            Val::Json(v) => display_json(v),
        }
    }

    /// `%v` of a value under `Provenance` or `SBOM`: buildx holds those as decoded JSON (`any`)
    /// inside its stub structs, which Go prints faithfully as `map[k:v]`, `[a b]` and `{...}`.
    fn attestation_display(&self, x: &Value) -> Option<String> {
        let multi = self.root.get(MULTI_KEY).and_then(Value::as_bool) == Some(true);
        for key in ["Provenance", "SBOM"] {
            let Some(top) = self.root.get(key) else {
                continue;
            };
            let stub = |v: &Value| match key {
                "Provenance" => format!("{{{}}}", v.get("SLSA").map_or("<nil>".into(), go_v)),
                _ => format!(
                    "{{{} {}}}",
                    v.get("SPDX").map_or("<nil>".into(), go_v),
                    v.get("AdditionalSPDXs").map_or("[]".into(), go_v)
                ),
            };
            if std::ptr::eq(top, x) {
                return Some(match (multi, top) {
                    (true, Value::Object(m)) => {
                        let mut keys: Vec<&String> = m.keys().collect();
                        keys.sort();
                        let parts: Vec<String> = keys
                            .iter()
                            .map(|k| format!("{k}:{}", stub(&m[*k])))
                            .collect();
                        format!("map[{}]", parts.join(" "))
                    }
                    _ => stub(top),
                });
            }
            if multi {
                if let Value::Object(m) = top {
                    if m.values().any(|v| std::ptr::eq(v, x)) {
                        return Some(stub(x));
                    }
                }
            }
            if contains(top, x) {
                return Some(go_v(x));
            }
        }
        None
    }

    /// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %x %%`, with flags and
    /// width.
    fn sprintf(&self, f: &str, args: &[Val], pos: usize, at: &str) -> Result<String> {
        let mut out = String::new();
        let mut next = 0;
        let mut chars = f.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut flags = String::new();
            while let Some(&f) = chars.peek() {
                if "-+# 0".contains(f) {
                    flags.push(f);
                    chars.next();
                } else {
                    break;
                }
            }
            let mut width = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    width.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(verb) = chars.next() else {
                out.push_str("%!(NOVERB)");
                break;
            };
            if verb == '%' {
                out.push('%');
                continue;
            }
            let Some(arg) = args.get(next) else {
                let _ = write!(out, "%!{verb}(MISSING)");
                continue;
            };
            next += 1;
            let text = match (verb, arg.json()) {
                ('d', Some(Value::Number(n))) if n.is_i64() || n.is_u64() => n.to_string(),
                ('q', Some(Value::String(s))) => go_quote(s),
                ('x', Some(Value::String(s))) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                ('x', Some(Value::Number(n))) if n.is_u64() => {
                    format!("{:x}", n.as_u64().unwrap_or(0))
                }
                ('t', Some(Value::Bool(b))) => b.to_string(),
                ('s' | 'v', _) => self.display_at(arg, pos, at)?,
                (verb, _) => format!(
                    "%!{verb}({}={})",
                    self.type_of(arg),
                    self.display_at(arg, pos, at)?
                ),
            };
            let w: usize = width.parse().unwrap_or(0);
            let pad = w.saturating_sub(text.chars().count());
            if flags.contains('-') {
                out.push_str(&text);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&text);
            }
        }
        if next < args.len() {
            out.push_str("%!(EXTRA ");
            let extra: Vec<String> = args[next..]
                .iter()
                .map(|a| {
                    format!(
                        "{}={}",
                        self.type_of(a),
                        self.display(a).unwrap_or_default()
                    )
                })
                .collect();
            out.push_str(&extra.join(", "));
            out.push(')');
        }
        Ok(out)
    }
}

/// Whether `x` is `tree` or lies inside it (by address).
fn contains(tree: &Value, x: &Value) -> bool {
    std::ptr::eq(tree, x)
        || match tree {
            Value::Array(a) => a.iter().any(|v| contains(v, x)),
            Value::Object(m) => m.values().any(|v| contains(v, x)),
            _ => false,
        }
}

/// Go's `%v` of a value decoded from JSON into `any`: maps sorted, numbers as float64.
fn go_v(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => go_float(n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_v(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// `%v` of a float64: `%g` with the shortest digits, in exponent form when the exponent is
/// below -4 or at least 6 (`1.234567e+06`).
fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn display_json(v: &Value) -> Result<String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => gojson::marshal_indent(&Value::Number(n.clone())),
        Value::Bool(b) => b.to_string(),
        // A nil interface prints as a missing value in templates.
        Value::Null => "<no value>".into(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let parts: Result<Vec<String>> = items.iter().map(display_json).collect();
            format!("[{}]", parts?.join(" "))
        }
        _ => bail!("kiln prints structures only as JSON: use {{{{json ...}}}}"),
    })
}

/// An image's `Created` as Go prints a `time.Time` (`2006-01-02 15:04:05.999999999 -0700 MST`);
/// registries store it in RFC 3339, which is printed as it is when it does not parse.
fn go_time(rfc3339: &str) -> String {
    let Some((date, rest)) = rfc3339.split_once('T') else {
        return rfc3339.into();
    };
    let (clock, zone) = match rest.strip_suffix('Z') {
        Some(c) => (c, "+0000 UTC".to_string()),
        None => match rest.rfind(['+', '-']) {
            Some(i) if rest[i..].len() == 6 => {
                let z = &rest[i..];
                let offset = format!("{}{}", &z[..3], &z[4..]);
                (&rest[..i], format!("{offset} {offset}"))
            }
            _ => return rfc3339.into(),
        },
    };
    let clock = match clock.split_once('.') {
        Some((hms, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                hms.to_string()
            } else {
                format!("{hms}.{frac}")
            }
        }
        None => clock.to_string(),
    };
    format!("{date} {clock} {zone}")
}

/// Go's `%q` of a string (`strconv.Quote`).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn truthy(v: &Val) -> bool {
    match v {
        Val::Root => true,
        Val::Missing => false,
        Val::Json(v) => match v.as_ref() {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(m) => !m.is_empty(),
        },
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn arg_text(a: &Arg) -> String {
    let chain = |path: &[String]| path.iter().map(|p| format!(".{p}")).collect::<String>();
    match a {
        Arg::Field { path, .. } if path.is_empty() => ".".into(),
        Arg::Field { path, .. } => chain(path),
        Arg::Var { name, path, .. } => format!("{name}{}", chain(path)),
        Arg::Func { name, .. } => name.clone(),
        Arg::Str(s) => go_quote(s),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Sub(p, path) => format!("({}){}", pipeline_text(p), chain(path)),
    }
}

fn command_text(c: &Command) -> String {
    c.args.iter().map(arg_text).collect::<Vec<_>>().join(" ")
}

fn pipeline_text(p: &Pipeline) -> String {
    p.cmds
        .iter()
        .map(command_text)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Follows Go field names into JSON keys (`MediaType` is `mediaType`, `OSVersion` is
/// `os.version`); map keys are taken as they are.
fn lookup<'a>(root: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Object(map) = root else {
        return None;
    };
    map.get(name)
        .or_else(|| map.get(&json_name(name)))
        .or_else(|| {
            let wanted = name.to_ascii_lowercase();
            map.iter()
                .find(|(k, _)| k.to_ascii_lowercase().replace(['.', '_'], "") == wanted)
                .map(|(_, v)| v)
        })
}

fn json_name(go: &str) -> String {
    match go {
        "URLs" => "urls".into(),
        "OS" => "os".into(),
        "RootFS" => "rootfs".into(),
        _ => {
            let mut c = go.chars();
            match c.next() {
                Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
                None => String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, root: &Value) -> String {
        Template::parse(t).unwrap().render(root).unwrap()
    }

    fn multi() -> Value {
        json!({
            MULTI_KEY: true,
            "Name": "r:1",
            "Manifest": {"schemaVersion": 2, "mediaType": "m", "digest": "d", "size": 7,
                "manifests": [{"digest": "a", "platform": {"os": "linux"}}, {"digest": "b"}]},
            "Image": {"linux/amd64": {"os": "linux"}, "linux/arm64": {"os": "linux"}},
            "Provenance": {},
            "SBOM": {},
        })
    }

    #[test]
    fn parses_text_fields_and_json() {
        let t = Template::parse("name={{.Name}} {{ json .Manifest }}\n").unwrap();
        let root = json!({"Name": "n", "Manifest": {"mediaType": "m", "digest": "d"}});
        assert_eq!(
            t.render(&root).unwrap(),
            "name=n {\n  \"mediaType\": \"m\",\n  \"digest\": \"d\"\n}\n"
        );
        assert!(t.uses("Manifest"));
        assert!(!t.uses("Image"));
        assert!(Template::parse("{{json .}}").unwrap().uses("Image"));
    }

    #[test]
    fn go_field_names_map_to_json_keys() {
        let t = Template::parse(
            "{{.Image.Config.WorkingDir}} {{.Manifest.MediaType}} {{.Image.OSVersion}}",
        )
        .unwrap();
        let root = json!({"Image": {"config": {"WorkingDir": "/w"}, "os.version": "10"}, "Manifest": {"mediaType": "m"}});
        assert_eq!(t.render(&root).unwrap(), "/w m 10");
    }

    #[test]
    fn control_structures_functions_and_pipelines() {
        let root = multi();
        assert_eq!(
            render("{{range .Manifest.Manifests}}{{.Digest}} {{end}}", &root),
            "a b "
        );
        assert_eq!(
            render(
                "{{range $i, $m := .Manifest.Manifests}}{{$i}}={{$m.Digest}};{{else}}none{{end}}",
                &root
            ),
            "0=a;1=b;"
        );
        assert_eq!(render("{{if .Name}}yes{{else}}no{{end}}", &root), "yes");
        assert_eq!(
            render(
                "{{if eq .Name \"x\"}}x{{else if eq .Name \"r:1\"}}r{{else}}-{{end}}",
                &root
            ),
            "r"
        );
        assert_eq!(render("{{len .Image}}", &root), "2");
        assert_eq!(
            render("{{printf \"%s|%5d|%-3s|\" .Name 42 \"a\"}}", &root),
            "r:1|   42|a  |"
        );
        assert_eq!(render("{{.Name | printf \"%q\"}}", &root), "\"r:1\"");
        assert_eq!(
            render("{{/* a comment */}}x{{\"lit\"}} {{`raw`}}", &root),
            "xlit raw"
        );
        assert_eq!(render("a  {{- .Name -}}  b", &root), "ar:1b");
        assert_eq!(
            render(
                "{{with .Manifest}}{{.MediaType}}{{end}}{{with .SBOM}}x{{else}}-{{end}}",
                &root
            ),
            "m-"
        );
        assert_eq!(
            render("{{json (index .Image \"linux/arm64\")}}", &root),
            "{\n  \"os\": \"linux\"\n}"
        );
        assert_eq!(render("{{$n := .Name}}{{$n}} {{$.Name}}", &root), "r:1 r:1");
        assert_eq!(
            render("{{range $k, $v := .Image}}{{$k}} {{end}}", &root),
            "linux/amd64 linux/arm64 "
        );
        assert_eq!(
            render("{{not (and .Name 0)}} {{or 0 \"\" .Name}}", &root),
            "true r:1"
        );
        assert_eq!(
            render("{{print 1 2 \"a\" 3}}|{{println \"a\" 1}}", &root),
            "1 2a3|a 1\n"
        );
        assert_eq!(render("{{.Image.Nope}}", &root), "<no value>");
    }

    #[test]
    fn json_of_the_root_is_buildx_input_struct() {
        let out = render("{{json .}}", &multi());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["name", "manifest", "image"]
        );
    }

    #[test]
    fn errors_are_worded_as_go_words_them() {
        let root = multi();
        let err = |t: &str| {
            Template::parse(t)
                .and_then(|t| t.render(&root))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("{{.Name.Foo}}"),
            "template: :1:7: executing \"\" at <.Name.Foo>: can't evaluate field Foo in type string"
        );
        assert_eq!(
            err("{{nope .Name}}"),
            "template: :1: function \"nope\" not defined"
        );
        assert_eq!(
            err("{{.Nope}}"),
            "template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope \
             (the fields are Name, Manifest, Image, Provenance, SBOM)"
        );
        assert!(err("{{.Image}}").contains("json"), "{}", err("{{.Image}}"));
        assert!(err("{{if .Name}}").contains("unexpected EOF"));
        assert!(err("{{.Name").contains("unclosed action"));
        assert!(err("{{$x}}").contains("undefined variable"));
    }

    #[test]
    fn decoded_json_prints_as_go_prints_any() {
        assert_eq!(
            go_v(&json!({"b": [1, 2.5, null], "a": {"x": true}, "n": 1234567})),
            "map[a:map[x:true] b:[1 2.5 <nil>] n:1.234567e+06]"
        );
    }

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(
            go_time("2026-11-23T20:29:16.01785471Z"),
            "2026-11-23 20:29:16.01785471 +0000 UTC"
        );
        assert_eq!(
            go_time("2024-01-02T03:04:05Z"),
            "2024-01-02 03:04:05 +0000 UTC"
        );
        assert_eq!(go_time("garbage"), "garbage");
    }

    #[test]
    fn manifest_templates_are_the_summary() {
        assert!(Template::parse("{{.Manifest}}")
            .unwrap()
            .is_manifest_summary());
        assert!(Template::parse("{{ .Manifest.Digest }}")
            .unwrap()
            .is_manifest_summary());
        assert!(!Template::parse("{{json .Manifest}}")
            .unwrap()
            .is_manifest_summary());
        assert!(!Template::parse("x{{.Manifest}}")
            .unwrap()
            .is_manifest_summary());
    }
}
