//! Registry credentials, found the way the `docker` CLI finds them: a per-registry
//! `credHelpers` entry, else the `credsStore` helper, else the `auths` entries in `config.json`.
//!
//! Helpers are run as `docker-credential-<name> get` with the server address on stdin. Secrets
//! are never put in errors or logs: a failing helper is reported by name and exit status only.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use serde::Deserialize;

use super::{ConfigFile, Credentials};

/// The key Docker files Docker Hub credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// One `auths` entry of `config.json`.
#[derive(Default, Deserialize)]
pub struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(rename = "identitytoken", default)]
    identity_token: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// Credentials for a registry host from Docker's config (`auths`, `credsStore`, `credHelpers`).
pub fn credentials_for(host: &str) -> Result<Option<Credentials>> {
    let cfg = super::load_config()?;
    credentials_from(&cfg, host, run_helper)
}

/// The key Docker's config uses for a registry: Docker Hub's many names become its v1 URL;
/// other hosts are used as given.
pub fn registry_key(host: &str) -> String {
    let bare = strip_scheme_and_path(host);
    match bare {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        _ => bare.to_string(),
    }
}

/// `https://host:5000/v2/` → `host:5000`, as Docker's `ConvertToHostname` compares entries.
fn strip_scheme_and_path(s: &str) -> &str {
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or(s)
}

type Helper = fn(&str, &str) -> Result<Option<Credentials>>;

fn credentials_from(cfg: &ConfigFile, host: &str, helper: Helper) -> Result<Option<Credentials>> {
    let key = registry_key(host);
    let bare = strip_scheme_and_path(&key);
    let helper_name = cfg
        .cred_helpers
        .get(&key)
        .or_else(|| cfg.cred_helpers.get(bare))
        .or(cfg.creds_store.as_ref())
        .filter(|h| !h.is_empty());
    if let Some(name) = helper_name {
        return helper(name, &key);
    }
    from_auths(cfg, &key)
}

fn from_auths(cfg: &ConfigFile, key: &str) -> Result<Option<Credentials>> {
    let bare = strip_scheme_and_path(key);
    // An exact key first; then any entry naming the same host (`https://r.io/v2/` vs `r.io`).
    let Some(entry) = cfg.auths.get(key).or_else(|| {
        cfg.auths
            .iter()
            .find(|(k, _)| registry_key(k) == key || strip_scheme_and_path(k) == bare)
            .map(|(_, v)| v)
    }) else {
        return Ok(None);
    };
    if let Some(token) = entry.identity_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials {
            username: String::new(),
            secret: token.clone(),
        }));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        // The value itself is a secret: the error names the entry, never its content.
        let malformed = || {
            anyhow::anyhow!(
                "{}: the \"auth\" of {key:?} is not base64 of user:password",
                super::config_dir().join("config.json").display()
            )
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(malformed)?;
        return Ok(Some(Credentials {
            username: user.to_string(),
            secret: pass.trim_end_matches('\0').to_string(),
        }));
    }
    Ok(match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Some(Credentials {
            username: u.clone(),
            secret: p.clone(),
        }),
        _ => None,
    })
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<name> get`, the protocol every Docker credential helper speaks.
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running credential helper {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .with_context(|| format!("writing to credential helper {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("running credential helper {program}"))?;
    parse_helper_output(&program, out.status.success(), &out.stdout)
}

fn parse_helper_output(program: &str, ok: bool, stdout: &[u8]) -> Result<Option<Credentials>> {
    let text = String::from_utf8_lossy(stdout);
    if !ok {
        // The helpers' agreed wording for "nothing stored for this server".
        if text.contains("credentials not found") {
            return Ok(None);
        }
        // stdout may echo what the helper was given; keep it out of the message.
        bail!("credential helper {program} failed");
    }
    let answer: HelperAnswer = serde_json::from_str(text.trim())
        .map_err(|_| anyhow::anyhow!("credential helper {program} answered with invalid JSON"))?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    // Helpers store identity tokens under the username `<token>`.
    if answer.username == "<token>" {
        return Ok(Some(Credentials {
            username: String::new(),
            secret: answer.secret,
        }));
    }
    Ok(Some(Credentials {
        username: answer.username,
        secret: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> ConfigFile {
        ConfigFile::parse(json).unwrap()
    }

    fn no_helper(_: &str, _: &str) -> Result<Option<Credentials>> {
        panic!("no helper should run")
    }

    fn echo_helper(name: &str, server: &str) -> Result<Option<Credentials>> {
        Ok(Some(Credentials {
            username: name.to_string(),
            secret: server.to_string(),
        }))
    }

    #[test]
    fn normalises_docker_hub_names() {
        for h in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(registry_key(h), DOCKER_HUB_KEY, "{h}");
        }
        assert_eq!(registry_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_key("https://ghcr.io/v2/"), "ghcr.io");
    }

    #[test]
    fn decodes_base64_auth() {
        let c = cfg(r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="}}}"#);
        let got = credentials_from(&c, "docker.io", no_helper)
            .unwrap()
            .unwrap();
        assert_eq!(got.username, "user");
        assert_eq!(got.secret, "pa:ss");
    }

    #[test]
    fn a_malformed_auth_is_an_error_that_does_not_show_it() {
        // "secretvalue" without a colon, and something that is not base64 at all.
        for auth in ["c2VjcmV0dmFsdWU=", "not base64!"] {
            let c = cfg(&format!(r#"{{"auths":{{"a.io":{{"auth":"{auth}"}}}}}}"#));
            let err = credentials_from(&c, "a.io", no_helper)
                .unwrap_err()
                .to_string();
            assert!(err.contains("\"auth\" of \"a.io\""), "{err}");
            assert!(!err.contains(auth) && !err.contains("secretvalue"), "{err}");
        }
    }

    #[test]
    fn reads_username_password_and_identity_token() {
        let c = cfg(r#"{"auths":{
            "a.io":{"username":"u","password":"p"},
            "https://b.io/v2/":{"identitytoken":"tok"}}}"#);
        let a = credentials_from(&c, "a.io", no_helper).unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.secret.as_str()), ("u", "p"));
        let b = credentials_from(&c, "b.io", no_helper).unwrap().unwrap();
        assert_eq!((b.username.as_str(), b.secret.as_str()), ("", "tok"));
        assert!(credentials_from(&c, "c.io", no_helper).unwrap().is_none());
    }

    #[test]
    fn cred_helpers_win_over_creds_store_and_auths() {
        let c = cfg(r#"{"credsStore":"store","credHelpers":{"gcr.io":"gcloud"},
                       "auths":{"gcr.io":{"auth":"dTpw"}}}"#);
        let g = credentials_from(&c, "gcr.io", echo_helper)
            .unwrap()
            .unwrap();
        assert_eq!(
            (g.username.as_str(), g.secret.as_str()),
            ("gcloud", "gcr.io")
        );
        let h = credentials_from(&c, "docker.io", echo_helper)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.username.as_str(), h.secret.as_str()),
            ("store", DOCKER_HUB_KEY)
        );
    }

    #[test]
    fn helper_output() {
        assert!(
            parse_helper_output("h", false, b"credentials not found in native keychain\n")
                .unwrap()
                .is_none()
        );
        let err = parse_helper_output("h", false, b"oops s3cret").unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
        let c = parse_helper_output(
            "h",
            true,
            br#"{"ServerURL":"x","Username":"u","Secret":"s"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("u", "s"));
        let t = parse_helper_output("h", true, br#"{"Username":"<token>","Secret":"t"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((t.username.as_str(), t.secret.as_str()), ("", "t"));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let c = Credentials {
            username: "u".into(),
            secret: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
