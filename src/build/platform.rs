//! Platforms (`os/arch[/variant]`), parsed and normalised once at the edge.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
pub struct InvalidPlatform(String);

impl FromStr for Platform {
    type Err = InvalidPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidPlatform(s.to_string());
        let lower = s.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        if !os
            .chars()
            .chain(arch.chars())
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad());
        }
        Ok(normalize(os, arch, variant))
    }
}

/// Applies containerd's normalisation so `linux/aarch64` and `linux/arm64/v8` mean
/// `linux/arm64`, as BuildKit will see them.
fn normalize(os: &str, arch: &str, variant: Option<&str>) -> Platform {
    let os = if os == "macos" { "darwin" } else { os };
    let (arch, variant) = match (arch, variant) {
        ("x86_64" | "x86-64" | "amd64", Some("v1")) | ("x86_64" | "x86-64" | "amd64", None) => {
            ("amd64", None)
        }
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", Some("v8") | None) => ("arm64", None),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm", None | Some("7")) => ("arm", Some("v7")),
        ("arm", Some("5")) => ("arm", Some("v5")),
        ("arm", Some("6")) => ("arm", Some("v6")),
        ("arm", Some("8")) => ("arm", Some("v8")),
        ("i386" | "i486" | "i586" | "i686", _) => ("386", None),
        (a, v) => (a, v),
    };
    Platform {
        os: os.to_string(),
        arch: arch.to_string(),
        variant: variant.map(String::from),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Parses `--platform` values, each of which may hold a comma-separated list.
pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Platform>, InvalidPlatform> {
    let mut out: Vec<Platform> = Vec::new();
    for v in values {
        for p in v.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
            let p: Platform = p.parse()?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_aliases() {
        assert_eq!(
            "linux/aarch64".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/arm64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/x86_64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            "linux/arm".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            "Linux/AMD64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_lists_and_dedupes() {
        let l = parse_list(&["linux/amd64,linux/arm64", "linux/amd64"]).unwrap();
        assert_eq!(l.len(), 2);
    }
}
