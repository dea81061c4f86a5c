//! Variable type constraints (`type = list(string)`): parsing them from expressions, converting
//! values to them, and converting environment-variable overrides to them the way buildx does
//! (primitives parsed, lists/sets/tuples/maps from CSV, anything from JSON via `NAME_JSON`).

use hcl::{Map, Value};

use crate::eval::{format_number, to_str, type_name};
use crate::expr::{Expr, ExprKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Any,
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Tuple(Vec<Type>),
    Object(Vec<(String, Type)>),
}

impl Type {
    /// Parses a type constraint expression; `None` for a `null` (unset) type.
    pub fn parse(e: &Expr) -> Result<Option<Type>, String> {
        match &e.kind {
            ExprKind::Literal(Value::Null) => Ok(None),
            _ => Type::parse_inner(e).map(Some),
        }
    }

    fn parse_inner(e: &Expr) -> Result<Type, String> {
        match &e.kind {
            ExprKind::Var(name) => match name.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                "any" => Ok(Type::Any),
                "list" | "set" | "map" | "tuple" | "object" => Err(format!(
                    "The {name} type constructor requires one argument specifying the element type."
                )),
                other => Err(format!("The keyword {other:?} is not a valid type specification.")),
            },
            ExprKind::Call { name, args, .. } => {
                if args.len() != 1 {
                    return Err(format!(
                        "The {name} type constructor requires one argument specifying the element type."
                    ));
                }
                let arg = &args[0];
                match name.as_str() {
                    "list" => Ok(Type::List(Box::new(Type::parse_inner(arg)?))),
                    "set" => Ok(Type::Set(Box::new(Type::parse_inner(arg)?))),
                    "map" => Ok(Type::Map(Box::new(Type::parse_inner(arg)?))),
                    "tuple" => match &arg.kind {
                        ExprKind::Tuple(items) => Ok(Type::Tuple(
                            items.iter().map(Type::parse_inner).collect::<Result<_, _>>()?,
                        )),
                        _ => Err("The tuple type constructor requires a list of element types.".into()),
                    },
                    "object" => match &arg.kind {
                        ExprKind::Object(items) => {
                            let mut fields = Vec::new();
                            for (k, v) in items {
                                let key = k
                                    .as_keyword()
                                    .ok_or("Object constructor map keys must be attribute names.")?;
                                fields.push((key.to_string(), Type::parse_inner(v)?));
                            }
                            fields.sort_by(|a, b| a.0.cmp(&b.0));
                            Ok(Type::Object(fields))
                        }
                        _ => Err("The object type constructor requires an object of attribute types.".into()),
                    },
                    other => Err(format!("Keyword {other:?} is not a valid type constructor.")),
                }
            }
            _ => Err("A type specification is either a primitive type keyword (bool, number, string) or a complex type constructor call, like list(string).".into()),
        }
    }

    pub fn is_primitive(&self) -> bool {
        matches!(self, Type::String | Type::Number | Type::Bool)
    }

    /// cty's `FriendlyNameForConstraint`, shown by `--list variables`.
    pub fn friendly_name(&self) -> String {
        match self {
            Type::Any => "any".into(),
            Type::String => "string".into(),
            Type::Number => "number".into(),
            Type::Bool => "bool".into(),
            Type::List(t) => format!("list of {}", t.friendly_name()),
            Type::Set(t) => format!("set of {}", t.friendly_name()),
            Type::Map(t) => format!("map of {}", t.friendly_name()),
            Type::Tuple(_) => "tuple".into(),
            Type::Object(_) => "object".into(),
        }
    }

    /// Converts a value to this type, as cty's `convert.Convert` does for the cases bake meets.
    pub fn convert(&self, v: &Value) -> Result<Value, String> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        match self {
            Type::Any => Ok(v.clone()),
            Type::String => match v {
                Value::Array(_) | Value::Object(_) => {
                    Err(format!("string required, but have {}", type_name(v)))
                }
                _ => to_str(v).map(Value::String),
            },
            Type::Number => match v {
                Value::Number(_) => Ok(v.clone()),
                Value::String(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(crate::eval::number)
                    .ok_or_else(|| format!("a number is required, but have {s:?}")),
                _ => Err(format!("number required, but have {}", type_name(v))),
            },
            Type::Bool => match v {
                Value::Bool(_) => Ok(v.clone()),
                Value::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
                Value::String(_) => Err("a bool is required".into()),
                _ => Err(format!("bool required, but have {}", type_name(v))),
            },
            Type::List(t) | Type::Set(t) => match v {
                Value::Array(items) => {
                    let mut out: Vec<Value> = items
                        .iter()
                        .map(|i| t.convert(i))
                        .collect::<Result<_, _>>()?;
                    if matches!(self, Type::Set(_)) {
                        let mut seen: Vec<Value> = Vec::new();
                        out.retain(|x| {
                            if seen.contains(x) {
                                false
                            } else {
                                seen.push(x.clone());
                                true
                            }
                        });
                    }
                    Ok(Value::Array(out))
                }
                _ => Err(format!(
                    "{} required, but have {}",
                    self.friendly_name(),
                    type_name(v)
                )),
            },
            Type::Map(t) => match v {
                Value::Object(m) => {
                    let mut out = Map::new();
                    for (k, v) in m {
                        out.insert(k.clone(), t.convert(v)?);
                    }
                    Ok(Value::Object(out))
                }
                _ => Err(format!(
                    "{} required, but have {}",
                    self.friendly_name(),
                    type_name(v)
                )),
            },
            Type::Tuple(ts) => match v {
                Value::Array(items) if items.len() == ts.len() => Ok(Value::Array(
                    items
                        .iter()
                        .zip(ts)
                        .map(|(i, t)| t.convert(i))
                        .collect::<Result<_, _>>()?,
                )),
                Value::Array(items) => Err(format!(
                    "tuple required with {} elements, but have {}",
                    ts.len(),
                    items.len()
                )),
                _ => Err(format!("tuple required, but have {}", type_name(v))),
            },
            Type::Object(fields) => match v {
                Value::Object(m) => {
                    let mut out = Map::new();
                    for (k, t) in fields {
                        match m.get(k) {
                            Some(x) => {
                                out.insert(k.clone(), t.convert(x)?);
                            }
                            None => return Err(format!("attribute {k:?} is required")),
                        }
                    }
                    Ok(Value::Object(out))
                }
                _ => Err(format!("object required, but have {}", type_name(v))),
            },
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Converts one string to a primitive type, with buildx's messages.
pub fn convert_primitive(name: &str, value: &str, t: &Type) -> Result<Value, String> {
    match t {
        Type::String => Ok(Value::String(value.to_string())),
        Type::Bool => parse_go_bool(value)
            .map(Value::Bool)
            .ok_or_else(|| format!("failed to parse {name} as bool: strconv.ParseBool: parsing {value:?}: invalid syntax")),
        Type::Number => match value.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(crate::eval::number(f)),
            Ok(_) => Err(format!("failed to parse {name} as number: invalid number value")),
            Err(_) => Err(format!(
                "failed to parse {name} as number: strconv.ParseFloat: parsing {value:?}: invalid syntax"
            )),
        },
        other => Err(format!("{name} of type {} is not a primitive", other.friendly_name())),
    }
}

/// Splits one CSV record (RFC 4180 quoting), as `csvvalue.Fields` does.
pub fn csv_fields(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                    if let Some(&n) = chars.peek() {
                        if n != sep {
                            return Err(format!("extraneous or missing \" in quoted-field: {s:?}"));
                        }
                    }
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == sep {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            if c == '"' {
                return Err(format!("bare \" in non-quoted-field: {s:?}"));
            }
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err(format!("extraneous or missing \" in quoted-field: {s:?}"));
    }
    fields.push(cur);
    Ok(fields)
}

/// Converts a CSV override to a list, set, tuple or map type.
pub fn value_from_csv(name: &str, value: &str, t: &Type) -> Result<Value, String> {
    let fields =
        csv_fields(value, ',').map_err(|e| format!("failed to parse {value} as CSV: {e}"))?;
    match t {
        Type::List(el) | Type::Set(el) => {
            if !el.is_primitive() {
                return Err(format!(
                    "unsupported type {} for CSV specification",
                    t.friendly_name()
                ));
            }
            let mut out = Vec::new();
            for f in &fields {
                out.push(convert_primitive(name, f, el).map_err(|e| {
                    format!("failed to parse element of type {}: {e}", t.friendly_name())
                })?);
            }
            t.convert(&Value::Array(out))
        }
        Type::Tuple(ts) => {
            if ts.len() != fields.len() {
                return Err(format!(
                    "{} expects {} elements but only {} provided",
                    t.friendly_name(),
                    ts.len(),
                    fields.len()
                ));
            }
            let mut out = Vec::new();
            for (f, et) in fields.iter().zip(ts) {
                if !et.is_primitive() {
                    return Err(format!(
                        "unsupported type {} for CSV specification",
                        t.friendly_name()
                    ));
                }
                out.push(convert_primitive(name, f, et)?);
            }
            Ok(Value::Array(out))
        }
        Type::Map(el) => {
            if !el.is_primitive() {
                return Err(format!(
                    "unsupported type {} for CSV specification",
                    t.friendly_name()
                ));
            }
            let mut m = Map::new();
            for f in &fields {
                let kv = csv_fields(f, ':')?;
                if kv.len() != 2 {
                    return Err(format!(
                        "expected one k/v pair but got {} pieces from {f}",
                        kv.len()
                    ));
                }
                m.insert(kv[0].clone(), convert_primitive(name, &kv[1], el)?);
            }
            Ok(Value::Object(m))
        }
        _ => Err(format!(
            "unsupported type {} for CSV specification",
            t.friendly_name()
        )),
    }
}

/// Converts a JSON override to a type (cty's JSON unmarshal with a type).
pub fn value_from_json(text: &str, t: &Type) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let v: Value = hcl::to_value(v).map_err(|e| e.to_string())?;
    // cty's JSON decoding is strict about primitive kinds: no string-to-number conversion.
    fn check(v: &Value, t: &Type) -> Result<(), String> {
        match (t, v) {
            (_, Value::Null) | (Type::Any, _) => Ok(()),
            (Type::String, Value::String(_))
            | (Type::Number, Value::Number(_))
            | (Type::Bool, Value::Bool(_)) => Ok(()),
            (Type::List(e) | Type::Set(e), Value::Array(items)) => {
                items.iter().try_for_each(|i| check(i, e))
            }
            (Type::Tuple(ts), Value::Array(items)) if ts.len() == items.len() => {
                items.iter().zip(ts).try_for_each(|(i, t)| check(i, t))
            }
            (Type::Map(e), Value::Object(m)) => m.values().try_for_each(|i| check(i, e)),
            (Type::Object(fs), Value::Object(m)) => fs
                .iter()
                .try_for_each(|(k, t)| m.get(k).map(|x| check(x, t)).unwrap_or(Ok(()))),
            (t, _) => Err(format!("{} required", t.friendly_name())),
        }
    }
    check(&v, t)?;
    t.convert(&v)
}

/// A value as JSON text, the way `ctyjson.Marshal` writes it (object keys sorted).
pub fn to_json_text(v: &Value) -> String {
    fn conv(v: &Value) -> serde_json::Value {
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => {
                serde_json::from_str(&format_number(n)).unwrap_or(serde_json::Value::Null)
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(conv).collect()),
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter().map(|k| (k.clone(), conv(&m[k]))).collect(),
                )
            }
        }
    }
    conv(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_overrides_follow_the_element_type() {
        let t = Type::List(Box::new(Type::Number));
        assert_eq!(
            value_from_csv("N", "1,2", &t).unwrap(),
            Value::Array(vec![1.into(), 2.into()])
        );
        assert!(value_from_csv("N", "1,x", &t).is_err());
        let m = Type::Map(Box::new(Type::String));
        assert_eq!(
            value_from_csv("M", "a:1,b:2", &m)
                .unwrap()
                .as_object()
                .unwrap()["b"],
            Value::from("2")
        );
    }

    #[test]
    fn primitives_parse_like_go() {
        assert_eq!(
            convert_primitive("B", "T", &Type::Bool).unwrap(),
            Value::Bool(true)
        );
        assert!(convert_primitive("B", "yes", &Type::Bool).is_err());
        assert_eq!(
            convert_primitive("N", "1.5", &Type::Number).unwrap(),
            Value::from(1.5)
        );
        assert!(convert_primitive("N", "NaN", &Type::Number).is_err());
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_fields(r#"a,"b,c",d"#, ',').unwrap(),
            vec!["a", "b,c", "d"]
        );
    }
}
