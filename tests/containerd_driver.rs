//! The `containerd` driver: a BuildKit endpoint (Engine 28's BuildKit through the forwarder in
//! `common/forwarder.rs`) paired with containerd 2.1, whose namespace receives every build that
//! names no output. Checked the way a user would: `kiln ls`/`inspect`, then `ctr images ls`.

mod common;
#[path = "common/forwarder.rs"]
mod forwarder;

use std::process::Command;

use common::*;
use forwarder::{Forwarder, Listen};
use serde_json::Value;

fn ctr(namespace: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env("KILN_TEST_CTR_28"));
    c.args([
        "-a",
        &env("KILN_TEST_CONTAINERD28_ADDRESS"),
        "-n",
        namespace,
    ])
    .args(args);
    c
}

/// A namespace the test owns; its images and the namespace go on drop.
struct Namespace(String);

impl Namespace {
    fn images(&self) -> String {
        stdout(&ok(ctr(&self.0, &["images", "ls"])))
    }

    /// The `ctr images ls` line of the image a build tagged `image`.
    fn image_line(&self, image: &str) -> String {
        let want = format!("docker.io/library/{image}:latest ");
        let images = self.images();
        images
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("{want} not in {images}"))
            .to_string()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let out = run(ctr(&self.0, &["images", "ls", "-q"]));
        for name in stdout(&out).lines() {
            let _ = run(ctr(&self.0, &["images", "rm", "--sync", name]));
        }
        let _ = run(ctr(&self.0, &["namespaces", "rm", &self.0]));
    }
}

fn create(user: &User, endpoint: &str, namespace: &str) -> String {
    let name = unique("ctrd");
    ok(user.kiln(&[
        "create",
        "--name",
        &name,
        "--driver",
        "containerd",
        "--driver-opt",
        &format!(
            "containerd-address={},containerd-namespace={namespace}",
            env("KILN_TEST_CONTAINERD28_ADDRESS")
        ),
        endpoint,
    ]));
    name
}

fn build(user: &User, builder: &str, image: &str, extra: &[&str]) -> String {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox\nARG TARGETPLATFORM\nRUN echo \"built for $TARGETPLATFORM\" > /built\n",
        )],
    );
    let meta = ctx.path().join("metadata.json");
    let mut args = vec![
        "build",
        "--builder",
        builder,
        "--progress",
        "plain",
        "-t",
        image,
        "--metadata-file",
        meta.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().unwrap());
    let out = ok(user.kiln(&args));
    assert!(
        stderr(&out).contains("importing to containerd namespace"),
        "{}",
        stderr(&out)
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["containerimage.digest"].as_str().unwrap().to_string()
}

#[test]
fn builds_without_an_output_land_in_the_namespace() {
    let user = User::new(Engine::Modern);
    let fwd = Forwarder::start(&env("KILN_TEST_ENGINE28_HOST"), Listen::Unix);
    let ns = Namespace(unique("kiln-driver"));
    let b = create(&user, &fwd.endpoint, &ns.0);

    let inspect = stdout(&ok(user.kiln(&["inspect", "--bootstrap", &b])));
    assert!(inspect.contains("Driver:        containerd"), "{inspect}");
    assert!(inspect.contains("running"), "{inspect}");
    assert!(inspect.contains("BuildKit version: v0."), "{inspect}");
    let ls = stdout(&ok(user.kiln(&["ls"])));
    let line = ls
        .lines()
        .find(|l| l.contains(&fwd.endpoint))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(line.contains("running"), "{ls}");
    let header = ls.lines().find(|l| l.starts_with(&b)).unwrap();
    assert!(header.contains("containerd"), "{ls}");

    let one = unique("kiln-driver-one");
    let digest = build(&user, &b, &one, &[]);
    let line = ns.image_line(&one);
    assert!(line.contains(&digest), "{line} should point at {digest}");

    let two = unique("kiln-driver-two");
    let digest = build(&user, &b, &two, &["--platform", "linux/amd64,linux/arm64"]);
    let line = ns.image_line(&two);
    assert!(line.contains(&digest), "{line}");
    assert!(
        line.contains("linux/amd64") && line.contains("linux/arm64"),
        "{line}"
    );
}

#[test]
fn explicit_outputs_and_no_default_load_leave_the_namespace_alone() {
    let user = User::new(Engine::Modern);
    let fwd = Forwarder::start(&env("KILN_TEST_ENGINE28_HOST"), Listen::Unix);
    let ns = Namespace(unique("kiln-driver-off"));
    let b = create(&user, &fwd.endpoint, &ns.0);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("out.tar");
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    ok(user.kiln(&[
        "build",
        "--builder",
        &b,
        "-t",
        "kiln-not-loaded",
        "-o",
        &format!("type=oci,dest={}", tar.display()),
        ctx.path().to_str().unwrap(),
    ]));
    assert!(tar.is_file());
    ok(user
        .kiln(&[
            "build",
            "--builder",
            &b,
            "-t",
            "kiln-not-loaded",
            ctx.path().to_str().unwrap(),
        ])
        .env("BUILDX_NO_DEFAULT_LOAD", "1"));
    assert!(!ns.images().contains("kiln-not-loaded"), "{}", ns.images());
}

#[test]
fn bad_options_fail_with_one_line_and_store_nothing() {
    let user = User::new(Engine::Modern);
    let address = env("KILN_TEST_CONTAINERD28_ADDRESS");
    for (opts, expect) in [
        (None, "containerd-address"),
        (
            Some("containerd-address=/nonexistent/containerd.sock".to_string()),
            "no containerd socket at /nonexistent/containerd.sock",
        ),
        (
            Some(format!("containerd-address={address},image=moby/buildkit")),
            "\"image\"",
        ),
        (
            Some(format!(
                "containerd-address={address},containerd-namespace=a/b"
            )),
            "a/b",
        ),
        (
            Some(format!(
                "containerd-address={address},cacert=/nonexistent/ca.pem"
            )),
            "/nonexistent/ca.pem",
        ),
    ] {
        let mut args = vec![
            "create",
            "--name",
            "kiln-bad-ctrd",
            "--driver",
            "containerd",
        ];
        if let Some(o) = &opts {
            args.extend(["--driver-opt", o]);
        }
        args.push("unix:///run/buildkit/buildkitd.sock");
        let err = fails(user.kiln(&args));
        assert!(err.contains(expect), "{opts:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{opts:?}: {err}");
    }
    let err = fails(user.kiln(&[
        "create",
        "--name",
        "kiln-bad-ctrd",
        "--driver",
        "containerd",
        "--driver-opt",
        &format!("containerd-address={address}"),
    ]));
    assert!(err.contains("endpoint"), "{err}");
    let ls = stdout(&ok(user.kiln(&["ls"])));
    assert!(!ls.contains("kiln-bad-ctrd"), "{ls}");
}
