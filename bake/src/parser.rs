//! Bake's HCL semantics over HCL and JSON files: `variable`, `function`, `target` and `group`
//! blocks and global attributes, resolved lazily in dependency order (a variable's default can
//! use another variable or a target's attribute), with environment overrides of variables, matrix
//! expansion and block-name templating, as buildx's `hclparser` does.
//!
//! It turns files into a [`Config`]; inheritance, overrides and the `default` group are applied
//! later (see `resolve`).

use std::collections::{BTreeMap, HashMap, HashSet};

use hcl::edit::Span as _;
use hcl::Value;

use crate::error::{Diag, Span};
use crate::eval::{to_str, type_name, Env, Evaluator};
use crate::expr::{json_expr, Expr, Lowering};
use crate::target::{Config, Group, Target};
use crate::types::{convert_primitive, to_json_text, value_from_csv, value_from_json, Type};

/// A body of one file or of one block.
#[derive(Debug, Clone, Default)]
pub struct Body {
    pub attrs: Vec<Attr>,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub struct Attr {
    pub name: String,
    pub expr: Expr,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub kind: String,
    pub labels: Vec<(String, Span)>,
    pub body: Body,
    pub span: Span,
}

impl Body {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// Parses HCL native syntax.
pub fn parse_hcl(text: &str, file: u32) -> Result<Body, Diag> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| {
        let off = e.location().offset();
        Diag::new(
            "Invalid HCL",
            e.message().to_string(),
            Some(Span {
                file,
                start: off,
                end: off + 1,
            }),
        )
    })?;
    let low = Lowering { file };
    lower_body(&body, &low)
}

fn span_of(r: Option<std::ops::Range<usize>>, file: u32) -> Span {
    let r = r.unwrap_or(0..0);
    Span {
        file,
        start: r.start,
        end: r.end,
    }
}

fn lower_body(body: &hcl::edit::structure::Body, low: &Lowering) -> Result<Body, Diag> {
    let mut out = Body::default();
    for s in body.iter() {
        match s {
            hcl::edit::structure::Structure::Attribute(a) => {
                let span = span_of(a.key.span(), low.file);
                if out.attr(a.key.value()).is_some() {
                    return Err(Diag::new(
                        "Attribute redefined",
                        format!("The argument {:?} was already set.", a.key.value().as_str()),
                        Some(span),
                    ));
                }
                out.attrs.push(Attr {
                    name: a.key.value().to_string(),
                    expr: low.expr(&a.value)?,
                    span,
                });
            }
            hcl::edit::structure::Structure::Block(b) => {
                let labels = b
                    .labels
                    .iter()
                    .map(|l| {
                        let (s, r) = match l {
                            hcl::edit::structure::BlockLabel::Ident(i) => {
                                (i.value().to_string(), i.span())
                            }
                            hcl::edit::structure::BlockLabel::String(s) => {
                                (s.value().clone(), s.span())
                            }
                        };
                        (s, span_of(r, low.file))
                    })
                    .collect();
                out.blocks.push(Block {
                    kind: b.ident.value().to_string(),
                    labels,
                    body: lower_body(&b.body, low)?,
                    span: span_of(b.ident.span(), low.file),
                });
            }
        }
    }
    Ok(out)
}

const BLOCK_TYPES: [&str; 4] = ["variable", "function", "target", "group"];

/// Parses HCL's JSON syntax: the known block types are objects of labelled blocks; anything
/// else at the top is a global attribute.
pub fn parse_json(text: &str, file: u32) -> Result<Body, Diag> {
    let whole = Span {
        file,
        start: 0,
        end: 0,
    };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let off = line_offset(text, e.line()) + e.column().saturating_sub(1);
        Diag::new(
            "Invalid JSON",
            e.to_string(),
            Some(Span {
                file,
                start: off,
                end: off + 1,
            }),
        )
    })?;
    let serde_json::Value::Object(top) = v else {
        return Err(Diag::new(
            "Root value must be object",
            "The root value in a JSON-based configuration must be a JSON object.",
            Some(whole),
        ));
    };
    let mut body = Body::default();
    for (k, v) in &top {
        if BLOCK_TYPES.contains(&k.as_str()) {
            let items: Vec<&serde_json::Value> = match v {
                serde_json::Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for item in items {
                let serde_json::Value::Object(labelled) = item else {
                    return Err(Diag::new(
                        "Incorrect JSON value type",
                        format!(
                            "A JSON object is required here, to define the labels of {k:?} blocks."
                        ),
                        Some(whole),
                    ));
                };
                for (label, inner) in labelled {
                    let bodies: Vec<&serde_json::Value> = match inner {
                        serde_json::Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for b in bodies {
                        body.blocks.push(Block {
                            kind: k.clone(),
                            labels: vec![(label.clone(), whole)],
                            body: json_block_body(k, b, whole)?,
                            span: whole,
                        });
                    }
                }
            }
        } else {
            body.attrs.push(Attr {
                name: k.clone(),
                expr: json_expr(v, whole)?,
                span: whole,
            });
        }
    }
    Ok(body)
}

fn line_offset(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

fn json_block_body(kind: &str, v: &serde_json::Value, span: Span) -> Result<Body, Diag> {
    let serde_json::Value::Object(m) = v else {
        return Err(Diag::new(
            "Incorrect JSON value type",
            "A JSON object is required here, setting the arguments for this block.",
            Some(span),
        ));
    };
    let mut body = Body::default();
    for (k, v) in m {
        if kind == "variable" && k == "validation" {
            let items: Vec<&serde_json::Value> = match v {
                serde_json::Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for item in items {
                body.blocks.push(Block {
                    kind: "validation".into(),
                    labels: vec![],
                    body: json_block_body("validation", item, span)?,
                    span,
                });
            }
            continue;
        }
        let expr = match (kind, k.as_str(), v) {
            // A type is written as a string holding the type expression.
            ("variable", "type", serde_json::Value::String(s)) => {
                let e = hcl::edit::parser::parse_expr(s).map_err(|e| {
                    Diag::new(
                        "Invalid type specification",
                        e.message().to_string(),
                        Some(span),
                    )
                })?;
                let mut e = Lowering { file: span.file }.expr(&e)?;
                e.span = span;
                e
            }
            _ => json_expr(v, span)?,
        };
        body.attrs.push(Attr {
            name: k.clone(),
            expr,
            span,
        });
    }
    Ok(body)
}

/// A variable as `--list variables` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VariableInfo {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub typ: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What parsing produced besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct ParseMeta {
    pub variables: Vec<VariableInfo>,
}

/// Inputs to evaluation beyond the files.
pub struct EvalOptions<'a> {
    /// Looks up an environment variable (overrides of `variable` blocks).
    pub lookup_env: &'a dyn Fn(&str) -> Option<String>,
    /// Built-in variables (`BAKE_CMD_CONTEXT`, `BAKE_LOCAL_PLATFORM`): strings, not overridable.
    pub builtin_vars: BTreeMap<String, String>,
}

/// One instance of a `target`/`group` block: matrix expansion gives several.
struct Instance<'b> {
    block: &'b Block,
    name: String,
    locals: Vec<(String, Value)>,
}

struct Parser<'b, 'o> {
    opts: &'o EvalOptions<'o>,
    builtins: hcl::eval::Context<'static>,
    vars: HashMap<String, &'b Block>,
    attrs: HashMap<String, &'b Attr>,
    funcs: HashMap<String, &'b Block>,
    values: HashMap<String, Value>,
    constraints: HashMap<String, Type>,
    in_progress: HashSet<String>,
    /// `(kind, name)` to the instances that define it.
    instances: HashMap<(String, String), Vec<usize>>,
    all_instances: Vec<Instance<'b>>,
    ref_progress: HashSet<(usize, String)>,
    call_stack: Vec<String>,
}

fn unknown_variable(name: &str, span: Span) -> Diag {
    Diag::new(
        "Unknown variable",
        format!("There is no variable named {name:?}."),
        Some(span),
    )
}

impl Env for Parser<'_, '_> {
    fn lookup(&mut self, name: &str, path: &[&str], span: Span) -> Result<(Value, usize), Diag> {
        if name == "target" || name == "group" {
            let Some(block_name) = path.first() else {
                return Err(Diag::new(
                    "Invalid expression",
                    format!("cannot access {name} as a variable"),
                    Some(span),
                ));
            };
            let key = (name.to_string(), block_name.to_string());
            let Some(ids) = self.instances.get(&key).cloned() else {
                return Err(Diag::new(
                    "Unsupported attribute",
                    format!("This object does not have an attribute named {block_name:?}."),
                    Some(span),
                ));
            };
            // The last definition of a name wins for references, as it does when merging.
            let id = *ids.last().expect("instances are never empty");
            if let Some(attr) = path.get(1) {
                return Ok((self.instance_attr(id, attr, span)?, 2));
            }
            let mut obj = hcl::Map::new();
            let names: Vec<String> = self.all_instances[id]
                .block
                .body
                .attrs
                .iter()
                .map(|a| a.name.clone())
                .filter(|n| n != "matrix" && n != "name")
                .collect();
            for a in names {
                let v = self.instance_attr(id, &a, span)?;
                obj.insert(a, v);
            }
            obj.insert("name".into(), Value::String(block_name.to_string()));
            return Ok((Value::Object(obj), 1));
        }
        Ok((self.variable(name, span)?, 0))
    }

    fn call(&mut self, name: &str, args: Vec<Value>, span: Span) -> Result<Value, Diag> {
        use hcl::eval::Evaluate as _;
        let mut call = hcl::expr::FuncCall::new(name);
        call.args = args.iter().cloned().map(hcl::Expression::from).collect();
        match hcl::Expression::from(call).evaluate(&self.builtins) {
            Ok(v) => Ok(v),
            Err(e) => match e.kind() {
                hcl::eval::ErrorKind::UndefinedFunc(_) => self.call_user(name, args, span),
                hcl::eval::ErrorKind::FuncCall(_, msg) => Err(Diag::new(
                    "Error in function call",
                    format!("Call to function {name:?} failed: {msg}."),
                    Some(span),
                )),
                _ => Err(Diag::new(
                    "Error in function call",
                    e.to_string(),
                    Some(span),
                )),
            },
        }
    }
}

impl<'b, 'o> Parser<'b, 'o> {
    fn eval(&mut self, e: &Expr, locals: Vec<(String, Value)>) -> Result<Value, Diag> {
        Evaluator::new(self, locals).eval(e)
    }

    fn call_user(&mut self, name: &str, args: Vec<Value>, span: Span) -> Result<Value, Diag> {
        let Some(f) = self.funcs.get(name).copied() else {
            return Err(Diag::new(
                "Call to unknown function",
                format!("There is no function named {name:?}."),
                Some(span),
            ));
        };
        let (params, variadic, result) = function_parts(f, name)?;
        if self.call_stack.iter().any(|n| n == name) {
            return Err(Diag::new(
                "Invalid function",
                format!("function cycle not allowed for {name}"),
                Some(span),
            ));
        }
        if args.len() < params.len() {
            return Err(Diag::new(
                "Not enough function arguments",
                format!(
                    "Function {name:?} expects {} argument(s). Missing value for {:?}.",
                    params.len(),
                    params[args.len()]
                ),
                Some(span),
            ));
        }
        if variadic.is_none() && args.len() > params.len() {
            return Err(Diag::new(
                "Too many function arguments",
                format!(
                    "Function {name:?} expects only {} argument(s).",
                    params.len()
                ),
                Some(span),
            ));
        }
        let mut locals: Vec<(String, Value)> =
            params.iter().cloned().zip(args.iter().cloned()).collect();
        if let Some(v) = variadic {
            locals.push((v, Value::Array(args[params.len()..].to_vec())));
        }
        self.call_stack.push(name.to_string());
        let r = self.eval(result, locals);
        self.call_stack.pop();
        r
    }

    fn variable(&mut self, name: &str, span: Span) -> Result<Value, Diag> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.opts.builtin_vars.get(name) {
            return Ok(Value::String(v.clone()));
        }
        if self.in_progress.contains(name) {
            return Err(Diag::new(
                "Invalid expression",
                format!("variable cycle not allowed for {name}"),
                Some(span),
            ));
        }
        self.in_progress.insert(name.to_string());
        let r = self.resolve_variable(name, span);
        self.in_progress.remove(name);
        let v = r?;
        self.values.insert(name.to_string(), v.clone());
        Ok(v)
    }

    fn env_override(&self, name: &str, favor_json: bool) -> Option<(String, bool)> {
        let plain = (self.opts.lookup_env)(name);
        if plain.is_none() || favor_json {
            let json_name = format!("{name}_JSON");
            if !self.vars.contains_key(&json_name)
                && !self.opts.builtin_vars.contains_key(&json_name)
            {
                if let Some(j) = (self.opts.lookup_env)(&json_name) {
                    return Some((j, true));
                }
            }
        }
        plain.map(|p| (p, false))
    }

    fn resolve_variable(&mut self, name: &str, span: Span) -> Result<Value, Diag> {
        if let Some(attr) = self.attrs.get(name).copied() {
            return self.eval(&attr.expr, vec![]);
        }
        let Some(block) = self.vars.get(name).copied() else {
            return Err(unknown_variable(name, span));
        };
        let typ = match block.body.attr("type") {
            Some(t) => Type::parse(&t.expr)
                .map_err(|d| Diag::new("Invalid type specification", d, Some(t.expr.span)))?,
            None => None,
        };
        if let Some(t) = &typ {
            self.constraints.insert(name.to_string(), t.clone());
        }
        let default = block.body.attr("default");
        let type_specified = typ.is_some();
        if default.is_none() && self.env_override(name, false).is_none() && !type_specified {
            return Ok(Value::String(String::new()));
        }
        let mut value = Value::Null;
        if let Some(d) = default {
            let v = self.eval(&d.expr, vec![])?;
            value = match &typ {
                Some(t) => t.convert(&v).map_err(|e| {
                    Diag::new(
                        "Invalid value",
                        format!(
                            "invalid type {} for variable {name} default value: {e}",
                            t.friendly_name()
                        ),
                        Some(d.expr.span),
                    )
                })?,
                None => v,
            };
        }
        let Some((env, json)) = self.env_override(name, type_specified) else {
            return Ok(value);
        };
        let fail = |msg: String| Diag::new("Invalid value", msg, Some(block.span));
        match &typ {
            Some(t) if json => value_from_json(&env, t)
                .map_err(|e| fail(format!("failed to convert variable {name} from JSON: {e}"))),
            Some(t @ (Type::List(_) | Type::Set(_) | Type::Tuple(_) | Type::Map(_))) => {
                value_from_csv(name, &env, t)
                    .map_err(|e| fail(format!("failed to convert variable {name} from CSV: {e}")))
            }
            Some(t) if t.is_primitive() => convert_primitive(name, &env, t).map_err(fail),
            Some(t) => Err(fail(format!(
                "unsupported type {} for variable {name}",
                match t {
                    Type::Any => "dynamic".to_string(),
                    t => t.friendly_name(),
                }
            ))),
            None if default.is_none() || value.is_null() => Ok(Value::String(env)),
            None => match &value {
                Value::String(_) => Ok(Value::String(env)),
                Value::Number(_) => convert_primitive(name, &env, &Type::Number).map_err(fail),
                Value::Bool(_) => convert_primitive(name, &env, &Type::Bool).map_err(fail),
                other => Err(fail(format!(
                    "unsupported type {} for variable {name}",
                    type_name(other)
                ))),
            },
        }
    }

    /// One attribute of a block instance, for `target.NAME.ATTR` references.
    fn instance_attr(&mut self, id: usize, attr: &str, span: Span) -> Result<Value, Diag> {
        let key = (id, attr.to_string());
        let inst = &self.all_instances[id];
        let Some(a) = inst.block.body.attr(attr) else {
            return Ok(Value::Null);
        };
        if self.ref_progress.contains(&key) {
            return Err(Diag::new(
                "Invalid expression",
                format!(
                    "reference cycle not allowed for {}.{}.{attr}",
                    inst.block.kind, inst.name
                ),
                Some(span),
            ));
        }
        let (expr, locals) = (&a.expr, inst.locals.clone());
        self.ref_progress.insert(key.clone());
        let r = self.eval(expr, locals);
        self.ref_progress.remove(&key);
        r
    }
}

/// The parts of a `function` block: parameter names, the variadic parameter, the result.
fn function_parts<'b>(
    f: &'b Block,
    name: &str,
) -> Result<(Vec<String>, Option<String>, &'b Expr), Diag> {
    let invalid = |d: &str| Diag::new("Invalid function", d.to_string(), Some(f.labels[0].1));
    let result = f
        .body
        .attr("result")
        .ok_or_else(|| invalid(&format!("empty result not allowed for {name}")))?;
    let params = f
        .body
        .attr("params")
        .ok_or_else(|| invalid(&format!("empty params not allowed for {name}")))?;
    let crate::expr::ExprKind::Tuple(items) = &params.expr.kind else {
        return Err(Diag::new(
            "Invalid function",
            "A static list expression is required.",
            Some(params.expr.span),
        ));
    };
    let mut names = Vec::new();
    for i in items {
        names.push(i.as_keyword().map(String::from).ok_or_else(|| {
            Diag::new(
                "Invalid param element",
                "Each parameter name must be an identifier.",
                Some(i.span),
            )
        })?);
    }
    let variadic = match f.body.attr("variadic_params") {
        Some(v) => Some(v.expr.as_keyword().map(String::from).ok_or_else(|| {
            Diag::new(
                "Invalid param element",
                "Each parameter name must be an identifier.",
                Some(v.span),
            )
        })?),
        None => None,
    };
    Ok((names, variadic, &result.expr))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

const TARGET_ATTRS: &[&str] = &[
    "description",
    "inherits",
    "annotations",
    "attest",
    "context",
    "contexts",
    "dockerfile",
    "dockerfile-inline",
    "args",
    "labels",
    "tags",
    "cache-from",
    "cache-to",
    "target",
    "secret",
    "ssh",
    "platforms",
    "output",
    "pull",
    "no-cache",
    "network",
    "no-cache-filter",
    "shm-size",
    "ulimits",
    "call",
    "entitlements",
    "extra-hosts",
    "matrix",
    "name",
];

/// Evaluates merged bodies (files in order) into a configuration.
pub fn evaluate(bodies: &[Body], opts: &EvalOptions<'_>) -> Result<(Config, ParseMeta), Diag> {
    let mut builtins = hcl::eval::Context::new();
    crate::functions::register_all(&mut builtins);
    let reserved = |n: &str| n == "target" || n == "group" || opts.builtin_vars.contains_key(n);

    let mut p = Parser {
        opts,
        builtins,
        vars: HashMap::new(),
        attrs: HashMap::new(),
        funcs: HashMap::new(),
        values: HashMap::new(),
        constraints: HashMap::new(),
        in_progress: HashSet::new(),
        instances: HashMap::new(),
        all_instances: Vec::new(),
        ref_progress: HashSet::new(),
        call_stack: Vec::new(),
    };
    let mut var_order: Vec<String> = Vec::new();
    let mut config_blocks: Vec<&Block> = Vec::new();
    for body in bodies {
        for a in &body.attrs {
            if !reserved(&a.name) && a.name != "function" {
                p.attrs.insert(a.name.clone(), a);
            }
        }
        for b in &body.blocks {
            match b.kind.as_str() {
                "variable" | "function" | "target" | "group" => {
                    if b.labels.len() != 1 {
                        return Err(Diag::new(
                            "Invalid block",
                            format!(
                                "invalid block label: [{}]",
                                b.labels
                                    .iter()
                                    .map(|l| l.0.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                            Some(b.labels.first().map(|l| l.1).unwrap_or(b.span)),
                        ));
                    }
                }
                // Unknown top-level blocks are ignored, as buildx ignores them.
                _ => continue,
            }
            let label = b.labels[0].0.clone();
            match b.kind.as_str() {
                "variable" if !reserved(&label) => {
                    check_variable_block(b)?;
                    if !var_order.contains(&label) {
                        var_order.push(label.clone());
                    }
                    p.vars.insert(label, b);
                }
                "function" if !reserved(&label) => {
                    p.funcs.insert(label, b);
                }
                "target" | "group" => config_blocks.push(b),
                _ => {}
            }
        }
    }

    // Every variable is resolved, used or not, so a bad default or override always fails.
    let mut variables = Vec::new();
    for name in &var_order {
        let block = p.vars[name];
        p.variable(name, block.span)?;
        let typ = p.constraints.get(name).cloned();
        let v = &p.values[name];
        let value = if v.is_null() {
            None
        } else {
            Some(match &typ {
                Some(Type::String) => to_str(v).unwrap_or_default(),
                Some(_) => to_json_text(v),
                None => match v {
                    Value::Array(_) | Value::Object(_) => to_json_text(v),
                    other => to_str(other).unwrap_or_default(),
                },
            })
        };
        let description = match block.body.attr("description") {
            Some(d) => to_str(&p.eval(&d.expr, vec![])?).unwrap_or_default(),
            None => String::new(),
        };
        variables.push(VariableInfo {
            name: name.clone(),
            description,
            typ: typ.map(|t| t.friendly_name()).unwrap_or_default(),
            value,
        });
    }
    for name in &var_order {
        let block = p.vars[name];
        for v in block.body.blocks.iter().filter(|b| b.kind == "validation") {
            validate_variable(&mut p, v)?;
        }
    }
    let mut fnames: Vec<&String> = p.funcs.keys().collect();
    fnames.sort();
    for f in fnames {
        function_parts(p.funcs[f], f)?;
    }

    // Names first (matrix and `name` may use variables), then values.
    for b in &config_blocks {
        let label = &b.labels[0];
        if !valid_name(&label.0) {
            return Err(invalid_name(label.1));
        }
        let mut instances = vec![(label.0.clone(), Vec::new())];
        let matrix = b.body.attr("matrix");
        if b.kind == "group" {
            for forbidden in ["name", "matrix"] {
                if b.body.attr(forbidden).is_some() {
                    return Err(Diag::new(
                        "Invalid block",
                        format!("{forbidden} is not supported for groups"),
                        Some(label.1),
                    ));
                }
            }
        } else if let Some(m) = matrix {
            instances = Vec::new();
            for locals in matrix_contexts(&mut p, m)? {
                let name = match b.body.attr("name") {
                    Some(n) => {
                        let v = p.eval(&n.expr, locals.clone())?;
                        to_str(&v).map_err(|e| Diag::new("Invalid name", e, Some(n.expr.span)))?
                    }
                    None => label.0.clone(),
                };
                if !valid_name(&name) {
                    return Err(invalid_name(label.1));
                }
                instances.push((name, locals));
            }
            let mut seen = HashSet::new();
            for (n, _) in &instances {
                if !seen.insert(n.clone()) {
                    return Err(Diag::new(
                        "Invalid name",
                        format!("duplicate name {n:?}"),
                        Some(label.1),
                    ));
                }
            }
        } else if b.body.attr("name").is_some() {
            return Err(Diag::new(
                "Invalid name",
                "name requires matrix",
                Some(label.1),
            ));
        }
        for (name, locals) in instances {
            let id = p.all_instances.len();
            p.instances
                .entry((b.kind.clone(), name.clone()))
                .or_default()
                .push(id);
            p.all_instances.push(Instance {
                block: b,
                name,
                locals,
            });
        }
    }

    let mut config = Config::default();
    let mut renamed: Vec<(String, Vec<String>)> = Vec::new();
    for id in 0..p.all_instances.len() {
        let (block, name, locals) = {
            let i = &p.all_instances[id];
            (i.block, i.name.clone(), i.locals.clone())
        };
        if block.kind == "target" {
            let label = &block.labels[0].0;
            match renamed.iter_mut().find(|(o, _)| o == label) {
                Some((_, names)) => names.push(name.clone()),
                None => renamed.push((label.clone(), vec![name.clone()])),
            }
            let t = decode_target(&mut p, block, &name, locals)?;
            match config.targets.iter_mut().find(|x| x.name == name) {
                Some(existing) => existing.merge(&t),
                None => config.targets.push(t),
            }
        } else {
            let g = decode_group(&mut p, block, &name)?;
            match config.groups.iter_mut().find(|x| x.name == name) {
                Some(existing) => *existing = g,
                None => config.groups.push(g),
            }
        }
    }
    // Every global attribute must evaluate, used or not.
    let mut anames: Vec<String> = p.attrs.keys().cloned().collect();
    anames.sort();
    for a in anames {
        let span = p.attrs[&a].span;
        p.variable(&a, span)?;
    }
    for (old, names) in renamed {
        let names = crate::target::dedup_names(&names);
        if names.len() == 1 && names[0] == old {
            continue;
        }
        config.groups.push(Group {
            name: old,
            description: String::new(),
            targets: names,
        });
    }
    for g in &mut config.groups {
        g.targets = crate::target::dedup_names(&g.targets);
    }
    Ok((config, ParseMeta { variables }))
}

fn invalid_name(span: Span) -> Diag {
    Diag::new(
        "Invalid name",
        "only \"[a-zA-Z0-9_-]+\" are allowed",
        Some(span),
    )
}

fn check_variable_block(b: &Block) -> Result<(), Diag> {
    for a in &b.body.attrs {
        if !["default", "type", "description"].contains(&a.name.as_str()) {
            return Err(Diag::new(
                "Unsupported argument",
                format!("An argument named {:?} is not expected here.", a.name),
                Some(a.span),
            ));
        }
    }
    for v in &b.body.blocks {
        if v.kind != "validation" {
            return Err(Diag::new(
                "Unsupported block type",
                format!("Blocks of type {:?} are not expected here.", v.kind),
                Some(v.span),
            ));
        }
        for req in ["condition", "error_message"] {
            if v.body.attr(req).is_none() {
                return Err(Diag::new(
                    "Missing required argument",
                    format!("The argument {req:?} is required, but no definition was found."),
                    Some(v.span),
                ));
            }
        }
    }
    Ok(())
}

fn validate_variable(p: &mut Parser<'_, '_>, v: &Block) -> Result<(), Diag> {
    let cond = v.body.attr("condition").expect("checked when declared");
    let r = p.eval(&cond.expr, vec![])?;
    if r.is_null() {
        return Err(Diag::new(
            "Invalid condition result",
            "Condition expression must return either true or false, not null.",
            Some(cond.expr.span),
        ));
    }
    let ok = crate::eval::to_bool(&r).map_err(|e| {
        Diag::new(
            "Invalid condition result",
            format!("Invalid condition result value: {e}"),
            Some(cond.expr.span),
        )
    })?;
    if !ok {
        let msg = v.body.attr("error_message").expect("checked when declared");
        let m = p.eval(&msg.expr, vec![])?;
        let detail = match m {
            Value::Null => "This check failed, but has an invalid error message.".to_string(),
            other => to_str(&other).unwrap_or_default(),
        };
        return Err(Diag::new("Validation failed", detail, Some(cond.expr.span)));
    }
    Ok(())
}

/// The matrix's combinations, each as local variable bindings.
fn matrix_contexts(p: &mut Parser<'_, '_>, m: &Attr) -> Result<Vec<Vec<(String, Value)>>, Diag> {
    let v = p.eval(&m.expr, vec![])?;
    let Value::Object(map) = v else {
        return Err(Diag::new(
            "Invalid block",
            "matrix must be a map",
            Some(m.expr.span),
        ));
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut ctxs: Vec<Vec<(String, Value)>> = vec![vec![]];
    for k in keys {
        let values: Vec<Value> = match &map[k] {
            Value::Array(a) => a.clone(),
            Value::Object(o) => crate::eval::iterate(&Value::Object(o.clone()))
                .unwrap_or_default()
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            _ => {
                return Err(Diag::new(
                    "Invalid block",
                    "matrix values must be a list",
                    Some(m.expr.span),
                ))
            }
        };
        let mut next = Vec::new();
        for v in &values {
            for c in &ctxs {
                let mut c2 = c.clone();
                c2.push((k.clone(), v.clone()));
                next.push(c2);
            }
        }
        ctxs = next;
    }
    Ok(ctxs)
}

fn unsuitable(a: &Attr, want: &str) -> Diag {
    Diag::new(
        "Unsuitable value type",
        format!("Unsuitable value: {want} required"),
        Some(a.expr.span),
    )
}

fn as_string(a: &Attr, v: &Value) -> Result<Option<String>, Diag> {
    match v {
        Value::Null => Ok(None),
        Value::Array(_) | Value::Object(_) => Err(unsuitable(a, "string")),
        other => Ok(Some(to_str(other).expect("primitives convert"))),
    }
}

fn as_list(a: &Attr, v: &Value) -> Result<Option<Vec<String>>, Diag> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Array(_) | Value::Object(_) | Value::Null => {
                    Err(unsuitable(a, "list of string"))
                }
                other => Ok(to_str(other).expect("primitives convert")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(unsuitable(a, "list of string")),
    }
}

fn as_map(a: &Attr, v: &Value) -> Result<Option<BTreeMap<String, Option<String>>>, Diag> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Null => Ok((k.clone(), None)),
                Value::Array(_) | Value::Object(_) => Err(unsuitable(a, "map of string")),
                other => Ok((k.clone(), Some(to_str(other).expect("primitives convert")))),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        _ => Err(unsuitable(a, "map of string")),
    }
}

fn as_bool(a: &Attr, v: &Value) -> Result<Option<bool>, Diag> {
    match v {
        Value::Null => Ok(None),
        other => crate::types::Type::Bool
            .convert(other)
            .ok()
            .and_then(|b| b.as_bool())
            .map(Some)
            .ok_or_else(|| unsuitable(a, "bool")),
    }
}

fn structured<T>(
    a: &Attr,
    v: &Value,
    f: impl Fn(&Value) -> Result<Vec<T>, String>,
) -> Result<Option<Vec<T>>, Diag> {
    match v {
        Value::Null => Ok(None),
        other => f(other)
            .map(Some)
            .map_err(|e| Diag::new("Invalid attribute", e, Some(a.expr.span))),
    }
}

fn decode_target(
    p: &mut Parser<'_, '_>,
    b: &Block,
    name: &str,
    locals: Vec<(String, Value)>,
) -> Result<Target, Diag> {
    use crate::buildflags as bf;
    let mut t = Target::new(name);
    // buildx decodes only the attributes it knows: others, and nested blocks, are ignored.
    for a in &b.body.attrs {
        if !TARGET_ATTRS.contains(&a.name.as_str()) || a.name == "matrix" || a.name == "name" {
            continue;
        }
        let v = p.eval(&a.expr, locals.clone())?;
        match a.name.as_str() {
            "description" => t.description = as_string(a, &v)?.unwrap_or_default(),
            "inherits" => t.inherits = as_list(a, &v)?.unwrap_or_default(),
            "annotations" => t.annotations = as_list(a, &v)?,
            "attest" => t.attest = structured(a, &v, bf::attests_from_value)?,
            "context" => t.context = as_string(a, &v)?,
            "contexts" => {
                t.contexts = as_map(a, &v)?.map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect()
                })
            }
            "dockerfile" => t.dockerfile = as_string(a, &v)?,
            "dockerfile-inline" => t.dockerfile_inline = as_string(a, &v)?,
            "args" => t.args = as_map(a, &v)?,
            "labels" => t.labels = as_map(a, &v)?,
            "tags" => t.tags = as_list(a, &v)?,
            "cache-from" => t.cache_from = structured(a, &v, bf::caches_from_value)?,
            "cache-to" => t.cache_to = structured(a, &v, bf::caches_from_value)?,
            "target" => t.target = as_string(a, &v)?,
            "secret" => t.secrets = structured(a, &v, bf::secrets_from_value)?,
            "ssh" => t.ssh = structured(a, &v, bf::ssh_from_value)?,
            "platforms" => t.platforms = as_list(a, &v)?,
            "output" => t.outputs = structured(a, &v, bf::exports_from_value)?,
            "pull" => t.pull = as_bool(a, &v)?,
            "no-cache" => t.no_cache = as_bool(a, &v)?,
            "network" => t.network = as_string(a, &v)?,
            "no-cache-filter" => t.no_cache_filter = as_list(a, &v)?,
            "shm-size" => t.shm_size = as_string(a, &v)?,
            "ulimits" => t.ulimits = as_list(a, &v)?,
            "call" => t.call = as_string(a, &v)?,
            "entitlements" => t.entitlements = as_list(a, &v)?,
            "extra-hosts" => t.extra_hosts = as_map(a, &v)?,
            _ => unreachable!("checked against TARGET_ATTRS"),
        }
    }
    Ok(t)
}

fn decode_group(p: &mut Parser<'_, '_>, b: &Block, name: &str) -> Result<Group, Diag> {
    let mut g = Group {
        name: name.to_string(),
        ..Group::default()
    };
    let mut has_targets = false;
    // As for targets, unknown attributes and nested blocks are ignored.
    for a in &b.body.attrs {
        match a.name.as_str() {
            "description" => {
                let v = p.eval(&a.expr, vec![])?;
                g.description = as_string(a, &v)?.unwrap_or_default();
            }
            "targets" => {
                let v = p.eval(&a.expr, vec![])?;
                has_targets = true;
                g.targets = as_list(a, &v)?.unwrap_or_default();
            }
            _ => {}
        }
    }
    if !has_targets {
        return Err(Diag::new(
            "Missing required argument",
            "The argument \"targets\" is required, but no definition was found.",
            Some(b.labels[0].1),
        ));
    }
    Ok(g)
}
