//! The expression tree bake evaluates, with source spans, and its two front ends: HCL native
//! syntax (through `hcl-edit`, which keeps byte spans) and HCL's JSON syntax (strings are
//! templates, objects are object constructors).
//!
//! One tree for both syntaxes keeps a single evaluator; spans let every evaluation error point
//! at `file:line:col` the way buildx does.

use hcl::edit::expr as he;
use hcl::edit::template as ht;
use hcl::edit::Span as _;
use hcl::Value;

use crate::error::{Diag, Span};

/// An expression with the span it was parsed from.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    Literal(Value),
    /// A string template; a template made of a single interpolation yields the value unchanged.
    Template(Vec<Part>),
    Tuple(Vec<Expr>),
    Object(Vec<(Expr, Expr)>),
    Var(String),
    Traverse(Box<Expr>, Vec<Op>),
    Call {
        name: String,
        args: Vec<Expr>,
        expand_final: bool,
    },
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    For(Box<ForExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    NotEq,
    LessEq,
    GreaterEq,
    Less,
    Greater,
    Plus,
    Minus,
    Mul,
    Div,
    Mod,
    And,
    Or,
}

/// A traversal step. A splat applies the steps it holds to every element.
#[derive(Debug, Clone)]
pub enum Op {
    Attr(String),
    Index(Expr),
    Splat(Vec<Op>),
}

#[derive(Debug, Clone)]
pub struct ForExpr {
    pub key_var: Option<String>,
    pub value_var: String,
    pub collection: Expr,
    pub key_expr: Option<Expr>,
    pub value_expr: Expr,
    pub cond: Option<Expr>,
    pub grouping: bool,
}

/// A piece of a template, with whitespace stripping (`~`) already applied to literals.
#[derive(Debug, Clone)]
pub enum Part {
    Lit(String),
    Interp(Expr),
    If(Expr, Vec<Part>, Vec<Part>),
    For {
        key_var: Option<String>,
        value_var: String,
        collection: Expr,
        body: Vec<Part>,
    },
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }

    /// The bare identifier this expression is, if it is one (`params = [a, b]`).
    pub fn as_keyword(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Var(name) => Some(name),
            // In JSON, identifiers are written as strings.
            ExprKind::Template(parts) => match parts.as_slice() {
                [Part::Lit(s)] => Some(s),
                _ => None,
            },
            ExprKind::Literal(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The variable names this expression reads at its root (for-expression variables excluded
    /// only approximately; used to find what a `type` or `matrix` expression depends on).
    pub fn is_null_literal(&self) -> bool {
        matches!(self.kind, ExprKind::Literal(Value::Null))
    }
}

/// Lowers `hcl-edit` expressions of one file into [`Expr`].
pub struct Lowering {
    pub file: u32,
}

impl Lowering {
    fn span(&self, r: Option<std::ops::Range<usize>>) -> Span {
        let r = r.unwrap_or(0..0);
        Span {
            file: self.file,
            start: r.start,
            end: r.end,
        }
    }

    pub fn expr(&self, e: &he::Expression) -> Result<Expr, Diag> {
        let span = self.span(e.span());
        let kind = match e {
            he::Expression::Null(_) => ExprKind::Literal(Value::Null),
            he::Expression::Bool(b) => ExprKind::Literal(Value::Bool(*b.value())),
            he::Expression::Number(n) => ExprKind::Literal(Value::Number(*n.value())),
            he::Expression::String(s) => ExprKind::Literal(Value::String(s.value().clone())),
            he::Expression::Array(a) => {
                ExprKind::Tuple(a.iter().map(|e| self.expr(e)).collect::<Result<_, _>>()?)
            }
            he::Expression::Object(o) => {
                let mut items = Vec::new();
                for (k, v) in o.iter() {
                    let key = match k {
                        he::ObjectKey::Ident(id) => Expr::new(
                            ExprKind::Literal(Value::String(id.value().to_string())),
                            self.span(id.span()),
                        ),
                        // A bare name used as a key means the name itself, not a variable;
                        // `(name)` evaluates it.
                        he::ObjectKey::Expression(he::Expression::Variable(v)) => Expr::new(
                            ExprKind::Literal(Value::String(v.value().to_string())),
                            self.span(v.span()),
                        ),
                        he::ObjectKey::Expression(e) => self.expr(e)?,
                    };
                    items.push((key, self.expr(v.expr())?));
                }
                ExprKind::Object(items)
            }
            he::Expression::StringTemplate(t) => {
                let elems: Vec<ht::Element> = t.iter().cloned().collect();
                ExprKind::Template(self.elements(&elems, false, false)?)
            }
            he::Expression::HeredocTemplate(h) => {
                let elems: Vec<ht::Element> = h.template.iter().cloned().collect();
                ExprKind::Template(self.elements(&elems, false, false)?)
            }
            he::Expression::Parenthesis(p) => return self.expr(p.inner()),
            he::Expression::Variable(v) => ExprKind::Var(v.value().to_string()),
            he::Expression::Conditional(c) => ExprKind::Cond(
                Box::new(self.expr(&c.cond_expr)?),
                Box::new(self.expr(&c.true_expr)?),
                Box::new(self.expr(&c.false_expr)?),
            ),
            he::Expression::FuncCall(f) => {
                let mut name = String::new();
                for ns in &f.name.namespace {
                    name.push_str(ns.value());
                    name.push_str("::");
                }
                name.push_str(f.name.name.value());
                ExprKind::Call {
                    name,
                    args: f
                        .args
                        .iter()
                        .map(|e| self.expr(e))
                        .collect::<Result<_, _>>()?,
                    expand_final: f.args.expand_final(),
                }
            }
            he::Expression::Traversal(t) => {
                let ops: Vec<&he::TraversalOperator> =
                    t.operators.iter().map(|o| o.value()).collect();
                ExprKind::Traverse(Box::new(self.expr(&t.expr)?), self.ops(&ops)?)
            }
            he::Expression::UnaryOp(u) => {
                let inner = Box::new(self.expr(&u.expr)?);
                match u.operator.value() {
                    hcl::expr::UnaryOperator::Neg => ExprKind::Neg(inner),
                    hcl::expr::UnaryOperator::Not => ExprKind::Not(inner),
                }
            }
            he::Expression::BinaryOp(b) => {
                use hcl::expr::BinaryOperator as B;
                let op = match b.operator.value() {
                    B::Eq => BinOp::Eq,
                    B::NotEq => BinOp::NotEq,
                    B::LessEq => BinOp::LessEq,
                    B::GreaterEq => BinOp::GreaterEq,
                    B::Less => BinOp::Less,
                    B::Greater => BinOp::Greater,
                    B::Plus => BinOp::Plus,
                    B::Minus => BinOp::Minus,
                    B::Mul => BinOp::Mul,
                    B::Div => BinOp::Div,
                    B::Mod => BinOp::Mod,
                    B::And => BinOp::And,
                    B::Or => BinOp::Or,
                };
                ExprKind::Binary(
                    op,
                    Box::new(self.expr(&b.lhs_expr)?),
                    Box::new(self.expr(&b.rhs_expr)?),
                )
            }
            he::Expression::ForExpr(f) => ExprKind::For(Box::new(ForExpr {
                key_var: f.intro.key_var.as_ref().map(|k| k.value().to_string()),
                value_var: f.intro.value_var.value().to_string(),
                collection: self.expr(&f.intro.collection_expr)?,
                key_expr: f.key_expr.as_ref().map(|e| self.expr(e)).transpose()?,
                value_expr: self.expr(&f.value_expr)?,
                cond: f.cond.as_ref().map(|c| self.expr(&c.expr)).transpose()?,
                grouping: f.grouping,
            })),
        };
        Ok(Expr::new(kind, span))
    }

    fn ops(&self, ops: &[&he::TraversalOperator]) -> Result<Vec<Op>, Diag> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < ops.len() {
            match ops[i] {
                he::TraversalOperator::GetAttr(id) => out.push(Op::Attr(id.value().to_string())),
                he::TraversalOperator::LegacyIndex(n) => out.push(Op::Index(Expr::new(
                    ExprKind::Literal(Value::from(*n.value())),
                    self.span(n.span()),
                ))),
                he::TraversalOperator::Index(e) => out.push(Op::Index(self.expr(e)?)),
                he::TraversalOperator::AttrSplat(_) => {
                    // An attribute splat only carries the attribute accesses right after it.
                    let mut j = i + 1;
                    while j < ops.len()
                        && matches!(
                            ops[j],
                            he::TraversalOperator::GetAttr(_)
                                | he::TraversalOperator::LegacyIndex(_)
                        )
                    {
                        j += 1;
                    }
                    out.push(Op::Splat(self.ops(&ops[i + 1..j])?));
                    i = j;
                    continue;
                }
                he::TraversalOperator::FullSplat(_) => {
                    out.push(Op::Splat(self.ops(&ops[i + 1..])?));
                    break;
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// Lowers template elements, applying `~` strip markers of the neighbours to literals.
    fn elements(
        &self,
        elems: &[ht::Element],
        strip_first: bool,
        strip_last: bool,
    ) -> Result<Vec<Part>, Diag> {
        let mut out = Vec::new();
        for (i, el) in elems.iter().enumerate() {
            match el {
                ht::Element::Literal(s) => {
                    let prev_strips = if i == 0 {
                        strip_first
                    } else {
                        element_strip(&elems[i - 1]).1
                    };
                    let next_strips = if i + 1 == elems.len() {
                        strip_last
                    } else {
                        element_strip(&elems[i + 1]).0
                    };
                    let mut lit: &str = s.value();
                    if prev_strips {
                        lit = lit.trim_start_matches(is_space);
                        lit = lit
                            .strip_prefix("\r\n")
                            .or_else(|| lit.strip_prefix('\n'))
                            .unwrap_or(lit);
                    }
                    if next_strips {
                        lit = lit.trim_end_matches(is_space);
                        lit = lit
                            .strip_suffix("\r\n")
                            .or_else(|| lit.strip_suffix('\n'))
                            .unwrap_or(lit);
                    }
                    out.push(Part::Lit(lit.to_string()));
                }
                ht::Element::Interpolation(interp) => {
                    out.push(Part::Interp(self.expr(&interp.expr)?))
                }
                ht::Element::Directive(d) => match &**d {
                    ht::Directive::If(d) => {
                        let else_start = d
                            .else_expr
                            .as_ref()
                            .map(|e| e.strip.strip_start())
                            .unwrap_or(d.endif_expr.strip.strip_start());
                        let if_elems: Vec<ht::Element> =
                            d.if_expr.template.iter().cloned().collect();
                        let then =
                            self.elements(&if_elems, d.if_expr.strip.strip_end(), else_start)?;
                        let otherwise = match &d.else_expr {
                            Some(e) => {
                                let els: Vec<ht::Element> = e.template.iter().cloned().collect();
                                self.elements(
                                    &els,
                                    e.strip.strip_end(),
                                    d.endif_expr.strip.strip_start(),
                                )?
                            }
                            None => Vec::new(),
                        };
                        out.push(Part::If(self.expr(&d.if_expr.cond_expr)?, then, otherwise));
                    }
                    ht::Directive::For(d) => {
                        let els: Vec<ht::Element> = d.for_expr.template.iter().cloned().collect();
                        out.push(Part::For {
                            key_var: d.for_expr.key_var.as_ref().map(|k| k.value().to_string()),
                            value_var: d.for_expr.value_var.value().to_string(),
                            collection: self.expr(&d.for_expr.collection_expr)?,
                            body: self.elements(
                                &els,
                                d.for_expr.strip.strip_end(),
                                d.endfor_expr.strip.strip_start(),
                            )?,
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

fn is_space(c: char) -> bool {
    c.is_whitespace() && c != '\r' && c != '\n'
}

/// Whether an element strips the literal before it and the literal after it.
fn element_strip(el: &ht::Element) -> (bool, bool) {
    match el {
        ht::Element::Literal(_) => (false, false),
        ht::Element::Interpolation(i) => (i.strip.strip_start(), i.strip.strip_end()),
        ht::Element::Directive(d) => match &**d {
            ht::Directive::If(d) => (
                d.if_expr.strip.strip_start(),
                d.endif_expr.strip.strip_end(),
            ),
            ht::Directive::For(d) => (
                d.for_expr.strip.strip_start(),
                d.endfor_expr.strip.strip_end(),
            ),
        },
    }
}

/// Parses a JSON string the way HCL's JSON syntax does: as a template.
pub fn json_template(s: &str, span: Span) -> Result<Expr, Diag> {
    if !s.contains("${") && !s.contains("%{") {
        return Ok(Expr::new(
            ExprKind::Literal(Value::String(s.to_string())),
            span,
        ));
    }
    let tpl = hcl::edit::parser::parse_template(s)
        .map_err(|e| Diag::new("Invalid template", e.message().to_string(), Some(span)))?;
    // Spans inside the string are relative to the string, not the file: point at the string.
    let low = Lowering { file: span.file };
    let elems: Vec<ht::Element> = tpl.iter().cloned().collect();
    let parts = low.elements(&elems, false, false)?;
    let mut e = Expr::new(ExprKind::Template(parts), span);
    respan(&mut e, span);
    Ok(e)
}

/// Lowers a JSON value in expression position (strings are templates).
pub fn json_expr(v: &serde_json::Value, span: Span) -> Result<Expr, Diag> {
    let kind = match v {
        serde_json::Value::Null => ExprKind::Literal(Value::Null),
        serde_json::Value::Bool(b) => ExprKind::Literal(Value::Bool(*b)),
        serde_json::Value::Number(n) => {
            let n = if let Some(i) = n.as_i64() {
                hcl::Number::from(i)
            } else if let Some(u) = n.as_u64() {
                hcl::Number::from(u)
            } else {
                hcl::Number::from_f64(n.as_f64().unwrap_or(0.0)).unwrap_or(hcl::Number::from(0))
            };
            ExprKind::Literal(Value::Number(n))
        }
        serde_json::Value::String(s) => return json_template(s, span),
        serde_json::Value::Array(a) => ExprKind::Tuple(
            a.iter()
                .map(|v| json_expr(v, span))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => {
            let mut items = Vec::new();
            for (k, v) in o {
                items.push((json_template(k, span)?, json_expr(v, span)?));
            }
            ExprKind::Object(items)
        }
    };
    Ok(Expr::new(kind, span))
}

fn respan(e: &mut Expr, span: Span) {
    e.span = span;
    match &mut e.kind {
        ExprKind::Literal(_) | ExprKind::Var(_) => {}
        ExprKind::Template(parts) => parts.iter_mut().for_each(|p| respan_part(p, span)),
        ExprKind::Tuple(items) => items.iter_mut().for_each(|e| respan(e, span)),
        ExprKind::Object(items) => items.iter_mut().for_each(|(k, v)| {
            respan(k, span);
            respan(v, span)
        }),
        ExprKind::Traverse(e, ops) => {
            respan(e, span);
            ops.iter_mut().for_each(|o| respan_op(o, span));
        }
        ExprKind::Call { args, .. } => args.iter_mut().for_each(|e| respan(e, span)),
        ExprKind::Neg(e) | ExprKind::Not(e) => respan(e, span),
        ExprKind::Binary(_, a, b) => {
            respan(a, span);
            respan(b, span)
        }
        ExprKind::Cond(a, b, c) => {
            respan(a, span);
            respan(b, span);
            respan(c, span)
        }
        ExprKind::For(f) => {
            respan(&mut f.collection, span);
            if let Some(k) = &mut f.key_expr {
                respan(k, span)
            }
            respan(&mut f.value_expr, span);
            if let Some(c) = &mut f.cond {
                respan(c, span)
            }
        }
    }
}

fn respan_op(o: &mut Op, span: Span) {
    match o {
        Op::Attr(_) => {}
        Op::Index(e) => respan(e, span),
        Op::Splat(ops) => ops.iter_mut().for_each(|o| respan_op(o, span)),
    }
}

fn respan_part(p: &mut Part, span: Span) {
    match p {
        Part::Lit(_) => {}
        Part::Interp(e) => respan(e, span),
        Part::If(c, a, b) => {
            respan(c, span);
            a.iter_mut().for_each(|p| respan_part(p, span));
            b.iter_mut().for_each(|p| respan_part(p, span));
        }
        Part::For {
            collection, body, ..
        } => {
            respan(collection, span);
            body.iter_mut().for_each(|p| respan_part(p, span));
        }
    }
}
