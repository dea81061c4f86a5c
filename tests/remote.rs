//! The remote driver against a real BuildKit: Engine 28's embedded BuildKit exposed as a plain
//! BuildKit endpoint (unix, TCP, TLS, mTLS) by the forwarder in `common/forwarder.rs`. The
//! session rides inside `Control/Session` there, as it does on any buildkitd.

mod common;
#[path = "common/forwarder.rs"]
mod forwarder;

use std::time::{Duration, Instant};

use common::*;
use forwarder::{BlackHole, Certs, Forwarder, Listen};

fn engine28() -> String {
    env("KILN_TEST_ENGINE28_HOST")
}

/// `kiln create --driver remote ENDPOINT` with driver options; returns the builder's name.
fn create(user: &User, endpoint: &str, opts: &[String]) -> String {
    let name = unique("remote");
    let mut args = vec!["create", "--name", &name, "--driver", "remote"];
    for o in opts {
        args.push("--driver-opt");
        args.push(o);
    }
    args.push(endpoint);
    ok(user.kiln(&args));
    name
}

fn context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY hello /hello\nRUN cat /hello\n",
            ),
            ("hello", "hello from the remote driver\n"),
        ],
    );
    ctx
}

/// A build that needs the session (the context is uploaded through it), output to a tarball.
fn build_to_oci(user: &User, builder: &str) {
    let ctx = context();
    let out = ctx.path().join("out.tar");
    ok(user.kiln(&[
        "build",
        "--builder",
        builder,
        "--progress",
        "plain",
        "--output",
        &format!("type=oci,dest={}", out.display()),
        ctx.path().to_str().unwrap(),
    ]));
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}

fn tls_opts(certs: &Certs, client_cert: bool) -> Vec<String> {
    let mut o = vec![format!("cacert={}", certs.path("ca.pem").display())];
    if client_cert {
        o.push(format!("cert={}", certs.path("cert.pem").display()));
        o.push(format!("key={}", certs.path("key.pem").display()));
    }
    o
}

#[test]
fn unix_socket_builds_with_the_session_over_control() {
    let user = User::new(Engine::Modern);
    let fwd = Forwarder::start(&engine28(), Listen::Unix);
    let b = create(&user, &fwd.endpoint, &[]);
    build_to_oci(&user, &b);
}

#[test]
fn tcp_ls_and_inspect_show_version_and_platforms() {
    let user = User::new(Engine::Modern);
    let fwd = Forwarder::start(&engine28(), Listen::Tcp);
    let b = create(&user, &fwd.endpoint, &[]);
    let inspect = stdout(&ok(user.kiln(&["inspect", "--bootstrap", &b])));
    assert!(inspect.contains("Driver:        remote"), "{inspect}");
    assert!(inspect.contains("running"), "{inspect}");
    assert!(inspect.contains("linux/amd64"), "{inspect}");
    assert!(inspect.contains("BuildKit version: v0."), "{inspect}");
    let ls = stdout(&ok(user.kiln(&["ls"])));
    let line = ls
        .lines()
        .find(|l| l.contains(&fwd.endpoint))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(line.contains("running") && line.contains("v0."), "{ls}");
    build_to_oci(&user, &b);
}

#[test]
fn tls_with_the_right_ca_builds_and_pushes() {
    let user = User::new(Engine::Modern);
    let certs = Certs::generate();
    let fwd = Forwarder::start(
        &engine28(),
        Listen::Tls {
            certs: &certs,
            require_client_cert: false,
        },
    );
    let b = create(&user, &fwd.endpoint, &tls_opts(&certs, false));
    let ctx = context();
    let tag = format!("{}/{}:v1", env("KILN_TEST_REGISTRY"), unique("kiln/remote"));
    ok(user.kiln(&[
        "build",
        "--builder",
        &b,
        "--push",
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]));
    let (host, rest) = tag.split_once('/').unwrap();
    let (repo, _) = rest.split_once(':').unwrap();
    let url = format!("http://{host}/v2/{repo}/tags/list");
    let tags = stdout(&ok(std::process::Command::new("curl").args(["-sf", &url])));
    assert!(tags.contains("v1"), "{tags}");
}

#[test]
fn tls_with_a_wrong_ca_fails_verification() {
    let user = User::new(Engine::Modern);
    let certs = Certs::generate();
    let other = Certs::generate();
    let fwd = Forwarder::start(
        &engine28(),
        Listen::Tls {
            certs: &certs,
            require_client_cert: false,
        },
    );
    let b = create(&user, &fwd.endpoint, &tls_opts(&other, false));
    let ctx = context();
    let err = fails(user.kiln(&["build", "--builder", &b, ctx.path().to_str().unwrap()]));
    assert!(
        err.contains("TLS handshake failed") && err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn mtls_rejects_a_missing_client_cert_and_accepts_one() {
    let user = User::new(Engine::Modern);
    let certs = Certs::generate();
    let fwd = Forwarder::start(
        &engine28(),
        Listen::Tls {
            certs: &certs,
            require_client_cert: true,
        },
    );
    let without = create(&user, &fwd.endpoint, &tls_opts(&certs, false));
    let ctx = context();
    let err = fails(user.kiln(&["build", "--builder", &without, ctx.path().to_str().unwrap()]));
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
    let with = create(&user, &fwd.endpoint, &tls_opts(&certs, true));
    build_to_oci(&user, &with);
}

#[test]
fn bad_input_is_one_clear_line_and_the_store_is_untouched() {
    let user = User::new(Engine::Modern);
    let err = fails(user.kiln(&[
        "create",
        "--driver",
        "remote",
        "--driver-opt",
        "image=x",
        "tcp://127.0.0.1:1",
    ]));
    assert!(err.contains("\"image\""), "{err}");
    let err = fails(user.kiln(&[
        "create",
        "--driver",
        "remote",
        "--driver-opt",
        "cacert=/nonexistent/ca.pem",
        "tcp://127.0.0.1:1",
    ]));
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let err = fails(user.kiln(&["create", "--driver", "remote", "ftp://x"]));
    assert!(err.contains("ftp://x"), "{err}");
    let ls = stdout(&ok(user.kiln(&["ls"])));
    assert!(!ls.contains("remote"), "{ls}");
}

#[test]
fn a_refused_connection_fails_within_five_seconds() {
    let user = User::new(Engine::Modern);
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = create(&user, &format!("tcp://127.0.0.1:{port}"), &[]);
    let ctx = context();
    let start = Instant::now();
    let err = fails(user.kiln(&["build", "--builder", &b, ctx.path().to_str().unwrap()]));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    let ls = stdout(&ok(user.kiln(&["ls"])));
    assert!(ls.contains("inactive"), "{ls}");
}

#[test]
fn a_listener_that_never_answers_fails_at_the_first_call_timeout() {
    let user = User::new(Engine::Modern);
    let hole = BlackHole::start();
    let b = create(&user, &hole.endpoint, &[]);
    let ctx = context();
    let start = Instant::now();
    let err = fails(user.kiln(&["build", "--builder", &b, ctx.path().to_str().unwrap()]));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}: {err}"
    );
    assert!(err.contains("no answer"), "{err}");
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
    let b = create(&user, &format!("unix://{}", sock.display()), &[]);
    let inspect = stdout(&ok(user.kiln(&["inspect", "--bootstrap", &b])));
    assert!(inspect.contains("BuildKit version: v0."), "{inspect}");
    build_to_oci(&user, &b);
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
