//! `kiln bake` building targets on Engine 28: several targets solved together (a `target:`
//! context and a matrix among them) with their shared context uploaded once, a failing target
//! stopping the others, the metadata file, `--load`, and the entitlement checks compared with
//! the reference buildx.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const DOCKERFILE: &str = "\
FROM busybox AS base
COPY . /ctx
ARG FLAVOR=none
RUN echo \"$FLAVOR\" > /flavor && sleep 1

FROM base AS app
COPY --from=dep /flavor /dep-flavor
RUN cat /dep-flavor /flavor
";

/// `kiln bake ARGS` run in `dir`.
fn bake(user: &User, dir: &Path, args: &[&str]) -> Command {
    let mut c = user.kiln(&["bake"]);
    c.args(args).current_dir(dir);
    c
}

/// The `--debug` summary lines: how many times `dir` (a session dir name) was pulled whole.
fn whole_uploads(stderr: &str, dir: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|l| l.contains("filesync diffcopy:"))
        .filter(|l| l.contains(&format!(" dir={dir} ")) && l.contains(" whole=true "))
        .map(|l| {
            l.rsplit("calls=")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn three_targets_with_a_target_context_and_a_matrix_upload_their_context_once() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("app/Dockerfile", DOCKERFILE),
            ("app/data.txt", "shared context\n"),
            (
                "docker-bake.hcl",
                r#"
group "default" { targets = ["app", "variant"] }
target "dep" {
  context = "app"
  target  = "base"
  args    = { FLAVOR = "dep" }
}
target "app" {
  context  = "app"
  target   = "app"
  contexts = { dep = "target:dep" }
  args     = { FLAVOR = "app" }
  output   = ["type=local,dest=out/app"]
}
target "variant" {
  matrix  = { flavor = ["red", "blue"] }
  name    = "variant-${flavor}"
  context = "app"
  target  = "base"
  args    = { FLAVOR = flavor }
  output  = ["type=local,dest=out/${flavor}"]
}
"#,
            ),
        ],
    );
    let out = ok(bake(
        &user,
        dir.path(),
        &["--progress=plain", "--metadata-file=meta.json"],
    )
    .arg("--debug"));
    let err = stderr(&out);

    // Every target's result is on disk, the dependent one built on top of its dependency.
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("out/app/dep-flavor"), "dep\n");
    assert_eq!(read("out/app/flavor"), "app\n");
    assert_eq!(read("out/red/flavor"), "red\n");
    assert_eq!(read("out/blue/flavor"), "blue\n");
    assert_eq!(read("out/blue/ctx/data.txt"), "shared context\n");

    // Four solves (dep, app, variant-red, variant-blue) shared one session for `app/`: BuildKit
    // pulled the whole context once (buildx pulls it once per target).
    assert_eq!(
        whole_uploads(&err, "context"),
        vec![1],
        "context uploads:\n{}",
        err.lines()
            .filter(|l| l.contains("filesync"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Vertex names carry the target, as buildx labels a multi-target bake.
    assert!(err.contains("[variant-red base 3/3] RUN"), "{err}");
    assert!(
        err.contains("[app app 2/2] RUN cat /dep-flavor /flavor"),
        "{err}"
    );

    // One metadata entry per target, each with its build reference.
    let meta: serde_json::Value = serde_json::from_str(&read("meta.json")).unwrap();
    let obj = meta.as_object().unwrap();
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["app", "dep", "variant-blue", "variant-red"]);
    for (name, entry) in obj {
        let r = entry["buildx.build.ref"].as_str().unwrap_or_default();
        assert!(r.starts_with("default/default/"), "{name}: {entry}");
    }
}

#[test]
fn a_failing_target_cancels_the_others_and_is_named() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox AS ok\nRUN sleep 60 && echo done > /x\nFROM busybox AS bad\nRUN sleep 1 && exit 3\n",
            ),
            (
                "docker-bake.hcl",
                r#"
group "default" { targets = ["slow", "broken"] }
target "slow" {
  target = "ok"
  output = ["type=local,dest=out/slow"]
}
target "broken" {
  target = "bad"
  output = ["type=local,dest=out/broken"]
}
"#,
            ),
        ],
    );
    let started = Instant::now();
    let err = fails(bake(&user, dir.path(), &["--progress=plain"]));
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the slow target was not cancelled"
    );
    assert!(
        err.contains("ERROR: target broken: failed to solve: process \"/bin/sh -c sleep 1 && exit 3\" did not complete successfully: exit code: 3"),
        "{err}"
    );
    assert!(err.contains("CANCELED"), "{err}");
    assert!(!dir.path().join("out/slow").exists());
}

#[test]
fn load_puts_every_target_into_docker() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (unique("kiln-bake-one"), unique("kiln-bake-two"));
    write_tree(
        dir.path(),
        &[
            ("Dockerfile", "FROM busybox\nARG N\nRUN echo $N > /n\n"),
            (
                "docker-bake.hcl",
                &format!(
                    r#"
group "default" {{ targets = ["one", "two"] }}
target "one" {{
  tags = ["{one}"]
  args = {{ N = "1" }}
}}
target "two" {{
  tags = ["{two}"]
  args = {{ N = "2" }}
}}
"#
                ),
            ),
        ],
    );
    ok(bake(&user, dir.path(), &["--progress=quiet", "--load"]));
    for (tag, n) in [(&one, "1\n"), (&two, "2\n")] {
        let out = ok(user.docker(&["run", "--rm", tag, "cat", "/n"]));
        assert_eq!(stdout(&out), n);
        ok(user.docker(&["rmi", "-f", tag]));
    }
}

/// The entitlement prompt without the progress display buildx prints first and without the
/// line that holds the program's path.
fn entitlement_text(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| !l.contains(" bake --allow="))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[test]
fn entitlements_are_refused_as_buildx_refuses_them() {
    let user = User::new(Engine::Modern);
    let root = tempfile::tempdir().unwrap();
    let proj = root.path().join("proj");
    write_tree(
        root.path(),
        &[
            ("other/Dockerfile", "FROM busybox\nRUN true\n"),
            ("secret.txt", "s3cr3t\n"),
            (
                "proj/docker-bake.hcl",
                r#"
target "default" {
  context      = "../other"
  entitlements = ["network.host", "security.insecure"]
  secret       = ["id=tok,src=../secret.txt"]
  output       = ["type=local,dest=../out"]
}
"#,
            ),
        ],
    );
    let kiln_err = fails(bake(&user, &proj, &["--progress=plain"]));
    let mut buildx = user.buildx(&["bake", "--progress=plain"]);
    buildx.current_dir(&proj);
    let buildx_err = fails(buildx);
    let kiln_text = entitlement_text(&kiln_err);
    assert_eq!(kiln_text, entitlement_text(&buildx_err));
    for needle in [
        " - Running build containers that can access host network",
        " - Running privileged containers that can make system changes",
        " - Read access to path ../other",
        "--allow=network.host --allow=security.insecure",
        "ERROR: additional privileges requested",
    ] {
        assert!(kiln_text.contains(needle), "{needle:?} in\n{kiln_text}");
    }

    // An unknown key is refused as buildx refuses it.
    let err = fails(bake(&user, &proj, &["--allow=bogus"]));
    assert!(err.contains("unknown entitlement key \"bogus\""), "{err}");

    // With the flags it asks for, only the filesystem part is left to grant.
    let err = fails(bake(
        &user,
        &proj,
        &[
            "--progress=plain",
            "--allow=network.host",
            "--allow=security.insecure",
        ],
    ));
    assert!(!err.contains("host network"), "{err}");
    assert!(err.contains(" - Read access to path ../other"), "{err}");
}

#[test]
fn allowed_paths_outside_the_working_directory_build() {
    let user = User::new(Engine::Modern);
    let root = tempfile::tempdir().unwrap();
    let proj = root.path().join("proj");
    write_tree(
        root.path(),
        &[
            (
                "other/Dockerfile",
                "FROM busybox AS b\nRUN echo hi > /hi\nFROM scratch\nCOPY --from=b /hi /hi\n",
            ),
            (
                "proj/docker-bake.hcl",
                r#"
target "default" {
  context = "../other"
  output  = ["type=local,dest=../out"]
}
"#,
            ),
        ],
    );
    ok(bake(&user, &proj, &["--progress=quiet", "--allow=fs=.."]));
    assert_eq!(
        std::fs::read_to_string(root.path().join("out/hi")).unwrap(),
        "hi\n"
    );
    // Turning the filesystem checks off works as in buildx.
    let mut c = bake(&user, &proj, &["--progress=quiet"]);
    c.env("BUILDX_BAKE_ENTITLEMENTS_FS", "0");
    ok(c);
}

#[test]
fn an_unsupported_value_names_the_target_and_attribute() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("Dockerfile", "FROM busybox\n"),
            (
                "docker-bake.hcl",
                r#"
target "default" {
  network = "bridge"
}
"#,
            ),
        ],
    );
    let err = fails(bake(&user, dir.path(), &["--progress=plain"]));
    assert!(
        err.contains("target \"default\": attribute \"network\""),
        "{err}"
    );
}
