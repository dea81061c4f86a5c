//! Shared helpers for kiln's end-to-end tests: the daemons the test environment started
//! (`scripts/testenv.sh up`), and running the `kiln` binary the way a user does.
//!
//! A missing daemon or variable fails the test with a message saying how to bring the
//! environment up; nothing here skips.

#![allow(dead_code)]

use std::borrow::BorrowMut;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A variable the test environment exports; panics with instructions when it is missing.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run the tests through scripts/test.sh, or run \
             `bash scripts/testenv.sh up && source /run/kiln-testenv/env` first"
        ),
    }
}

/// The two engines every build test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Docker Engine 28 with containerd 2.1 and the containerd image store.
    Modern,
    /// Docker Engine 20.10 with BuildKit 0.8.
    Old,
}

impl Engine {
    pub fn host(self) -> String {
        match self {
            Engine::Modern => env("KILN_TEST_ENGINE28_HOST"),
            Engine::Old => env("KILN_TEST_ENGINE20_HOST"),
        }
    }
}

/// A user's session: private kiln and Docker config directories, and the engine `DOCKER_HOST`
/// points at (`None`: no `DOCKER_HOST`, the user's Docker contexts decide).
pub struct User {
    pub home: tempfile::TempDir,
    pub engine: Option<Engine>,
}

impl User {
    pub fn new(engine: Engine) -> User {
        User::with_engine(Some(engine))
    }

    /// A user without `DOCKER_HOST`: their Docker contexts (or the default socket) decide.
    pub fn without_docker_host() -> User {
        User::with_engine(None)
    }

    fn with_engine(engine: Option<Engine>) -> User {
        let home = tempfile::Builder::new()
            .prefix("kiln-e2e-")
            .tempdir()
            .expect("temp home");
        std::fs::create_dir_all(home.path().join("kiln")).unwrap();
        std::fs::create_dir_all(home.path().join("docker")).unwrap();
        User { home, engine }
    }

    pub fn kiln_config(&self) -> PathBuf {
        self.home.path().join("kiln")
    }

    pub fn docker_config(&self) -> PathBuf {
        self.home.path().join("docker")
    }

    /// `kiln ARGS` with this user's environment.
    pub fn kiln(&self, args: &[&str]) -> Command {
        let mut c = self.command(env!("CARGO_BIN_EXE_kiln"), args);
        c.env("KILN_CONFIG", self.kiln_config())
            .env_remove("KILN_LOG")
            .env_remove("BUILDX_BUILDER")
            .env_remove("BUILDKIT_PROGRESS")
            .env_remove("DOCKER_DEFAULT_PLATFORM");
        c
    }

    /// The reference `docker-buildx` with the same environment and its own state directory.
    pub fn buildx(&self, args: &[&str]) -> Command {
        let mut c = self.command(&env("KILN_TEST_BUILDX"), args);
        c.env("BUILDX_CONFIG", self.home.path().join("buildx"))
            .env_remove("BUILDX_BUILDER")
            .env_remove("BUILDKIT_PROGRESS");
        c
    }

    /// The docker CLI against this user's engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        self.command(&env("KILN_TEST_DOCKER_CLI"), args)
    }

    /// `program ARGS` with this user's Docker config and engine, and nothing on stdin.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("DOCKER_CONFIG", self.docker_config())
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        match self.engine {
            Some(engine) => c.env("DOCKER_HOST", engine.host()),
            None => c.env_remove("DOCKER_HOST"),
        };
        c
    }

    /// Adds a Docker context the way `docker context create NAME --docker host=HOST` stores it.
    pub fn add_docker_context(&self, name: &str, host: &str) {
        use sha2::Digest as _;
        let id = hex::encode(sha2::Sha256::digest(name.as_bytes()));
        let dir = self.docker_config().join("contexts/meta").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = serde_json::json!({
            "Name": name,
            "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        });
        std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    }

    /// Makes a Docker context current, as `docker context use NAME` does.
    pub fn use_docker_context(&self, name: &str) {
        let cfg = serde_json::json!({"currentContext": name});
        std::fs::write(self.docker_config().join("config.json"), cfg.to_string()).unwrap();
    }
}

/// Runs a command and returns its output; describes the command when it cannot start.
pub fn run(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; on failure shows everything it printed.
pub fn ok(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = run(&mut *cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail with exit code 1; returns its stderr.
pub fn fails(mut cmd: impl BorrowMut<Command>) -> String {
    let cmd = cmd.borrow_mut();
    let out = run(&mut *cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?} should have failed with exit 1\n--- stdout\n{}\n--- stderr\n{stderr}",
        String::from_utf8_lossy(&out.stdout),
    );
    stderr
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a tree of files: `(relative path, contents)`.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
}

/// A unique name for images and builders so parallel tests don't collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A static file server on loopback for URL contexts; stopped on drop.
pub struct LoopbackServer {
    child: std::process::Child,
    pub port: u16,
}

impl LoopbackServer {
    /// Serves the files under `dir` on a free port until dropped.
    pub fn serve(dir: &Path) -> LoopbackServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        LoopbackServer { child, port }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI layout unpacked from an exported tarball (`-o type=oci,dest=...`).
pub struct OciLayout {
    pub dir: PathBuf,
}

impl OciLayout {
    /// Unpacks `tar` into `dir`.
    pub fn unpack(tar: &Path, dir: &Path) -> OciLayout {
        ok(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(dir));
        OciLayout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let path = self
            .dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn json(&self, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    /// What `index.json`'s first entry points at (the image index of a build with attestations).
    pub fn top(&self) -> serde_json::Value {
        let layout: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        self.json(layout["manifests"][0]["digest"].as_str().unwrap())
    }
}

/// `USER:PASSWORD` of the test environment's htpasswd registry.
pub fn auth_registry_login() -> String {
    format!(
        "{}:{}",
        env("KILN_TEST_AUTH_USER"),
        env("KILN_TEST_AUTH_PASSWORD")
    )
}

impl User {
    /// Writes this user's Docker config so it logs in to `registry` as `login` (`USER:PASSWORD`).
    pub fn log_in(&self, registry: &str, login: &str) {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(login);
        std::fs::write(
            self.docker_config().join("config.json"),
            format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    }
}

/// The head of one HTTP/1.1 request a test proxy read off its client's connection.
pub struct RequestHead {
    pub method: String,
    pub path: String,
    request_line: String,
    /// Header lines as received, each with its CRLF.
    headers: Vec<String>,
}

impl RequestHead {
    /// Reads the next request's head; `None` when the client closed the connection.
    pub fn read(reader: &mut impl std::io::BufRead) -> std::io::Result<Option<RequestHead>> {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            headers.push(line);
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        Ok(Some(RequestHead {
            method,
            path,
            request_line,
            headers,
        }))
    }

    /// A header's value, trimmed; names compare case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
    }

    pub fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The head to send upstream: the request line and every header but those named in
    /// `dropped`, then `extra` (whole header lines with their CRLF), then the blank line.
    pub fn forwarded(&self, dropped: &[&str], extra: &str) -> String {
        let mut out = self.request_line.clone();
        for h in &self.headers {
            let name = h.split(':').next().unwrap_or("");
            if !dropped.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                out.push_str(h);
            }
        }
        out.push_str(extra);
        out.push_str("\r\n");
        out
    }
}
