//! Number, size and time formatting shared by the progress displays.
//!
//! buildx formats through Go's `fmt`, `tonistiigi/units` and `time`; these helpers reproduce the
//! exact strings so kiln's output can be compared with buildx's byte for byte. Nothing here
//! writes to a terminal.

use bollard_buildkit_proto::google::protobuf::Timestamp;
use kiln_bake::calendar::civil_from_days;

/// A point in time as nanoseconds since the Unix epoch, the resolution BuildKit sends.
pub(crate) type Nanos = i64;

pub(crate) const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Converts a protobuf timestamp the way Go's `AsTime` does (no validation, just arithmetic).
pub(crate) fn timestamp_nanos(ts: &Timestamp) -> Nanos {
    ts.seconds
        .saturating_mul(NANOS_PER_SEC)
        .saturating_add(i64::from(ts.nanos))
}

pub(crate) fn timestamp_from_nanos(t: Nanos) -> Timestamp {
    Timestamp {
        seconds: t.div_euclid(NANOS_PER_SEC),
        nanos: t.rem_euclid(NANOS_PER_SEC) as i32,
    }
}

pub(crate) fn opt_timestamp_nanos(ts: &Option<Timestamp>) -> Option<Nanos> {
    ts.as_ref().map(timestamp_nanos)
}

pub(crate) fn seconds_between(from: Nanos, to: Nanos) -> f64 {
    (to.saturating_sub(from)) as f64 / NANOS_PER_SEC as f64
}

/// A byte count as `units.Bytes` prints it with `%.2f`: plain bytes below 1kB (`512B`), otherwise
/// two decimals in decimal units (`2.34kB`, `1.20MB`).
pub(crate) fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut unit = 0usize;
    let mut base: i64 = 1;
    // Walk up while the value reaches the next unit; negative sizes mirror the positive walk.
    while let Some(next) = base.checked_mul(1000) {
        let reached = if n >= 0 { n >= next } else { n <= -next };
        if !reached {
            break;
        }
        unit += 1;
        base = next;
    }
    if unit == 0 {
        return format!("{n}B");
    }
    format!("{:.2}{}", n as f64 / base as f64, UNITS[unit])
}

/// Go's `time.RFC3339Nano` in UTC, the format `encoding/json` uses for `time.Time`.
pub(crate) fn rfc3339_nano(t: Nanos) -> String {
    let secs = t.div_euclid(NANOS_PER_SEC);
    let frac = t.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Cuts `s` to at most `max` characters without splitting a UTF-8 sequence.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Left-aligns `left` and puts `right` after it so the whole is `width` columns wide, like
/// progressui's `align` (`%-*s %s`).
pub(crate) fn align(left: &str, right: &str, width: usize) -> String {
    let pad = width.saturating_sub(char_len(right) + 1);
    format!("{left:<pad$} {right}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_matches_units_bytes() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(2), "2B");
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(1000), "1.00kB");
        assert_eq!(human_bytes(2340), "2.34kB");
        assert_eq!(human_bytes(1_200_000), "1.20MB");
        assert_eq!(human_bytes(3_456_789_012), "3.46GB");
        assert_eq!(human_bytes(i64::MAX), "9.22EB");
    }

    #[test]
    fn rfc3339_nano_trims_fraction() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_714_566_896_789_000_000),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339_nano(1_714_566_896_000_000_001),
            "2024-05-01T12:34:56.000000001Z"
        );
        assert_eq!(rfc3339_nano(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn align_pads_to_width() {
        assert_eq!(align("ab", "cd", 8), "ab    cd");
        assert_eq!(align("abcdefgh", "cd", 4), "abcdefgh cd");
    }
}
