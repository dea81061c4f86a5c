//! Number functions: arithmetic, comparisons, rounding, `log`/`pow`, `signum` and `parseint`.
//!
//! Integer arithmetic stays exact while it fits 64 bits and falls back to f64 beyond that.

use std::cmp::Ordering;

use hcl::{Number, Value};

use super::value::{f64_of, num, num_cmp, number_value, to_int, Ty};
use super::FuncError;

type R = Result<Value, FuncError>;

fn ints(a: &Number, b: &Number) -> Option<(i64, i64)> {
    Some((a.as_i64()?, b.as_i64()?))
}

fn float(a: &Number) -> f64 {
    a.as_f64().unwrap_or(0.0)
}

pub fn absolute(args: Vec<Value>) -> R {
    let n = num(&args[0]);
    match n.as_i64() {
        Some(i) => Ok(Value::from(i.unsigned_abs())),
        None => number_value(float(&n).abs()),
    }
}

pub fn add(args: Vec<Value>) -> R {
    let (a, b) = (num(&args[0]), num(&args[1]));
    if let Some(r) = ints(&a, &b).and_then(|(x, y)| x.checked_add(y)) {
        return Ok(Value::from(r));
    }
    number_value(float(&a) + float(&b))
}

pub fn subtract(args: Vec<Value>) -> R {
    let (a, b) = (num(&args[0]), num(&args[1]));
    if let Some(r) = ints(&a, &b).and_then(|(x, y)| x.checked_sub(y)) {
        return Ok(Value::from(r));
    }
    number_value(float(&a) - float(&b))
}

pub fn multiply(args: Vec<Value>) -> R {
    let (a, b) = (num(&args[0]), num(&args[1]));
    if let Some(r) = ints(&a, &b).and_then(|(x, y)| x.checked_mul(y)) {
        return Ok(Value::from(r));
    }
    number_value(float(&a) * float(&b))
}

pub fn divide(args: Vec<Value>) -> R {
    let (a, b) = (float(&num(&args[0])), float(&num(&args[1])));
    if a == 0.0 && b == 0.0 {
        return Err(FuncError::call(
            "can't divide zero by zero or infinity by infinity",
        ));
    }
    number_value(a / b)
}

pub fn modulo(args: Vec<Value>) -> R {
    let (a, b) = (num(&args[0]), num(&args[1]));
    if let Some((x, y)) = ints(&a, &b) {
        if y == 0 {
            // cty returns the dividend when dividing by zero.
            return Ok(Value::Number(a));
        }
        return Ok(Value::from(x.wrapping_rem(y)));
    }
    let (x, y) = (float(&a), float(&b));
    if y == 0.0 {
        return Ok(Value::Number(a));
    }
    // The remainder of a division truncated toward zero, like Go's `%`.
    number_value(x - y * (x / y).trunc())
}

fn compare(args: &[Value]) -> Ordering {
    num_cmp(&num(&args[0]), &num(&args[1]))
}

pub fn greaterthan(args: Vec<Value>) -> R {
    Ok(Value::Bool(compare(&args) == Ordering::Greater))
}

pub fn greaterthanorequalto(args: Vec<Value>) -> R {
    Ok(Value::Bool(compare(&args) != Ordering::Less))
}

pub fn lessthan(args: Vec<Value>) -> R {
    Ok(Value::Bool(compare(&args) == Ordering::Less))
}

pub fn lessthanorequalto(args: Vec<Value>) -> R {
    Ok(Value::Bool(compare(&args) != Ordering::Greater))
}

pub fn negate(args: Vec<Value>) -> R {
    let n = num(&args[0]);
    match n.as_i64().and_then(i64::checked_neg) {
        Some(i) => Ok(Value::from(i)),
        None => number_value(-float(&n)),
    }
}

fn extreme(args: Vec<Value>, want: Ordering) -> R {
    let mut best: Option<Number> = None;
    for v in &args {
        let n = num(v);
        if best.is_none_or(|b| num_cmp(&n, &b) == want) {
            best = Some(n);
        }
    }
    best.map(Value::Number)
        .ok_or_else(|| FuncError::call("must pass at least one number"))
}

pub fn min(args: Vec<Value>) -> R {
    extreme(args, Ordering::Less)
}

pub fn max(args: Vec<Value>) -> R {
    extreme(args, Ordering::Greater)
}

fn round_with(args: &[Value], f: fn(f64) -> f64) -> R {
    let n = num(&args[0]);
    if n.as_i64().is_some() || n.as_u64().is_some() {
        return Ok(Value::Number(n));
    }
    number_value(f(float(&n)))
}

pub fn int(args: Vec<Value>) -> R {
    round_with(&args, f64::trunc)
}

pub fn ceil(args: Vec<Value>) -> R {
    round_with(&args, f64::ceil)
}

pub fn floor(args: Vec<Value>) -> R {
    round_with(&args, f64::floor)
}

pub fn log(args: Vec<Value>) -> R {
    number_value(f64_of(&args[0]).ln() / f64_of(&args[1]).ln())
}

pub fn pow(args: Vec<Value>) -> R {
    number_value(f64_of(&args[0]).powf(f64_of(&args[1])))
}

pub fn signum(args: Vec<Value>) -> R {
    let n = to_int(&args[0]).map_err(FuncError::call)?;
    Ok(Value::from(n.signum()))
}

pub fn parseint(args: Vec<Value>) -> R {
    let Value::String(text) = &args[0] else {
        return Err(FuncError::arg(
            0,
            format!(
                "first argument must be a string, not {}",
                Ty::of(&args[0]).friendly_name()
            ),
        ));
    };
    let base = to_int(&args[1]).map_err(|m| FuncError::arg(1, m))?;
    if !(2..=62).contains(&base) {
        return Err(FuncError::arg(
            1,
            "base must be a whole number between 2 and 62 inclusive",
        ));
    }
    parse_big_int(text, base as u32).ok_or_else(|| {
        FuncError::arg(
            0,
            format!("cannot parse {} as a base {base} integer", go_q(text)),
        )
    })
}

fn go_q(s: &str) -> String {
    super::value::go_quote(s)
}

/// Go's `big.Int.SetString` with an explicit base: optional sign, then digits (letters are
/// case-insensitive up to base 36; above it lowercase come before uppercase).
fn parse_big_int(text: &str, base: u32) -> Option<Value> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut acc: Option<i128> = Some(0);
    let mut approx = 0f64;
    for c in digits.chars() {
        let d = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 10,
            'A'..='Z' if base <= 36 => c as u32 - 'A' as u32 + 10,
            'A'..='Z' => c as u32 - 'A' as u32 + 36,
            _ => return None,
        };
        if d >= base {
            return None;
        }
        acc = acc
            .and_then(|a| a.checked_mul(base as i128))
            .and_then(|a| a.checked_add(d as i128));
        approx = approx * base as f64 + d as f64;
    }
    let value = match acc {
        Some(a) => {
            let a = if neg { -a } else { a };
            if let Ok(i) = i64::try_from(a) {
                Number::from(i)
            } else if let Ok(u) = u64::try_from(a) {
                Number::from(u)
            } else {
                Number::from_f64(a as f64)?
            }
        }
        None => Number::from_f64(if neg { -approx } else { approx })?,
    };
    Some(Value::Number(value))
}
