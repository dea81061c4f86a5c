//! Platforms (`os/arch[/variant]`): parsed once at the edge into [`Platform`] and normalised the
//! way containerd's `platforms` package does (which is what BuildKit sees and buildx shows), so
//! `linux/aarch64` and `linux/arm64/v8` are both `linux/arm64` and `kiln ls` prints the same
//! strings as `docker buildx ls`.
//!
//! This module owns parsing, normalising, comparing and listing platforms; it does not know which
//! node builds which platform, nor how `ls` folds long lists (see `builder::display`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// Known operating systems: a lone word that is one of these is an OS, not an architecture.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// A normalised platform. Displays as `os/arch[/variant]`, and serialises the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

/// A platform specifier that could not be parsed, worded as containerd words it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlatform(String);

impl Platform {
    /// The platform kiln runs on (what `--platform local` and a lone OS stand for).
    pub fn host() -> Platform {
        let (arch, variant) = normalize_arch(host_arch(), "");
        Platform::new(normalize_os(std::env::consts::OS), arch, variant)
    }

    /// Whether `spec` names both an OS and an architecture (or is `local`), rather than leaving
    /// one of them to be guessed from a lone word.
    fn is_explicit(spec: &str) -> bool {
        spec.eq_ignore_ascii_case("local") || spec.contains('/')
    }

    /// Whether a worker of this platform can build for `wanted` without emulation beyond what
    /// the CPU runs natively: the same platform, an older variant of it, or the 32-bit sibling
    /// (containerd's `platforms.Only`: amd64 runs 386, arm64 runs arm/v7 and older).
    pub fn runs(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os {
            return false;
        }
        let arm_level = |p: &Platform| -> Option<u32> {
            match p.arch.as_str() {
                "arm64" => Some(8),
                "arm" => p
                    .variant
                    .as_deref()
                    .and_then(|v| v.strip_prefix('v'))
                    .and_then(|v| v.parse().ok()),
                _ => None,
            }
        };
        let amd64_level = |p: &Platform| -> u32 {
            p.variant
                .as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
        };
        match (self.arch.as_str(), wanted.arch.as_str()) {
            ("amd64", "amd64") => amd64_level(wanted) <= amd64_level(self),
            ("amd64", "386") => true,
            ("arm64", "arm64") => self.variant == wanted.variant || wanted.variant.is_none(),
            (_, "arm") => match (arm_level(self), arm_level(wanted)) {
                (Some(have), Some(want)) => want <= have,
                _ => false,
            },
            _ => self == wanted,
        }
    }

    fn new(os: String, arch: String, variant: String) -> Platform {
        Platform {
            os,
            arch,
            variant: (!variant.is_empty()).then_some(variant),
        }
    }
}

impl FromStr for Platform {
    type Err = InvalidPlatform;

    /// Parses `os[/arch[/variant]]`, a lone architecture (`arm64` is `linux/arm64`) or `local`,
    /// as containerd's `platforms.Parse` and buildx do, and normalises the result.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if spec.eq_ignore_ascii_case("local") {
            return Ok(Platform::host());
        }
        if spec.contains('*') {
            return Err(InvalidPlatform(format!(
                "{spec:?}: wildcards not yet supported: invalid argument"
            )));
        }
        let parts: Vec<&str> = spec.splitn(4, '/').collect();
        let component_ok = |p: &str, dots: bool| {
            !p.is_empty()
                && p.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.')
                })
        };
        if !component_ok(parts[0], false) {
            return Err(InvalidPlatform(format!(
                "{:?} is an invalid OS component of {spec:?}: invalid argument",
                parts[0]
            )));
        }
        if let Some(bad) = parts[1..].iter().find(|p| !component_ok(p, true)) {
            return Err(InvalidPlatform(format!(
                "{bad:?} is an invalid component of {spec:?}: invalid argument"
            )));
        }
        let os = normalize_os(parts[0]);
        match parts.len() {
            1 if KNOWN_OS.contains(&os.as_str()) => {
                let (arch, variant) = normalize_arch(host_arch(), "");
                Ok(Platform::new(os, arch, variant))
            }
            1 => {
                let (arch, variant) = normalize_arch(parts[0], "");
                if !KNOWN_ARCH.contains(&arch.as_str()) {
                    return Err(InvalidPlatform(format!(
                        "{spec:?}: unknown operating system or architecture: invalid argument"
                    )));
                }
                Ok(Platform::new("linux".into(), arch, variant))
            }
            2 | 3 => {
                let (arch, variant) = normalize_arch(parts[1], parts.get(2).unwrap_or(&""));
                Ok(Platform::new(os, arch, variant))
            }
            _ => Err(InvalidPlatform(format!(
                "{spec:?}: cannot parse platform specifier: invalid argument"
            ))),
        }
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

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses repeated `--platform` values, each of which may be a comma-separated list, keeping
/// each platform once (in first-seen order), as buildx does for `create` and `build`.
pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Platform>, InvalidPlatform> {
    let mut out = Vec::new();
    for v in values {
        for p in v.as_ref().split(',') {
            out.push(p.trim().parse()?);
        }
    }
    Ok(dedupe(out))
}

/// [`parse_list`] for build targets, which must name both OS and architecture (or be `local`):
/// kiln does not guess an architecture from a lone `linux` when it is to build for it.
pub fn parse_explicit_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Platform>, InvalidPlatform> {
    let lone = values
        .iter()
        .flat_map(|v| v.as_ref().split(','))
        .map(str::trim)
        .find(|p| !Platform::is_explicit(p));
    if let Some(p) = lone {
        return Err(InvalidPlatform(format!(
            "invalid platform {p:?}: expected os/arch[/variant], e.g. linux/amd64"
        )));
    }
    parse_list(values)
}

/// Platforms kiln's store or a BuildKit worker reports (already `os/arch[/variant]`),
/// normalised. One that does not parse is left out with a warning rather than failing the
/// builder it belongs to.
pub fn parse_reported<S: AsRef<str>>(reported: &[S]) -> Vec<Platform> {
    reported
        .iter()
        .filter_map(|p| match p.as_ref().parse() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("ignoring platform: {e}");
                None
            }
        })
        .collect()
}

/// Drops repeats, keeping the first occurrence.
pub fn dedupe(platforms: impl IntoIterator<Item = Platform>) -> Vec<Platform> {
    let mut seen = HashSet::new();
    platforms
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Declared platforms marked with `*`, then the others, each once (buildx's `FormatInGroups`).
pub fn format_in_groups(declared: &[Platform], all: &[Platform]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (group, star) in [(declared, "*"), (all, "")] {
        for p in group {
            if seen.insert(p) {
                out.push(format!("{p}{star}"));
            }
        }
    }
    out
}

/// Rust's name for the host architecture, in Go's spelling (as containerd's `runtime.GOARCH`).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".into(),
        other => other.into(),
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let (a, v): (&str, &str) = match arch.as_str() {
        "i386" => ("386", ""),
        "x86_64" | "x86-64" | "amd64" => ("amd64", if variant == "v1" { "" } else { &variant }),
        "aarch64" | "arm64" => (
            "arm64",
            match variant.as_str() {
                "8" | "v8" | "v8.0" => "",
                "9" | "9.0" | "v9.0" => "v9",
                v => v,
            },
        ),
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" | "7" => "v7",
                "5" => "v5",
                "6" => "v6",
                "8" => "v8",
                v => v,
            },
        ),
        a => (a, &variant),
    };
    (a.to_string(), v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<String, InvalidPlatform> {
        spec.parse::<Platform>().map(|p| p.to_string())
    }

    fn platforms(specs: &[&str]) -> Vec<Platform> {
        specs.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn normalises_like_containerd() {
        for (spec, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AArch64", "linux/arm64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/amd64/v2", "linux/amd64/v2"),
            ("linux/i386", "linux/386"),
            ("arm64", "linux/arm64"),
            ("macos/arm64", "darwin/arm64"),
        ] {
            assert_eq!(parse(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn lone_os_and_local_mean_the_host() {
        let host = Platform::host();
        assert_eq!(parse("local").unwrap(), host.to_string());
        assert_eq!(
            "linux".parse::<Platform>().unwrap().arch,
            host.arch,
            "a lone OS takes the host's architecture"
        );
    }

    #[test]
    fn rejects_bad_specifiers() {
        assert_eq!(
            parse("linux/amd64/v2/x").unwrap_err().to_string(),
            "\"linux/amd64/v2/x\": cannot parse platform specifier: invalid argument"
        );
        for bad in [
            "nonsense",
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux/am d64",
            "linux/*",
            "li nux/amd64",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_split_on_commas() {
        let got = parse_list(&["linux/amd64,linux/arm64", "linux/arm/v7"]).unwrap();
        assert_eq!(
            got,
            platforms(&["linux/amd64", "linux/arm64", "linux/arm/v7"])
        );
        assert!(parse_list(&["linux/amd64,"]).is_err());
    }

    #[test]
    fn parses_lists_and_dedupes() {
        let l = parse_list(&["linux/amd64,linux/arm64", "linux/amd64"]).unwrap();
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn build_targets_name_os_and_arch() {
        assert!(parse_explicit_list(&["linux"]).is_err());
        assert!(parse_explicit_list(&["linux/amd64,arm64"]).is_err());
        assert_eq!(
            parse_explicit_list(&["linux/amd64", "local"]).unwrap()[0].to_string(),
            "linux/amd64"
        );
    }

    #[test]
    fn reported_platforms_skip_garbage() {
        assert_eq!(
            parse_reported(&["linux/x86_64", "a/b/c/d"]),
            platforms(&["linux/amd64"])
        );
    }

    #[test]
    fn groups_mark_declared_platforms() {
        let declared = platforms(&["linux/arm64"]);
        let all = platforms(&["linux/arm64", "linux/amd64"]);
        assert_eq!(
            format_in_groups(&declared, &all),
            ["linux/arm64*", "linux/amd64"]
        );
        assert_eq!(
            dedupe(platforms(&["linux/amd64", "linux/x86_64", "linux/arm64"])),
            platforms(&["linux/amd64", "linux/arm64"])
        );
    }

    #[test]
    fn serialises_as_its_string() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"linux/arm/v7\"");
    }

    #[test]
    fn a_platform_runs_itself_older_variants_and_its_32_bit_sibling() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert!(p("linux/amd64").runs(&p("linux/amd64")));
        assert!(p("linux/amd64").runs(&p("linux/386")));
        assert!(p("linux/amd64/v3").runs(&p("linux/amd64/v2")));
        assert!(!p("linux/amd64").runs(&p("linux/amd64/v2")));
        assert!(p("linux/arm64").runs(&p("linux/arm/v7")));
        assert!(p("linux/arm/v7").runs(&p("linux/arm/v6")));
        assert!(!p("linux/arm/v6").runs(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").runs(&p("linux/arm64")));
        assert!(!p("linux/amd64").runs(&p("windows/amd64")));
        assert!(p("linux/riscv64").runs(&p("linux/riscv64")));
    }
}
