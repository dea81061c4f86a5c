//! Multi-node builders: two distinct BuildKit daemons (the embedded BuildKit of two Engine 28
//! daemons, each with its own containerd and data, exposed as plain BuildKit endpoints by the
//! forwarder) building one image for linux/amd64 and linux/arm64 (arm64 under emulation), the
//! per-node results pushed by digest and merged into one manifest list in the real registry.

mod common;
#[path = "common/forwarder.rs"]
mod forwarder;

use common::*;
use forwarder::{BlackHole, Forwarder, Listen, TwoNodeBuilder};

/// The two-node builder (`amd` on Engine 28, `arm` on the second Engine 28) and its user.
struct TwoNodes {
    user: User,
    name: String,
    nodes: TwoNodeBuilder,
}

impl TwoNodes {
    /// `kiln bake --progress plain --metadata-file meta.json ARGS` in `dir`, with `hcl` as its
    /// `docker-bake.hcl`.
    fn bake(&self, dir: &std::path::Path, hcl: &str, args: &[&str]) -> std::process::Command {
        std::fs::write(dir.join("docker-bake.hcl"), hcl).unwrap();
        let mut cmd = self.user.kiln(&[
            "bake",
            "--builder",
            &self.name,
            "--progress",
            "plain",
            "--metadata-file",
            "meta.json",
        ]);
        cmd.args(args).current_dir(dir);
        cmd
    }
}

fn two_nodes() -> TwoNodes {
    let user = User::new(Engine::Modern);
    let builder = TwoNodeBuilder::create(&user);
    TwoNodes {
        user,
        name: builder.name.clone(),
        nodes: builder,
    }
}

fn context(marker: &str, run: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!("FROM busybox\nCOPY marker /marker\nRUN {run}\n"),
            ),
            ("marker", marker),
        ],
    );
    ctx
}

/// A tag in a repository of the test registry nobody has pushed to.
fn fresh_tag(repo: &str) -> String {
    format!("{}/{}:v1", env("KILN_TEST_REGISTRY"), unique(repo))
}

/// The architectures of an index's linux images (attestation manifests left out), in order.
fn linux_archs(index: &serde_json::Value) -> Vec<&str> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["platform"]["os"] == "linux")
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect()
}

fn skopeo_raw(reference: &str) -> serde_json::Value {
    let out = ok(std::process::Command::new(env("KILN_TEST_SKOPEO")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_daemons_build_two_platforms_and_one_manifest_list_is_pushed() {
    let t = two_nodes();
    let marker = unique("marker");
    let ctx = context(&marker, "uname -m > /arch");
    let repo = format!("{}/{}", env("KILN_TEST_REGISTRY"), unique("kiln/multinode"));
    let (tag1, tag2) = (format!("{repo}:v1"), format!("{repo}:latest"));
    let meta = ctx.path().join("meta.json");
    let mut cmd = t.user.kiln(&[
        "build",
        "--builder",
        &t.name,
        "--platform",
        "linux/amd64,linux/arm64",
        "--progress",
        "plain",
        "--push",
        "-t",
        &tag1,
        "-t",
        &tag2,
        "--metadata-file",
        meta.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);
    // The merge reports how many blob bytes it uploaded: every blob is already there.
    cmd.env("KILN_LOG", "kiln::build::fanout=debug");
    let out = ok(cmd);
    let log = stderr(&out);
    assert!(log.contains("uploaded_blob_bytes=0"), "{log}");
    // Both solves share one display, and every step names its node and platform.
    assert!(
        log.contains("[amd linux/amd64 3/3] RUN uname -m > /arch"),
        "{log}"
    );
    assert!(
        log.contains("[arm linux/arm64 3/3] RUN uname -m > /arch"),
        "{log}"
    );
    assert!(
        log.contains(&format!("merging manifest list {tag1},{tag2}")),
        "{log}"
    );

    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    let digest = meta["containerimage.digest"].as_str().unwrap().to_string();

    // The registry holds one index under both tags, with both platforms and their attestations.
    let index = skopeo_raw(&tag1);
    assert_eq!(index, skopeo_raw(&tag2));
    assert_eq!(index, skopeo_raw(&format!("{repo}@{digest}")));
    let manifests = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = manifests
        .iter()
        .filter(|m| m["platform"]["os"] != "unknown")
        .map(|m| {
            format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"]).replace('"', "")
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let attestations = manifests
        .iter()
        .filter(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .count();
    assert_eq!(attestations, 2, "{index}");

    // The reference buildx reads the same list.
    let raw = ok(t.user.buildx(&["imagetools", "inspect", "--raw", &tag1]));
    let theirs: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(theirs, index);

    // Each platform's image came from the daemon that built it: its config says so.
    for m in manifests.iter().filter(|m| m["platform"]["os"] == "linux") {
        let manifest = skopeo_raw(&format!("{repo}@{}", m["digest"].as_str().unwrap()));
        let cfg_digest = manifest["config"]["digest"].as_str().unwrap();
        let out = ok(std::process::Command::new("curl").args([
            "-fsS",
            &format!(
                "http://{}/v2/{}/blobs/{cfg_digest}",
                env("KILN_TEST_REGISTRY"),
                repo.split_once('/').unwrap().1
            ),
        ]));
        let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cfg["architecture"], m["platform"]["architecture"]);
    }
}

#[test]
fn a_failing_platform_tags_nothing_and_names_its_node() {
    let t = two_nodes();
    let marker = unique("marker");
    // Fails only on arm64.
    let ctx = context(&marker, "test \"$(uname -m)\" != aarch64");
    let tag = fresh_tag("kiln/multinode-fail");
    let err = fails(t.user.kiln(&[
        "build",
        "--builder",
        &t.name,
        "--platform",
        "linux/amd64,linux/arm64",
        "--progress",
        "plain",
        "--push",
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]));
    assert!(err.contains("node arm (linux/arm64)"), "{err}");
    let out = run(std::process::Command::new(env("KILN_TEST_SKOPEO")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{tag}"),
    ]));
    assert!(!out.status.success(), "the tag must not exist");
}

#[test]
fn a_platform_no_node_serves_fails_before_anything_starts() {
    let t = two_nodes();
    let ctx = context("x", "true");
    let err = fails(t.user.kiln(&[
        "build",
        "--builder",
        &t.name,
        "--platform",
        "linux/s390x",
        ctx.path().to_str().unwrap(),
    ]));
    assert!(
        err.contains(&format!(
            "no node of builder \"{}\" can build for linux/s390x",
            t.name
        )),
        "{err}"
    );
    assert!(!err.contains("#1 "), "nothing may start: {err}");
}

#[test]
fn a_dead_node_is_skipped_and_named_and_the_live_one_builds() {
    let user = User::new(Engine::Modern);
    let live = Forwarder::start(&env("KILN_TEST_ENGINE28_HOST"), Listen::Unix);
    let hole = BlackHole::start();
    let dead_dir = tempfile::tempdir().unwrap();
    let refused = format!("unix://{}", dead_dir.path().join("gone.sock").display());
    let name = unique("halfdead");
    ok(user.kiln(&[
        "create", "--name", &name, "--driver", "remote", "--node", "dead", &refused,
    ]));
    ok(user.kiln(&[
        "create",
        "--name",
        &name,
        "--append",
        "--node",
        "hole",
        &hole.endpoint,
    ]));
    ok(user.kiln(&[
        "create",
        "--name",
        &name,
        "--append",
        "--node",
        "live",
        &live.endpoint,
    ]));
    let marker = unique("marker");
    let ctx = context(&marker, "true");
    let out = ok(user.kiln(&[
        "build",
        "--builder",
        &name,
        "--platform",
        "linux/amd64",
        "--progress",
        "plain",
        "-o",
        &format!("type=local,dest={}", ctx.path().join("out").display()),
        ctx.path().to_str().unwrap(),
    ]));
    let log = stderr(&out);
    assert!(log.contains("WARNING: node dead of builder"), "{log}");
    assert!(log.contains("WARNING: node hole of builder"), "{log}");
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("out/marker")).unwrap(),
        marker
    );
}

#[test]
fn ls_and_inspect_of_a_two_node_builder_match_buildx() {
    let t = two_nodes();
    // The same builder, created by the reference buildx in its own store.
    let endpoints: Vec<String> = [&t.nodes.amd, &t.nodes.arm]
        .iter()
        .map(|f| f.endpoint.clone())
        .collect();
    ok(t.user.buildx(&[
        "create",
        "--name",
        &t.name,
        "--driver",
        "remote",
        "--node",
        "amd",
        "--platform",
        "linux/amd64",
        &endpoints[0],
    ]));
    ok(t.user.buildx(&[
        "create",
        "--name",
        &t.name,
        "--append",
        "--node",
        "arm",
        "--platform",
        "linux/arm64",
        &endpoints[1],
    ]));
    let strip_activity = |s: String| -> String {
        s.lines()
            .filter(|l| !l.starts_with("Last Activity:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let inspect = ["inspect", "--bootstrap", t.name.as_str()];
    let kiln = strip_activity(stdout(&ok(t.user.kiln(&inspect))));
    let buildx = strip_activity(stdout(&ok(t.user.buildx(&inspect))));
    assert_eq!(kiln, buildx);
    assert!(kiln.contains("\nName:             arm\n"), "{kiln}");
    assert!(kiln.contains("linux/arm64*"), "{kiln}");

    let row = |out: String| -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut keep = false;
        for l in out.lines() {
            if l.starts_with(&t.name) {
                keep = true;
            } else if !l.starts_with(' ') && !l.starts_with('\\') {
                keep = false;
            }
            if keep {
                lines.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        lines
    };
    assert_eq!(
        row(stdout(&ok(t.user.kiln(&["ls"])))),
        row(stdout(&ok(t.user.buildx(&["ls"]))))
    );
}

#[test]
fn docker_media_type_parts_merge_into_a_docker_manifest_list() {
    let t = two_nodes();
    let marker = unique("marker");
    let ctx = context(&marker, "true");
    let tag = fresh_tag("kiln/multinode-docker");
    ok(t.user.kiln(&[
        "build",
        "--builder",
        &t.name,
        "--platform",
        "linux/arm64,linux/amd64",
        "--provenance=false",
        "--progress",
        "quiet",
        "-o",
        &format!("type=image,name={tag},push=true,oci-mediatypes=false"),
        ctx.path().to_str().unwrap(),
    ]));
    let list = skopeo_raw(&tag);
    assert_eq!(
        list["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json",
        "{list}"
    );
    // In the order the platforms were asked for.
    assert_eq!(linux_archs(&list), ["arm64", "amd64"]);
}

#[test]
fn bake_places_each_targets_platforms_on_the_nodes_and_merges_per_target() {
    let t = two_nodes();
    let marker = unique("marker");
    let ctx = context(&marker, "uname -m > /arch");
    let tag = fresh_tag("kiln/multinode-bake");
    let out = ctx.path().join("tool-out");
    let hcl = format!(
        r#"
group "default" {{
  targets = ["app", "tool"]
}}
target "app" {{
  platforms = ["linux/amd64", "linux/arm64"]
  tags = ["{tag}"]
  output = ["type=image,push=true"]
}}
target "tool" {{
  dockerfile-inline = "FROM busybox\nRUN uname -m > /arch && echo tool\n"
  platforms = ["linux/arm64"]
  output = ["type=local,dest={}"]
}}
"#,
        out.display()
    );
    let cmd = t.bake(ctx.path(), &hcl, &[]);
    let log = stderr(&ok(cmd));
    assert!(
        log.contains("[app amd linux/amd64 3/3] RUN uname -m"),
        "{log}"
    );
    assert!(
        log.contains("[app arm linux/arm64 3/3] RUN uname -m"),
        "{log}"
    );
    // A target on one node needs no node label.
    assert!(log.contains("[tool 2/2] RUN uname -m"), "{log}");
    assert_eq!(
        std::fs::read_to_string(out.join("arch")).unwrap(),
        "aarch64\n"
    );

    let index = skopeo_raw(&tag);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ctx.path().join("meta.json")).unwrap())
            .unwrap();
    assert_eq!(
        skopeo_raw(&format!(
            "{}@{}",
            tag.rsplit_once(':').unwrap().0,
            meta["app"]["containerimage.digest"].as_str().unwrap()
        )),
        index
    );
    assert_eq!(linux_archs(&index), ["amd64", "arm64"]);
}

#[test]
fn a_local_export_from_two_nodes_lands_in_one_directory_per_platform() {
    let t = two_nodes();
    let marker = unique("marker");
    let ctx = context(&marker, "uname -m > /arch");
    let out = ctx.path().join("out");
    ok(t.user.kiln(&[
        "build",
        "--builder",
        &t.name,
        "--platform",
        "linux/amd64,linux/arm64",
        "--progress",
        "quiet",
        "-o",
        &format!("type=local,dest={}", out.display()),
        ctx.path().to_str().unwrap(),
    ]));
    for (dir, arch) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
        assert_eq!(
            std::fs::read_to_string(out.join(dir).join("arch")).unwrap(),
            arch
        );
        assert_eq!(
            std::fs::read_to_string(out.join(dir).join("marker")).unwrap(),
            marker
        );
    }
}

#[test]
fn bake_targets_that_feed_each_other_run_on_the_one_node_that_serves_them() {
    let t = two_nodes();
    let marker = unique("marker");
    let ctx = context(&marker, "uname -m > /arch");
    let out = ctx.path().join("out");
    let hcl = format!(
        r#"
target "base" {{
  platforms = ["linux/arm64"]
}}
target "app" {{
  contexts = {{ base = "target:base" }}
  dockerfile-inline = "FROM base\nRUN read a < /arch && echo \"$a\" > /copied\n"
  platforms = ["linux/arm64"]
  output = ["type=local,dest={}"]
}}
"#,
        out.display()
    );
    let cmd = t.bake(ctx.path(), &hcl, &["app"]);
    ok(cmd);
    assert_eq!(
        std::fs::read_to_string(out.join("copied")).unwrap(),
        "aarch64\n"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ctx.path().join("meta.json")).unwrap())
            .unwrap();
    // The node declared for arm64 built it, not the first node.
    let build_ref = meta["app"]["buildx.build.ref"].as_str().unwrap();
    assert!(
        build_ref.starts_with(&format!("{}/arm/", t.name)),
        "{build_ref}"
    );
}
