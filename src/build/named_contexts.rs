//! Named contexts (`--build-context NAME=VALUE`): what each value means, and what it turns into
//! for a solve (a session directory, a frontend attribute, an OCI layout served read-only).
//!
//! Owns parsing the flag and resolving an `oci-layout://` reference against the layout's
//! `index.json`; it does not serve anything (the session's content store does that) and it
//! never writes into a layout: `index.json` is read without taking buildx's `index.json.lock`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::options::{is_remote_url, validate_tag};

/// The frontend capability buildx declares whenever a build has named contexts.
const CAP_CONTEXTS: &str = "moby.buildkit.frontend.contexts+forward";
/// The capability buildx declares for a named git context whose URL carries a query.
const CAP_GIT_QUERY: &str = "moby.buildkit.frontend.gitquerystring+forward";

/// The tag an `oci-layout://` reference means when it names none.
const DEFAULT_TAG: &str = "latest";

/// What one named context refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory, sent through the session like the main context.
    Local(PathBuf),
    /// A value the frontend resolves itself: an http(s) or git URL, `docker-image://REF`,
    /// `target:STAGE`.
    Frontend(String),
    /// An OCI image layout on the client: `oci-layout://DIR[:TAG][@DIGEST]`.
    OciLayout {
        dir: PathBuf,
        tag: String,
        digest: Option<String>,
    },
}

impl NamedContext {
    /// Reads one value the way buildx does: URLs and `docker-image://`/`target:` pass through,
    /// `oci-layout://` names a layout, anything else is a local path.
    pub fn parse(value: &str) -> NamedContext {
        if is_remote_url(value)
            || value.starts_with("docker-image://")
            || value.starts_with("target:")
        {
            return NamedContext::Frontend(value.to_string());
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (rest, digest) = match rest.split_once('@') {
                Some((r, d)) => (r, Some(d.to_string())),
                None => (rest, None),
            };
            let (dir, tag) = match rest.split_once(':') {
                Some((d, t)) => (d, t.to_string()),
                None => (rest, DEFAULT_TAG.to_string()),
            };
            return NamedContext::OciLayout {
                dir: PathBuf::from(dir),
                tag,
                digest,
            };
        }
        NamedContext::Local(PathBuf::from(value))
    }
}

/// `--build-context NAME=VALUE` values by context name. Names are image references in Docker's
/// familiar form (`docker.io/library/alpine:latest` is `alpine`), as the frontend looks them up.
pub fn parse(values: &[String]) -> Result<BTreeMap<String, NamedContext>> {
    let mut out = BTreeMap::new();
    for value in values.iter().filter(|v| !v.is_empty()) {
        let (name, source) = value
            .split_once('=')
            .with_context(|| format!("invalid context value: {value}, expected key=value"))?;
        if validate_tag(name).is_err() {
            bail!("invalid context name {name}: invalid reference format");
        }
        out.insert(familiar_name(name), NamedContext::parse(source));
    }
    Ok(out)
}

/// An image name as Docker shows it: without `docker.io/`, `library/` or `:latest`.
fn familiar_name(name: &str) -> String {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("docker.io", name),
    };
    let familiar = if domain == "docker.io" || domain == "index.docker.io" {
        rest.strip_prefix("library/")
            .filter(|r| !r.contains('/'))
            .unwrap_or(rest)
    } else {
        name
    };
    familiar
        .strip_suffix(":latest")
        .unwrap_or(familiar)
        .to_string()
}

/// What the named contexts add to a solve.
#[derive(Debug, Default)]
pub struct ResolvedContexts {
    /// Session directories by the names the frontend attributes use.
    pub dirs: HashMap<String, PathBuf>,
    /// `context:NAME` attributes, and `frontend.caps`.
    pub frontend_attrs: BTreeMap<String, String>,
    /// OCI layouts the session's content store serves, by store id.
    pub oci_stores: HashMap<String, PathBuf>,
}

/// Resolves every named context for one solve; `oci-layout://` tags are looked up now, so a
/// missing tag fails before anything reaches BuildKit.
pub fn resolve(contexts: &BTreeMap<String, NamedContext>) -> Result<ResolvedContexts> {
    let mut out = ResolvedContexts::default();
    let mut caps = BTreeSet::new();
    for (name, context) in contexts {
        caps.insert(CAP_CONTEXTS);
        let attr = format!("context:{name}");
        match context {
            NamedContext::Frontend(value) => {
                if url_has_query(value) {
                    caps.insert(CAP_GIT_QUERY);
                }
                out.frontend_attrs.insert(attr, value.clone());
            }
            NamedContext::OciLayout { dir, tag, digest } => {
                let digest = match digest {
                    Some(d) => d.clone(),
                    None => resolve_tag(dir, tag).with_context(|| {
                        format!(
                            "oci-layout reference \"oci-layout://{}:{tag}\" could not be resolved",
                            dir.display()
                        )
                    })?,
                };
                check_layout(dir, &digest)?;
                let store = crate::buildkit::new_id();
                out.frontend_attrs
                    .insert(attr, format!("oci-layout://{store}:{tag}@{digest}"));
                out.oci_stores.insert(store, dir.clone());
            }
            NamedContext::Local(path) => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    anyhow::anyhow!(
                        "failed to get build context {name}: stat {}: {}",
                        path.display(),
                        io_reason(&e)
                    )
                })?;
                if !meta.is_dir() {
                    bail!(
                        "failed to get build context path {}: not a directory",
                        path.display()
                    );
                }
                // The main context and Dockerfile directories already use these names.
                let local = if name == "context" || name == "dockerfile" {
                    format!("_{name}")
                } else {
                    name.clone()
                };
                out.frontend_attrs.insert(attr, format!("local:{local}"));
                out.dirs.insert(local, path.clone());
            }
        }
    }
    if !caps.is_empty() {
        out.frontend_attrs.insert(
            "frontend.caps".into(),
            caps.into_iter().collect::<Vec<_>>().join(","),
        );
    }
    Ok(out)
}

/// An I/O error's reason without Rust's "(os error N)" suffix, as Go prints it.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Whether a URL buildx would read as a git URL carries a query (`?ref=...`).
fn url_has_query(value: &str) -> bool {
    let Some((scheme, _)) = value.split_once("://") else {
        return false;
    };
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ssh" | "git"
    ) {
        return false;
    }
    url::Url::parse(value)
        .map(|u| u.query_pairs().next().is_some())
        .unwrap_or(false)
}

/// The digest `tag` names in the layout's `index.json`: by `io.containerd.image.name`, then by
/// `org.opencontainers.image.ref.name`, else the index's only manifest (as buildx resolves it).
pub fn resolve_tag(dir: &Path, tag: &str) -> Result<String> {
    let index_path = dir.join("index.json");
    let data = std::fs::read(&index_path).map_err(|e| {
        anyhow::anyhow!("could not read {}: {}", index_path.display(), io_reason(&e))
    })?;
    let index: Index = serde_json::from_slice(&data)
        .with_context(|| format!("could not parse {}", index_path.display()))?;
    let by = |key: &str| {
        index
            .manifests
            .iter()
            .find(|m| m.annotations.get(key).is_some_and(|t| t == tag))
    };
    let found = by("io.containerd.image.name")
        .or_else(|| by("org.opencontainers.image.ref.name"))
        .or(match index.manifests.as_slice() {
            [only] => Some(only),
            _ => None,
        });
    match found {
        Some(m) => {
            check_digest(&m.digest)?;
            Ok(m.digest.clone())
        }
        None => {
            let tags: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|m| {
                    m.annotations
                        .get("org.opencontainers.image.ref.name")
                        .map(String::as_str)
                })
                .collect();
            if tags.is_empty() {
                bail!("tag {tag:?} not found in {}", index_path.display());
            }
            bail!(
                "tag {tag:?} not found in {} (it has: {})",
                index_path.display(),
                tags.join(", ")
            )
        }
    }
}

/// The layout holds the blob the reference points at, so a typo fails here with the
/// directory's name rather than deep inside the solve.
fn check_layout(dir: &Path, digest: &str) -> Result<()> {
    check_digest(digest)?;
    let (alg, hex) = digest.split_once(':').unwrap_or_default();
    let blob = dir.join("blobs").join(alg).join(hex);
    if !blob.is_file() {
        bail!(
            "oci-layout {}: blob {digest} not found (no {})",
            dir.display(),
            blob.display()
        );
    }
    Ok(())
}

fn check_digest(digest: &str) -> Result<()> {
    let ok = match digest.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64,
        Some(("sha384", hex)) => hex.len() == 96,
        Some(("sha512", hex)) => hex.len() == 128,
        _ => false,
    } && digest
        .split_once(':')
        .is_some_and(|(_, h)| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    if !ok {
        bail!("invalid digest {digest}");
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn layout(manifests: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        for d in [D1, D2] {
            std::fs::write(dir.path().join("blobs/sha256").join(&d[7..]), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn values_are_read_as_buildx_reads_them() {
        assert_eq!(
            NamedContext::parse("docker-image://busybox:latest"),
            NamedContext::Frontend("docker-image://busybox:latest".into())
        );
        assert_eq!(
            NamedContext::parse("https://example.com/x.git#main"),
            NamedContext::Frontend("https://example.com/x.git#main".into())
        );
        assert_eq!(
            NamedContext::parse("target:base"),
            NamedContext::Frontend("target:base".into())
        );
        assert_eq!(
            NamedContext::parse("../dir"),
            NamedContext::Local("../dir".into())
        );
        assert_eq!(
            NamedContext::parse("oci-layout:///l"),
            NamedContext::OciLayout {
                dir: "/l".into(),
                tag: "latest".into(),
                digest: None
            }
        );
        assert_eq!(
            NamedContext::parse(&format!("oci-layout://rel/l:v1@{D1}")),
            NamedContext::OciLayout {
                dir: "rel/l".into(),
                tag: "v1".into(),
                digest: Some(D1.into())
            }
        );
    }

    #[test]
    fn names_are_familiar_references() {
        let parsed = parse(&[
            "docker.io/library/alpine:latest=docker-image://alpine".into(),
            "base=/tmp".into(),
            "localhost:5000/x/y:1=/tmp".into(),
            "library/busybox:1.36=/tmp".into(),
            String::new(),
        ])
        .unwrap();
        let names: Vec<&str> = parsed.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec!["alpine", "base", "busybox:1.36", "localhost:5000/x/y:1"]
        );
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let e = parse(&["nodelimiter".into()]).unwrap_err().to_string();
        assert_eq!(e, "invalid context value: nodelimiter, expected key=value");
        let e = parse(&["Bad Name=/x".into()]).unwrap_err().to_string();
        assert_eq!(e, "invalid context name Bad Name: invalid reference format");
    }

    #[test]
    fn tags_resolve_through_the_index() {
        let l = layout(serde_json::json!([
            {"digest": D1, "annotations": {"org.opencontainers.image.ref.name": "latest"}},
            {"digest": D2, "annotations": {"org.opencontainers.image.ref.name": "v2",
                                             "io.containerd.image.name": "docker.io/x/y:v2"}},
        ]));
        assert_eq!(resolve_tag(l.path(), "latest").unwrap(), D1);
        assert_eq!(resolve_tag(l.path(), "v2").unwrap(), D2);
        assert_eq!(resolve_tag(l.path(), "docker.io/x/y:v2").unwrap(), D2);
        let e = format!("{:#}", resolve_tag(l.path(), "nope").unwrap_err());
        assert!(e.contains("tag \"nope\" not found in"), "{e}");
        assert!(e.contains("latest, v2"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_single_manifest_answers_any_tag() {
        let l = layout(serde_json::json!([{"digest": D2}]));
        assert_eq!(resolve_tag(l.path(), "whatever").unwrap(), D2);
    }

    #[test]
    fn resolving_never_writes_into_the_layout() {
        let l = layout(serde_json::json!([
            {"digest": D1, "annotations": {"org.opencontainers.image.ref.name": "latest"}},
        ]));
        let before = std::fs::read_dir(l.path()).unwrap().count();
        let mut contexts = BTreeMap::new();
        contexts.insert(
            "img".to_string(),
            NamedContext::parse(&format!("oci-layout://{}", l.path().display())),
        );
        let r = resolve(&contexts).unwrap();
        assert_eq!(std::fs::read_dir(l.path()).unwrap().count(), before);
        let (store, dir) = r.oci_stores.iter().next().unwrap();
        assert_eq!(dir, l.path());
        assert_eq!(
            r.frontend_attrs["context:img"],
            format!("oci-layout://{store}:latest@{D1}")
        );
        assert_eq!(r.frontend_attrs["frontend.caps"], CAP_CONTEXTS);
    }

    #[test]
    fn local_contexts_avoid_the_main_names() {
        let d = tempfile::tempdir().unwrap();
        let mut contexts = BTreeMap::new();
        contexts.insert("context".to_string(), NamedContext::Local(d.path().into()));
        contexts.insert("extra".to_string(), NamedContext::Local(d.path().into()));
        contexts.insert(
            "src".to_string(),
            NamedContext::Frontend("https://example.com/r.git?ref=main".into()),
        );
        let r = resolve(&contexts).unwrap();
        assert_eq!(r.frontend_attrs["context:context"], "local:_context");
        assert_eq!(r.frontend_attrs["context:extra"], "local:extra");
        assert_eq!(r.dirs["_context"], d.path());
        assert_eq!(
            r.frontend_attrs["frontend.caps"],
            format!("{CAP_CONTEXTS},{CAP_GIT_QUERY}")
        );
        let mut missing = BTreeMap::new();
        missing.insert(
            "x".to_string(),
            NamedContext::Local(d.path().join("absent")),
        );
        let e = resolve(&missing).unwrap_err().to_string();
        assert!(e.starts_with("failed to get build context x: stat "), "{e}");
    }
}
