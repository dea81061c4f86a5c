//! The remote driver against a real BuildKit: the Engines' embedded BuildKit exposed as a plain
//! BuildKit endpoint (unix, TCP, TLS, mTLS) by the forwarder in `common/forwarder.rs`. The
//! session rides inside `Control/Session` there, as it does on any buildkitd. Engine 28 runs the
//! full suite; Engine 20.10 (BuildKit 0.8) an old-daemon subset; the second Engine 28 shows that
//! two endpoints are two daemons.

mod common;
#[path = "common/forwarder.rs"]
mod forwarder;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use forwarder::{BlackHole, Certs, Forwarder, Listen};

/// A user with one remote builder, which every `kiln` command of [`Remote::kiln`] uses
/// (`BUILDX_BUILDER`), a build context, and the forwarder the endpoint leads to, if any.
struct Remote {
    user: User,
    builder: String,
    endpoint: String,
    /// `FROM busybox`, a `COPY` and a `RUN` (the context travels through the session).
    context: tempfile::TempDir,
    _forwarder: Option<Forwarder>,
}

impl Remote {
    /// A remote builder on a forwarder to the BuildKit of the engine at `engine_host`.
    fn forwarding(engine_host: &str, listen: Listen<'_>, opts: &[String]) -> Remote {
        let forwarder = Forwarder::start(engine_host, listen);
        let remote = Remote::at(&forwarder.endpoint, opts);
        Remote {
            _forwarder: Some(forwarder),
            ..remote
        }
    }

    /// A remote builder on Engine 28's BuildKit.
    fn on_engine28(listen: Listen<'_>, opts: &[String]) -> Remote {
        Remote::forwarding(&Engine::Modern.host(), listen, opts)
    }

    /// `kiln create --driver remote [--driver-opt O]... ENDPOINT`, as a new user.
    fn at(endpoint: &str, opts: &[String]) -> Remote {
        let user = User::new(Engine::Modern);
        let builder = unique("remote");
        let mut args = vec!["create", "--name", &builder, "--driver", "remote"];
        for o in opts {
            args.extend(["--driver-opt", o.as_str()]);
        }
        args.push(endpoint);
        ok(user.kiln(&args));
        let context = tempfile::tempdir().unwrap();
        write_tree(
            context.path(),
            &[
                (
                    "Dockerfile",
                    "FROM busybox\nCOPY hello /hello\nRUN cat /hello && uname -m > /arch\n",
                ),
                ("hello", "hello from the remote driver\n"),
            ],
        );
        Remote {
            user,
            builder,
            endpoint: endpoint.to_string(),
            context,
            _forwarder: None,
        }
    }

    /// `kiln ARGS` on this builder.
    fn kiln(&self, args: &[&str]) -> Command {
        let mut c = self.user.kiln(args);
        c.env("BUILDX_BUILDER", &self.builder);
        c
    }

    /// `kiln build --progress plain ARGS CONTEXT` on this builder.
    fn build(&self, args: &[&str]) -> Command {
        let mut c = self.kiln(&["build", "--progress", "plain"]);
        c.args(args).arg(self.context.path());
        c
    }

    /// A build whose result comes back to the client: an OCI tarball.
    fn build_to_oci(&self) {
        let out = self.context.path().join("out.tar");
        ok(self.build(&["--output", &format!("type=oci,dest={}", out.display())]));
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
    }

    /// `kiln inspect --bootstrap`'s report.
    fn inspect(&self) -> String {
        stdout(&ok(self.kiln(&["inspect", "--bootstrap"])))
    }

    /// The line `kiln ls` shows for the node.
    fn ls_line(&self) -> String {
        let ls = stdout(&ok(self.kiln(&["ls"])));
        ls.lines()
            .find(|l| l.contains(&self.endpoint))
            .unwrap_or_else(|| panic!("no node at {} in:\n{ls}", self.endpoint))
            .to_string()
    }

    /// The node's BuildKit worker IDs, from `kiln ls --format json`.
    fn worker_ids(&self) -> Vec<String> {
        let ls = stdout(&ok(self.kiln(&["ls", "--format", "json"])));
        let me = ls
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|b| b["Name"] == self.builder.as_str())
            .unwrap_or_else(|| panic!("{ls}"));
        me["Nodes"][0]["IDs"]
            .as_array()
            .unwrap_or_else(|| panic!("{me}"))
            .iter()
            .map(|id| id.as_str().unwrap().to_string())
            .collect()
    }

    /// Pushes `kiln/remote-…:TAG` to the plain registry and returns the reference.
    fn push(&self, tag: &str) -> (String, Command) {
        let reference = format!(
            "{}/{}:{tag}",
            env("KILN_TEST_REGISTRY"),
            unique("kiln/remote")
        );
        let cmd = self.build(&["--push", "-t", &reference]);
        (reference, cmd)
    }

    /// A build that comes back to the client, then one pushed to the registry.
    fn build_and_push(&self, tag: &str) {
        self.build_to_oci();
        let (reference, push) = self.push(tag);
        ok(push);
        assert!(registry_tags(&reference).contains(tag), "{reference}");
    }
}

fn tls_opts(certs: &Certs, client_cert: bool) -> Vec<String> {
    let mut o = vec![format!("cacert={}", certs.path("ca.pem").display())];
    if client_cert {
        o.push(format!("cert={}", certs.path("cert.pem").display()));
        o.push(format!("key={}", certs.path("key.pem").display()));
    }
    o
}

fn tls(certs: &Certs, require_client_cert: bool) -> Listen<'_> {
    Listen::Tls {
        certs,
        require_client_cert,
    }
}

/// The tags a registry holds for a pushed reference's repository.
fn registry_tags(reference: &str) -> String {
    let (host, rest) = reference.split_once('/').unwrap();
    let (repo, _) = rest.rsplit_once(':').unwrap();
    let url = format!("http://{host}/v2/{repo}/tags/list");
    stdout(&ok(Command::new("curl").args(["-sf", &url])))
}

/// The value of an `inspect` field (`Status:   running` -> `running`), aligned however it is.
fn field<'a>(inspect: &'a str, name: &str) -> &'a str {
    inspect
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name}: in\n{inspect}"))
        .trim()
}

/// A TCP endpoint nothing listens on (a port that was just free).
fn refusing_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp://127.0.0.1:{port}")
}

#[test]
fn unix_socket_builds_and_pushes_with_the_session_over_control() {
    Remote::on_engine28(Listen::Unix, &[]).build_and_push("unix");
}

#[test]
fn tcp_ls_and_inspect_show_version_and_platforms() {
    let r = Remote::on_engine28(Listen::Tcp, &[]);
    let inspect = r.inspect();
    assert_eq!(field(&inspect, "Driver"), "remote", "{inspect}");
    assert_eq!(field(&inspect, "Status"), "running", "{inspect}");
    assert!(
        field(&inspect, "Platforms").contains("linux/amd64"),
        "{inspect}"
    );
    assert!(
        field(&inspect, "BuildKit version").starts_with("v0."),
        "{inspect}"
    );
    let line = r.ls_line();
    assert!(line.contains("running") && line.contains("v0."), "{line}");
    r.build_and_push("tcp");
}

#[test]
fn tls_with_the_right_ca_builds_and_pushes() {
    let certs = Certs::generate();
    Remote::on_engine28(tls(&certs, false), &tls_opts(&certs, false)).build_and_push("tls");
}

#[test]
fn tls_with_a_wrong_ca_fails_verification() {
    let certs = Certs::generate();
    let other = Certs::generate();
    let r = Remote::on_engine28(tls(&certs, false), &tls_opts(&other, false));
    let err = fails(r.build(&[]));
    assert!(
        err.contains("TLS handshake failed") && err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn mtls_rejects_a_missing_client_cert_and_accepts_one() {
    let certs = Certs::generate();
    let without = Remote::on_engine28(tls(&certs, true), &tls_opts(&certs, false));
    let err = fails(without.build(&[]));
    // With TLS 1.3 the server judges the client's certificate after the handshake, so the client
    // sees either the server's "certificate required" alert or the connection being dropped,
    // depending on which it reads first.
    let lower = err.to_lowercase();
    assert!(
        lower.contains("certificate")
            || lower.contains("broken pipe")
            || lower.contains("connection"),
        "{err}"
    );
    // The same endpoint is `inactive` for that builder, with the reason.
    assert!(without.ls_line().contains("inactive"));
    let with = Remote::at(&without.endpoint, &tls_opts(&certs, true));
    with.build_and_push("mtls");
}

#[test]
fn bad_input_is_one_clear_line_and_the_store_is_untouched() {
    let user = User::new(Engine::Modern);
    let create = |opt: Option<&str>, endpoint: &str| {
        let mut args = vec!["create", "--driver", "remote"];
        if let Some(o) = opt {
            args.extend(["--driver-opt", o]);
        }
        args.push(endpoint);
        fails(user.kiln(&args))
    };
    let err = create(Some("image=x"), "tcp://127.0.0.1:1");
    assert!(err.contains("\"image\""), "{err}");
    let err = create(Some("cacert=/nonexistent/ca.pem"), "tcp://127.0.0.1:1");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let err = create(None, "ftp://x");
    assert!(err.contains("ftp://x"), "{err}");
    let ls = stdout(&ok(user.kiln(&["ls"])));
    assert!(!ls.contains("remote"), "{ls}");
}

#[test]
fn a_refused_connection_fails_within_five_seconds_and_reads_cleanly() {
    let endpoint = refusing_endpoint();
    let r = Remote::at(&endpoint, &[]);
    let want = format!("cannot reach BuildKit at {endpoint}: connection refused");
    let start = Instant::now();
    let err = fails(r.build(&[]));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        !err.contains("transport error") && !err.contains("os error"),
        "{err}"
    );
    // ls and inspect: inactive, the reason in inspect; neither fails.
    assert!(r.ls_line().contains("inactive"), "{}", r.ls_line());
    let inspect = stdout(&ok(r.kiln(&["inspect"])));
    assert_eq!(field(&inspect, "Status"), "inactive", "{inspect}");
    assert_eq!(field(&inspect, "Reason"), want, "{inspect}");
    // --bootstrap can't bring someone else's daemon up: it says why, at once.
    let start = Instant::now();
    let err = fails(r.kiln(&["inspect", "--bootstrap"]));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.contains(&want), "{err}");
}

/// buildx 0.29.1 on the same black hole: `ls` and `inspect` wait 20 s and show `inactive` with
/// no reason; `build` fails after 40 s with "context deadline exceeded".
#[test]
fn a_listener_that_never_answers_is_inactive_and_fails_builds_at_the_first_call_timeout() {
    let hole = BlackHole::start();
    let r = Remote::at(&hole.endpoint, &[]);
    let start = Instant::now();
    let line = r.ls_line();
    let took = start.elapsed();
    assert!(line.contains("inactive"), "{line}");
    assert!(took < Duration::from_secs(15), "ls took {took:?}");
    let inspect = stdout(&ok(r.kiln(&["inspect"])));
    assert_eq!(field(&inspect, "Status"), "inactive", "{inspect}");
    assert_eq!(
        field(&inspect, "Reason"),
        format!(
            "cannot reach BuildKit at {}: connected, but no answer within 10s",
            hole.endpoint
        ),
        "{inspect}"
    );
    let start = Instant::now();
    let err = fails(r.build(&[]));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}: {err}"
    );
    assert!(err.contains("no answer from BuildKit within 10s"), "{err}");
    assert!(!err.contains("transport error"), "{err}");
}

/// Engine 20.10's BuildKit 0.8 as a plain endpoint: it predates `Control/Info` (no version to
/// show, as with buildx) and has neither the `image` nor the `oci` exporter, so a push fails
/// with BuildKit's own error, word for word what buildx 0.29.1 prints; builds with `RUN`, local
/// outputs and `du` work.
#[test]
fn engine_20_behind_the_forwarder_builds_and_says_what_it_cannot_do() {
    let r = Remote::forwarding(&Engine::Old.host(), Listen::Tcp, &[]);
    let inspect = r.inspect();
    assert_eq!(field(&inspect, "Status"), "running", "{inspect}");
    assert!(
        field(&inspect, "Platforms").starts_with("linux/amd64, linux/arm64"),
        "{inspect}"
    );
    assert!(!inspect.contains("BuildKit version"), "{inspect}");
    let line = r.ls_line();
    assert!(
        line.contains("running") && line.contains("linux/amd64"),
        "{line}"
    );

    let out = r.context.path().join("out");
    ok(r.build(&["--output", &format!("type=local,dest={}", out.display())]));
    assert_eq!(
        std::fs::read_to_string(out.join("hello")).unwrap(),
        "hello from the remote driver\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("arch")).unwrap(),
        "x86_64\n"
    );

    let (_, push) = r.push("e20");
    let err = fails(push);
    assert!(
        err.contains("exporter \"image\" could not be found"),
        "{err}"
    );
    let oci = r.context.path().join("out.tar");
    let err = fails(r.build(&["--output", &format!("type=oci,dest={}", oci.display())]));
    assert!(err.contains("exporter \"oci\" could not be found"), "{err}");

    let du = stdout(&ok(r.kiln(&["du"])));
    assert!(du.contains("Total:"), "{du}");
}

/// The second Engine 28 of the test environment is a BuildKit of its own (multi-node tests
/// rely on it): its worker is not Engine 28's, and it builds.
#[test]
fn the_second_engine_28_is_a_distinct_buildkit() {
    let a = Remote::on_engine28(Listen::Tcp, &[]);
    let b = Remote::forwarding(&env("KILN_TEST_ENGINE28B_HOST"), Listen::Tcp, &[]);
    let (ids_a, ids_b) = (a.worker_ids(), b.worker_ids());
    assert!(
        !ids_a.is_empty() && !ids_b.is_empty(),
        "{ids_a:?} {ids_b:?}"
    );
    assert!(
        ids_a.iter().all(|id| !ids_b.contains(id)),
        "{ids_a:?} {ids_b:?}"
    );
    b.build_to_oci();
}

/// `kiln dial-stdio` as a BuildKit endpoint's backend: each connection to a unix socket runs
/// `kiln dial-stdio` against the docker builder of Engine 28; a remote builder on that socket
/// reports the node and builds (the session rides Control/Session through it).
#[test]
fn dial_stdio_carries_a_whole_build() {
    use std::os::unix::net::UnixListener;
    use std::process::Stdio;
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dial-stdio.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut backend = user.kiln(&["dial-stdio"]);
    backend.stdin(Stdio::piped()).stdout(Stdio::piped());
    let backend = std::sync::Arc::new(std::sync::Mutex::new(backend));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let mut child = backend.lock().unwrap().spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut reader = conn.try_clone().unwrap();
            let mut writer = conn;
            std::thread::spawn(move || {
                pump(&mut reader, &mut stdin);
            });
            std::thread::spawn(move || {
                pump(&mut stdout, &mut writer);
                let _ = writer.shutdown(std::net::Shutdown::Both);
                let _ = child.kill();
                let _ = child.wait();
            });
        }
    });
    let r = Remote::at(&format!("unix://{}", sock.display()), &[]);
    let inspect = r.inspect();
    assert!(inspect.contains("BuildKit version: v0."), "{inspect}");
    r.build_to_oci();
}

/// Copies until either side ends, one read at a time (no kernel splicing between pipes and
/// sockets, which waits for full buffers).
fn pump(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() || to.flush().is_err() {
            break;
        }
    }
}
