//! The docker driver on an Engine reached over TCP with TLS, as dind in CI is
//! (`DOCKER_HOST=tcp://…:2376`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), and through a Docker
//! context holding TLS material. The test environment's second Engine 28 listens with mutual TLS
//! at `KILN_TEST_ENGINE28B_TLS_HOST`; `KILN_TEST_ENGINE28B_TLS_CERTS` holds a client's
//! `ca.pem`, `cert.pem` and `key.pem`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn tls_host() -> String {
    env("KILN_TEST_ENGINE28B_TLS_HOST")
}

fn tls_certs() -> String {
    env("KILN_TEST_ENGINE28B_TLS_CERTS")
}

/// `cmd` pointed at the TLS endpoint the way a CI job's environment does.
fn with_tls_env(mut cmd: Command, cert_path: &str) -> Command {
    cmd.env("DOCKER_HOST", tls_host())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", cert_path)
        .env_remove("DOCKER_TLS");
    cmd
}

/// `cmd` with no TLS settings from the test's own environment.
fn without_tls_env(mut cmd: Command) -> Command {
    cmd.env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_TLS")
        .env_remove("DOCKER_CERT_PATH");
    cmd
}

/// A build context whose Dockerfile runs something (the RUN needs a working session and worker;
/// a unique marker keeps it from being a cache hit).
fn context(marker: &str) -> tempfile::TempDir {
    let marker = unique(marker);
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {marker} > /marker && cat /marker\n"),
        )],
    );
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn docker_tls_verify_env_builds_loads_and_lists_like_buildx() {
    let user = User::without_docker_host();
    let certs = tls_certs();
    let tag = format!("kiln-tls-env:{}", unique("t"));
    let ctx = context("tls-env");
    ok(with_tls_env(
        user.kiln(&["build", "--progress", "plain", "-t", &tag, path(ctx.path())]),
        &certs,
    ));
    // The docker driver loads by default: the Engine behind the TLS port has the image.
    ok(with_tls_env(
        user.docker(&["image", "inspect", &tag]),
        &certs,
    ));
    ok(with_tls_env(user.docker(&["image", "rm", &tag]), &certs));

    for args in [&["ls"][..], &["inspect"]] {
        let kiln = stdout(&ok(with_tls_env(user.kiln(args), &certs)));
        let buildx = stdout(&ok(with_tls_env(user.buildx(args), &certs)));
        assert_eq!(kiln, buildx, "kiln {args:?} differs from buildx");
    }
    let inspect = stdout(&ok(with_tls_env(user.kiln(&["inspect"]), &certs)));
    assert!(inspect.contains("Status:           running"), "{inspect}");
}

#[test]
fn a_docker_context_with_tls_material_is_a_builder() {
    let user = User::without_docker_host();
    let certs = tls_certs();
    let name = unique("tlsctx");
    let docker_ep = format!(
        "host={},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem",
        tls_host()
    );
    ok(without_tls_env(user.docker(&[
        "context", "create", &name, "--docker", &docker_ep,
    ])));

    // `--builder NAME` picks the context, whose stored TLS files reach the Engine.
    let tag = format!("kiln-tls-ctx:{}", unique("t"));
    let ctx = context("tls-ctx");
    ok(without_tls_env(user.kiln(&[
        "--builder",
        &name,
        "build",
        "--progress",
        "plain",
        "--load",
        "-t",
        &tag,
        path(ctx.path()),
    ])));
    ok(without_tls_env(user.docker(&[
        "--context",
        &name,
        "image",
        "rm",
        &tag,
    ])));

    // Once the context is current (`docker context use`), `kiln use NAME` selects it; ls and
    // inspect see it running, as buildx does.
    ok(without_tls_env(user.docker(&["context", "use", &name])));
    ok(without_tls_env(user.kiln(&["use", &name])));
    let inspect = stdout(&ok(without_tls_env(user.kiln(&["inspect"]))));
    assert!(inspect.contains(&format!("Name:   {name}")), "{inspect}");
    assert!(inspect.contains("Status:           running"), "{inspect}");
    let ls = stdout(&ok(without_tls_env(user.kiln(&["ls"]))));
    let line = ls
        .lines()
        .find(|l| l.contains(&format!("\\_ {name}")))
        .unwrap_or_else(|| panic!("no node line for {name}:\n{ls}"));
    assert!(line.contains("running"), "{ls}");
    ok(without_tls_env(user.buildx(&["use", &name])));
    assert_eq!(
        ls,
        stdout(&ok(without_tls_env(user.buildx(&["ls"])))),
        "kiln ls differs from buildx"
    );
}

#[test]
fn a_wrong_ca_fails_with_one_line_naming_the_endpoint() {
    let user = User::without_docker_host();
    // The right client pair with a CA that did not sign the server's certificate.
    let bad = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(Path::new(&tls_certs()).join(f), bad.path().join(f)).unwrap();
    }
    let out = run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=not the CA",
        "-keyout",
        path(&bad.path().join("other-key.pem")),
        "-out",
        path(&bad.path().join("ca.pem")),
    ]));
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    let ctx = context("wrong-ca");
    let err = fails(with_tls_env(
        user.kiln(&["build", path(ctx.path())]),
        path(bad.path()),
    ));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&tls_host()), "{err}");
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // A cert path without the files: the missing one is named.
    let empty = tempfile::tempdir().unwrap();
    let err = fails(with_tls_env(
        user.kiln(&["build", path(ctx.path())]),
        path(empty.path()),
    ));
    assert_eq!(err.lines().count(), 1, "{err}");
    let ca = empty.path().join("ca.pem");
    assert!(
        err.contains(&format!("cannot read {}", ca.display())),
        "{err}"
    );
    assert!(err.contains(&tls_host()), "{err}");
}

#[test]
fn plain_tcp_to_the_tls_port_says_tls_is_expected() {
    let user = User::without_docker_host();
    let ctx = context("plain");
    let mut cmd = without_tls_env(user.kiln(&["build", path(ctx.path())]));
    cmd.env("DOCKER_HOST", tls_host());
    let err = fails(cmd);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&tls_host()), "{err}");
    assert!(
        err.contains("HTTP request to an HTTPS server") && err.contains("DOCKER_TLS_VERIFY"),
        "{err}"
    );
}

#[test]
fn tls_without_verification_needs_no_ca_from_the_env_or_a_context() {
    let user = User::without_docker_host();
    // Only the client pair: the server is not verified, so no ca.pem is needed. (The docker CLI
    // and buildx refuse a missing ca.pem even here; kiln does not read a file it will not use.)
    let pair = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(Path::new(&tls_certs()).join(f), pair.path().join(f)).unwrap();
    }
    let mut cmd = without_tls_env(user.kiln(&["inspect"]));
    cmd.env("DOCKER_HOST", tls_host())
        .env("DOCKER_TLS", "1")
        .env("DOCKER_CERT_PATH", pair.path());
    let inspect = stdout(&ok(cmd));
    assert!(inspect.contains("Status:           running"), "{inspect}");

    // A context with `skip-tls-verify=true` and no CA.
    let name = unique("tlsskip");
    let docker_ep = format!(
        "host={},cert={},key={},skip-tls-verify=true",
        tls_host(),
        path(&pair.path().join("cert.pem")),
        path(&pair.path().join("key.pem"))
    );
    ok(without_tls_env(user.docker(&[
        "context", "create", &name, "--docker", &docker_ep,
    ])));
    let args = ["--builder", name.as_str(), "inspect"];
    let kiln = stdout(&ok(without_tls_env(user.kiln(&args))));
    assert!(kiln.contains("Status:           running"), "{kiln}");
    assert_eq!(
        kiln,
        stdout(&ok(without_tls_env(user.buildx(&args)))),
        "kiln inspect differs from buildx"
    );
}
