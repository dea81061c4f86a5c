//! `--secret` and `--ssh`: buildx's spec strings parsed into what the build session serves.
//!
//! Everything a build will need from the client is checked here, before the build starts: a
//! secret's file exists and is small enough, its environment variable is set, an ssh id's socket
//! exists or its key files parse. Secret values are not read here (the session reads them when
//! BuildKit asks); key files are, since they have to be held for kiln's own agent.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::exporter::split_csv;
use crate::buildkit::session::{
    AgentSource, Keyring, SecretSource, Secrets, SshAgents, MAX_SECRET_SIZE,
};

/// One `--secret`: an id and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

/// One `--ssh`: an id and the agent it names.
#[derive(Debug, Clone)]
pub struct SshSpec {
    pub id: String,
    pub agent: AgentSource,
}

/// The fields of `--secret [type=file|env,]id=ID[,src=PATH|env=VAR]` as buildx reads them.
#[derive(Debug, Default, PartialEq, Eq)]
struct SecretFields {
    id: String,
    src: String,
    env: String,
}

fn secret_fields(value: &str) -> Result<SecretFields> {
    let mut f = SecretFields::default();
    let mut kind = None;
    for field in split_csv(value).context("failed to parse csv secret")? {
        let Some((key, v)) = field.split_once('=') else {
            bail!("invalid field '{field}' must be a key=value pair");
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                if v != "file" && v != "env" {
                    bail!("unsupported secret type {v:?}");
                }
                kind = Some(v.to_string());
            }
            "id" => f.id = v.to_string(),
            "source" | "src" => f.src = v.to_string(),
            "env" => f.env = v.to_string(),
            other => bail!("unexpected key '{other}' in '{field}'"),
        }
    }
    // `type=env,src=VAR` names the variable with `src`.
    if kind.as_deref() == Some("env") && f.env.is_empty() {
        f.env = std::mem::take(&mut f.src);
    }
    Ok(f)
}

/// Parses and checks one `--secret` value.
///
/// As buildx: the id is required; with neither `src` nor `env`, the id names an environment
/// variable if one is set and a file otherwise; `env` wins over `src`. Unlike buildx, an `env`
/// naming an unset variable is an error rather than an empty secret.
pub fn parse_secret(value: &str) -> Result<SecretSpec> {
    let f = secret_fields(value)?;
    if f.id.is_empty() {
        bail!("secret missing ID");
    }
    let source = if !f.env.is_empty() {
        SecretSource::Env(f.env)
    } else if !f.src.is_empty() {
        SecretSource::File(PathBuf::from(f.src))
    } else if std::env::var_os(&f.id).is_some() {
        SecretSource::Env(f.id.clone())
    } else {
        SecretSource::File(PathBuf::from(&f.id))
    };
    match &source {
        SecretSource::Env(var) => {
            if std::env::var_os(var).is_none() {
                bail!("secret {}: environment variable {var} is not set", f.id);
            }
        }
        SecretSource::File(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("failed to stat {}", path.display()))?;
            if meta.len() > MAX_SECRET_SIZE {
                bail!("secret {} too big. max size 500KB", f.id);
            }
        }
    }
    Ok(SecretSpec { id: f.id, source })
}

/// Every `--secret`; empty values are skipped and a later id replaces an earlier one.
pub fn parse_secrets(values: &[String]) -> Result<Vec<SecretSpec>> {
    let mut out: Vec<SecretSpec> = Vec::new();
    for v in values.iter().filter(|v| !v.is_empty()) {
        let spec = parse_secret(v).with_context(|| format!("--secret {v}"))?;
        match out.iter_mut().find(|s| s.id == spec.id) {
            Some(existing) => *existing = spec,
            None => out.push(spec),
        }
    }
    Ok(out)
}

/// `--ssh ID[=PATH[,PATH...]]` split as buildx splits it (no id means `default`).
fn ssh_fields(value: &str) -> (String, Vec<String>) {
    let (id, paths) = match value.split_once('=') {
        Some((id, paths)) => (id, paths.split(',').map(str::to_string).collect()),
        None => (value, Vec::new()),
    };
    let id = if id.is_empty() {
        "default".to_string()
    } else {
        id.to_string()
    };
    (id, paths)
}

/// Parses and checks one `--ssh` value: one agent socket, or one or more unencrypted private
/// key files; no path (or an empty one) means `$SSH_AUTH_SOCK`.
pub fn parse_ssh(value: &str) -> Result<SshSpec> {
    let (id, mut paths) = ssh_fields(value);
    if paths.is_empty() || (paths.len() == 1 && paths[0].is_empty()) {
        match std::env::var("SSH_AUTH_SOCK") {
            Ok(s) if !s.is_empty() => paths = vec![s],
            _ => bail!("invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set"),
        }
    }
    let mut socket = None;
    let mut keys = Vec::new();
    for p in &paths {
        let path = PathBuf::from(p);
        let meta = std::fs::metadata(&path).with_context(|| format!("failed to stat {p}"))?;
        if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            if socket.is_some() {
                bail!("only single socket allowed");
            }
            socket = Some(path);
        } else {
            keys.push(path);
        }
    }
    let agent = match socket {
        Some(_) if !keys.is_empty() => bail!("invalid combination of keys and sockets"),
        Some(s) => AgentSource::Socket(s),
        None => AgentSource::Keys(Keyring::load(&keys)?),
    };
    Ok(SshSpec { id, agent })
}

/// Every `--ssh`; an id given twice is an error, as in buildx.
pub fn parse_ssh_specs(values: &[String]) -> Result<Vec<SshSpec>> {
    let mut out: Vec<SshSpec> = Vec::new();
    for v in values.iter().filter(|v| !v.is_empty()) {
        let spec = parse_ssh(v).with_context(|| format!("--ssh {v}"))?;
        if out.iter().any(|s| s.id == spec.id) {
            bail!("--ssh {v}: duplicate agent ID {:?}", spec.id);
        }
        out.push(spec);
    }
    Ok(out)
}

/// A remote context that BuildKit clones over ssh: buildx forwards the default agent for it
/// when no `--ssh` was given.
pub fn is_git_ssh_url(url: &str) -> bool {
    url.starts_with("ssh://")
        || url
            .split_once('@')
            .is_some_and(|(user, rest)| !user.contains('/') && rest.contains(':'))
            && !url.contains("://")
}

/// The `--ssh` values a build uses: the given ones, or `default` for a context cloned over ssh.
pub fn ssh_values_for_context(values: &[String], context: &str) -> Vec<String> {
    if values.iter().all(|v| v.is_empty()) && is_git_ssh_url(context) {
        return vec!["default".to_string()];
    }
    values.to_vec()
}

/// What the session serves for these secrets.
pub fn session_secrets(specs: &[SecretSpec]) -> Secrets {
    Secrets::new(specs.iter().map(|s| (s.id.clone(), s.source.clone())))
}

/// What the session serves for these ssh ids.
pub fn session_agents(specs: &[SshSpec]) -> SshAgents {
    SshAgents::new(specs.iter().map(|s| (s.id.clone(), s.agent.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_follow_buildx() {
        let f = secret_fields("id=a,src=/x").unwrap();
        assert_eq!(
            (f.id.as_str(), f.src.as_str(), f.env.as_str()),
            ("a", "/x", "")
        );
        let f = secret_fields("type=env,id=a,src=VAR").unwrap();
        assert_eq!((f.src.as_str(), f.env.as_str()), ("", "VAR"));
        let f = secret_fields("type=env,id=a,env=VAR,src=/x").unwrap();
        assert_eq!((f.src.as_str(), f.env.as_str()), ("/x", "VAR"));
        let f = secret_fields("ID=a,Source=/y").unwrap();
        assert_eq!((f.id.as_str(), f.src.as_str()), ("a", "/y"));
        let f = secret_fields("\"id=a,b\",src=/z").unwrap();
        assert_eq!(f.id, "a,b");
        assert_eq!(
            secret_fields("type=bogus,id=a").unwrap_err().to_string(),
            "unsupported secret type \"bogus\""
        );
        assert_eq!(
            secret_fields("id").unwrap_err().to_string(),
            "invalid field 'id' must be a key=value pair"
        );
        assert_eq!(
            secret_fields("id=a,dst=/x").unwrap_err().to_string(),
            "unexpected key 'dst' in 'dst=/x'"
        );
    }

    #[test]
    fn secret_sources_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "v").unwrap();
        let f = file.display().to_string();
        std::env::set_var("KILN_TEST_SECRET_A", "value");

        let s = parse_secret(&format!("id=a,src={f}")).unwrap();
        assert_eq!(s.source, SecretSource::File(file.clone()));
        let s = parse_secret("id=a,env=KILN_TEST_SECRET_A").unwrap();
        assert_eq!(s.source, SecretSource::Env("KILN_TEST_SECRET_A".into()));
        let s = parse_secret("type=env,id=a,src=KILN_TEST_SECRET_A").unwrap();
        assert_eq!(s.source, SecretSource::Env("KILN_TEST_SECRET_A".into()));
        // A bare id: the variable of that name when set, else the file of that name.
        let s = parse_secret("id=KILN_TEST_SECRET_A").unwrap();
        assert_eq!(s.source, SecretSource::Env("KILN_TEST_SECRET_A".into()));
        let s = parse_secret(&format!("id={f}")).unwrap();
        assert_eq!(s.source, SecretSource::File(file.clone()));

        assert_eq!(
            parse_secret(&format!("src={f}")).unwrap_err().to_string(),
            "secret missing ID"
        );
        let missing = format!(
            "{:#}",
            parse_secret("id=a,src=/nonexistent/kiln").unwrap_err()
        );
        assert!(
            missing.starts_with("failed to stat /nonexistent/kiln"),
            "{missing}"
        );
        let unset = parse_secret("id=a,env=KILN_TEST_SECRET_UNSET").unwrap_err();
        assert_eq!(
            unset.to_string(),
            "secret a: environment variable KILN_TEST_SECRET_UNSET is not set"
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let err = parse_secret(&format!("id=big,src={}", big.display())).unwrap_err();
        assert_eq!(err.to_string(), "secret big too big. max size 500KB");
    }

    #[test]
    fn later_secrets_replace_earlier_ones_and_errors_name_the_flag() {
        std::env::set_var("KILN_TEST_SECRET_B", "1");
        std::env::set_var("KILN_TEST_SECRET_C", "2");
        let specs = parse_secrets(&[
            "id=x,env=KILN_TEST_SECRET_B".into(),
            String::new(),
            "id=x,env=KILN_TEST_SECRET_C".into(),
        ])
        .unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(
            specs[0].source,
            SecretSource::Env("KILN_TEST_SECRET_C".into())
        );
        let err = parse_secrets(&["id=y,src=/nonexistent".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--secret id=y,src=/nonexistent");
    }

    #[test]
    fn ssh_fields_follow_buildx() {
        assert_eq!(ssh_fields("default"), ("default".into(), vec![]));
        assert_eq!(ssh_fields("default="), ("default".into(), vec!["".into()]));
        assert_eq!(
            ssh_fields("gh=/a,/b"),
            ("gh".into(), vec!["/a".into(), "/b".into()])
        );
        assert_eq!(ssh_fields("=/s"), ("default".into(), vec!["/s".into()]));
    }

    #[test]
    fn ssh_sockets_keys_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let spec = parse_ssh(&format!("default={}", sock.display())).unwrap();
        assert_eq!(spec.id, "default");
        assert!(matches!(spec.agent, AgentSource::Socket(ref p) if *p == sock));

        let key = dir.path().join("id_ed25519");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        let spec = parse_ssh(&format!("deploy={}", key.display())).unwrap();
        assert_eq!(spec.id, "deploy");
        assert!(matches!(spec.agent, AgentSource::Keys(_)));

        let mixed = parse_ssh(&format!("x={},{}", key.display(), sock.display())).unwrap_err();
        assert_eq!(mixed.to_string(), "invalid combination of keys and sockets");
        let two = parse_ssh(&format!("x={},{}", sock.display(), sock.display())).unwrap_err();
        assert_eq!(two.to_string(), "only single socket allowed");
        let missing = parse_ssh("x=/nonexistent/key").unwrap_err();
        assert_eq!(missing.to_string(), "failed to stat /nonexistent/key");

        let dup = parse_ssh_specs(&[
            format!("default={}", sock.display()),
            format!("={}", sock.display()),
        ])
        .unwrap_err();
        assert!(dup.to_string().contains("duplicate agent ID \"default\""));
    }

    #[test]
    fn git_ssh_urls() {
        assert!(is_git_ssh_url("git@github.com:moby/buildkit.git"));
        assert!(is_git_ssh_url("ssh://git@host/x.git"));
        assert!(!is_git_ssh_url("https://github.com/moby/buildkit.git"));
        assert!(!is_git_ssh_url("https://user@host/x.git"));
        assert!(!is_git_ssh_url("git://host/x.git"));
    }
}
