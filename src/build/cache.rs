//! Build cache import/export specs (`--cache-from`, `--cache-to`), parsed once into types, with
//! the GitHub Actions defaults buildx takes from the runner's environment.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::exporter::split_csv;

/// One `--cache-from`/`--cache-to` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

/// Attributes that hold credentials; never shown.
const SECRET_ATTRS: &[&str] = &["token", "secret_access_key", "session_token"];

impl std::fmt::Debug for CacheSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .attrs
            .iter()
            .map(|(k, v)| {
                let v = if SECRET_ATTRS.contains(&k.as_str()) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("CacheSpec")
            .field("kind", &self.kind)
            .field("attrs", &shown)
            .finish()
    }
}

impl CacheSpec {
    /// Parses one flag value. A value without `=` is a list of registry refs, one entry each.
    pub fn parse_flag(value: &str) -> Result<Vec<CacheSpec>> {
        if value.is_empty() {
            return Ok(vec![]);
        }
        if !value.contains('=') {
            return split_csv(value)?
                .into_iter()
                .map(|r| {
                    Ok(CacheSpec {
                        kind: "registry".into(),
                        attrs: BTreeMap::from([("ref".to_string(), r)]),
                    })
                })
                .collect();
        }
        let mut kind = String::new();
        let mut attrs = BTreeMap::new();
        for field in split_csv(value)? {
            let Some((k, v)) = field.split_once('=') else {
                bail!("invalid value {field}");
            };
            match k.to_ascii_lowercase().as_str() {
                "type" => kind = v.to_string(),
                k => {
                    attrs.insert(k.to_string(), v.to_string());
                }
            }
        }
        if kind.is_empty() {
            bail!("type required form> {value:?}");
        }
        Ok(vec![CacheSpec { kind, attrs }])
    }

    /// Fills what buildx fills from the environment (GitHub Actions' cache service), reading
    /// variables through `env` so tests can supply their own.
    pub fn with_env_defaults(mut self, env: impl Fn(&str) -> Option<String>) -> CacheSpec {
        if self.kind != "gha" {
            return self;
        }
        let version = self.attrs.get("version").cloned().or_else(|| {
            env("ACTIONS_CACHE_SERVICE_V2")
                .filter(|v| super::exporter::parse_bool(v))
                .map(|_| "2".to_string())
        });
        if !self.attrs.contains_key("token") {
            if let Some(t) = env("ACTIONS_RUNTIME_TOKEN") {
                self.attrs.insert("token".into(), t);
            }
        }
        if !self.attrs.contains_key("url_v2") && version.as_deref() == Some("2") {
            if let Some(u) = env("ACTIONS_RESULTS_URL") {
                self.attrs.insert("url_v2".into(), u);
            }
        }
        if !self.attrs.contains_key("url") {
            if let Some(u) = env("ACTIONS_CACHE_URL").or_else(|| env("ACTIONS_RESULTS_URL")) {
                self.attrs.insert("url".into(), u);
            }
        }
        self
    }

    /// A `gha` entry without a token and a service URL is dropped, as buildx drops it (outside
    /// GitHub Actions there is no cache service to talk to).
    pub fn is_active(&self) -> bool {
        if self.kind != "gha" {
            return true;
        }
        let has = |k: &str| self.attrs.get(k).is_some_and(|v| !v.is_empty());
        has("token") && (has("url") || has("url_v2"))
    }

    /// Checks what BuildKit needs before the solve starts, with BuildKit's own wording.
    pub fn validate(&self, export: bool) -> Result<()> {
        match (self.kind.as_str(), export) {
            ("registry", _) if self.attrs.get("ref").is_none_or(|r| r.is_empty()) => {
                bail!(
                    "registry cache {} requires ref",
                    if export { "exporter" } else { "importer" }
                )
            }
            ("local", true) if self.attrs.get("dest").is_none_or(|r| r.is_empty()) => {
                bail!("local cache exporter requires dest")
            }
            ("local", false) if self.attrs.get("src").is_none_or(|r| r.is_empty()) => {
                bail!("local cache importer requires src")
            }
            _ => Ok(()),
        }
    }
}

/// Parses all values of one flag, applies the environment defaults and drops inactive entries.
pub fn parse_flags(values: &[String], export: bool) -> Result<Vec<CacheSpec>> {
    let mut out = Vec::new();
    for v in values {
        for spec in CacheSpec::parse_flag(v)? {
            let spec = spec.with_env_defaults(|k| std::env::var(k).ok());
            if spec.is_active() {
                spec.validate(export)?;
                out.push(spec);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn gha(extra: &str) -> CacheSpec {
        CacheSpec::parse_flag(&format!("type=gha{extra}"))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn bare_refs_become_registry_entries() {
        let s = CacheSpec::parse_flag("r/a:1,r/b:2").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, "registry");
        assert_eq!(s[1].attrs["ref"], "r/b:2");
    }

    #[test]
    fn full_form_and_errors() {
        let s = CacheSpec::parse_flag("type=local,dest=/tmp/c,mode=max").unwrap();
        assert_eq!(s[0].kind, "local");
        assert_eq!(s[0].attrs["mode"], "max");
        assert_eq!(
            CacheSpec::parse_flag("ref=x,mode=max")
                .unwrap_err()
                .to_string(),
            "type required form> \"ref=x,mode=max\""
        );
        assert!(CacheSpec::parse_flag("type=registry,bogus").is_err());
        assert!(CacheSpec::parse_flag("type=registry,mode=max").unwrap()[0]
            .validate(true)
            .is_err());
    }

    #[test]
    fn gha_outside_actions_is_dropped() {
        assert!(!gha("").with_env_defaults(env_of(&[])).is_active());
    }

    #[test]
    fn gha_v1_takes_cache_url_and_token() {
        let s = gha("").with_env_defaults(env_of(&[
            ("ACTIONS_RUNTIME_TOKEN", "tok"),
            ("ACTIONS_CACHE_URL", "https://cache.example/"),
        ]));
        assert!(s.is_active());
        assert_eq!(s.attrs["token"], "tok");
        assert_eq!(s.attrs["url"], "https://cache.example/");
        assert!(!s.attrs.contains_key("url_v2"));
    }

    #[test]
    fn gha_v2_from_results_url_alone() {
        let s = gha("").with_env_defaults(env_of(&[
            ("ACTIONS_RUNTIME_TOKEN", "tok"),
            ("ACTIONS_CACHE_SERVICE_V2", "true"),
            ("ACTIONS_RESULTS_URL", "https://results.example/"),
        ]));
        assert!(s.is_active());
        assert_eq!(s.attrs["url_v2"], "https://results.example/");
        // buildx also falls back to the results URL for `url`.
        assert_eq!(s.attrs["url"], "https://results.example/");
    }

    #[test]
    fn gha_explicit_url_v2_is_enough() {
        let s = gha(",url_v2=https://r.example/,token=t").with_env_defaults(env_of(&[]));
        assert!(s.is_active());
        assert!(!s.attrs.contains_key("url"));
    }

    #[test]
    fn gha_explicit_attrs_win_over_env() {
        let s = gha(",url=https://mine/,token=mine,scope=build,version=2").with_env_defaults(
            env_of(&[
                ("ACTIONS_RUNTIME_TOKEN", "env"),
                ("ACTIONS_CACHE_URL", "https://env/"),
                ("ACTIONS_RESULTS_URL", "https://results/"),
            ]),
        );
        assert_eq!(s.attrs["token"], "mine");
        assert_eq!(s.attrs["url"], "https://mine/");
        assert_eq!(s.attrs["url_v2"], "https://results/");
        assert_eq!(s.attrs["scope"], "build");
    }

    #[test]
    fn debug_hides_tokens() {
        let s = gha(",token=supersecret,url=u");
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
