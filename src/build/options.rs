//! What one build asks for, as types. `kiln build`'s flags (and later bake targets) are parsed
//! into [`BuildOptions`] at the edge; nothing below works with raw flag strings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::exporter::ExportSpec;
use crate::platform::Platform;

/// Where the build context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    Local(PathBuf),
    /// A git or https URL BuildKit fetches itself.
    Remote(String),
    /// `-`: a tarball or a Dockerfile on standard input.
    Stdin,
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// `Dockerfile` in the context.
    Default,
    Path(PathBuf),
    Stdin,
    /// bake's `dockerfile-inline`: the Dockerfile's text.
    Inline(String),
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub context: Option<ContextSource>,
    pub dockerfile: Option<DockerfileSource>,
    /// `--build-context NAME=VALUE`, by familiar context name.
    pub named_contexts: BTreeMap<String, super::named_contexts::NamedContext>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platforms: Vec<Platform>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub pull: bool,
    pub network: NetworkMode,
    pub extra_hosts: Vec<String>,
    pub shm_size: Option<u64>,
    /// `--cgroup-parent`: the cgroup `RUN` containers are made under.
    pub cgroup_parent: Option<String>,
    pub ulimits: Vec<String>,
    pub outputs: Vec<ExportSpec>,
    /// `--load[=containerd://SOCKET?namespace=NS]`: the image store to load the result into.
    pub load: Option<kiln_drivers::ImageStore>,
    pub push: bool,
    pub iidfile: Option<PathBuf>,
    pub cache_from: Vec<super::cache::CacheSpec>,
    pub attests: super::attest::Attests,
    pub annotations: Vec<super::attest::Annotation>,
    pub cache_to: Vec<super::cache::CacheSpec>,
    pub metadata_file: Option<PathBuf>,
    /// `--secret`, checked: each id and where its value is read from.
    pub secrets: Vec<super::secrets::SecretSpec>,
    /// `--ssh`, checked: each id and its agent.
    pub ssh: Vec<super::secrets::SshSpec>,
    /// `--call`/`--check`: evaluate the build through a frontend subrequest instead.
    pub call: Option<super::call::CallFunc>,
    /// `--allow`, checked entitlements.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    #[default]
    Default,
    Host,
    None,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "default" => Ok(NetworkMode::Default),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            other => bail!(
                "network mode {other:?} not supported by buildkit - you can define a custom network for your builder using the network driver-opt in kiln create"
            ),
        }
    }
}

impl ContextSource {
    pub fn parse(s: &str) -> Result<Self> {
        if s == "-" {
            return Ok(ContextSource::Stdin);
        }
        if is_remote_url(s) {
            return Ok(ContextSource::Remote(s.to_string()));
        }
        let p = PathBuf::from(s);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => Ok(ContextSource::Local(p)),
            Ok(_) => bail!("unable to prepare context: path {s:?} is not a directory"),
            Err(_) => bail!("unable to prepare context: path {s:?} not found"),
        }
    }
}

/// A context BuildKit fetches itself: http(s) URLs and git remotes.
pub fn is_remote_url(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git://")
        || s.starts_with("github.com/")
        || s.starts_with("git@")
        || s.starts_with("ssh://")
}

/// `--build-arg NAME=VALUE`; a bare `NAME` takes its value from the environment and is dropped
/// when unset, as the Docker CLI does.
pub fn parse_build_args(values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        match v.split_once('=') {
            Some(("", _)) => bail!("invalid build-arg {v:?}: empty name"),
            Some((k, val)) => {
                out.insert(k.to_string(), val.to_string());
            }
            None => {
                if let Ok(val) = std::env::var(v) {
                    out.insert(v.clone(), val);
                }
            }
        }
    }
    Ok(out)
}

/// `--label KEY=VALUE` (a bare key is an empty label).
pub fn parse_labels(values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label {v:?}: empty key");
        }
        out.insert(k.to_string(), val.to_string());
    }
    Ok(out)
}

/// Validates an image reference as Docker's reference grammar does (lowercase repository
/// path, optional registry host and port, optional tag and digest).
pub fn validate_tag(tag: &str) -> Result<()> {
    let re = regex::Regex::new(
        r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$",
    )
    .expect("reference grammar");
    if tag.len() > 255 + 128 || !re.is_match(tag) {
        bail!("invalid tag {tag:?}: invalid reference format");
    }
    Ok(())
}

/// `--add-host host=ip` or `host:ip`, each IP checked.
pub fn validate_extra_host(h: &str) -> Result<()> {
    let (host, ip) = h
        .split_once('=')
        .or_else(|| h.split_once(':'))
        .with_context(|| format!("invalid host {h}"))?;
    if host.is_empty() || ip.is_empty() {
        bail!("invalid host {h}");
    }
    if ip == "host-gateway" {
        return Ok(());
    }
    for v in ip.split(',') {
        let v = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v);
        if v.parse::<std::net::IpAddr>().is_err() {
            bail!("invalid host {h}");
        }
    }
    Ok(())
}

/// BuildKit's form of extra hosts: `host=ip` joined by commas.
pub fn extra_hosts_attr(hosts: &[String]) -> String {
    let mut out = Vec::new();
    for h in hosts {
        let (host, ip) = h
            .split_once('=')
            .or_else(|| h.split_once(':'))
            .unwrap_or((h, ""));
        for v in ip.split(',') {
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            out.push(format!("{host}={v}"));
        }
    }
    out.join(",")
}

/// Docker's memory sizes (`64m`, `1g`, `512mb`, plain bytes), in binary units.
pub fn parse_mem_bytes(s: &str) -> Result<u64> {
    Ok(kiln_bake::units::ram_in_bytes(s)?)
}

/// `--ulimit name=soft[:hard]`, checked and kept in Docker's spelling.
pub fn validate_ulimit(s: &str) -> Result<()> {
    let (name, limits) = s
        .split_once('=')
        .with_context(|| format!("invalid ulimit argument: {s}"))?;
    if !kiln_bake::units::ULIMIT_NAMES.contains(&name) {
        bail!("invalid ulimit type: {name}");
    }
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let soft: i64 = soft
        .parse()
        .with_context(|| format!("invalid ulimit soft value: {soft}"))?;
    let hard: i64 = hard
        .parse()
        .with_context(|| format!("invalid ulimit hard value: {hard}"))?;
    if soft > hard {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(())
}

/// The paths of a build as `history` names it later (buildx's local state): absolute for a
/// local context and a Dockerfile in it, a URL or `-` as given otherwise; `None` when there is
/// neither.
pub fn local_state(opts: &BuildOptions) -> Option<crate::store::BuildState> {
    let absolute = |p: &Path| -> String {
        let p = std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .unwrap_or_else(|_| p.to_path_buf());
        kiln_bake::gopath::clean_path(&p.to_string_lossy())
    };
    let (local_path, local) = match opts.context.as_ref()? {
        ContextSource::Local(dir) => (absolute(dir), true),
        ContextSource::Remote(url) => (url.clone(), false),
        ContextSource::Stdin => ("-".to_string(), false),
    };
    let dockerfile_path = match opts.dockerfile.as_ref() {
        Some(DockerfileSource::Path(f)) if local => absolute(f),
        Some(DockerfileSource::Path(f)) => f.display().to_string(),
        Some(DockerfileSource::Stdin) => "-".to_string(),
        _ => String::new(),
    };
    Some(crate::store::BuildState {
        target: opts.target.clone().unwrap_or_default(),
        local_path,
        dockerfile_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_from_env() {
        std::env::set_var("KILN_TEST_ARG_X", "fromenv");
        let a = parse_build_args(&[
            "A=1".into(),
            "KILN_TEST_ARG_X".into(),
            "KILN_TEST_ARG_UNSET_Y".into(),
            "B=x=y".into(),
        ])
        .unwrap();
        assert_eq!(a["A"], "1");
        assert_eq!(a["KILN_TEST_ARG_X"], "fromenv");
        assert_eq!(a["B"], "x=y");
        assert!(!a.contains_key("KILN_TEST_ARG_UNSET_Y"));
    }

    #[test]
    fn tags() {
        for ok in [
            "app",
            "app:1.0",
            "127.0.0.1:5000/x/y:z",
            "docker.io/library/busybox:latest",
            "localhost/a_b__c-d",
        ] {
            validate_tag(ok).unwrap();
        }
        for bad in ["App", "app:", ":x", "a b", "-a"] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_mem_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_mem_bytes("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_mem_bytes("100").unwrap(), 100);
        assert!(parse_mem_bytes("lots").is_err());
        validate_ulimit("nofile=1024:2048").unwrap();
        assert!(validate_ulimit("nofile=2048:1024").is_err());
        assert!(validate_ulimit("bogus=1").is_err());
    }

    #[test]
    fn hosts() {
        validate_extra_host("a=1.2.3.4").unwrap();
        validate_extra_host("a:::1").unwrap();
        assert!(validate_extra_host("a=notanip").is_err());
        assert_eq!(
            extra_hosts_attr(&["a:1.2.3.4".into(), "b=[::1]".into()]),
            "a=1.2.3.4,b=::1"
        );
    }
}
