//! Docker contexts: which Docker endpoint the user is pointed at.
//!
//! The `docker` CLI stores each named context at
//! `<config>/contexts/meta/<sha256 hex of name>/meta.json`; the `default` context is implicit and
//! points at `DOCKER_HOST` or the local socket. Only the Docker endpoint's host is read (TLS
//! material and Kubernetes endpoints are not kiln's business yet).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The name of the context every Docker installation has.
pub const DEFAULT_CONTEXT: &str = "default";

/// Where the `default` context points when `DOCKER_HOST` is unset.
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// A Docker context: a name and the Docker host it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerContext {
    pub name: String,
    pub host: String,
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
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `DOCKER_HOST`, else the local socket: where the `default` context points.
pub fn default_host() -> String {
    env("DOCKER_HOST").unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
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

/// Parses one context's `meta.json`.
fn parse_meta(text: &str) -> Result<DockerContext> {
    let meta: Meta = serde_json::from_str(text)?;
    let host = meta.endpoints.docker.map(|d| d.host).unwrap_or_default();
    Ok(DockerContext {
        name: meta.name,
        host,
    })
}

fn read_context(config_dir: &Path, name: &str) -> Result<Option<DockerContext>> {
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    let path = meta_dir(config_dir).join(id).join("meta.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_meta(&text)
            .map(Some)
            .with_context(|| format!("reading Docker context {name:?} from {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The context of that name (`default` included), or `None`.
pub fn context_by_name(name: &str) -> Result<Option<DockerContext>> {
    if name == DEFAULT_CONTEXT {
        return Ok(Some(DockerContext {
            name: DEFAULT_CONTEXT.into(),
            host: default_host(),
        }));
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
    let mut out = vec![DockerContext {
        name: DEFAULT_CONTEXT.into(),
        host: default_host(),
    }];
    out.extend(list_named_contexts(&super::config_dir()));
    Ok(out)
}

fn list_named_contexts(config_dir: &Path) -> Vec<DockerContext> {
    let Ok(entries) = std::fs::read_dir(meta_dir(config_dir)) else {
        return Vec::new();
    };
    let mut named: Vec<DockerContext> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("meta.json")).ok())
        .filter_map(|text| parse_meta(&text).ok())
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
        let c = parse_meta(
            r#"{"Name":"e28","Metadata":{"Description":"x"},
                "Endpoints":{"docker":{"Host":"unix:///run/e28.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        assert_eq!(c.name, "e28");
        assert_eq!(c.host, "unix:///run/e28.sock");
        let k8s_only = parse_meta(r#"{"Name":"k","Endpoints":{"kubernetes":{}}}"#).unwrap();
        assert_eq!(k8s_only.host, "");
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
}
