//! Docker contexts: which Docker endpoint the user is pointed at.
//!
//! The `docker` CLI stores each named context at
//! `<config>/contexts/meta/<sha256 hex of name>/meta.json`; the `default` context is implicit and
//! points at `DOCKER_HOST` or the local socket. The Docker endpoint's host and TLS material are
//! read (Kubernetes endpoints are not kiln's business). TLS follows the docker CLI: a named
//! context's files at `<config>/contexts/tls/<id>/docker/{ca,cert,key}.pem` and its
//! `SkipTLSVerify`; the `default` context's from `DOCKER_TLS_VERIFY`, `DOCKER_TLS` and
//! `DOCKER_CERT_PATH`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use kiln_drivers::tls::TlsFiles;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The name of the context every Docker installation has.
pub const DEFAULT_CONTEXT: &str = "default";

/// Where the `default` context points when `DOCKER_HOST` is unset.
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// A Docker context: a name, the Docker host it points at and the TLS it is reached with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerContext {
    pub name: String,
    pub host: String,
    /// `None`: plain TCP (or a socket, where TLS never applies).
    pub tls: Option<TlsFiles>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Endpoints", default)]
    endpoints: Endpoints,
}

#[derive(Default, Deserialize)]
struct Endpoints {
    #[serde(default)]
    docker: Option<DockerEndpointMeta>,
}

#[derive(Deserialize)]
struct DockerEndpointMeta {
    #[serde(rename = "Host", default)]
    host: String,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `DOCKER_HOST`, else the local socket: where the `default` context points.
pub fn default_host() -> String {
    env("DOCKER_HOST").unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
}

/// The TLS of the `default` context (and of a host given as a URL), as the docker CLI reads it
/// from the environment.
pub fn default_tls() -> Option<TlsFiles> {
    env_tls(
        env("DOCKER_TLS_VERIFY").is_some(),
        env("DOCKER_TLS").is_some(),
        &env("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(super::config_dir),
    )
}

/// `DOCKER_TLS_VERIFY` (any non-empty value) means TLS with the server checked against
/// `ca.pem`, which must exist. `DOCKER_TLS` alone means TLS without verification, as the docker
/// CLI does (its `ca.pem` is not used then, so it need not exist). Either way the client
/// certificate is presented when `cert.pem` and `key.pem` exist.
fn env_tls(verify: bool, tls: bool, cert_path: &Path) -> Option<TlsFiles> {
    if !verify && !tls {
        return None;
    }
    let existing = |f: &str| Some(cert_path.join(f)).filter(|p| p.exists());
    Some(TlsFiles {
        ca: if verify {
            Some(cert_path.join("ca.pem"))
        } else {
            None
        },
        cert: existing("cert.pem"),
        key: existing("key.pem"),
        skip_verify: !verify,
    })
}

fn default_context() -> DockerContext {
    DockerContext {
        name: DEFAULT_CONTEXT.into(),
        host: default_host(),
        tls: default_tls(),
    }
}

/// The context the `docker` CLI would use: `DOCKER_HOST` forces `default`, then
/// `DOCKER_CONTEXT`, then `currentContext` from `config.json`, then `default`.
pub fn current_context_name() -> Result<String> {
    let cfg = super::load_config()?;
    Ok(pick_context_name(
        env("DOCKER_HOST").as_deref(),
        env("DOCKER_CONTEXT").as_deref(),
        cfg.current_context.as_deref(),
    ))
}

fn pick_context_name(
    docker_host: Option<&str>,
    docker_context: Option<&str>,
    config_current: Option<&str>,
) -> String {
    if docker_host.is_some() {
        return DEFAULT_CONTEXT.to_string();
    }
    docker_context
        .or(config_current.filter(|c| !c.is_empty()))
        .unwrap_or(DEFAULT_CONTEXT)
        .to_string()
}

/// What buildx keys the current builder by: the context's name, or for the `default` context its
/// host (so `DOCKER_HOST=a` and `DOCKER_HOST=b` each remember their own builder).
pub fn current_endpoint_key() -> Result<String> {
    let name = current_context_name()?;
    if name != DEFAULT_CONTEXT {
        return Ok(name);
    }
    Ok(default_host())
}

fn meta_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("contexts").join("meta")
}

/// Parses one context's `meta.json`; its TLS files are looked for under `tls_dir` (the
/// context's `contexts/tls/<id>/docker`).
fn parse_meta(text: &str, tls_dir: &Path) -> Result<DockerContext> {
    let meta: Meta = serde_json::from_str(text)?;
    let (host, skip_verify) = meta
        .endpoints
        .docker
        .map(|d| (d.host, d.skip_tls_verify))
        .unwrap_or_default();
    Ok(DockerContext {
        name: meta.name,
        host,
        tls: context_tls(tls_dir, skip_verify),
    })
}

/// A context has TLS when it stores any TLS file or skips verification (as the docker CLI's
/// `tlsConfig`); without a CA the system's roots verify the server.
fn context_tls(tls_dir: &Path, skip_verify: bool) -> Option<TlsFiles> {
    let existing = |f: &str| Some(tls_dir.join(f)).filter(|p| p.is_file());
    let files = TlsFiles {
        ca: existing("ca.pem"),
        cert: existing("cert.pem"),
        key: existing("key.pem"),
        skip_verify,
    };
    let any = files.ca.is_some() || files.cert.is_some() || files.key.is_some();
    (any || skip_verify).then_some(files)
}

fn context_id(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

fn tls_dir(config_dir: &Path, id: &str) -> PathBuf {
    config_dir
        .join("contexts")
        .join("tls")
        .join(id)
        .join("docker")
}

fn read_context(config_dir: &Path, name: &str) -> Result<Option<DockerContext>> {
    let id = context_id(name);
    let path = meta_dir(config_dir).join(&id).join("meta.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_meta(&text, &tls_dir(config_dir, &id))
            .map(Some)
            .with_context(|| format!("reading Docker context {name:?} from {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The context of that name (`default` included), or `None`.
pub fn context_by_name(name: &str) -> Result<Option<DockerContext>> {
    if name == DEFAULT_CONTEXT {
        return Ok(Some(default_context()));
    }
    let ctx = read_context(&super::config_dir(), name)?;
    if let Some(c) = &ctx {
        if c.host.is_empty() {
            bail!("Docker context {name:?} has no Docker endpoint");
        }
    }
    Ok(ctx)
}

/// Every context, `default` first, then the named ones sorted by name (as `docker context ls`).
/// A context whose metadata cannot be read is skipped: one broken context must not hide the rest.
pub fn list_contexts() -> Result<Vec<DockerContext>> {
    let mut out = vec![default_context()];
    out.extend(list_named_contexts(&super::config_dir()));
    Ok(out)
}

fn list_named_contexts(config_dir: &Path) -> Vec<DockerContext> {
    let Ok(entries) = std::fs::read_dir(meta_dir(config_dir)) else {
        return Vec::new();
    };
    let mut named: Vec<DockerContext> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("meta.json")).ok()?;
            let id = e.file_name().to_string_lossy().into_owned();
            parse_meta(&text, &tls_dir(config_dir, &id)).ok()
        })
        .filter(|c| c.name != DEFAULT_CONTEXT && !c.host.is_empty())
        .collect();
    named.sort_by(|a, b| a.name.cmp(&b.name));
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_wins_then_docker_context_then_config() {
        assert_eq!(
            pick_context_name(Some("tcp://x:1"), Some("c"), Some("d")),
            "default"
        );
        assert_eq!(pick_context_name(None, Some("c"), Some("d")), "c");
        assert_eq!(pick_context_name(None, None, Some("d")), "d");
        assert_eq!(pick_context_name(None, None, Some("")), "default");
        assert_eq!(pick_context_name(None, None, None), "default");
    }

    #[test]
    fn parses_context_meta() {
        let none = Path::new("/nonexistent");
        let c = parse_meta(
            r#"{"Name":"e28","Metadata":{"Description":"x"},
                "Endpoints":{"docker":{"Host":"unix:///run/e28.sock","SkipTLSVerify":false}}}"#,
            none,
        )
        .unwrap();
        assert_eq!(c.name, "e28");
        assert_eq!(c.host, "unix:///run/e28.sock");
        assert_eq!(c.tls, None);
        let k8s_only = parse_meta(r#"{"Name":"k","Endpoints":{"kubernetes":{}}}"#, none).unwrap();
        assert_eq!(k8s_only.host, "");
        let skip = parse_meta(
            r#"{"Name":"s","Endpoints":{"docker":{"Host":"tcp://h:2376","SkipTLSVerify":true}}}"#,
            none,
        )
        .unwrap();
        assert_eq!(
            skip.tls,
            Some(TlsFiles {
                skip_verify: true,
                ..Default::default()
            })
        );
    }

    #[test]
    fn finds_contexts_by_the_sha256_of_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let id = hex::encode(Sha256::digest(b"remote"));
        let d = dir.path().join("contexts/meta").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("meta.json"),
            r#"{"Name":"remote","Endpoints":{"docker":{"Host":"tcp://10.0.0.1:2375"}}}"#,
        )
        .unwrap();
        let c = read_context(dir.path(), "remote").unwrap().unwrap();
        assert_eq!(c.host, "tcp://10.0.0.1:2375");
        assert!(read_context(dir.path(), "other").unwrap().is_none());
        let all = list_named_contexts(dir.path());
        assert_eq!(all, vec![c]);
    }

    #[test]
    fn a_context_with_tls_files_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        let id = context_id("tls");
        let meta = meta_dir(dir.path()).join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"tls","Endpoints":{"docker":{"Host":"tcp://127.0.0.1:2376"}}}"#,
        )
        .unwrap();
        let tls = tls_dir(dir.path(), &id);
        std::fs::create_dir_all(&tls).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(tls.join(f), "x").unwrap();
        }
        let c = read_context(dir.path(), "tls").unwrap().unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                ca: Some(tls.join("ca.pem")),
                cert: Some(tls.join("cert.pem")),
                key: Some(tls.join("key.pem")),
                skip_verify: false,
            })
        );
        assert_eq!(list_named_contexts(dir.path()), vec![c]);
    }

    #[test]
    fn the_environment_asks_for_tls_as_the_docker_cli_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(env_tls(false, false, dir.path()), None);
        // Verify names ca.pem even when missing (connecting then says so); the client pair
        // is used only when present.
        let v = env_tls(true, false, dir.path()).unwrap();
        assert_eq!(v.ca, Some(dir.path().join("ca.pem")));
        assert_eq!((v.cert, v.key, v.skip_verify), (None, None, false));
        std::fs::write(dir.path().join("cert.pem"), "x").unwrap();
        std::fs::write(dir.path().join("key.pem"), "x").unwrap();
        let t = env_tls(false, true, dir.path()).unwrap();
        assert_eq!(t.ca, None);
        assert_eq!(t.cert, Some(dir.path().join("cert.pem")));
        assert!(t.skip_verify);
    }
}
