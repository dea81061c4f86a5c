//! Loading results into image stores the builder does not write itself: a containerd
//! namespace (`--load=containerd://SOCKET?namespace=NS`, containerd 2.1 and 1.6) and the
//! Docker Engine of the user's context from a `remote` builder (`--load`), and from a builder
//! whose two nodes (two distinct daemons) each build one platform: their results are merged
//! into one image before the load. Each test checks what the user would: `ctr images ls` or
//! `docker image inspect`.

mod common;
#[path = "common/forwarder.rs"]
mod forwarder;

use std::path::Path;
use std::process::Command;

use common::*;
use forwarder::{Forwarder, Listen, TwoNodeBuilder};
use serde_json::Value;

const TWO_PLATFORMS: &str = "linux/amd64,linux/arm64";

/// A context whose RUN step runs on each platform (arm64 under emulation).
fn context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox\nARG TARGETPLATFORM\nRUN echo \"built for $TARGETPLATFORM on $(uname -m)\" > /built\n",
        )],
    );
    ctx
}

fn metadata(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A containerd namespace a test owns: its images and the namespace go on drop.
struct Namespace {
    ctr: String,
    address: String,
    name: String,
}

impl Namespace {
    fn new(ctr_var: &str, address_var: &str) -> Namespace {
        Namespace {
            ctr: env(ctr_var),
            address: env(address_var),
            name: unique("kiln-load"),
        }
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ctr);
        c.args(["-a", &self.address, "-n", &self.name]).args(args);
        c
    }

    /// `ctr images ls` as `(name, digest)` pairs.
    fn images(&self) -> Vec<(String, String)> {
        let out = stdout(&ok(self.ctr(&["images", "ls"])));
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let digest = cols.iter().find(|c| c.starts_with("sha256:"))?;
                Some((cols[0].to_string(), digest.to_string()))
            })
            .collect()
    }

    fn load_value(&self) -> String {
        format!(
            "--load=containerd://{}?namespace={}",
            self.address, self.name
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for (name, _) in self.images() {
            let _ = run(self.ctr(&["images", "rm", "--sync", &name]));
        }
        let _ = run(self.ctr(&["namespaces", "rm", &self.name]));
    }
}

/// Builds two platforms as `user` with `load` (the flags saying where the result goes); returns
/// the digest the build reports.
fn build_two_platforms(user: &User, load: &[&str], image: &str) -> String {
    let ctx = context();
    let meta = ctx.path().join("metadata.json");
    let mut args = vec![
        "build",
        "--progress",
        "plain",
        "--platform",
        TWO_PLATFORMS,
        "-t",
        image,
        "--metadata-file",
        meta.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ];
    args.splice(1..1, load.iter().copied());
    ok(user.kiln(&args));
    metadata(&meta)["containerimage.digest"]
        .as_str()
        .expect("the build reports its digest")
        .to_string()
}

/// Builds two platforms on Engine 28 and loads them into `ns`; returns the reported digest.
fn build_into(ns: &Namespace, image: &str) -> String {
    build_two_platforms(&User::new(Engine::Modern), &[&ns.load_value()], image)
}

fn assert_loaded(ns: &Namespace, image: &str, digest: &str) {
    let want = (
        format!("docker.io/library/{image}:latest"),
        digest.to_string(),
    );
    let images = ns.images();
    assert!(
        images.contains(&want),
        "{want:?} not in namespace {}: {images:?}",
        ns.name
    );
    // kiln's lease is gone, and a garbage collection (forced by deleting a lease with --sync)
    // keeps everything: the labels tie every blob to the image.
    let leases = stdout(&ok(ns.ctr(&["leases", "ls"])));
    assert!(!leases.contains("kiln-import"), "{leases}");
    let lease = stdout(&ok(ns.ctr(&["leases", "create"])));
    ok(ns.ctr(&["leases", "delete", "--sync", lease.trim()]));
    // The whole index came along: both platforms' manifests and layers are readable.
    let out = stdout(&ok(ns.ctr(&["images", "check"])));
    let line = out
        .lines()
        .find(|l| l.starts_with(&want.0))
        .unwrap_or_else(|| panic!("{} not checked: {out}", want.0));
    assert!(line.contains("complete"), "{line}");
    for platform in TWO_PLATFORMS.split(',') {
        ok(ns.ctr(&["content", "get", digest]));
        let manifest = stdout(&ok(ns.ctr(&["content", "get", digest])));
        let index: Value = serde_json::from_str(&manifest).unwrap();
        let (os, arch) = platform.split_once('/').unwrap();
        assert!(
            index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| { m["platform"]["os"] == os && m["platform"]["architecture"] == arch }),
            "{platform} missing from {manifest}"
        );
    }
}

/// A fresh namespace of the containerd the variables name receives a two-platform image whole.
fn two_platforms_load_into(ctr_var: &str, address_var: &str) {
    let ns = Namespace::new(ctr_var, address_var);
    let image = unique("kiln-load-image");
    let digest = build_into(&ns, &image);
    assert_loaded(&ns, &image, &digest);
}

#[test]
fn two_platform_image_loads_into_containerd_2() {
    two_platforms_load_into("KILN_TEST_CTR_28", "KILN_TEST_CONTAINERD28_ADDRESS");
}

#[test]
fn two_platform_image_loads_into_containerd_1_6() {
    two_platforms_load_into("KILN_TEST_CTR_20", "KILN_TEST_CONTAINERD20_ADDRESS");
}

#[test]
fn loading_again_moves_the_image_to_the_new_index() {
    let ns = Namespace::new("KILN_TEST_CTR_28", "KILN_TEST_CONTAINERD28_ADDRESS");
    let image = unique("kiln-load-again");
    build_into(&ns, &image);
    // The provenance record's timestamps make the second index a new one: the record moves.
    let second = build_into(&ns, &image);
    assert_loaded(&ns, &image, &second);
    assert_eq!(ns.images().len(), 1, "{:?}", ns.images());
}

/// Removes a Docker image on drop.
struct DockerImage<'a> {
    user: &'a User,
    name: String,
}

impl Drop for DockerImage<'_> {
    fn drop(&mut self) {
        let _ = run(self.user.docker(&["image", "rm", "-f", &self.name]));
    }
}

/// A user of `engine` with a remote builder on Engine 28's BuildKit, and a name for the image
/// the test loads, removed from the user's Engine on drop.
struct RemoteLoad {
    user: User,
    builder: String,
    image: String,
    fwd: Forwarder,
}

impl RemoteLoad {
    fn new(engine: Engine, image_prefix: &str) -> RemoteLoad {
        let user = User::new(engine);
        let fwd = Forwarder::start(&env("KILN_TEST_ENGINE28_HOST"), Listen::Unix);
        let builder = remote_builder(&user, &fwd);
        RemoteLoad {
            user,
            builder,
            image: unique(image_prefix),
            fwd,
        }
    }

    /// `kiln build --builder B --progress plain -t IMAGE ARGS`.
    fn kiln_build(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.user.kiln(&[
            "build",
            "--builder",
            &self.builder,
            "--progress",
            "plain",
            "-t",
            &self.image,
        ]);
        cmd.args(args);
        cmd
    }
}

impl Drop for RemoteLoad {
    fn drop(&mut self) {
        let _ = run(self.user.docker(&["image", "rm", "-f", &self.image]));
    }
}

fn remote_builder(user: &User, fwd: &Forwarder) -> String {
    let name = unique("remote-load");
    ok(user.kiln(&[
        "create",
        "--name",
        &name,
        "--driver",
        "remote",
        &fwd.endpoint,
    ]));
    name
}

#[test]
fn remote_builder_loads_two_platforms_into_engine_28() {
    let t = RemoteLoad::new(Engine::Modern, "kiln-remote-load");
    let (user, builder, image) = (&t.user, &t.builder, &t.image);
    let digest = build_two_platforms(user, &["--builder", builder, "--load"], image);
    assert_in_docker(user, image, &digest);
}

/// `name` is in `user`'s Engine 28 as the index `digest`, with both platforms.
fn assert_in_docker(user: &User, name: &str, digest: &str) {
    let inspect: Value =
        serde_json::from_slice(&ok(user.docker(&["image", "inspect", name])).stdout).unwrap();
    // With the containerd image store an image's ID is its index digest.
    assert_eq!(inspect[0]["Id"], digest, "{inspect:#}");
    assert_platforms_in_docker(user, name);
}

/// `name` in `user`'s Engine 28 holds both platforms.
fn assert_platforms_in_docker(user: &User, name: &str) {
    for arch in ["amd64", "arm64"] {
        let out = ok(user.docker(&[
            "image",
            "inspect",
            "--platform",
            &format!("linux/{arch}"),
            "--format",
            "{{.Architecture}}",
            name,
        ]));
        assert_eq!(stdout(&out).trim(), arch);
    }
}

#[test]
fn remote_builder_loads_into_engine_20_as_a_docker_tarball() {
    // The build runs on Engine 28's BuildKit; the result goes to the user's Engine 20.
    let t = RemoteLoad::new(Engine::Old, "kiln-remote-load20");
    let (user, image) = (&t.user, &t.image);
    let ctx = context();
    ok(t.kiln_build(&["--load", ctx.path().to_str().unwrap()]));
    let out = ok(user.docker(&["run", "--rm", image, "cat", "/built"]));
    assert!(
        stdout(&out).starts_with("built for linux/"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_load_values_fail_with_one_line_naming_the_flag() {
    let user = User::new(Engine::Modern);
    let ctx = context();
    for (value, expect) in [
        ("--load=docker", "expected true, false or containerd://"),
        ("--load=", "expected true, false or containerd://"),
        ("--load=containerd://relative.sock", "absolute path"),
        (
            "--load=containerd:///run/x.sock?space=a",
            "unknown parameter \"space=a\"",
        ),
        (
            "--load=containerd:///nonexistent/containerd.sock?namespace=n",
            "no containerd socket at /nonexistent/containerd.sock",
        ),
    ] {
        let err = fails(user.kiln(&["build", value, ctx.path().to_str().unwrap()]));
        assert!(err.contains("--load"), "{value}: {err}");
        assert!(err.contains(expect), "{value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{value}: {err}");
    }
}

#[test]
fn load_takes_booleans_as_buildx_does_and_the_last_one_wins() {
    // A remote builder loads nothing unless asked: `false` (the last flag) means no load.
    let t = RemoteLoad::new(Engine::Old, "kiln-load-bool");
    let (user, builder, image) = (&t.user, &t.builder, &t.image);
    let ctx = context();
    let build = |loads: &[&str]| {
        let mut args = vec!["build", "--builder", &builder, "--progress", "quiet"];
        args.extend(["-t", image]);
        args.extend(loads);
        args.push(ctx.path().to_str().unwrap());
        ok(user.kiln(&args));
    };
    build(&["--load=true", "--load=false"]);
    assert!(!run(user.docker(&["image", "inspect", image]))
        .status
        .success());
    build(&["--load", "--load=1"]);
    ok(user.docker(&["image", "inspect", image]));
}

/// Two nodes build one platform each; the load gets one image holding both, not the last
/// node's platform under the name.
#[test]
fn two_nodes_load_one_image_with_both_platforms_into_containerd() {
    let user = User::new(Engine::Modern);
    let builder = TwoNodeBuilder::create(&user);
    let ns = Namespace::new("KILN_TEST_CTR_28", "KILN_TEST_CONTAINERD28_ADDRESS");
    let image = unique("kiln-two-node-load");
    let digest = build_two_platforms(
        &user,
        &["--builder", &builder.name, &ns.load_value()],
        &image,
    );
    assert_loaded(&ns, &image, &digest);
    assert_eq!(ns.images().len(), 1, "{:?}", ns.images());
    // Both nodes' attestation manifests came along with their images.
    let index: Value =
        serde_json::from_str(&stdout(&ok(ns.ctr(&["content", "get", &digest])))).unwrap();
    let attestations = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .count();
    assert_eq!(attestations, 2, "each node's provenance is kept: {index:#}");
}

#[test]
fn two_nodes_load_both_platforms_into_engine_28() {
    let user = User::new(Engine::Modern);
    let builder = TwoNodeBuilder::create(&user);
    let image = DockerImage {
        user: &user,
        name: unique("kiln-two-node-docker"),
    };
    let digest = build_two_platforms(&user, &["--builder", &builder.name, "--load"], &image.name);
    assert_in_docker(&user, &image.name, &digest);
}

/// An Engine without the containerd image store (20.10) loads Docker tarballs, which hold one
/// platform: kiln refuses several platforms before building, with buildx's words.
#[test]
fn several_platforms_into_an_engine_without_the_containerd_store_fail_first_as_buildx() {
    let t = RemoteLoad::new(Engine::Old, "never-loaded");
    let (user, builder) = (&t.user, &t.builder);
    ok(user.buildx(&[
        "create",
        "--name",
        builder,
        "--driver",
        "remote",
        &t.fwd.endpoint,
    ]));
    let ctx = context();
    let args = [
        "build",
        "--builder",
        builder,
        "--platform",
        TWO_PLATFORMS,
        "-t",
        "never-loaded",
        "--load",
        ctx.path().to_str().unwrap(),
    ];
    let started = std::time::Instant::now();
    let kiln = fails(user.kiln(&args));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let buildx = fails(user.buildx(&args));
    let line =
        "ERROR: failed to build: docker exporter does not currently support exporting manifest lists";
    assert_eq!(kiln.trim(), line, "{kiln}");
    assert_eq!(buildx.lines().last(), Some(line), "{buildx}");
    assert!(!kiln.contains("#1 "), "nothing was built: {kiln}");
}

/// One platform from a remote builder into Engine 28 goes in as an OCI layout: the build's
/// reported digest is the image's ID there, as buildx reports it. The tarball is streamed into
/// Docker as BuildKit exports it: with no usable temporary directory the load still works.
#[test]
fn one_platform_into_engine_28_reports_the_image_id() {
    let t = RemoteLoad::new(Engine::Modern, "kiln-remote-load1");
    let (user, image) = (&t.user, &t.image);
    let ctx = context();
    let meta = ctx.path().join("metadata.json");
    let mut cmd = t.kiln_build(&[
        "--platform",
        "linux/arm64",
        "--metadata-file",
        meta.to_str().unwrap(),
        "--load",
        ctx.path().to_str().unwrap(),
    ]);
    ok(cmd.env("TMPDIR", ctx.path().join("no-such-dir")));
    let digest = metadata(&meta)["containerimage.digest"]
        .as_str()
        .expect("the build reports its digest")
        .to_string();
    let inspect: Value =
        serde_json::from_slice(&ok(user.docker(&["image", "inspect", image])).stdout).unwrap();
    assert_eq!(inspect[0]["Id"], digest.as_str(), "{inspect:#}");
    assert_eq!(inspect[0]["Architecture"], "arm64", "{inspect:#}");
}

/// A build that fails before exporting anything never reaches Docker's load and ends with the
/// build's own error, not a hang on a load waiting for its image.
#[test]
fn a_failing_build_with_load_reports_the_build_error() {
    let t = RemoteLoad::new(Engine::Modern, "kiln-load-fails");
    let (user, image) = (&t.user, &t.image);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {image} && exit 3\n"),
        )],
    );
    let started = std::time::Instant::now();
    let err = fails(t.kiln_build(&["--load", ctx.path().to_str().unwrap()]));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(!run(user.docker(&["image", "inspect", image]))
        .status
        .success());
}

/// A Docker Engine on loopback that answers what kiln asks before a load (`/_ping`, `/info`:
/// the containerd image store) and refuses the load itself once it has read it.
struct RefusingDocker {
    host: String,
}

impl RefusingDocker {
    const REASON: &'static str = "write /var/lib/docker/tmp: no space left on device";

    fn start() -> RefusingDocker {
        use std::io::{BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("tcp://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut writer = conn.try_clone().unwrap();
                    let mut reader = BufReader::new(conn);
                    while let Ok(Some(head)) = RequestHead::read(&mut reader) {
                        let (status, body) = if head.path.ends_with("/_ping") {
                            ("200 OK", "OK".to_string())
                        } else if head.path.contains("/info") {
                            (
                                "200 OK",
                                r#"{"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#
                                    .to_string(),
                            )
                        } else {
                            // The whole (chunked) upload first: an answer while the client
                            // is still sending reaches it as a reset, not as this reason.
                            let mut body = Vec::new();
                            let mut buf = [0u8; 65536];
                            while !body.ends_with(b"0\r\n\r\n") {
                                match reader.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => body.extend_from_slice(&buf[..n]),
                                }
                            }
                            (
                                "500 Internal Server Error",
                                format!(r#"{{"message":"{}"}}"#, Self::REASON),
                            )
                        };
                        let answer = format!(
                            "HTTP/1.1 {status}\r\nApi-Version: 1.51\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if writer.write_all(answer.as_bytes()).is_err() || status != "200 OK" {
                            return;
                        }
                    }
                });
            }
        });
        RefusingDocker { host }
    }
}

/// A load the Engine refuses fails the build with the Engine's reason, promptly.
#[test]
fn a_load_docker_refuses_fails_with_dockers_reason() {
    let t = RemoteLoad::new(Engine::Modern, "kiln-load-refused");
    let docker = RefusingDocker::start();
    let ctx = context();
    let started = std::time::Instant::now();
    let mut cmd = t.kiln_build(&["--load", ctx.path().to_str().unwrap()]);
    let err = fails(cmd.env("DOCKER_HOST", &docker.host));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(err.contains(RefusingDocker::REASON), "{err}");
}

/// `--push --load` on a split build: the nodes' pushes are merged into one manifest list under
/// the tag, and the same platforms are loaded; the metadata names the pushed index.
#[test]
fn two_nodes_push_and_load_in_one_build() {
    let user = User::new(Engine::Modern);
    let builder = TwoNodeBuilder::create(&user);
    let tag = format!(
        "{}/{}:v1",
        env("KILN_TEST_REGISTRY"),
        unique("kiln/two-node-push-load")
    );
    let image = DockerImage {
        user: &user,
        name: tag.clone(),
    };
    let digest = build_two_platforms(
        &user,
        &["--builder", &builder.name, "--push", "--load"],
        &image.name,
    );
    let pushed = ok(std::process::Command::new(env("KILN_TEST_SKOPEO")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{tag}"),
    ]));
    let index: Value = serde_json::from_slice(&pushed.stdout).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["platform"]["os"] == "linux")
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{index:#}");
    let pushed_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&pushed.stdout))
    );
    assert_eq!(digest, pushed_digest);
    assert_platforms_in_docker(&user, &image.name);
}

/// `-o type=docker,context=NAME` loads into that Docker context's Engine (the second Engine
/// 28), not the current one, as buildx does.
#[test]
fn a_docker_export_loads_into_the_named_context() {
    let t = RemoteLoad::new(Engine::Modern, "kiln-context-load");
    let other = env("KILN_TEST_ENGINE28B_HOST");
    ok(t.user.docker(&[
        "context",
        "create",
        "second",
        "--docker",
        &format!("host={other}"),
    ]));
    let ctx = context();
    for tool in ["kiln", "buildx"] {
        let image = format!("{}-{tool}", t.image);
        let args = [
            "build",
            "--builder",
            &t.builder,
            "--progress",
            "quiet",
            "-t",
            &image,
            "-o",
            "type=docker,context=second",
            ctx.path().to_str().unwrap(),
        ];
        if tool == "kiln" {
            ok(t.user.kiln(&args));
        } else {
            ok(t.user.buildx(&[
                "create",
                "--name",
                &t.builder,
                "--driver",
                "remote",
                &t.fwd.endpoint,
            ]));
            ok(t.user.buildx(&args));
        }
        let mut on_other = t.user.docker(&["image", "inspect", &image]);
        ok(on_other.env("DOCKER_HOST", &other));
        assert!(!run(t.user.docker(&["image", "inspect", &image]))
            .status
            .success());
        let mut rm = t.user.docker(&["image", "rm", "-f", &image]);
        let _ = run(rm.env("DOCKER_HOST", &other));
    }
}
