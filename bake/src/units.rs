//! Docker's size units (`github.com/docker/go-units`) where buildx reads them: `shm-size` in
//! bake files and `--shm-size` on `kiln build` go through the same parser, as in buildx.

use std::num::ParseFloatError;

/// A size docker's `units.RAMInBytes` refuses.
#[derive(Debug, thiserror::Error)]
#[error("invalid size: {input:?}")]
pub struct InvalidSize {
    input: String,
    #[source]
    number: Option<ParseFloatError>,
}

/// Docker's memory sizes (`64m`, `1g`, `512mb`, `2GiB`, plain bytes), in binary units, as
/// docker's `units.RAMInBytes`: a number, an optional space, and an optional unit
/// (`b`, or `k`/`m`/`g`/`t`/`p` followed by nothing, `b` or `ib`), in any case.
pub fn ram_in_bytes(s: &str) -> Result<u64, InvalidSize> {
    let invalid = |number| InvalidSize {
        input: s.to_string(),
        number,
    };
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: f64 = num.parse().map_err(|e| invalid(Some(e)))?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(invalid(None)),
    };
    Ok((n * (1u64 << shift) as f64) as u64)
}

/// The resource names Docker accepts in `--ulimit` (and Compose `ulimits`).
pub const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(ram_in_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("1gb").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(ram_in_bytes("1 k").unwrap(), 1 << 10);
        assert_eq!(ram_in_bytes("1.5k").unwrap(), 1536);
        assert_eq!(ram_in_bytes("100").unwrap(), 100);
        for bad in ["lots", "", "1x", "1bb", "1ki", "1.2.3m", "1  k"] {
            assert!(ram_in_bytes(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ram_in_bytes("1x").unwrap_err().to_string(),
            "invalid size: \"1x\""
        );
    }
}
