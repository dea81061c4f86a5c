//! cty's value semantics over `hcl::Value`: the types cty would give a value, how it converts
//! values between types (and the messages when it cannot), unification of element types,
//! equality, set ordering, number formatting and JSON encoding.
//!
//! cty numbers are 512-bit floats; here they are `hcl::Number`s (integers exact, fractions as
//! f64), printed with at most 15 significant digits so that binary noise (`0.1 + 0.2`) prints as
//! cty prints it.

use std::cmp::Ordering;

use hcl::{Map, Number, Value};

use super::{FuncError, Param};

/// A cty type, as far as it can be told from an `hcl::Value` or is needed for conversions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ty {
    /// The type of `null` literals and of "any" element types.
    Dynamic,
    Str,
    Num,
    Bool,
    Tuple(Vec<Ty>),
    /// Attributes sorted by name.
    Object(Vec<(String, Ty)>),
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>),
}

impl Ty {
    pub fn of(value: &Value) -> Ty {
        match value {
            Value::Null => Ty::Dynamic,
            Value::Bool(_) => Ty::Bool,
            Value::Number(_) => Ty::Num,
            Value::String(_) => Ty::Str,
            Value::Array(items) => Ty::Tuple(items.iter().map(Ty::of).collect()),
            Value::Object(attrs) => {
                let mut attrs: Vec<(String, Ty)> =
                    attrs.iter().map(|(k, v)| (k.clone(), Ty::of(v))).collect();
                attrs.sort_by(|a, b| a.0.cmp(&b.0));
                Ty::Object(attrs)
            }
        }
    }

    fn is_primitive(&self) -> bool {
        matches!(self, Ty::Str | Ty::Num | Ty::Bool)
    }

    /// cty's `FriendlyName`.
    pub fn friendly_name(&self) -> String {
        match self {
            Ty::Dynamic => "dynamic".into(),
            Ty::Str => "string".into(),
            Ty::Num => "number".into(),
            Ty::Bool => "bool".into(),
            Ty::Tuple(_) => "tuple".into(),
            Ty::Object(_) => "object".into(),
            Ty::List(e) => format!("list of {}", e.friendly_name()),
            Ty::Set(e) => format!("set of {}", e.friendly_name()),
            Ty::Map(e) => format!("map of {}", e.friendly_name()),
        }
    }

    /// cty's `FriendlyNameForConstraint`: "any" stands for the dynamic pseudo-type.
    pub fn constraint_name(&self) -> String {
        match self {
            Ty::Dynamic => "any single type".into(),
            Ty::List(e) => format!("list of {}", e.constraint_name()),
            Ty::Set(e) => format!("set of {}", e.constraint_name()),
            Ty::Map(e) => format!("map of {}", e.constraint_name()),
            other => other.friendly_name(),
        }
    }
}

/// The type that all of `tys` can convert to, as cty's unsafe unification finds it.
pub(crate) fn unify(tys: &[Ty]) -> Option<Ty> {
    let concrete: Vec<&Ty> = tys.iter().filter(|t| **t != Ty::Dynamic).collect();
    let has_dynamic = concrete.len() < tys.len();
    let Some(first) = concrete.first() else {
        return if tys.is_empty() {
            None
        } else {
            Some(Ty::Dynamic)
        };
    };
    if concrete.iter().all(|t| t == first) {
        return Some((*first).clone());
    }
    if concrete.iter().all(|t| t.is_primitive()) {
        // Every primitive converts to string; number and bool do not convert to each other.
        return concrete.iter().any(|t| **t == Ty::Str).then_some(Ty::Str);
    }
    if concrete.iter().all(|t| matches!(t, Ty::Object(_))) {
        if has_dynamic {
            return Some(Ty::Dynamic);
        }
        let objs: Vec<&Vec<(String, Ty)>> = concrete
            .iter()
            .map(|t| match t {
                Ty::Object(a) => a,
                _ => unreachable!(),
            })
            .collect();
        let same_names = objs.iter().all(|a| {
            a.len() == objs[0].len() && a.iter().zip(objs[0].iter()).all(|(x, y)| x.0 == y.0)
        });
        if same_names {
            let mut attrs = Vec::new();
            let mut ok = true;
            for (i, (name, _)) in objs[0].iter().enumerate() {
                let col: Vec<Ty> = objs.iter().map(|a| a[i].1.clone()).collect();
                match unify(&col) {
                    Some(t) => attrs.push((name.clone(), t)),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Some(Ty::Object(attrs));
            }
        }
        let all: Vec<Ty> = objs
            .iter()
            .flat_map(|a| a.iter().map(|(_, t)| t.clone()))
            .collect();
        return unify(&all).map(|t| Ty::Map(Box::new(t)));
    }
    if concrete.iter().all(|t| matches!(t, Ty::Tuple(_))) {
        if has_dynamic {
            return Some(Ty::Dynamic);
        }
        let tuples: Vec<&Vec<Ty>> = concrete
            .iter()
            .map(|t| match t {
                Ty::Tuple(e) => e,
                _ => unreachable!(),
            })
            .collect();
        if tuples.iter().all(|e| e.len() == tuples[0].len()) {
            let mut elems = Vec::new();
            let mut ok = true;
            for i in 0..tuples[0].len() {
                let col: Vec<Ty> = tuples.iter().map(|e| e[i].clone()).collect();
                match unify(&col) {
                    Some(t) => elems.push(t),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Some(Ty::Tuple(elems));
            }
        }
        let all: Vec<Ty> = tuples.iter().flat_map(|e| e.iter().cloned()).collect();
        return unify(&all).map(|t| Ty::List(Box::new(t)));
    }
    // Collections of the same kind unify by element type.
    let kind = |t: &Ty| match t {
        Ty::List(_) => 1,
        Ty::Set(_) => 2,
        Ty::Map(_) => 3,
        _ => 0,
    };
    let k = kind(first);
    if k != 0 && concrete.iter().all(|t| kind(t) == k) {
        if has_dynamic {
            return Some(Ty::Dynamic);
        }
        let elems: Vec<Ty> = concrete
            .iter()
            .map(|t| match t {
                Ty::List(e) | Ty::Set(e) | Ty::Map(e) => (**e).clone(),
                _ => unreachable!(),
            })
            .collect();
        let e = Box::new(unify(&elems)?);
        return Some(match k {
            1 => Ty::List(e),
            2 => Ty::Set(e),
            _ => Ty::Map(e),
        });
    }
    None
}

/// Whether cty has any conversion from `from` to `to` (values may still fail to convert).
fn convertible(from: &Ty, to: &Ty) -> bool {
    match (from, to) {
        (_, Ty::Dynamic) | (Ty::Dynamic, _) => true,
        (a, b) if a.is_primitive() && b.is_primitive() => {
            // Unsafe conversions: string <-> number/bool, number/bool -> string.
            a == b || *a == Ty::Str || *b == Ty::Str
        }
        (Ty::Tuple(es), Ty::List(e) | Ty::Set(e)) => {
            if **e == Ty::Dynamic {
                unify(es).is_some() || es.is_empty()
            } else {
                es.iter().all(|x| convertible(x, e))
            }
        }
        (Ty::List(a) | Ty::Set(a), Ty::List(e) | Ty::Set(e)) => convertible(a, e),
        (Ty::Object(attrs), Ty::Map(e)) => {
            if **e == Ty::Dynamic {
                let tys: Vec<Ty> = attrs.iter().map(|(_, t)| t.clone()).collect();
                tys.is_empty() || unify(&tys).is_some()
            } else {
                attrs.iter().all(|(_, t)| convertible(t, e))
            }
        }
        (Ty::Map(a), Ty::Map(e)) => convertible(a, e),
        (Ty::Tuple(a), Ty::Tuple(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| convertible(x, y))
        }
        (Ty::Object(a), Ty::Object(b)) => b
            .iter()
            .all(|(n, t)| a.iter().any(|(m, u)| m == n && convertible(u, t))),
        _ => false,
    }
}

/// Converts `value` to `ty` as cty's (unsafe) conversion does, with cty's error messages.
pub(crate) fn convert(value: Value, ty: &Ty) -> Result<Value, String> {
    if *ty == Ty::Dynamic || value.is_null() {
        return Ok(value);
    }
    match ty {
        Ty::Str => match value {
            Value::String(_) => Ok(value),
            Value::Number(n) => Ok(Value::String(format_number(&n))),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err("string required".into()),
        },
        Ty::Num => match value {
            Value::Number(_) => Ok(value),
            Value::String(s) => parse_number(&s)
                .map(Value::Number)
                .ok_or_else(|| "a number is required".to_string()),
            _ => Err("number required".into()),
        },
        Ty::Bool => match value {
            Value::Bool(_) => Ok(value),
            Value::String(s) => match s.as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                other => Err(match other.to_lowercase().as_str() {
                    "true" => "a bool is required; to convert from string, use lowercase \"true\"",
                    "false" => {
                        "a bool is required; to convert from string, use lowercase \"false\""
                    }
                    _ => "a bool is required",
                }
                .into()),
            },
            _ => Err("bool required".into()),
        },
        Ty::List(elem) | Ty::Set(elem) => {
            let noun = if matches!(ty, Ty::Set(_)) {
                "set"
            } else {
                "list"
            };
            let Value::Array(items) = value else {
                return Err(format!("{} required", ty.constraint_name()));
            };
            let target = if **elem == Ty::Dynamic {
                let tys: Vec<Ty> = items.iter().map(Ty::of).collect();
                if tys.is_empty() {
                    Ty::Dynamic
                } else {
                    unify(&tys)
                        .ok_or_else(|| format!("all {noun} elements must have the same type"))?
                }
            } else {
                (**elem).clone()
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let item_ty = Ty::of(&item);
                if !convertible(&item_ty, &target) {
                    return Err(format!("element {i}: {}", mismatch(&item_ty, &target)));
                }
                out.push(convert(item, &target)?);
            }
            if matches!(ty, Ty::Set(_)) {
                out = set_of(out);
            }
            Ok(Value::Array(out))
        }
        Ty::Map(elem) => {
            let Value::Object(attrs) = value else {
                return Err(format!("{} required", ty.constraint_name()));
            };
            let target = if **elem == Ty::Dynamic {
                let tys: Vec<Ty> = attrs.values().map(Ty::of).collect();
                if tys.is_empty() {
                    Ty::Dynamic
                } else {
                    unify(&tys).ok_or("all map elements must have the same type")?
                }
            } else {
                (**elem).clone()
            };
            let mut out = Map::new();
            for (k, v) in attrs {
                let v_ty = Ty::of(&v);
                if !convertible(&v_ty, &target) {
                    return Err(format!("element {k:?}: {}", mismatch(&v_ty, &target)));
                }
                out.insert(k, convert(v, &target)?);
            }
            Ok(Value::Object(out))
        }
        Ty::Tuple(elems) => match value {
            Value::Array(items) if items.len() == elems.len() => items
                .into_iter()
                .zip(elems)
                .map(|(v, t)| convert(v, t))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(mismatch(&Ty::of(&other), ty)),
        },
        Ty::Object(attrs) => match value {
            Value::Object(mut have) => {
                let mut out = Map::new();
                for (name, t) in attrs {
                    let v = have
                        .shift_remove(name)
                        .ok_or_else(|| format!("attribute {name:?} is required"))?;
                    out.insert(name.clone(), convert(v, t)?);
                }
                Ok(Value::Object(out))
            }
            other => Err(mismatch(&Ty::of(&other), ty)),
        },
        Ty::Dynamic => unreachable!(),
    }
}

/// cty's message for a type that has no conversion to another.
fn mismatch(got: &Ty, want: &Ty) -> String {
    match (got, want) {
        (Ty::Tuple(_), Ty::List(e)) if **e == Ty::Dynamic => {
            "all list elements must have the same type".into()
        }
        (Ty::Tuple(_), Ty::Set(e)) if **e == Ty::Dynamic => {
            "all set elements must have the same type".into()
        }
        (Ty::Tuple(es), Ty::List(e) | Ty::Set(e)) => {
            for (i, et) in es.iter().enumerate() {
                if !convertible(et, e) {
                    return format!("element {i}: {}", mismatch(et, e));
                }
            }
            format!("all elements must be {}", e.constraint_name())
        }
        _ => format!("{} required", want.constraint_name()),
    }
}

/// Converts an argument to its parameter's type.
pub(crate) fn convert_param(value: Value, param: Param) -> Result<Value, String> {
    let ty = match param {
        Param::Any => return Ok(value),
        Param::Bytes => {
            // No bake value is of go-cty's capsule type `bytes`; only null converts.
            return if value.is_null() {
                Ok(value)
            } else {
                Err("bytes required".into())
            };
        }
        Param::Str => Ty::Str,
        Param::Num => Ty::Num,
        Param::Bool => Ty::Bool,
        Param::ListOfStr => Ty::List(Box::new(Ty::Str)),
        Param::List => Ty::List(Box::new(Ty::Dynamic)),
        Param::Set => Ty::Set(Box::new(Ty::Dynamic)),
    };
    convert(value, &ty)
}

/// Parses a number as cty does from a string (decimal only, optional exponent).
pub(crate) fn parse_number(s: &str) -> Option<Number> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    let mut is_int = true;
    if i < b.len() && b[i] == b'.' {
        is_int = false;
        i += 1;
        let s0 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s0;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        is_int = false;
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s0 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    if is_int {
        let digits = s.trim_start_matches('+');
        if let Ok(n) = digits.parse::<i64>() {
            return Some(Number::from(n));
        }
        if let Ok(n) = digits.parse::<u64>() {
            return Some(Number::from(n));
        }
    }
    let f: f64 = s.parse().ok()?;
    Number::from_f64(f)
}

/// The number in a converted number argument.
pub(crate) fn num(value: &Value) -> Number {
    match value {
        Value::Number(n) => *n,
        _ => Number::from(0),
    }
}

pub(crate) fn f64_of(value: &Value) -> f64 {
    num(value).as_f64().unwrap_or(0.0)
}

/// The string in a converted string argument.
pub(crate) fn str_of(value: &Value) -> &str {
    match value {
        Value::String(s) => s,
        _ => "",
    }
}

/// A number value from an f64, or the error cty gives where it would have produced a value
/// bake cannot hold (infinity or NaN).
pub(crate) fn number_value(f: f64) -> Result<Value, FuncError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| FuncError::call("the result is not a finite number"))
}

/// Reads a whole number as Go's `int`, with gocty's errors.
pub(crate) fn to_int(value: &Value) -> Result<i64, String> {
    let n = num(value);
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.as_u64().is_some() {
        return Err(
            "value must be a whole number, between -9223372036854775808 and 9223372036854775807"
                .into(),
        );
    }
    Err("value must be a whole number, between -9223372036854775808 and 9223372036854775807".into())
}

/// A number in decimal: value = 0.`digits` × 10^`exp`, with no leading or trailing zero digits
/// (zero has no digits), as Go's `math/big` formats numbers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decimal {
    pub neg: bool,
    pub digits: Vec<u8>,
    pub exp: i32,
    /// For an f64 shown by fewer digits than it has: its exact expansion, which decides how a
    /// tie in `digits` rounds (cty's 512-bit value lies on the same side as the f64, nearly
    /// always).
    exact: Option<Box<Decimal>>,
}

/// Significant digits and exponent of `a` (> 0) written with `prec` digits after the point in
/// scientific notation; `None` for Rust's shortest round-trip form.
fn sci_digits(a: f64, prec: Option<usize>) -> (Vec<u8>, i32) {
    let s = match prec {
        Some(p) => format!("{a:.p$e}"),
        None => format!("{a:e}"),
    };
    let (mant, exp) = s.split_once('e').expect("exponent format");
    let exp: i32 = exp.parse().expect("exponent");
    let mut digits: Vec<u8> = mant.bytes().filter(|c| *c != b'.').collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp + 1)
}

impl Decimal {
    pub fn of(n: &Number) -> Decimal {
        if let Some(i) = n.as_i64() {
            return Decimal::from_int_str(i < 0, &i.unsigned_abs().to_string());
        }
        if let Some(u) = n.as_u64() {
            return Decimal::from_int_str(false, &u.to_string());
        }
        let f = n.as_f64().unwrap_or(0.0);
        let neg = f.is_sign_negative() && f != 0.0;
        let a = f.abs();
        if a == 0.0 {
            return Decimal {
                neg,
                digits: Vec::new(),
                exp: 0,
                exact: None,
            };
        }
        // cty computes in 512-bit floats, so decimal literals and their sums print short
        // (`0.1 + 0.2` is `0.3`) where f64 shows binary noise; what cty computes in f64
        // (`pow`, `log`) prints in full. Tell them apart by how much 15 digits shorten it.
        let (shortest, shortest_exp) = sci_digits(a, None);
        let (digits, exp) = if shortest.len() <= 15 {
            (shortest, shortest_exp)
        } else {
            let (r15, r15_exp) = sci_digits(a, Some(14));
            if r15.len() <= 12 {
                (r15, r15_exp)
            } else if a.fract() == 0.0 {
                sci_digits(a, Some(800))
            } else {
                (shortest, shortest_exp)
            }
        };
        let (exact_digits, exact_exp) = sci_digits(a, Some(800));
        let exact = (exact_digits != digits || exact_exp != exp).then(|| {
            Box::new(Decimal {
                neg,
                digits: exact_digits,
                exp: exact_exp,
                exact: None,
            })
        });
        Decimal {
            neg,
            digits,
            exp,
            exact,
        }
    }

    fn from_int_str(neg: bool, s: &str) -> Decimal {
        let mut d = Decimal {
            neg,
            digits: s.bytes().collect(),
            exp: s.len() as i32,
            exact: None,
        };
        d.trim();
        d
    }

    fn trim(&mut self) {
        while self.digits.last() == Some(&b'0') {
            self.digits.pop();
        }
        let lead = self.digits.iter().take_while(|c| **c == b'0').count();
        if lead > 0 {
            self.digits.drain(..lead);
            self.exp -= lead as i32;
        }
        if self.digits.is_empty() {
            self.exp = 0;
        }
    }

    /// Rounds to `n` significant digits (half to even, as `math/big` does on exact values).
    pub fn round(&mut self, n: i32) {
        if n < 0 || n as usize >= self.digits.len() {
            return;
        }
        let n = n as usize;
        let first_dropped = self.digits[n];
        let up = if first_dropped > b'5' {
            true
        } else if first_dropped < b'5' {
            false
        } else if self.digits[n + 1..].iter().any(|c| *c != b'0') {
            true
        } else if let Some(exact) = self.exact.take() {
            // A tie in the short form: the value behind it decides.
            let mut e = *exact;
            e.round(n as i32 + e.exp - self.exp);
            *self = e;
            return;
        } else {
            n > 0 && (self.digits[n - 1] - b'0') % 2 == 1
        };
        self.digits.truncate(n);
        if up {
            let mut i = n;
            loop {
                if i == 0 {
                    self.digits.insert(0, b'1');
                    self.exp += 1;
                    break;
                }
                i -= 1;
                if self.digits[i] == b'9' {
                    self.digits[i] = b'0';
                } else {
                    self.digits[i] += 1;
                    break;
                }
            }
        }
        self.trim();
    }

    fn digit(&self, i: i32) -> u8 {
        if i >= 0 && (i as usize) < self.digits.len() {
            self.digits[i as usize]
        } else {
            b'0'
        }
    }

    /// `%e` layout with `prec` digits after the point (no sign).
    pub fn fmt_e(&self, prec: usize, upper: bool) -> String {
        let mut s = String::new();
        s.push(self.digit(0) as char);
        if prec > 0 {
            s.push('.');
            for i in 1..=prec {
                s.push(self.digit(i as i32) as char);
            }
        }
        s.push(if upper { 'E' } else { 'e' });
        let exp = if self.digits.is_empty() {
            0
        } else {
            self.exp - 1
        };
        s.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            s.push('0');
        }
        s.push_str(&e.to_string());
        s
    }

    /// `%f` layout with `prec` digits after the point (no sign).
    pub fn fmt_f(&self, prec: usize) -> String {
        let mut s = String::new();
        if self.exp > 0 {
            for i in 0..self.exp {
                s.push(self.digit(i) as char);
            }
        } else {
            s.push('0');
        }
        if prec > 0 {
            s.push('.');
            for i in 1..=prec as i32 {
                s.push(self.digit(self.exp + i - 1) as char);
            }
        }
        s
    }

    /// Go's `big.Float.Text(fmt, prec)` for 'e', 'f' and 'g' (prec < 0: shortest), no sign.
    pub fn text(&self, fmt: char, prec: i32) -> String {
        let mut d = self.clone();
        let upper = fmt.is_ascii_uppercase();
        let fmt = fmt.to_ascii_lowercase();
        let shortest = prec < 0;
        let mut prec = prec;
        if shortest {
            prec = match fmt {
                'e' => d.digits.len() as i32 - 1,
                'f' => (d.digits.len() as i32 - d.exp).max(0),
                _ => d.digits.len() as i32,
            };
        } else {
            match fmt {
                'e' => d.round(1 + prec),
                'f' => d.round(d.exp + prec),
                _ => {
                    if prec == 0 {
                        prec = 1;
                    }
                    d.round(prec)
                }
            }
        }
        match fmt {
            'e' => d.fmt_e(prec.max(0) as usize, upper),
            'f' => d.fmt_f(prec.max(0) as usize),
            _ => {
                let mut eprec = prec;
                let len = d.digits.len() as i32;
                if eprec > len && len >= d.exp {
                    eprec = len;
                }
                if shortest {
                    eprec = 6;
                }
                let exp = d.exp - 1;
                if exp < -4 || exp >= eprec {
                    if prec > len {
                        prec = len;
                    }
                    return d.fmt_e((prec - 1).max(0) as usize, upper);
                }
                if prec > d.exp {
                    prec = len;
                }
                d.fmt_f((prec - d.exp).max(0) as usize)
            }
        }
    }
}

/// A number as cty writes it in strings: plain decimal, no exponent, no trailing zeros.
pub fn format_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let d = Decimal::of(n);
    let body = d.text('f', -1);
    if d.neg {
        format!("-{body}")
    } else {
        body
    }
}

/// `value` with every string in Unicode normal form C, as cty keeps all strings.
pub(crate) fn nfc(value: Value) -> Value {
    use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
    match value {
        Value::String(s) if is_nfc_quick(s.chars()) != IsNormalized::Yes => {
            Value::String(s.nfc().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(nfc).collect()),
        Value::Object(attrs) => {
            Value::Object(attrs.into_iter().map(|(k, v)| (k, nfc(v))).collect())
        }
        other => other,
    }
}

/// cty's `Equals` on known values: same type and same value (numbers by value).
pub(crate) fn equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Ordering::Equal,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equals(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equals(v, w)))
        }
        _ => false,
    }
}

/// Compares two numbers exactly where both are integers.
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
    }
}

/// The elements of a cty set built from `items`: duplicates removed, in cty's set order.
pub(crate) fn set_of(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        if !out.iter().any(|o| equals(o, &item)) {
            out.push(item);
        }
    }
    out.sort_by(set_order);
    out
}

/// cty's ordering of set elements: nulls last, then strings by bytes, numbers by value, bools
/// false first, anything else by its hash string.
fn set_order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => set_hash(a).cmp(&set_hash(b)),
    }
}

fn set_hash(v: &Value) -> String {
    let mut s = String::new();
    push_set_hash(v, &mut s);
    s
}

fn push_set_hash(v: &Value, s: &mut String) {
    match v {
        Value::Null => s.push('~'),
        Value::Bool(b) => s.push(if *b { 'T' } else { 'F' }),
        Value::Number(n) => {
            // big.Float's String(): %g with 10 significant digits.
            let d = Decimal::of(n);
            if d.neg {
                s.push('-');
            }
            s.push_str(&d.text('g', 10));
        }
        Value::String(x) => s.push_str(&go_quote(x)),
        Value::Array(items) => {
            s.push('<');
            for i in items {
                push_set_hash(i, s);
                s.push(';');
            }
            s.push('>');
        }
        Value::Object(attrs) => {
            let mut keys: Vec<&String> = attrs.keys().collect();
            keys.sort();
            s.push('<');
            for k in keys {
                push_set_hash(&attrs[k], s);
                s.push(';');
            }
            s.push('>');
        }
    }
}

/// Go's `%q` / `strconv.Quote` for a string.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` for a rune: `'x'`.
pub(crate) fn go_quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '\\' => "'\\\\'".into(),
        '\n' => "'\\n'".into(),
        '\t' => "'\\t'".into(),
        '\r' => "'\\r'".into(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        c if is_go_printable(c) => format!("'{c}'"),
        c if (c as u32) < 0x10000 => format!("'\\u{:04x}'", c as u32),
        c => format!("'\\U{:08x}'", c as u32),
    }
}

/// An approximation of Go's `unicode.IsPrint`: not a control, format or unassigned-looking
/// character, and not a space other than U+0020.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF | 0xF0000..=0x10FFFF)
}

/// cty's JSON encoding of a value: object keys sorted, numbers as cty prints them, strings
/// escaped as Go's `encoding/json` escapes them (HTML-safe).
pub(crate) fn json_encode(v: &Value) -> String {
    let mut s = String::new();
    push_json(v, &mut s);
    s
}

fn push_json(v: &Value, s: &mut String) {
    match v {
        Value::Null => s.push_str("null"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => s.push_str(&format_number(n)),
        Value::String(x) => crate::gojson::push_string(x, s),
        Value::Array(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                push_json(item, s);
            }
            s.push(']');
        }
        Value::Object(attrs) => {
            let mut keys: Vec<&String> = attrs.keys().collect();
            keys.sort();
            s.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                crate::gojson::push_string(k, s);
                s.push(':');
                push_json(&attrs[k], s);
            }
            s.push('}');
        }
    }
}
