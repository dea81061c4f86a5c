//! Date and time functions: `formatdate`, `timeadd` and `timestamp`, over RFC 3339 timestamps
//! parsed as strictly as cty parses them (with its wording for each way a timestamp can be
//! wrong), and Go's duration syntax for `timeadd`.

use std::time::{SystemTime, UNIX_EPOCH};

use hcl::Value;

use super::value::{go_quote, str_of};
use super::FuncError;
use crate::calendar::{civil_from_days, days_from_civil};

type R = Result<Value, FuncError>;

/// An instant with the UTC offset it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Time {
    /// Seconds since the Unix epoch (UTC).
    unix: i64,
    nanos: u32,
    /// Offset east of UTC, in seconds.
    offset: i32,
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(month: i64, year: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Broken-down local fields of a time.
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
}

impl Time {
    fn fields(&self) -> Fields {
        let local = self.unix + self.offset as i64;
        let days = local.div_euclid(86400);
        let secs = local.rem_euclid(86400);
        let (year, month, day) = civil_from_days(days);
        Fields {
            year,
            month,
            day,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
        }
    }

    /// Go's `-0700` / `-07:00` offset layouts.
    fn offset_text(&self, colon: bool) -> String {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let a = self.offset.unsigned_abs() / 60;
        if colon {
            format!("{sign}{:02}:{:02}", a / 60, a % 60)
        } else {
            format!("{sign}{:02}{:02}", a / 60, a % 60)
        }
    }

    /// RFC 3339 without fractional seconds, as Go's `time.RFC3339` layout writes it.
    fn rfc3339(&self) -> String {
        let f = self.fields();
        let zone = if self.offset == 0 {
            "Z".to_string()
        } else {
            self.offset_text(true)
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
            f.year, f.month, f.day, f.hour, f.minute, f.second
        )
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The instant of a local date (`(year, month, day)`) and clock (`(hour, minute, second)`).
fn make_time(date: (i64, i64, i64), clock: (i64, i64, i64), nanos: u32, offset: i32) -> Time {
    let (year, month, day) = date;
    let (hour, min, sec) = clock;
    let days = days_from_civil(year, month, day);
    let local = days * 86400 + hour * 3600 + min * 60 + sec;
    Time {
        unix: local - offset as i64,
        nanos,
        offset,
    }
}

fn digits(s: &[u8], min: u32, max: u32) -> Option<u32> {
    let mut x = 0u32;
    for c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x * 10 + (c - b'0') as u32;
    }
    (min..=max).contains(&x).then_some(x)
}

fn parse_nanos(frac: &[u8]) -> u32 {
    // At most nine digits count; the rest are dropped.
    let mut ns = 0u32;
    for i in 0..9 {
        ns = ns * 10 + frac.get(i).map_or(0, |c| (c - b'0') as u32);
    }
    ns
}

/// Go's fast RFC 3339 parser (`time.parseRFC3339`), as cty copies it: the strict form.
fn parse_rfc3339_fast(s: &str) -> Option<Time> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let year = digits(&b[0..4], 0, 9999)?;
    let month = digits(&b[5..7], 1, 12)?;
    let day = digits(&b[8..10], 1, days_in(month as i64, year as i64) as u32)?;
    let hour = digits(&b[11..13], 0, 23)?;
    let min = digits(&b[14..16], 0, 59)?;
    let sec = digits(&b[17..19], 0, 59)?;
    if !(b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':') {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0;
    if rest.len() >= 2 && rest[0] == b'.' && rest[1].is_ascii_digit() {
        let n = 1 + rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        nanos = parse_nanos(&rest[1..n]);
        rest = &rest[n..];
    }
    let mut offset = 0i32;
    if rest != b"Z" {
        if rest.len() != 6 {
            return None;
        }
        let hr = digits(&rest[1..3], 0, 23)?;
        let mm = digits(&rest[4..6], 0, 59)?;
        if !((rest[0] == b'-' || rest[0] == b'+') && rest[3] == b':') {
            return None;
        }
        offset = ((hr * 60 + mm) * 60) as i32;
        if rest[0] == b'-' {
            offset = -offset;
        }
    }
    Some(make_time(
        (year as i64, month as i64, day as i64),
        (hour as i64, min as i64, sec as i64),
        nanos,
        offset,
    ))
}

/// A failure of Go's general `time.Parse` with the RFC 3339 layout.
struct ParseError {
    layout_elem: &'static str,
    value_elem: String,
    message: String,
}

fn perr(layout_elem: &'static str, value_elem: &str, message: &str) -> ParseError {
    ParseError {
        layout_elem,
        value_elem: value_elem.to_string(),
        message: message.to_string(),
    }
}

/// Go's `getnum`: one or two digits (exactly two when `fixed`).
fn getnum(s: &str, fixed: bool) -> Option<(u32, &str)> {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if !b.get(1).is_some_and(u8::is_ascii_digit) {
        if fixed {
            return None;
        }
        return Some(((b[0] - b'0') as u32, &s[1..]));
    }
    Some((((b[0] - b'0') * 10 + (b[1] - b'0')) as u32, &s[2..]))
}

/// Go's general `time.Parse(time.RFC3339, s)`, far enough to produce its errors (and its
/// leniencies, which cty then rejects itself).
fn parse_general(s: &str) -> Result<Time, ParseError> {
    let mut value = s;
    let skip = |value: &mut &str, lit: &'static str| -> Result<(), ParseError> {
        match value.strip_prefix(lit) {
            Some(rest) => {
                *value = rest;
                Ok(())
            }
            None => Err(perr(lit, value, "")),
        }
    };
    // Year.
    let vb = value.as_bytes();
    if vb.len() < 4 || !vb[0].is_ascii_digit() {
        return Err(perr("2006", value, ""));
    }
    let year: i64 = value
        .get(..4)
        .and_then(|y| y.parse().ok())
        .ok_or_else(|| perr("2006", value, ""))?;
    value = &value[4..];
    skip(&mut value, "-")?;
    let hold = value;
    let (month, rest) = getnum(value, true).ok_or_else(|| perr("01", hold, ""))?;
    value = rest;
    if !(1..=12).contains(&month) {
        return Err(perr("01", value, ": month out of range"));
    }
    skip(&mut value, "-")?;
    let hold = value;
    let (day, rest) = getnum(value, true).ok_or_else(|| perr("02", hold, ""))?;
    value = rest;
    skip(&mut value, "T")?;
    let hold = value;
    let (hour, rest) = getnum(value, false).ok_or_else(|| perr("15", hold, ""))?;
    value = rest;
    if hour >= 24 {
        return Err(perr("15", value, ": hour out of range"));
    }
    skip(&mut value, ":")?;
    let hold = value;
    let (min, rest) = getnum(value, true).ok_or_else(|| perr("04", hold, ""))?;
    value = rest;
    if min >= 60 {
        return Err(perr("04", value, ": minute out of range"));
    }
    skip(&mut value, ":")?;
    let hold = value;
    let (sec, rest) = getnum(value, true).ok_or_else(|| perr("05", hold, ""))?;
    value = rest;
    if sec >= 60 {
        return Err(perr("05", value, ": second out of range"));
    }
    let mut nanos = 0;
    let vb = value.as_bytes();
    if vb.len() >= 2 && (vb[0] == b'.' || vb[0] == b',') && vb[1].is_ascii_digit() {
        let n = 1 + vb[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        nanos = parse_nanos(&vb[1..n]);
        value = &value[n..];
    }
    // Zone.
    let hold = value;
    let offset;
    if let Some(rest) = value.strip_prefix('Z') {
        value = rest;
        offset = 0;
    } else {
        let vb = value.as_bytes();
        if vb.len() < 6 || vb[3] != b':' {
            return Err(perr("Z07:00", hold, ""));
        }
        let (sign, hh, mm) = (
            vb[0],
            value.get(1..3).unwrap_or(""),
            value.get(4..6).unwrap_or(""),
        );
        value = value.get(6..).unwrap_or("");
        let hr = getnum(hh, true).map(|x| x.0);
        let mn = getnum(mm, true).map(|x| x.0);
        let (Some(hr), Some(mn)) = (hr, mn) else {
            return Err(perr("Z07:00", hold, ""));
        };
        if hr > 24 {
            return Err(perr(
                "Z07:00",
                value,
                ": time zone offset hour out of range",
            ));
        }
        if mn > 60 {
            return Err(perr(
                "Z07:00",
                value,
                ": time zone offset minute out of range",
            ));
        }
        let o = ((hr * 60 + mn) * 60) as i32;
        offset = match sign {
            b'+' => o,
            b'-' => -o,
            _ => return Err(perr("Z07:00", hold, "")),
        };
    }
    if !value.is_empty() {
        return Err(perr(
            "",
            value,
            &format!(": extra text: {}", go_quote(value)),
        ));
    }
    if day < 1 || day as i64 > days_in(month as i64, year) {
        return Err(perr("", value, ": day out of range"));
    }
    Ok(make_time(
        (year, month as i64, day as i64),
        (hour as i64, min as i64, sec as i64),
        nanos,
        offset,
    ))
}

/// `time.Parse(time.RFC3339, s)` with cty's translation of Go's parse errors into messages.
/// (The cty in buildx 0.29.1 as shipped parses with Go's lenient general parser: one-digit
/// hours and comma fractions pass.)
fn parse_timestamp(s: &str) -> Result<Time, String> {
    if let Some(t) = parse_rfc3339_fast(s) {
        return Ok(t);
    }
    let err = match parse_general(s) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    if err.layout_elem.is_empty() && err.value_elem.is_empty() && !err.message.is_empty() {
        return Err(format!("not a valid RFC3339 timestamp{}", err.message));
    }
    let what = match err.layout_elem {
        "2006" => "year",
        "01" => "month",
        "02" => "day of month",
        "15" => "hour",
        "04" => "minute",
        "05" => "second",
        "Z07:00" => "UTC offset",
        "T" => {
            return Err(
                "not a valid RFC3339 timestamp: missing required time introducer 'T'".into(),
            )
        }
        ":" | "-" => {
            return Err(if err.value_elem.is_empty() {
                format!(
                    "not a valid RFC3339 timestamp: end of string where {} is expected",
                    go_quote(err.layout_elem)
                )
            } else {
                format!(
                    "not a valid RFC3339 timestamp: found {} where {} is expected",
                    go_quote(&err.value_elem),
                    go_quote(err.layout_elem)
                )
            })
        }
        _ => "timestamp segment",
    };
    if err.value_elem.is_empty() {
        return Err(format!(
            "not a valid RFC3339 timestamp: end of string before {what}"
        ));
    }
    Err(format!(
        "not a valid RFC3339 timestamp: cannot use {} as {what}",
        go_quote(&err.value_elem)
    ))
}

/// Splits a `formatdate` format into literal runs, quoted literals and verb runs.
fn date_tokens(f: &str) -> Vec<&str> {
    let b = f.as_bytes();
    let is_verb = |c: u8| c.is_ascii_alphabetic();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
            } else {
                i += 1;
                loop {
                    if i >= b.len() {
                        break;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
        } else if is_verb(b[i]) {
            let c = b[i];
            while i < b.len() && b[i] == c {
                i += 1;
            }
        } else {
            i += 1;
            while i < b.len() && b[i] != b'\'' && !is_verb(b[i]) {
                i += 1;
            }
        }
        out.push(&f[start..i]);
    }
    out
}

pub fn formatdate(args: Vec<Value>) -> R {
    let format = str_of(&args[0]);
    let t = parse_timestamp(str_of(&args[1])).map_err(|m| FuncError::arg(1, m))?;
    let f = t.fields();
    let bad = |tok: &str, why: &str| {
        FuncError::arg(
            0,
            format!("invalid date format verb {}{why}", go_quote(tok)),
        )
    };
    let mut out = String::new();
    for tok in date_tokens(format) {
        let b = tok.as_bytes();
        if b[0] == b'\'' {
            if b.len() == 1 || b[b.len() - 1] != b'\'' {
                return Err(FuncError::arg(0, "unterminated literal '"));
            }
            if b.len() == 2 {
                out.push('\'');
            } else {
                out.push_str(&tok[1..tok.len() - 1].replace("''", "'"));
            }
            continue;
        }
        if !b[0].is_ascii_alphabetic() {
            out.push_str(tok);
            continue;
        }
        let n = b.len();
        match b[0] {
            b'Y' => match n {
                2 => out.push_str(&format!("{:02}", f.year.rem_euclid(100))),
                4 => out.push_str(&format!("{:04}", f.year)),
                _ => return Err(bad(tok, ": year must either be \"YY\" or \"YYYY\"")),
            },
            b'M' => {
                let m = f.month as usize;
                match n {
                    1 => out.push_str(&m.to_string()),
                    2 => out.push_str(&format!("{m:02}")),
                    3 => out.push_str(&MONTHS[m - 1][..3]),
                    4 => out.push_str(MONTHS[m - 1]),
                    _ => {
                        return Err(bad(
                            tok,
                            ": month must be \"M\", \"MM\", \"MMM\", or \"MMMM\"",
                        ))
                    }
                }
            }
            b'D' => match n {
                1 => out.push_str(&f.day.to_string()),
                2 => out.push_str(&format!("{:02}", f.day)),
                _ => return Err(bad(tok, ": day of month must either be \"D\" or \"DD\"")),
            },
            b'E' => match n {
                3 => out.push_str(&WEEKDAYS[f.weekday][..3]),
                4 => out.push_str(WEEKDAYS[f.weekday]),
                _ => return Err(bad(tok, ": day of week must either be \"EEE\" or \"EEEE\"")),
            },
            b'h' => match n {
                1 => out.push_str(&f.hour.to_string()),
                2 => out.push_str(&format!("{:02}", f.hour)),
                _ => return Err(bad(tok, ": 24-hour must either be \"h\" or \"hh\"")),
            },
            b'H' => {
                let h = match f.hour % 12 {
                    0 => 12,
                    h => h,
                };
                match n {
                    1 => out.push_str(&h.to_string()),
                    2 => out.push_str(&format!("{h:02}")),
                    _ => return Err(bad(tok, ": 12-hour must either be \"H\" or \"HH\"")),
                }
            }
            c @ (b'A' | b'a') => {
                if n != 2 {
                    let c = c as char;
                    return Err(bad(tok, &format!(": must be \"{c}{c}\"")));
                }
                let pm = f.hour >= 12;
                out.push_str(match (c == b'A', pm) {
                    (true, false) => "AM",
                    (true, true) => "PM",
                    (false, false) => "am",
                    (false, true) => "pm",
                });
            }
            b'm' => match n {
                1 => out.push_str(&f.minute.to_string()),
                2 => out.push_str(&format!("{:02}", f.minute)),
                _ => return Err(bad(tok, ": minute must either be \"m\" or \"mm\"")),
            },
            b's' => match n {
                1 => out.push_str(&f.second.to_string()),
                2 => out.push_str(&format!("{:02}", f.second)),
                _ => return Err(bad(tok, ": second must either be \"s\" or \"ss\"")),
            },
            b'Z' => match n {
                1 => {
                    if t.offset == 0 {
                        out.push('Z');
                    } else {
                        out.push_str(&t.offset_text(true));
                    }
                }
                3 => {
                    let z = t.offset_text(false);
                    out.push_str(if z == "+0000" { "UTC" } else { &z });
                }
                4 => out.push_str(&t.offset_text(false)),
                5 => out.push_str(&t.offset_text(true)),
                _ => return Err(bad(tok, ": timezone must be Z, ZZZZ, or ZZZZZ")),
            },
            _ => return Err(bad(tok, "")),
        }
    }
    Ok(Value::String(out))
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_duration(orig: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut d: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u128 = 0;
        for c in &b[..int_len] {
            v = v * 10 + (c - b'0') as u128;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let mut f: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.starts_with('.') {
            s = &s[1..];
            let b = s.as_bytes();
            let frac_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for c in &b[..frac_len] {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + (c - b'0') as u128;
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = &s[frac_len..];
        }
        if int_len == 0 && !post {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|c| *c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit_str = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u128 = match unit_str {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit_str),
                    go_quote(orig)
                ))
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u128;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok(-(d as i128));
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i128)
}

pub fn timeadd(args: Vec<Value>) -> R {
    let t = parse_timestamp(str_of(&args[0])).map_err(FuncError::call)?;
    let d = parse_duration(str_of(&args[1])).map_err(FuncError::call)?;
    let total = t.unix as i128 * 1_000_000_000 + t.nanos as i128 + d;
    let moved = Time {
        unix: total.div_euclid(1_000_000_000) as i64,
        nanos: total.rem_euclid(1_000_000_000) as u32,
        offset: t.offset,
    };
    Ok(Value::String(moved.rfc3339()))
}

pub fn timestamp(_args: Vec<Value>) -> R {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let t = Time {
        unix: now,
        nanos: 0,
        offset: 0,
    };
    Ok(Value::String(t.rfc3339()))
}
