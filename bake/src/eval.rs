//! Evaluates [`Expr`] trees to values, with HCL's (go-cty's) conversion rules: numbers and bools
//! become strings where a string is needed, strings become numbers in arithmetic, object keys
//! iterate in sorted order, and a template made of one interpolation yields its value as is.
//!
//! Names and functions come from an [`Env`], so variables and blocks can be resolved lazily, in
//! dependency order, the way buildx's parser does; for-expression variables are local.

use hcl::{Map, Number, Value};

use crate::error::{Diag, Span};
use crate::expr::{BinOp, Expr, ExprKind, ForExpr, Op, Part};

/// Where an evaluation finds what is not local to an expression.
pub trait Env {
    /// Resolves the root name `name`. `path` holds the attribute names written after it
    /// (`target.app.tags` gives `["app", "tags"]`); the env may resolve some of them itself and
    /// says how many it consumed.
    fn lookup(&mut self, name: &str, path: &[&str], span: Span) -> Result<(Value, usize), Diag>;
    /// Calls a function with evaluated arguments.
    fn call(&mut self, name: &str, args: Vec<Value>, span: Span) -> Result<Value, Diag>;
}

/// An evaluation in progress: the environment plus the for-expression / matrix locals.
pub struct Evaluator<'a> {
    env: &'a mut dyn Env,
    locals: Vec<(String, Value)>,
}

impl<'a> Evaluator<'a> {
    pub fn new(env: &'a mut dyn Env, locals: Vec<(String, Value)>) -> Evaluator<'a> {
        Evaluator { env, locals }
    }

    fn local(&self, name: &str) -> Option<&Value> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    pub fn eval(&mut self, e: &Expr) -> Result<Value, Diag> {
        self.eval_inner(e).map_err(|d| d.at(e.span))
    }

    fn eval_inner(&mut self, e: &Expr) -> Result<Value, Diag> {
        match &e.kind {
            ExprKind::Literal(v) => Ok(v.clone()),
            ExprKind::Template(parts) => {
                if let [Part::Interp(inner)] = parts.as_slice() {
                    return self.eval(inner);
                }
                let mut out = String::new();
                self.template(parts, &mut out)?;
                Ok(Value::String(out))
            }
            ExprKind::Tuple(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            )),
            ExprKind::Object(items) => {
                let mut m = Map::new();
                for (k, v) in items {
                    let key = self.eval(k)?;
                    let key = match key {
                        Value::Null => {
                            return Err(Diag::new(
                                "Null value as key",
                                "Can't use a null value as a key.",
                                Some(k.span),
                            ))
                        }
                        other => to_str(&other)
                            .map_err(|d| Diag::new("Incorrect key type", d, Some(k.span)))?,
                    };
                    m.insert(key, self.eval(v)?);
                }
                m.sort_keys();
                Ok(Value::Object(m))
            }
            ExprKind::Var(name) => self.var(name, &[], e.span).map(|(v, _)| v),
            ExprKind::Traverse(root, ops) => {
                let (mut value, consumed) = match &root.kind {
                    ExprKind::Var(name) => {
                        let path: Vec<&str> = ops
                            .iter()
                            .map_while(|o| match o {
                                Op::Attr(a) => Some(a.as_str()),
                                _ => None,
                            })
                            .collect();
                        self.var(name, &path, root.span)?
                    }
                    _ => (self.eval(root)?, 0),
                };
                for op in &ops[consumed..] {
                    value = self.apply_op(value, op, e.span)?;
                }
                Ok(value)
            }
            ExprKind::Call {
                name,
                args,
                expand_final,
            } => {
                // These see argument errors or type expressions, which only the evaluator has.
                match name.as_str() {
                    "try" if !*expand_final => {
                        let mut last = None;
                        for a in args {
                            match self.eval(a) {
                                Ok(v) => return Ok(v),
                                Err(d) => last = Some(d),
                            }
                        }
                        return Err(Diag::new(
                            "Error in function call",
                            match last {
                                Some(d) => format!("Call to function \"try\" failed: no expression succeeded:\n- {} (at {})\n  {}\n\nAt least one expression must produce a successful result.", d.summary, "expression", d.detail),
                                None => "Call to function \"try\" failed: at least one argument is required.".into(),
                            },
                            Some(e.span),
                        ));
                    }
                    "can" if args.len() == 1 && !*expand_final => {
                        return Ok(Value::Bool(self.eval(&args[0]).is_ok()));
                    }
                    "convert" if args.len() == 2 && !*expand_final => {
                        let v = self.eval(&args[0])?;
                        let t = crate::types::Type::parse(&args[1])
                            .map_err(|d| {
                                Diag::new("Invalid type specification", d, Some(args[1].span))
                            })?
                            .unwrap_or(crate::types::Type::Any);
                        return t.convert(&v).map_err(|d| {
                            Diag::new(
                                "Invalid function argument",
                                format!("Invalid value for \"value\" parameter: {d}."),
                                Some(args[0].span),
                            )
                        });
                    }
                    _ => {}
                }
                let mut vals = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    let v = self.eval(a)?;
                    if *expand_final && i + 1 == args.len() {
                        match v {
                            Value::Array(items) => vals.extend(items),
                            _ => {
                                return Err(Diag::new(
                                    "Invalid expanding argument value",
                                    "The expanding argument (indicated by ...) must be of a tuple, list, or set type.",
                                    Some(a.span),
                                ))
                            }
                        }
                    } else {
                        vals.push(v);
                    }
                }
                self.env.call(name, vals, e.span)
            }
            ExprKind::Neg(inner) => {
                let v = self.eval(inner)?;
                let n = to_number(&v).map_err(|d| operand_error(d, inner.span))?;
                Ok(number(-n))
            }
            ExprKind::Not(inner) => {
                let v = self.eval(inner)?;
                let b = to_bool(&v).map_err(|d| operand_error(d, inner.span))?;
                Ok(Value::Bool(!b))
            }
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r),
            ExprKind::Cond(c, t, f) => {
                let cv = self.eval(c)?;
                if cv.is_null() {
                    return Err(Diag::new(
                        "Null condition",
                        "The condition value is null. Conditions must either be true or false.",
                        Some(c.span),
                    ));
                }
                let b = to_bool(&cv)
                    .map_err(|d| Diag::new("Incorrect condition type", d, Some(c.span)))?;
                // Both results must unify to one type; a string on either side makes the
                // chosen result a string, as cty's conversion unification does.
                let (chosen, other) = if b { (t, f) } else { (f, t) };
                let v = self.eval(chosen)?;
                if matches!(v, Value::Number(_) | Value::Bool(_)) {
                    if let ExprKind::Literal(Value::String(_)) | ExprKind::Template(_) = other.kind
                    {
                        return Ok(Value::String(to_str(&v).unwrap_or_default()));
                    }
                }
                Ok(v)
            }
            ExprKind::For(f) => self.for_expr(f, e.span),
        }
    }

    fn var(&mut self, name: &str, path: &[&str], span: Span) -> Result<(Value, usize), Diag> {
        if let Some(v) = self.local(name) {
            return Ok((v.clone(), 0));
        }
        self.env.lookup(name, path, span)
    }

    fn apply_op(&mut self, value: Value, op: &Op, span: Span) -> Result<Value, Diag> {
        match op {
            Op::Attr(name) => get_attr(&value, name, span),
            Op::Index(idx) => {
                let key = self.eval(idx)?;
                index(&value, &key, idx.span)
            }
            Op::Splat(ops) => {
                let items = match value {
                    Value::Null => return Ok(Value::Array(vec![])),
                    Value::Array(items) => items,
                    other => vec![other],
                };
                let mut out = Vec::with_capacity(items.len());
                for mut item in items {
                    for op in ops {
                        item = self.apply_op(item, op, span)?;
                    }
                    out.push(item);
                }
                Ok(Value::Array(out))
            }
        }
    }

    fn binary(&mut self, op: BinOp, l: &Expr, r: &Expr) -> Result<Value, Diag> {
        let lv = self.eval(l)?;
        // && and || do not short-circuit in HCL, but evaluating both sides is harmless here.
        let rv = self.eval(r)?;
        match op {
            BinOp::Eq => Ok(Value::Bool(values_equal(&lv, &rv))),
            BinOp::NotEq => Ok(Value::Bool(!values_equal(&lv, &rv))),
            BinOp::And | BinOp::Or => {
                let a = to_bool(&lv).map_err(|d| operand_error(d, l.span))?;
                let b = to_bool(&rv).map_err(|d| operand_error(d, r.span))?;
                Ok(Value::Bool(if op == BinOp::And { a && b } else { a || b }))
            }
            _ => {
                let a = to_number(&lv).map_err(|d| operand_error(d, l.span))?;
                let b = to_number(&rv).map_err(|d| operand_error(d, r.span))?;
                Ok(match op {
                    BinOp::Less => Value::Bool(a < b),
                    BinOp::LessEq => Value::Bool(a <= b),
                    BinOp::Greater => Value::Bool(a > b),
                    BinOp::GreaterEq => Value::Bool(a >= b),
                    BinOp::Plus => number(a + b),
                    BinOp::Minus => number(a - b),
                    BinOp::Mul => number(a * b),
                    BinOp::Div => {
                        if b == 0.0 {
                            return Err(Diag::new(
                                "Operation failed",
                                "Error during operation: can't divide by zero.",
                                Some(r.span),
                            ));
                        }
                        number(a / b)
                    }
                    BinOp::Mod => {
                        if b == 0.0 {
                            return Err(Diag::new(
                                "Operation failed",
                                "Error during operation: can't use modulo by zero.",
                                Some(r.span),
                            ));
                        }
                        number(a % b)
                    }
                    _ => unreachable!("handled above"),
                })
            }
        }
    }

    fn for_expr(&mut self, f: &ForExpr, span: Span) -> Result<Value, Diag> {
        let coll = self.eval(&f.collection)?;
        let pairs = iterate(&coll).map_err(|d| {
            Diag::new(
                "Iteration over non-iterable value",
                d,
                Some(f.collection.span),
            )
        })?;
        let mut list = Vec::new();
        let mut obj: Map<String, Value> = Map::new();
        for (k, v) in pairs {
            let depth = self.locals.len();
            if let Some(kv) = &f.key_var {
                self.locals.push((kv.clone(), k));
            }
            self.locals.push((f.value_var.clone(), v));
            let result = (|| -> Result<(), Diag> {
                if let Some(c) = &f.cond {
                    let cv = self.eval(c)?;
                    let keep = to_bool(&cv)
                        .map_err(|d| Diag::new("Invalid for_each condition", d, Some(c.span)))?;
                    if !keep {
                        return Ok(());
                    }
                }
                match &f.key_expr {
                    None => list.push(self.eval(&f.value_expr)?),
                    Some(ke) => {
                        let key = to_str(&self.eval(ke)?)
                            .map_err(|d| Diag::new("Invalid object key", d, Some(ke.span)))?;
                        let val = self.eval(&f.value_expr)?;
                        if f.grouping {
                            match obj.entry(key).or_insert_with(|| Value::Array(vec![])) {
                                Value::Array(items) => items.push(val),
                                _ => unreachable!("grouped values are arrays"),
                            }
                        } else if obj.contains_key(&key) {
                            return Err(Diag::new(
                                "Duplicate object key",
                                format!("Two different items produced the key {key:?} in this 'for' expression. If duplicates are expected, use the ellipsis (...) after the value expression to enable grouping by key."),
                                Some(ke.span),
                            ));
                        } else {
                            obj.insert(key, val);
                        }
                    }
                }
                Ok(())
            })();
            self.locals.truncate(depth);
            result?;
        }
        let _ = span;
        if f.key_expr.is_some() {
            obj.sort_keys();
            Ok(Value::Object(obj))
        } else {
            Ok(Value::Array(list))
        }
    }

    fn template(&mut self, parts: &[Part], out: &mut String) -> Result<(), Diag> {
        for p in parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Interp(e) => {
                    let v = self.eval(e)?;
                    match v {
                        Value::Null => return Err(Diag::new(
                            "Invalid template interpolation value",
                            "The expression result is null. Cannot include a null value in a string template.",
                            Some(e.span),
                        )),
                        other => out.push_str(&to_str(&other).map_err(|_| {
                            Diag::new(
                                "Invalid template interpolation value",
                                "Cannot include the given value in a string template: string required.",
                                Some(e.span),
                            )
                        })?),
                    }
                }
                Part::If(c, then, otherwise) => {
                    let cv = self.eval(c)?;
                    let b = to_bool(&cv)
                        .map_err(|d| Diag::new("Invalid template if condition", d, Some(c.span)))?;
                    self.template(if b { then } else { otherwise }, out)?;
                }
                Part::For {
                    key_var,
                    value_var,
                    collection,
                    body,
                } => {
                    let coll = self.eval(collection)?;
                    let pairs = iterate(&coll).map_err(|d| {
                        Diag::new("Invalid template for directive", d, Some(collection.span))
                    })?;
                    for (k, v) in pairs {
                        let depth = self.locals.len();
                        if let Some(kv) = key_var {
                            self.locals.push((kv.clone(), k));
                        }
                        self.locals.push((value_var.clone(), v));
                        let r = self.template(body, out);
                        self.locals.truncate(depth);
                        r?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn operand_error(detail: String, span: Span) -> Diag {
    Diag::new("Invalid operand", detail, Some(span))
}

/// `(key, value)` pairs of a collection: indexes for lists, sorted keys for objects.
pub fn iterate(v: &Value) -> Result<Vec<(Value, Value)>, String> {
    match v {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as u64), v.clone()))
            .collect()),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Ok(keys
                .into_iter()
                .map(|k| (Value::String(k.clone()), m[k].clone()))
                .collect())
        }
        Value::Null => {
            Err("A null value cannot be used as the collection in a 'for' expression.".into())
        }
        other => Err(format!(
            "A value of type {} cannot be used as the collection in a 'for' expression.",
            type_name(other)
        )),
    }
}

pub fn get_attr(value: &Value, name: &str, span: Span) -> Result<Value, Diag> {
    match value {
        Value::Object(m) => m.get(name).cloned().ok_or_else(|| {
            Diag::new(
                "Unsupported attribute",
                format!("This object does not have an attribute named {name:?}."),
                Some(span),
            )
        }),
        Value::Null => Err(Diag::new(
            "Attempt to get attribute from null value",
            "This value is null, so it does not have any attributes.",
            Some(span),
        )),
        other => Err(Diag::new(
            "Unsupported attribute",
            format!(
                "Can't access attributes on a primitive-typed value ({}).",
                type_name(other)
            ),
            Some(span),
        )),
    }
}

pub fn index(value: &Value, key: &Value, span: Span) -> Result<Value, Diag> {
    match value {
        Value::Array(items) => {
            let n = to_number(key).map_err(|_| {
                Diag::new("Invalid index", "The given key does not identify an element in this collection value: a number is required.", Some(span))
            })?;
            if n < 0.0 || n.fract() != 0.0 || n as usize >= items.len() {
                return Err(Diag::new(
                    "Invalid index",
                    "The given key does not identify an element in this collection value.",
                    Some(span),
                ));
            }
            Ok(items[n as usize].clone())
        }
        Value::Object(m) => {
            let k = to_str(key).map_err(|_| {
                Diag::new("Invalid index", "The given key does not identify an element in this collection value: string required.", Some(span))
            })?;
            m.get(&k).cloned().ok_or_else(|| {
                Diag::new(
                    "Invalid index",
                    "The given key does not identify an element in this collection value.",
                    Some(span),
                )
            })
        }
        Value::Null => Err(Diag::new(
            "Attempt to index null value",
            "This value is null, so it does not have any indices.",
            Some(span),
        )),
        other => Err(Diag::new(
            "Invalid index",
            format!(
                "This value does not have any indices ({}).",
                type_name(other)
            ),
            Some(span),
        )),
    }
}

/// cty's name for a value's type, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "tuple",
        Value::Object(_) => "object",
    }
}

/// Equality as cty defines it: values of different types are never equal.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A number value from a float, as an integer when it is one (so it prints without `.0`).
pub fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Formats a number as cty does (`big.Float.Text('f', -1)`): no exponent, no trailing `.0`.
pub fn format_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

/// Converts a primitive to a string as cty does; collections cannot be.
pub fn to_str(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(format_number(n)),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("string required, but have null".into()),
        other => Err(format!("string required, but have {}", type_name(other))),
    }
}

pub fn to_number(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && !s.trim().is_empty())
            .ok_or_else(|| format!("a number is required, but have {s:?}")),
        Value::Null => {
            Err("Unsuitable value for operand: a number is required, but have null.".into())
        }
        other => Err(format!(
            "Unsuitable value for operand: number required, but have {}.",
            type_name(other)
        )),
    }
}

pub fn to_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(format!(
            "Unsuitable value for operand: bool required, but have {}.",
            type_name(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnv;
    impl Env for NoEnv {
        fn lookup(&mut self, name: &str, _: &[&str], span: Span) -> Result<(Value, usize), Diag> {
            match name {
                "x" => Ok((Value::from(3), 0)),
                _ => Err(Diag::new("Unknown variable", name, Some(span))),
            }
        }
        fn call(&mut self, name: &str, _: Vec<Value>, span: Span) -> Result<Value, Diag> {
            Err(Diag::new("Call to unknown function", name, Some(span)))
        }
    }

    fn eval(src: &str) -> Value {
        let e = hcl::edit::parser::parse_expr(src).unwrap();
        let e = crate::expr::Lowering { file: 0 }.expr(&e).unwrap();
        Evaluator::new(&mut NoEnv, vec![]).eval(&e).unwrap()
    }

    #[test]
    fn numbers_print_like_cty() {
        assert_eq!(
            eval(r#""${2/2}-${1.5*2}-${x+1}-${7/2}""#),
            Value::from("1-3-4-3.5")
        );
    }

    #[test]
    fn strings_convert_in_arithmetic_and_templates() {
        assert_eq!(eval(r#""1" + 2"#), Value::from(3));
        assert_eq!(eval(r#""x${true}""#), Value::from("xtrue"));
    }

    #[test]
    fn for_expressions_iterate_objects_in_key_order() {
        assert_eq!(
            eval(r#"[for k, v in {b = 1, a = 2}: "${k}${v}"]"#),
            Value::Array(vec!["a2".into(), "b1".into()])
        );
        assert_eq!(
            eval(r#"{for v in ["a", "b", "a"]: v => v...}"#)
                .as_object()
                .unwrap()["a"],
            Value::Array(vec!["a".into(), "a".into()])
        );
    }

    #[test]
    fn splats_and_conditionals() {
        assert_eq!(
            eval(r#"[{a = 1}, {a = 2}][*].a"#),
            Value::Array(vec![1.into(), 2.into()])
        );
        assert_eq!(eval(r#"x > 2 ? "big" : "small""#), Value::from("big"));
        assert_eq!(eval(r#"true ? 1 : "a""#), Value::from("1"));
    }

    #[test]
    fn template_directives_and_strip_markers() {
        assert_eq!(
            eval(r#""%{ for v in ["a", "b"] ~}${v} %{~ endfor }""#),
            Value::from("ab")
        );
        assert_eq!(
            eval(r#""%{if x == 3}yes%{else}no%{endif}""#),
            Value::from("yes")
        );
    }
}
