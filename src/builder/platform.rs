//! Platforms as a builder node declares and reports them, parsed and normalised the way
//! containerd's `platforms` package does (which is what buildx shows), so `kiln ls` prints the
//! same strings as `docker buildx ls`.

use std::collections::HashSet;

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

/// A platform specifier that could not be parsed, worded as containerd words it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlatform(String);

/// Parses `os[/arch[/variant]]` (or a lone architecture) into its normalised form.
pub fn parse(spec: &str) -> Result<String, InvalidPlatform> {
    if spec.eq_ignore_ascii_case("local") {
        return Ok(host_platform());
    }
    if spec.contains('*') {
        return Err(InvalidPlatform(format!(
            "{spec:?}: wildcards not yet supported: invalid argument"
        )));
    }
    let parts: Vec<&str> = spec.splitn(4, '/').collect();
    let component_ok = |p: &str, dots: bool| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'))
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
    let (os, arch, variant) = match parts.len() {
        1 if KNOWN_OS.contains(&os.as_str()) => {
            (os, std::env::consts::ARCH.to_string(), String::new())
        }
        1 => {
            let (arch, variant) = normalize_arch(parts[0], "");
            if !KNOWN_ARCH.contains(&arch.as_str()) {
                return Err(InvalidPlatform(format!(
                    "{spec:?}: unknown operating system or architecture: invalid argument"
                )));
            }
            ("linux".to_string(), arch, variant)
        }
        2 => {
            let (arch, variant) = normalize_arch(parts[1], "");
            (os, arch, variant)
        }
        3 => {
            let (arch, variant) = normalize_arch(parts[1], parts[2]);
            (os, arch, variant)
        }
        _ => {
            return Err(InvalidPlatform(format!(
                "{spec:?}: cannot parse platform specifier: invalid argument"
            )))
        }
    };
    Ok(format(&os, &arch, &variant))
}

/// Parses repeated `--platform` values, each of which may be a comma-separated list.
pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<String>, InvalidPlatform> {
    let mut out = Vec::new();
    for v in values {
        for p in v.as_ref().split(',') {
            out.push(parse(p.trim())?);
        }
    }
    Ok(out)
}

/// Normalises a platform a worker reported (`os/arch[/variant]` already split by BuildKit).
pub fn normalize(platform: &str) -> String {
    parse(platform).unwrap_or_else(|_| platform.to_string())
}

/// Drops repeats, keeping the first occurrence.
pub fn dedupe(platforms: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    platforms
        .into_iter()
        .map(|p| normalize(&p))
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Declared platforms marked with `*`, then the others, each once (buildx's `FormatInGroups`).
pub fn format_in_groups(declared: &[String], all: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (group, star) in [(declared, "*"), (all, "")] {
        for p in group {
            let p = normalize(p);
            if seen.insert(p.clone()) {
                out.push(format!("{p}{star}"));
            }
        }
    }
    out
}

fn format(os: &str, arch: &str, variant: &str) -> String {
    [os, arch, variant]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
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

/// The platform kiln runs on, for `--platform local`.
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}/{}", std::env::consts::OS, arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(parse("linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(parse("linux/x86_64").unwrap(), "linux/amd64");
        assert_eq!(parse("Linux/AArch64").unwrap(), "linux/arm64");
        assert_eq!(parse("linux/arm64/v8").unwrap(), "linux/arm64");
        assert_eq!(parse("linux/arm").unwrap(), "linux/arm/v7");
        assert_eq!(parse("linux/armhf").unwrap(), "linux/arm/v7");
        assert_eq!(parse("linux/arm/6").unwrap(), "linux/arm/v6");
        assert_eq!(parse("linux/amd64/v2").unwrap(), "linux/amd64/v2");
        assert_eq!(parse("linux/i386").unwrap(), "linux/386");
        assert_eq!(parse("arm64").unwrap(), "linux/arm64");
        assert_eq!(parse("macos/arm64").unwrap(), "darwin/arm64");
    }

    #[test]
    fn rejects_bad_specifiers() {
        assert_eq!(
            parse("linux/amd64/v2/x").unwrap_err().to_string(),
            "\"linux/amd64/v2/x\": cannot parse platform specifier: invalid argument"
        );
        assert!(parse("nonsense").is_err());
        assert!(parse("linux/").is_err());
        assert!(parse("linux/*").is_err());
        assert!(parse("li nux/amd64").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn lists_split_on_commas() {
        let got = parse_list(&["linux/amd64,linux/arm64", "linux/arm/v7"]).unwrap();
        assert_eq!(got, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        assert!(parse_list(&["linux/amd64,"]).is_err());
    }

    #[test]
    fn groups_mark_declared_platforms() {
        let declared = vec!["linux/arm64".to_string()];
        let all = vec!["linux/arm64".to_string(), "linux/amd64".to_string()];
        assert_eq!(
            format_in_groups(&declared, &all),
            ["linux/arm64*", "linux/amd64"]
        );
        assert_eq!(
            dedupe([
                "linux/amd64".into(),
                "linux/x86_64".into(),
                "linux/arm64".into()
            ]),
            ["linux/amd64", "linux/arm64"]
        );
    }
}
