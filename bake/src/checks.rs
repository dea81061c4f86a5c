//! What buildx does to resolved targets on the way to build options, which `--print` shows
//! too: the context path is cleaned (`./a/../b/` prints as `b`), `SOURCE_DATE_EPOCH` becomes a
//! build argument, and values that cannot become build options (a bad platform, shm-size,
//! ulimit, annotation, a secret file that does not exist, ...) are refused before printing.
//!
//! File checks go through a caller-supplied probe so the crate stays free of I/O policy.

use crate::error::Diag;
use crate::gopath::clean_path;
use crate::target::Target;
use crate::units::ram_in_bytes;
use crate::Resolved;

/// What a path is on the local filesystem, as far as the checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    File,
    Dir,
}

/// Environment and filesystem the checks may consult.
pub struct Probe<'a> {
    pub lookup_env: &'a dyn Fn(&str) -> Option<String>,
    pub path_kind: &'a dyn Fn(&str) -> PathKind,
    /// Whether standard output is a terminal (a tar to `-` is refused then).
    pub stdout_is_terminal: bool,
}

/// buildx's `IsRemoteURL`, approximately: URLs and git references.
pub fn is_remote_url(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
}

use crate::units::ULIMIT_NAMES;

fn check_ulimit(u: &str) -> Result<(), String> {
    let (name, limits) = u
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {u}"))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let mut parts = limits.splitn(2, ':');
    let soft = parts.next().unwrap_or("");
    let soft: i64 = soft
        .parse()
        .map_err(|_| format!("invalid ulimit soft value {soft}"))?;
    if let Some(hard) = parts.next() {
        let hard: i64 = hard
            .parse()
            .map_err(|_| format!("invalid ulimit hard value {hard}"))?;
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
    }
    Ok(())
}

const OSES: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "wasip1",
    "zos",
];

fn check_platform(p: &str) -> Result<(), String> {
    if p == "local" {
        return Ok(());
    }
    for part in p.split(',') {
        let os = part.split('/').next().unwrap_or("").to_lowercase();
        let os = os.split('(').next().unwrap_or("");
        if part.split('/').count() > 3 || part.is_empty() {
            return Err(format!(
                "\"{part}\": unknown operating system or architecture: invalid argument"
            ));
        }
        if !OSES.contains(&os) && part.contains('/') {
            return Err(format!(
                "\"{part}\": unknown operating system or architecture: invalid argument"
            ));
        }
    }
    Ok(())
}

fn check_annotation(a: &str) -> Result<(), String> {
    let (k, _) = a
        .split_once('=')
        .ok_or_else(|| format!("invalid annotation {a:?}, expected key=value"))?;
    if let Some((types, _)) = k.split_once(':') {
        for tp in types.split(',') {
            let typ = tp.split('[').next().unwrap_or("");
            if ![
                "",
                "index",
                "index-descriptor",
                "manifest",
                "manifest-descriptor",
            ]
            .contains(&typ)
                || typ.chars().any(|c| !(c.is_ascii_lowercase() || c == '-'))
            {
                return Err(format!("unknown annotation type {typ:?}"));
            }
        }
    }
    Ok(())
}

fn check_target(t: &mut Target, probe: &Probe<'_>) -> Result<(), String> {
    if t.context.as_deref() == Some("-") {
        return Err("context from stdin not allowed in bake".into());
    }
    if t.dockerfile.as_deref() == Some("-") {
        return Err("dockerfile from stdin not allowed in bake".into());
    }
    let ctx = t.context.clone().unwrap_or_else(|| ".".into());
    let ctx = if let Some(rest) = ctx.strip_prefix("cwd://") {
        clean_path(rest)
    } else if is_remote_url(&ctx) {
        ctx
    } else {
        clean_path(&ctx)
    };
    t.context = Some(ctx);
    if let Some(s) = &t.shm_size {
        if ram_in_bytes(s).is_err() {
            return Err(format!("invalid value {s} for membytes key shm-size"));
        }
    }
    for p in t.platforms.iter().flatten() {
        check_platform(p)?;
    }
    for s in t.secrets.iter().flatten() {
        if s.id.is_empty() {
            return Err("secret missing ID".into());
        }
        let mut src = s.src.clone();
        if s.env.is_empty() && src.is_empty() && (probe.lookup_env)(&s.id).is_none() {
            src = s.id.clone();
        }
        if !src.is_empty() && (probe.path_kind)(&src) == PathKind::Missing {
            return Err(format!(
                "failed to stat {src}: stat {src}: no such file or directory"
            ));
        }
    }
    for s in t.ssh.iter().flatten() {
        if s.paths.is_empty()
            && (probe.lookup_env)("SSH_AUTH_SOCK")
                .unwrap_or_default()
                .is_empty()
        {
            return Err(format!(
                "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set (for ssh id {:?})",
                s.id
            ));
        }
        for p in &s.paths {
            if (probe.path_kind)(p) == PathKind::Missing {
                return Err(format!("failed to parse {p}: no such file or directory"));
            }
        }
    }
    let mut stdout_used = false;
    for o in t.outputs.iter().flatten() {
        let (file, dir) = match o.kind.as_str() {
            "local" => (false, true),
            "tar" => (true, false),
            "oci" | "docker" => {
                let tar = o
                    .attrs
                    .get("tar")
                    .and_then(|v| crate::types::parse_go_bool(v))
                    .unwrap_or(true);
                (tar, !tar)
            }
            _ => (false, false),
        };
        if dir {
            if o.dest.is_empty() {
                return Err(format!("dest is required for {} exporter", o.kind));
            }
            if o.dest == "-" {
                return Err(format!("dest cannot be stdout for {} exporter", o.kind));
            }
            if (probe.path_kind)(&o.dest) == PathKind::File {
                return Err(format!("destination directory {} is a file", o.dest));
            }
        }
        if file {
            let dest = if o.dest.is_empty() && o.kind != "docker" {
                "-"
            } else {
                o.dest.as_str()
            };
            if dest == "-" {
                if stdout_used {
                    return Err("multiple outputs configured to write to stdout".into());
                }
                if probe.stdout_is_terminal {
                    return Err(format!(
                        "dest file is required for {} exporter. refusing to write to console",
                        o.kind
                    ));
                }
                stdout_used = true;
            } else if !dest.is_empty() && (probe.path_kind)(dest) == PathKind::Dir {
                return Err(format!("destination file {dest} is a directory"));
            }
        }
    }
    for a in t.annotations.iter().flatten() {
        check_annotation(a)?;
    }
    for u in t.ulimits.iter().flatten() {
        check_ulimit(u)?;
    }
    Ok(())
}

/// Applies buildx's pre-build transformations and checks to every target.
pub fn prepare(r: &mut Resolved, probe: &Probe<'_>) -> Result<(), Diag> {
    if let Some(epoch) = (probe.lookup_env)("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()) {
        for t in r.targets.values_mut() {
            let args = t.args.get_or_insert_with(Default::default);
            args.entry("SOURCE_DATE_EPOCH".into())
                .or_insert(Some(epoch.clone()));
        }
    }
    for t in r.targets.values_mut() {
        check_target(t, probe).map_err(Diag::msg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_and_sizes() {
        assert!(check_ulimit("nofile=1024:2048").is_ok());
        assert!(check_ulimit("nofile=4:2").is_err());
        assert!(check_ulimit("bogus=1").is_err());
        assert!(ram_in_bytes("128m").is_ok());
        assert!(ram_in_bytes("lots").is_err());
    }
}
