//! Times as buildx prints them in history output: Go's RFC 3339 with nanoseconds, the local
//! `2006-01-02 15:04:05` layout, `go-units`' human durations and buildx's short durations.

use bollard_buildkit_proto::google::protobuf::Timestamp;

/// Nanoseconds since the Unix epoch (or a span of them).
pub type Nanos = i64;

const NANOS_PER_SEC: i64 = 1_000_000_000;

pub fn timestamp_nanos(ts: &Option<Timestamp>) -> Nanos {
    ts.as_ref()
        .map(|t| t.seconds * NANOS_PER_SEC + i64::from(t.nanos))
        .unwrap_or(0)
}

pub fn now_nanos() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The local zone's offset from UTC at `t`, in seconds (what Go's `time.Local` applies).
pub fn local_offset(t: Nanos) -> i64 {
    let secs = t.div_euclid(NANOS_PER_SEC) as libc::time_t;
    // SAFETY: localtime_r only writes into the tm we own.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// Go's `time.RFC3339Nano` at the given UTC offset (`Z` for 0).
pub fn rfc3339_nano(t: Nanos, offset: i64) -> String {
    let local = t + offset * NANOS_PER_SEC;
    let secs = local.div_euclid(NANOS_PER_SEC);
    let frac = local.rem_euclid(NANOS_PER_SEC);
    let mut out = date_time(secs, 'T');
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", o / 3600, (o / 60) % 60));
    }
    out
}

/// `2006-01-02 15:04:05` in local time.
pub fn local_date_time(t: Nanos) -> String {
    let local = t + local_offset(t) * NANOS_PER_SEC;
    date_time(local.div_euclid(NANOS_PER_SEC), ' ')
}

fn date_time(secs: i64, sep: char) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = kiln_bake::calendar::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses RFC 3339 (with optional fraction and a `Z` or `±hh:mm` zone).
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut frac = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = format!("{digits:0<9}").parse().ok()?;
        rest = &r[digits.len()..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (z[1..3].parse::<i64>().ok()? * 3600 + z[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    u32::try_from(mo).ok()?;
    u32::try_from(d).ok()?;
    let days = kiln_bake::calendar::days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(secs * NANOS_PER_SEC + frac)
}

/// Go's `time.ParseDuration` (`1h30m`, `2.5s`, `300ms`, ...), in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<Nanos> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += n * unit;
    }
    let v = total as i64;
    Some(if neg { -v } else { v })
}

/// buildx's history durations: `1.2s` under a minute, else `3m  5s`.
pub fn format_duration(d: Nanos) -> String {
    if d < 60 * NANOS_PER_SEC {
        return format!("{:.1}s", d as f64 / 1e9);
    }
    let secs = d / NANOS_PER_SEC;
    format!("{}m {:2}s", secs / 60, secs % 60)
}

/// `go-units`' `HumanDuration`: `Less than a second`, `5 seconds`, `About a minute`, ...
pub fn human_duration(d: Nanos) -> String {
    let seconds = d / NANOS_PER_SEC;
    let minutes = seconds / 60;
    let hours = (d as f64 / 3600e9).round() as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", d / NANOS_PER_SEC / 3600 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let s = "2026-11-23T16:21:34.978917532Z";
        let t = parse_rfc3339(s).unwrap();
        assert_eq!(rfc3339_nano(t, 0), s);
        assert_eq!(rfc3339_nano(t, 3600), "2026-11-23T17:21:34.978917532+01:00");
        assert_eq!(
            parse_rfc3339("2026-11-23T17:21:34+01:00").unwrap(),
            parse_rfc3339("2026-11-23T16:21:34Z").unwrap()
        );
        assert_eq!(
            rfc3339_nano(1_795_450_657_729_095_000, 0),
            "2026-11-23T16:17:37.729095Z"
        );
    }

    #[test]
    fn durations_print_like_buildx() {
        assert_eq!(format_duration(900_000_000), "0.9s");
        assert_eq!(format_duration(2_453_444_199), "2.5s");
        assert_eq!(format_duration(65 * NANOS_PER_SEC), "1m  5s");
        assert_eq!(format_duration(754 * NANOS_PER_SEC), "12m 34s");
        assert_eq!(human_duration(35 * NANOS_PER_SEC), "35 seconds");
        assert_eq!(human_duration(90 * NANOS_PER_SEC), "About a minute");
        assert_eq!(human_duration(7 * 60 * NANOS_PER_SEC), "7 minutes");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3 * 3600 * NANOS_PER_SEC), "3 hours");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("2s"), Some(2 * NANOS_PER_SEC));
        assert_eq!(parse_go_duration("1h30m"), Some(5400 * NANOS_PER_SEC));
        assert_eq!(parse_go_duration("1.5ms"), Some(1_500_000));
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
