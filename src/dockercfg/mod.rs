//! Docker's client configuration: `config.json`, contexts, and registry credentials.
//!
//! kiln reads the same files the `docker` CLI writes, so a user's `docker login` and
//! `docker context use` apply to kiln unchanged. This module only reads; it never writes Docker's
//! files. Secrets read here are kept out of `Debug` output and error messages.

mod context;
mod credentials;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Deserialize;

pub use context::{
    context_by_name, current_context_name, current_endpoint_key, default_tls, list_contexts,
    DEFAULT_CONTEXT,
};
pub use credentials::credentials_for;

/// `DOCKER_CONFIG`, else `~/.docker`, as the `docker` CLI resolves it.
pub fn config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::BaseDirs::new()
        .map(|b| b.home_dir().join(".docker"))
        .unwrap_or_else(|| PathBuf::from(".docker"))
}

/// A registry login. For an identity token `username` is empty and `secret` is the token, as
/// BuildKit's auth protocol expects.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The parts of `config.json` kiln uses. Unknown keys are ignored.
#[derive(Default, Deserialize)]
pub struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    pub current_context: Option<String>,
    #[serde(default)]
    pub auths: BTreeMap<String, credentials::AuthEntry>,
    #[serde(rename = "credsStore", default)]
    pub creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    pub cred_helpers: BTreeMap<String, String>,
}

// `auths` holds secrets: list only which registries have entries.
impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("current_context", &self.current_context)
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

impl ConfigFile {
    /// Parses `config.json` text. Errors name the problem, never the file's contents.
    pub fn parse(text: &str) -> Result<ConfigFile> {
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        // serde_json's message carries only a position, never the offending value.
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Loads `<config dir>/config.json`; a missing file is an empty configuration, as for `docker`.
pub fn load_config() -> Result<ConfigFile> {
    let path = config_dir().join("config.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => ConfigFile::parse(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_keys_kiln_uses_and_ignores_the_rest() {
        let cfg = ConfigFile::parse(
            r#"{
                "auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}},
                "credsStore": "desktop",
                "credHelpers": {"gcr.io": "gcloud"},
                "currentContext": "remote",
                "psFormat": "table {{.ID}}",
                "plugins": {"x": {"y": "z"}}
            }"#,
        )
        .unwrap();
        assert_eq!(cfg.current_context.as_deref(), Some("remote"));
        assert_eq!(cfg.creds_store.as_deref(), Some("desktop"));
        assert_eq!(cfg.cred_helpers["gcr.io"], "gcloud");
        assert!(cfg.auths.contains_key("https://index.docker.io/v1/"));
    }

    #[test]
    fn empty_config_is_default() {
        let cfg = ConfigFile::parse("").unwrap();
        assert!(cfg.current_context.is_none());
        assert!(cfg.auths.is_empty());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let cfg =
            ConfigFile::parse(r#"{"auths": {"r.io": {"auth": "dXNlcjpzM2NyZXQ="}}}"#).unwrap();
        let shown = format!("{cfg:?}");
        assert!(shown.contains("r.io"));
        assert!(!shown.contains("dXNlcjpzM2NyZXQ="));
    }

    #[test]
    fn malformed_config_error_does_not_echo_contents() {
        let err = ConfigFile::parse(r#"{"auths": {"r.io": {"auth": "c2VjcmV0"}"#).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
    }
}
