//! bake's `--allow`: what a bake may do without asking, checked before anything is built, as
//! buildx 0.29's `bake/entitlements.go` checks it.
//!
//! Reading or writing outside the working directory (contexts, Dockerfiles, named contexts,
//! secret files, ssh keys, local exports and caches) and the BuildKit entitlements a target asks
//! for (`network.host`, `security.insecure`, devices) each need an `--allow`
//! (`fs.read=PATH`, `fs.write=PATH`, `fs=PATH`, `network.host`, ...). What is missing is printed
//! with the exact flags that would grant it, and the bake stops ("additional privileges
//! requested"); on a terminal the user is asked instead. This module only decides and words
//! that; which paths a target touches is given to it.

use std::collections::BTreeSet;
use std::io::{BufRead as _, IsTerminal as _, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The parsed `--allow` values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    pub network_host: bool,
    pub security_insecure: bool,
    /// `device` without a name: every device.
    pub all_devices: bool,
    pub devices: BTreeSet<String>,
    pub fs_read: Vec<String>,
    pub fs_write: Vec<String>,
    pub ssh: bool,
}

/// buildx's `ParseEntitlements`.
pub fn parse(values: &[String]) -> Result<Allowed> {
    let mut a = Allowed::default();
    for e in values {
        match e.as_str() {
            "network.host" => a.network_host = true,
            "security.insecure" => a.security_insecure = true,
            "ssh" => a.ssh = true,
            _ => {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                match k {
                    "device" => {
                        if v.is_empty() {
                            a.all_devices = true;
                        } else {
                            let fields =
                                crate::build::exporter::split_csv(v).with_context(|| {
                                    format!("failed to parse device entitlement {v:?}")
                                })?;
                            a.devices.insert(fields[0].clone());
                        }
                    }
                    "fs.read" => a.fs_read.push(v.to_string()),
                    "fs.write" => a.fs_write.push(v.to_string()),
                    "fs" => {
                        a.fs_read.push(v.to_string());
                        a.fs_write.push(v.to_string());
                    }
                    // Accepted as buildx accepts them; kiln has nothing they gate yet.
                    "image.push" | "image.load" | "image" => {}
                    _ => bail!("unknown entitlement key {k:?}"),
                }
            }
        }
    }
    Ok(a)
}

/// What one target touches on the client and asks of BuildKit.
#[derive(Debug, Clone, Default)]
pub struct TargetAccess {
    /// The target's `entitlements` (BuildKit's: `network.host`, `security.insecure`,
    /// `device[=NAME]`).
    pub entitlements: Vec<String>,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    /// An ssh id forwarding the default agent (no paths).
    pub default_ssh: bool,
}

/// What the bake needs beyond what was allowed (buildx's "expected" entitlements).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    pub network_host: bool,
    pub security_insecure: bool,
    pub all_devices: bool,
    pub devices: BTreeSet<String>,
    pub fs_read: Vec<PathBuf>,
    pub fs_write: Vec<PathBuf>,
    pub ssh: bool,
}

impl Missing {
    fn is_empty(&self) -> bool {
        *self == Missing::default()
    }
}

/// buildx's `EntitlementConf.Validate`: everything the targets need that `allowed` (plus the
/// working directory, always readable and writable) does not grant.
pub fn missing(allowed: &Allowed, wd: &Path, targets: &[TargetAccess]) -> Result<Missing> {
    let mut m = Missing::default();
    let mut read = BTreeSet::new();
    let mut write = BTreeSet::new();
    for t in targets {
        for e in &t.entitlements {
            let (k, rest) = e.split_once('=').unwrap_or((e, ""));
            if k == "device" {
                if rest.is_empty() {
                    if !allowed.all_devices {
                        m.all_devices = true;
                    }
                } else {
                    let name = crate::build::exporter::split_csv(rest)?.remove(0);
                    if !allowed.all_devices && !allowed.devices.contains(&name) {
                        m.devices.insert(name);
                    }
                }
            }
            match e.as_str() {
                "network.host" if !allowed.network_host => m.network_host = true,
                "security.insecure" if !allowed.security_insecure => m.security_insecure = true,
                _ => {}
            }
        }
        if t.default_ssh && !allowed.ssh {
            m.ssh = true;
        }
        read.extend(t.read.iter().cloned());
        write.extend(t.write.iter().cloned());
    }
    let wd = wd.to_string_lossy().into_owned();
    let with_wd = |v: &[String]| {
        let mut v = v.to_vec();
        v.push(wd.clone());
        v
    };
    m.fs_read = missing_paths(&with_wd(&allowed.fs_read), &read);
    m.fs_write = missing_paths(&with_wd(&allowed.fs_write), &write);
    Ok(m)
}

/// Go's `filepath.Abs` followed by `filepath.Clean`.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// buildx's `evaluateToExistingPath`: the longest existing prefix with symlinks resolved, and
/// what follows it.
fn existing_prefix(p: &Path) -> (PathBuf, PathBuf) {
    let abs = absolute(p);
    let mut prefix = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&prefix) {
            let mut tail = PathBuf::new();
            for r in rest.iter().rev() {
                tail.push(r);
            }
            return (c, tail);
        }
        match (
            prefix.file_name().map(|n| n.to_os_string()),
            prefix.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                prefix = parent.to_path_buf();
            }
            _ => return (abs, PathBuf::new()),
        }
    }
}

/// buildx's `findMissingPaths`: the used paths (resolved to what exists, deduplicated to their
/// outermost) not under any allowed one, sorted.
fn missing_paths(allowed: &[String], used: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    if allowed.iter().any(|a| a == "*") {
        return Vec::new();
    }
    let allowed: Vec<PathBuf> = allowed
        .iter()
        .map(|a| {
            let (p, rest) = existing_prefix(Path::new(a));
            if rest.as_os_str().is_empty() {
                p
            } else {
                p.join(rest)
            }
        })
        .collect();
    let mut used: Vec<PathBuf> = used
        .iter()
        .map(|u| existing_prefix(u).0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    used.sort_by_key(|p| p.as_os_str().len());
    let mut outer: Vec<PathBuf> = Vec::new();
    for p in used {
        if !outer.iter().any(|o| p.starts_with(o) && p != *o) {
            outer.push(p);
        }
    }
    let mut out: Vec<PathBuf> = outer
        .into_iter()
        .filter(|p| !allowed.iter().any(|a| p.starts_with(a)))
        .collect();
    out.sort();
    out
}

/// buildx's `toRelativePaths`: relative to the working directory when at most one `..` away.
fn shown_path(p: &Path, wd: &Path) -> String {
    match pathdiff(p, wd) {
        Some(rel) if !rel.starts_with("../..") => rel,
        _ => p.display().to_string(),
    }
}

/// Go's `filepath.Rel` for two absolute, clean paths.
fn pathdiff(p: &Path, base: &Path) -> Option<String> {
    let pc: Vec<_> = p.components().collect();
    let bc: Vec<_> = base.components().collect();
    let common = pc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); bc.len() - common];
    parts.extend(
        pc[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        return Some(".".into());
    }
    Some(parts.join("/"))
}

/// buildx's `Prompt`: the message that lists what is missing and the `--allow` flags that
/// grant it. `Ok(None)` when nothing needs granting (or filesystem checks are turned off with
/// `BUILDX_BAKE_ENTITLEMENTS_FS=0` and only paths are missing).
pub fn message(m: &Missing, wd: &Path, args: &[String]) -> Result<Option<String>> {
    if m.is_empty() {
        return Ok(None);
    }
    let mut msgs = Vec::new();
    let mut flags = Vec::new();
    let mut msgs_fs = Vec::new();
    let mut flags_fs = Vec::new();
    if m.network_host {
        msgs.push(" - Running build containers that can access host network".to_string());
        flags.push("network.host".to_string());
    }
    if m.security_insecure {
        msgs.push(" - Running privileged containers that can make system changes".to_string());
        flags.push("security.insecure".to_string());
    }
    if m.all_devices {
        msgs.push(" - Access to CDI devices".to_string());
        flags.push("device".to_string());
    } else {
        for d in &m.devices {
            msgs.push(format!(" - Access to device {d}"));
            flags.push(format!("device={d}"));
        }
    }
    if m.ssh {
        msgs_fs.push(" - Forwarding default SSH agent socket".to_string());
        flags_fs.push("ssh".to_string());
    }
    let wd_real = std::fs::canonicalize(wd).unwrap_or_else(|_| wd.to_path_buf());
    let (ro, rw, common) = group_same_paths(&m.fs_read, &m.fs_write);
    for p in &common {
        let p = shown_path(p, &wd_real);
        msgs_fs.push(format!(" - Read and write access to path {p}"));
        flags_fs.push(format!("fs={p}"));
    }
    for p in &ro {
        let p = shown_path(p, &wd_real);
        msgs_fs.push(format!(" - Read access to path {p}"));
        flags_fs.push(format!("fs.read={p}"));
    }
    for p in &rw {
        let p = shown_path(p, &wd_real);
        msgs_fs.push(format!(" - Write access to path {p}"));
        flags_fs.push(format!("fs.write={p}"));
    }
    if msgs.is_empty() && msgs_fs.is_empty() {
        return Ok(None);
    }
    let fs_env = std::env::var("BUILDX_BAKE_ENTITLEMENTS_FS").ok();
    let fs_enabled = match &fs_env {
        Some(v) => kiln_bake::types::parse_go_bool(v)
            .with_context(|| format!("failed to parse BUILDX_BAKE_ENTITLEMENTS_FS value {v:?}"))?,
        None => true,
    };
    if !fs_enabled && msgs.is_empty() {
        return Ok(None);
    }

    let all: Vec<String> = flags
        .iter()
        .chain(&flags_fs)
        .map(|f| format!("--allow={f}"))
        .collect();
    let mut out = String::from(
        "Your build is requesting privileges for following possibly insecure capabilities:\n\n",
    );
    for m in msgs.iter().chain(&msgs_fs) {
        out.push_str(m);
        out.push('\n');
    }
    let joined = all.join(" ");
    if std::io::stdin().is_terminal() {
        out.push_str(&format!(
            "\nIn order to not see this message in the future pass {joined:?} to grant requested privileges.\n"
        ));
    } else {
        out.push_str(&format!(
            "\nPass {joined:?} to grant requested privileges.\n"
        ));
    }
    let mut args = args.to_vec();
    if let Ok(v) = std::env::var("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND") {
        if !v.is_empty() && !args.is_empty() {
            args[0] = v;
        }
    }
    if let Some(idx) = args.iter().position(|a| a == "bake") {
        out.push_str("\nYour full command with requested privileges:\n\n");
        out.push_str(&format!(
            "{} {} {}\n\n",
            args[..=idx].join(" "),
            joined,
            args[idx + 1..].join(" ")
        ));
    }
    if fs_enabled && fs_env.is_none() && !msgs_fs.is_empty() {
        out.push_str(
            "To disable filesystem entitlements checks, you can set BUILDX_BAKE_ENTITLEMENTS_FS=0 .\n\n",
        );
    }
    Ok(Some(out))
}

/// Shows the message and, on a terminal, asks; otherwise the bake stops.
pub fn confirm(m: &Missing, wd: &Path, args: &[String]) -> Result<()> {
    let Some(text) = message(m, wd, args)? else {
        return Ok(());
    };
    let mut err = std::io::stderr();
    let _ = err.write_all(text.as_bytes());
    if std::io::stdin().is_terminal() {
        let _ = err.write_all(b"Do you want to grant requested privileges and continue? [y/N] ");
        let _ = err.flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim().eq_ignore_ascii_case("y") {
            return Ok(());
        }
    }
    bail!("additional privileges requested")
}

/// buildx's `groupSamePaths`: (read only, write only, both).
fn group_same_paths(
    read: &[PathBuf],
    write: &[PathBuf],
) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>) {
    let common: Vec<PathBuf> = read.iter().filter(|p| write.contains(p)).cloned().collect();
    let ro = read
        .iter()
        .filter(|p| !common.contains(p))
        .cloned()
        .collect();
    let rw = write
        .iter()
        .filter(|p| !common.contains(p))
        .cloned()
        .collect();
    (ro, rw, common)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allow_values_parse_as_buildx() {
        let a = parse(&strings(&[
            "network.host",
            "fs.read=/a",
            "fs=/b",
            "device=nvidia.com/gpu,alias=gpu",
            "ssh",
        ]))
        .unwrap();
        assert!(a.network_host && a.ssh);
        assert_eq!(a.fs_read, strings(&["/a", "/b"]));
        assert_eq!(a.fs_write, strings(&["/b"]));
        assert!(a.devices.contains("nvidia.com/gpu"));
        assert_eq!(
            parse(&strings(&["bogus"])).unwrap_err().to_string(),
            "unknown entitlement key \"bogus\""
        );
    }

    #[test]
    fn paths_outside_the_working_directory_are_missing() {
        let wd = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let wd_real = std::fs::canonicalize(wd.path()).unwrap();
        let out_real = std::fs::canonicalize(outside.path()).unwrap();
        let t = TargetAccess {
            entitlements: strings(&["network.host"]),
            read: vec![wd.path().join("ctx"), outside.path().join("sub/x")],
            write: vec![outside.path().join("out")],
            default_ssh: false,
        };
        let m = missing(&Allowed::default(), &wd_real, std::slice::from_ref(&t)).unwrap();
        assert!(m.network_host);
        assert_eq!(m.fs_read, vec![out_real.clone()]);
        assert_eq!(m.fs_write, vec![out_real.clone()]);
        let text = message(&m, &wd_real, &strings(&["kiln", "bake", "app"]))
            .unwrap()
            .unwrap();
        assert!(text.contains(" - Running build containers that can access host network\n"));
        assert!(text.contains(" - Read and write access to path "), "{text}");
        assert!(
            text.contains("kiln bake --allow=network.host --allow=fs="),
            "{text}"
        );

        let allowed = parse(&[
            "network.host".to_string(),
            format!("fs={}", outside.path().display()),
        ])
        .unwrap();
        let m = missing(&allowed, &wd_real, &[t]).unwrap();
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn relative_paths_allow_one_parent_step() {
        let wd = Path::new("/a/b");
        assert_eq!(shown_path(Path::new("/a/c"), wd), "../c");
        assert_eq!(shown_path(Path::new("/x/y"), wd), "/x/y");
        assert_eq!(shown_path(Path::new("/a/b/c"), wd), "c");
    }
}
