//! `format` and `formatlist`: cty's printf dialect. Verbs are `%[flags][width][.prec][[n]]X`;
//! strings pad and truncate by grapheme cluster, numbers format as Go's `math/big` formats them,
//! `%v` of anything that is not a string or number (and `%#v` of anything) is JSON.

use hcl::Value;
use unicode_segmentation::UnicodeSegmentation;

use super::value::{convert, go_quote, go_quote_rune, json_encode, num, Decimal, Ty};
use super::FuncError;

type R = Result<Value, FuncError>;

#[derive(Debug, Default, Clone)]
struct Verb<'a> {
    raw: &'a str,
    offset: usize,
    arg_num: usize,
    mode: char,
    zero: bool,
    sharp: bool,
    plus: bool,
    minus: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Verb<'_> {
    fn unsupported(&self, why: &str) -> String {
        format!(
            "unsupported value for {} at {}: {why}",
            go_quote(self.raw),
            self.offset
        )
    }
}

/// Formats `args` by `fmt`; errors are plain messages, except too many arguments, which names
/// the first unused argument (counting the format string as argument 0).
fn format_fsm(fmt: &str, args: &[Value]) -> Result<String, FuncError> {
    let b = fmt.as_bytes();
    let mut out = String::new();
    let mut p = 0;
    let mut next_arg = 1;
    let mut highest = 0;
    let eof_err = || {
        FuncError::call(format!(
            "invalid format string starting at offset {}",
            b.len()
        ))
    };
    let bad_char = |p: usize| {
        let c = fmt[p..].chars().next().unwrap_or('\u{fffd}');
        FuncError::call(format!(
            "unrecognized format character {} at offset {p}",
            go_quote_rune(c)
        ))
    };
    while p < b.len() {
        if b[p] != b'%' {
            let end = fmt[p..].find('%').map_or(b.len(), |i| p + i);
            out.push_str(&fmt[p..end]);
            p = end;
            continue;
        }
        if b.get(p + 1) == Some(&b'%') {
            out.push('%');
            p += 2;
            continue;
        }
        let ts = p;
        p += 1;
        let mut verb = Verb {
            arg_num: next_arg,
            offset: ts,
            ..Verb::default()
        };
        while let Some(c) = b.get(p) {
            match c {
                b'0' => verb.zero = true,
                b'#' => verb.sharp = true,
                b'-' => verb.minus = true,
                b'+' => verb.plus = true,
                b' ' => verb.space = true,
                _ => break,
            }
            p += 1;
        }
        if matches!(b.get(p), Some(b'1'..=b'9')) {
            verb.width = Some(read_decimal(b, &mut p));
        }
        if b.get(p) == Some(&b'.') {
            p += 1;
            verb.prec = Some(read_decimal(b, &mut p));
        }
        if b.get(p) == Some(&b'[') {
            p += 1;
            match b.get(p) {
                Some(b'1'..=b'9') => {}
                Some(_) => return Err(bad_char(p)),
                None => return Err(eof_err()),
            }
            let n = read_decimal(b, &mut p);
            match b.get(p) {
                Some(b']') => p += 1,
                Some(_) => return Err(bad_char(p)),
                None => return Err(eof_err()),
            }
            verb.arg_num = n;
        }
        match b.get(p) {
            Some(c) if c.is_ascii_alphabetic() => {
                verb.mode = *c as char;
                p += 1;
                verb.raw = &fmt[ts..p];
                highest = highest.max(verb.arg_num);
                append_verb(&verb, &mut out, args).map_err(FuncError::call)?;
                next_arg = verb.arg_num + 1;
            }
            Some(_) => return Err(bad_char(p)),
            None => return Err(eof_err()),
        }
    }
    if highest < args.len() {
        let first_bad = highest + 1;
        return Err(if highest == 0 {
            FuncError::arg(first_bad, "too many arguments; no verbs in format string")
        } else {
            FuncError::arg(
                first_bad,
                format!("too many arguments; only {highest} used by format string"),
            )
        });
    }
    Ok(out)
}

/// The decimal number at `b[*p..]` (0 when there is none, saturating on overflow); moves `p`
/// past its digits.
fn read_decimal(b: &[u8], p: &mut usize) -> usize {
    let mut n = 0usize;
    while let Some(c @ b'0'..=b'9') = b.get(*p) {
        n = n.saturating_mul(10).saturating_add((c - b'0') as usize);
        *p += 1;
    }
    n
}

fn append_verb(verb: &Verb, out: &mut String, args: &[Value]) -> Result<(), String> {
    let Some(arg) = args.get(verb.arg_num.wrapping_sub(1)) else {
        return Err(format!(
            "not enough arguments for {} at {}: need index {} but have {} total",
            go_quote(verb.raw),
            verb.offset,
            verb.arg_num,
            args.len()
        ));
    };
    if verb.mode != 'v' && arg.is_null() {
        return Err(verb.unsupported("null value cannot be formatted"));
    }
    match verb.mode {
        'v' => {
            let text = match arg {
                Value::String(s) if !verb.sharp => s.clone(),
                Value::Number(n) if !verb.sharp => signed(&Decimal::of(n), 'g', -1),
                other => json_encode(other),
            };
            out.push_str(&pad(verb, text));
        }
        't' => {
            let v = convert(arg.clone(), &Ty::Bool).map_err(|m| verb.unsupported(&m))?;
            out.push_str(if matches!(v, Value::Bool(true)) {
                "true"
            } else {
                "false"
            });
        }
        'b' | 'd' | 'o' | 'x' | 'X' | 'e' | 'E' | 'f' | 'g' | 'G' => {
            let v = convert(arg.clone(), &Ty::Num).map_err(|m| verb.unsupported(&m))?;
            let n = num(&v);
            if matches!(verb.mode, 'e' | 'E' | 'f' | 'g' | 'G') {
                out.push_str(&format_float(verb, &Decimal::of(&n)));
            } else {
                out.push_str(&format_integer(verb, &n)?);
            }
        }
        's' | 'q' => {
            let v = convert(arg.clone(), &Ty::Str).map_err(|m| verb.unsupported(&m))?;
            let mut s = match v {
                Value::String(s) => s,
                _ => String::new(),
            };
            if let Some(prec) = verb.prec.filter(|p| *p > 0) {
                s = s.graphemes(true).take(prec).collect();
            }
            if verb.mode == 'q' {
                let mut q = String::new();
                crate::gojson::push_string(&s, &mut q);
                s = q;
            }
            out.push_str(&pad(verb, s));
        }
        other => {
            return Err(format!(
                "unsupported format verb {} in {} at offset {}",
                go_quote_rune(other),
                go_quote(verb.raw),
                verb.offset
            ))
        }
    }
    Ok(())
}

fn signed(d: &Decimal, fmt: char, prec: i32) -> String {
    let body = d.text(fmt, prec);
    if d.neg {
        format!("-{body}")
    } else {
        body
    }
}

/// cty's own padding (for strings and `%v`): width in grapheme clusters, `0` pads with zeros,
/// `-` pads on the right.
fn pad(verb: &Verb, text: String) -> String {
    let Some(width) = verb.width else {
        return text;
    };
    let len = text.graphemes(true).count();
    if len >= width {
        return text;
    }
    let fill = if verb.zero { "0" } else { " " }.repeat(width - len);
    if verb.minus {
        text + &fill
    } else {
        fill + &text
    }
}

/// Go's `big.Float` `Format` for `%e %E %f %g %G`.
fn format_float(verb: &Verb, d: &Decimal) -> String {
    let prec = match verb.prec {
        Some(p) => p as i32,
        None if matches!(verb.mode, 'g' | 'G') => -1,
        None => 6,
    };
    let body = d.text(verb.mode, prec);
    let sign = if d.neg {
        "-"
    } else if verb.plus {
        "+"
    } else if verb.space {
        " "
    } else {
        ""
    };
    let len = sign.len() + body.len();
    let padding = verb.width.map_or(0, |w| w.saturating_sub(len));
    if verb.zero && !verb.minus {
        format!("{sign}{}{body}", "0".repeat(padding))
    } else if verb.minus {
        format!("{sign}{body}{}", " ".repeat(padding))
    } else {
        format!("{}{sign}{body}", " ".repeat(padding))
    }
}

/// Go's `big.Int` `Format` for `%b %d %o %x %X`.
fn format_integer(verb: &Verb, n: &hcl::Number) -> Result<String, String> {
    let (neg, magnitude): (bool, Option<u128>) = if let Some(i) = n.as_i64() {
        (i < 0, Some(i.unsigned_abs() as u128))
    } else if let Some(u) = n.as_u64() {
        (false, Some(u as u128))
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        if f.fract() != 0.0 {
            return Err(verb.unsupported("an integer is required"));
        }
        let a = f.abs();
        (f < 0.0, (a < 3.4e38).then_some(a as u128))
    };
    let mut digits = match (verb.mode, magnitude) {
        ('d', _) | (_, None) => {
            // Decimal digits straight from the number, exact for literals like 1e30.
            let d = Decimal::of(n);
            let mut s: String = d.digits.iter().map(|c| *c as char).collect();
            let zeros = (d.exp.max(0) as usize).saturating_sub(s.len());
            s.push_str(&"0".repeat(zeros));
            if s.is_empty() {
                s.push('0');
            }
            s
        }
        ('b', Some(m)) => format!("{m:b}"),
        ('o', Some(m)) => format!("{m:o}"),
        ('x', Some(m)) => format!("{m:x}"),
        (_, Some(m)) => format!("{m:X}"),
    };
    let sign = if neg {
        "-"
    } else if verb.plus {
        "+"
    } else if verb.space {
        " "
    } else {
        ""
    };
    let prefix = match (verb.sharp, verb.mode) {
        (true, 'b') => "0b",
        (true, 'o') => "0",
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        _ => "",
    };
    let mut zeros = 0;
    if let Some(prec) = verb.prec {
        if digits.len() < prec {
            zeros = prec - digits.len();
        } else if digits == "0" && prec == 0 {
            digits.clear();
            return Ok(String::new());
        }
    }
    let length = sign.len() + prefix.len() + zeros + digits.len();
    let (mut left, mut right) = (0, 0);
    if let Some(width) = verb.width.filter(|w| length < *w) {
        let d = width - length;
        if verb.minus {
            right = d;
        } else if verb.zero && verb.prec.is_none() {
            zeros = d;
        } else {
            left = d;
        }
    }
    Ok(format!(
        "{}{sign}{prefix}{}{digits}{}",
        " ".repeat(left),
        "0".repeat(zeros),
        " ".repeat(right)
    ))
}

pub fn format(args: Vec<Value>) -> R {
    let fmt = match &args[0] {
        Value::String(s) => s.as_str(),
        _ => "",
    };
    format_fsm(fmt, &args[1..]).map(Value::String)
}

pub fn formatlist(args: Vec<Value>) -> R {
    let fmt = match &args[0] {
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let rest = &args[1..];
    if rest.is_empty() {
        let s = format_fsm(&fmt, rest)?;
        return Ok(Value::Array(vec![Value::String(s)]));
    }
    let mut iter_len: Option<(usize, usize)> = None;
    for (i, arg) in rest.iter().enumerate() {
        if let Value::Array(items) = arg {
            match iter_len {
                None => iter_len = Some((items.len(), i)),
                Some((len, chooser)) if len != items.len() => {
                    return Err(FuncError::arg(
                        i + 1,
                        format!(
                            "argument {} has length {}, which is inconsistent with argument {} of length {len}",
                            i + 1,
                            items.len(),
                            chooser + 1
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let count = iter_len.map_or(1, |(len, _)| len);
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let fmt_args: Vec<Value> = rest
            .iter()
            .map(|a| match a {
                Value::Array(items) => items[n].clone(),
                other => other.clone(),
            })
            .collect();
        let s = format_fsm(&fmt, &fmt_args).map_err(|e| {
            let msg = match e {
                FuncError::Arg { message, .. } | FuncError::Call(message) => message,
                other => format!("{other:?}"),
            };
            FuncError::call(format!("error on format iteration {n}: {msg}"))
        })?;
        out.push(Value::String(s));
    }
    Ok(Value::Array(out))
}
