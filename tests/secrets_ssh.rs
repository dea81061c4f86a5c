//! `--secret` and `--ssh` on Engine 28 (secrets on Engine 20.10 too): what `RUN --mount=type=secret|ssh` sees, that a secret's
//! value leaks nowhere (output, progress, metadata file, exported filesystem), the errors for
//! missing sources, and a real `ssh-agent`'s keys listed and used from inside a build.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::*;
use sha2::Digest as _;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// A value no build step, image or log would contain by chance.
fn secret_value(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kiln-{kind}-secret-{}-{nanos}", std::process::id())
}

/// Fails if `haystack` holds the value, raw or base64-encoded (rawjson logs are base64).
fn assert_absent(what: &str, haystack: &[u8], value: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    // Any 3-byte-aligned stretch of the value encodes to the same base64 run.
    let b64_core = &b64[..b64.len() - 4];
    for needle in [value, b64_core] {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "the secret value leaked into {what}"
        );
    }
}

/// The stage writes each secret's sha256 to /out; the exported filesystem is the whole stage.
/// `{}` makes each test's step unique: secrets are not part of a step's cache key, so BuildKit
/// would otherwise run one step for two concurrent builds, with one build's secrets.
const SECRET_DOCKERFILE: &str = r#"FROM busybox
RUN --mount=type=secret,id=filesecret \
    --mount=type=secret,id=envsecret,target=/run/secrets/fromenv \
    sha256sum /run/secrets/filesecret /run/secrets/fromenv > /out && echo secrets-checked # {}
"#;

fn secret_build(engine: Engine, progress: &str) {
    let user = User::new(engine);
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let dockerfile = SECRET_DOCKERFILE.replace("{}", &format!("{engine:?} {progress}"));
    write_tree(&ctx, &[("Dockerfile", &dockerfile)]);
    let file_value = secret_value("file");
    let env_value = secret_value("env");
    let secret_file = dir.path().join("token.txt");
    std::fs::write(&secret_file, &file_value).unwrap();
    let tar = dir.path().join("fs.tar");
    let metadata = dir.path().join("metadata.json");

    let mut cmd = user.kiln(&["build", "--no-cache", "--progress", progress]);
    cmd.args([
        "--secret",
        &format!("id=filesecret,src={}", secret_file.display()),
        "--secret",
        "id=envsecret,env=KILN_E2E_SECRET",
        "--metadata-file",
        metadata.to_str().unwrap(),
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        ctx.to_str().unwrap(),
    ])
    .env("KILN_E2E_SECRET", &env_value);
    let out = ok(cmd);

    // The build saw both values.
    let extracted = dir.path().join("fs");
    std::fs::create_dir_all(&extracted).unwrap();
    ok(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&extracted)
        .arg("out"));
    let sums = std::fs::read_to_string(extracted.join("out")).unwrap();
    assert!(
        sums.contains(&format!(
            "{}  /run/secrets/filesecret",
            sha256_hex(file_value.as_bytes())
        )),
        "{sums}"
    );
    assert!(
        sums.contains(&format!(
            "{}  /run/secrets/fromenv",
            sha256_hex(env_value.as_bytes())
        )),
        "{sums}"
    );
    let shown = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    let step_output = if progress == "rawjson" {
        base64::engine::general_purpose::STANDARD.encode("secrets-checked\n")
    } else {
        "secrets-checked".to_string()
    };
    assert!(
        String::from_utf8_lossy(&shown).contains(&step_output),
        "the RUN step's output should be shown:\n{}",
        String::from_utf8_lossy(&shown)
    );

    // ... and neither value is anywhere the user or the image can see.
    let tarball = std::fs::read(&tar).unwrap();
    let meta = std::fs::read(&metadata).unwrap();
    for value in [&file_value, &env_value] {
        assert_absent(&format!("{progress} output"), &shown, value);
        assert_absent("the metadata file", &meta, value);
        assert_absent("the exported filesystem", &tarball, value);
    }
}

#[test]
fn secrets_reach_run_and_leak_nowhere_plain() {
    secret_build(Engine::Modern, "plain");
}

#[test]
fn secrets_reach_run_and_leak_nowhere_rawjson() {
    secret_build(Engine::Modern, "rawjson");
}

/// BuildKit 0.8 already has secrets: the same build on Engine 20.10.
#[test]
fn secrets_reach_run_and_leak_nowhere_engine20() {
    secret_build(Engine::Old, "plain");
}

/// A one-line error that names the flag, before any build starts.
fn assert_one_line_error(stderr: &str, parts: &[&str]) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{stderr}");
    assert!(lines[0].starts_with("ERROR: "), "{stderr}");
    for p in parts {
        assert!(lines[0].contains(p), "{p:?} missing from:\n{stderr}");
    }
}

#[test]
fn missing_secret_sources_are_one_line_errors() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let c = ctx.path().to_str().unwrap();

    let err = fails(user.kiln(&[
        "build",
        "--secret",
        "id=tok,src=/nonexistent/kiln-secret",
        c,
    ]));
    assert_one_line_error(
        &err,
        &[
            "--secret id=tok,src=/nonexistent/kiln-secret",
            "failed to stat /nonexistent/kiln-secret",
        ],
    );

    let mut cmd = user.kiln(&["build", "--secret", "id=tok,env=KILN_E2E_UNSET", c]);
    cmd.env_remove("KILN_E2E_UNSET");
    let err = fails(cmd);
    assert_one_line_error(
        &err,
        &[
            "--secret id=tok,env=KILN_E2E_UNSET",
            "KILN_E2E_UNSET is not set",
        ],
    );

    let err = fails(user.kiln(&["build", "--secret", "src=/etc/hostname", c]));
    assert_one_line_error(&err, &["--secret", "secret missing ID"]);
}

#[test]
fn a_required_secret_that_was_not_given_fails_with_buildkits_error() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=absent,required=true cat /run/secrets/absent\n",
        )],
    );
    let err = fails(user.kiln(&[
        "build",
        "--progress=plain",
        "--no-cache",
        ctx.path().to_str().unwrap(),
    ]));
    assert!(err.contains("secret absent: not found"), "{err}");
}

/// A private `ssh-agent` holding one generated key; killed on drop.
struct Agent {
    dir: tempfile::TempDir,
    pid: u32,
    sock: PathBuf,
    key: PathBuf,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let out = ok(Command::new("ssh-agent").arg("-a").arg(&sock).arg("-s"));
        let text = stdout(&out);
        let pid = text
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no agent pid in {text}"));
        let key = generate_key(dir.path(), "kiln-e2e-agent-key");
        ok(Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock));
        Agent {
            dir,
            pid,
            sock,
            key,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let _ = &self.dir;
    }
}

fn generate_key(dir: &Path, comment: &str) -> PathBuf {
    let key = dir.join(comment);
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key));
    key
}

/// `SHA256:...` as `ssh-add -l` prints it for this key.
fn fingerprint(key: &Path) -> String {
    let out = ok(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    stdout(&out)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// A build context that can run the host's `ssh-add` inside busybox.
///
/// busybox has no ssh client and its `nc` cannot talk to a unix socket, and no image with
/// OpenSSH can be pulled offline. So the context carries the host's dynamically linked
/// `ssh-add`, every library `ldd` names and the dynamic loader; the step runs it through the
/// copied loader with `--library-path`, which needs nothing from busybox's filesystem. The
/// build and the host share the architecture (the engine runs on this machine). `ssh-add -l`
/// lists what the forwarded agent holds; `ssh-add -T key.pub` makes it sign a challenge and
/// verifies the signature, so both directions of the forwarded stream are exercised.
fn ssh_add_context(dir: &Path, pubkey: &Path, id: Option<&str>) -> PathBuf {
    let ctx = dir.join("ctx");
    let tools = ctx.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let ssh_add =
        String::from_utf8(ok(Command::new("sh").args(["-c", "command -v ssh-add"])).stdout)
            .unwrap()
            .trim()
            .to_string();
    std::fs::copy(&ssh_add, tools.join("ssh-add")).unwrap();
    let ldd = stdout(&ok(Command::new("ldd").arg(&ssh_add)));
    let mut loader = None;
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        std::fs::copy(path, tools.join(&name)).unwrap();
        if name.starts_with("ld-") {
            loader = Some(name);
        }
    }
    let loader = loader.expect("ssh-add's dynamic loader");
    std::fs::copy(pubkey, tools.join("key.pub")).unwrap();
    let mount = match id {
        Some(id) => format!("type=ssh,id={id}"),
        None => "type=ssh".to_string(),
    };
    let run = format!("/tools/{loader} --library-path /tools /tools/ssh-add");
    let dockerfile = format!(
        "FROM busybox AS run\n\
         RUN --mount={mount} --mount=type=bind,source=tools,target=/tools \\\n    \
         ({run} -l && {run} -T /tools/key.pub && echo signed-ok) > /out 2>&1\n\
         FROM scratch\nCOPY --from=run /out /out\n"
    );
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

fn build_listing_keys(user: &User, ctx: &Path, ssh: &str, agent_sock: Option<&Path>) -> String {
    let dest = ctx.parent().unwrap().join("result");
    let mut cmd = user.kiln(&["build", "--progress=plain", "--no-cache", "--ssh", ssh]);
    cmd.args(["-o", dest.to_str().unwrap(), ctx.to_str().unwrap()]);
    match agent_sock {
        Some(s) => cmd.env("SSH_AUTH_SOCK", s),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    ok(cmd);
    std::fs::read_to_string(dest.join("out")).unwrap()
}

#[test]
fn ssh_default_forwards_the_agent_from_ssh_auth_sock() {
    let agent = Agent::start();
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ssh_add_context(dir.path(), &agent.key.with_extension("pub"), None);
    let out = build_listing_keys(&user, &ctx, "default", Some(&agent.sock));
    assert!(out.contains(&fingerprint(&agent.key)), "{out}");
    assert!(out.contains("kiln-e2e-agent-key (ED25519)"), "{out}");
    assert!(out.contains("signed-ok"), "{out}");
}

#[test]
fn ssh_id_with_a_socket_path() {
    let agent = Agent::start();
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ssh_add_context(dir.path(), &agent.key.with_extension("pub"), Some("mysock"));
    let spec = format!("mysock={}", agent.sock.display());
    let out = build_listing_keys(&user, &ctx, &spec, None);
    assert!(out.contains(&fingerprint(&agent.key)), "{out}");
    assert!(out.contains("signed-ok"), "{out}");
}

#[test]
fn ssh_id_with_a_private_key_file() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let key = generate_key(dir.path(), "kiln-e2e-file-key");
    let ctx = ssh_add_context(dir.path(), &key.with_extension("pub"), Some("deploy"));
    let out = build_listing_keys(&user, &ctx, &format!("deploy={}", key.display()), None);
    assert!(out.contains(&fingerprint(&key)), "{out}");
    assert!(out.contains("kiln-e2e-file-key (ED25519)"), "{out}");
    assert!(out.contains("signed-ok"), "{out}");
}

#[test]
fn ssh_errors() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh,required=true true\n",
        )],
    );
    let c = ctx.path().to_str().unwrap();

    let mut cmd = user.kiln(&["build", "--ssh", "default", c]);
    cmd.env_remove("SSH_AUTH_SOCK");
    assert_one_line_error(
        &fails(cmd),
        &["--ssh default", "make sure SSH_AUTH_SOCK is set"],
    );

    let err = fails(user.kiln(&["build", "--ssh", "k=/nonexistent/id_ed25519", c]));
    assert_one_line_error(&err, &["--ssh k=/nonexistent/id_ed25519", "failed to stat"]);

    // The Dockerfile wants the default agent, the user forwarded none.
    let err = fails(user.kiln(&["build", "--progress=plain", "--no-cache", c]));
    assert!(
        err.contains("ERROR: failed to build: failed to solve: unset ssh forward key default"),
        "{err}"
    );
}
