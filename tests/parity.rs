//! Digest parity with the reference buildx 0.29.1: the same COPY-only build, with
//! `SOURCE_DATE_EPOCH=0`, must give the same image digest from both tools on Engine 28. That
//! holds only if kiln sends the context exactly as buildx does (paths, modes, ownership, links)
//! and asks the frontend for the same thing.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};

use common::*;

fn parity_context() -> tempfile::TempDir {
    let ctx = tempfile::Builder::new()
        .prefix("kiln-parity-")
        .tempdir()
        .unwrap();
    write_tree(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
            ("a.txt", "alpha\n"),
            ("sub/b.txt", "beta\n"),
            ("sub/deeper/c.bin", "\u{0}\u{1}\u{2}gamma"),
            ("tool.sh", "#!/bin/sh\necho tool\n"),
        ],
    );
    std::fs::set_permissions(
        ctx.path().join("tool.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::create_dir(ctx.path().join("empty")).unwrap();
    symlink("a.txt", ctx.path().join("link-to-a")).unwrap();
    ctx
}

/// The top-level digest of an OCI tarball's `index.json`.
fn oci_tar_digest(tar: &std::path::Path) -> String {
    let out = ok(std::process::Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg("index.json"));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn oci_export_digest_matches_buildx() {
    let user = User::new(Engine::Modern);
    let ctx = parity_context();
    let out = tempfile::tempdir().unwrap();
    let (k, b) = (out.path().join("kiln.tar"), out.path().join("buildx.tar"));
    for (cmd, dest) in [(user.kiln(&["build"]), &k), (user.buildx(&["build"]), &b)] {
        let mut cmd = cmd;
        ok(cmd.args([
            "--progress=quiet",
            "--build-arg",
            "SOURCE_DATE_EPOCH=0",
            "-o",
            &format!("type=oci,dest={}", dest.display()),
            ctx.path().to_str().unwrap(),
        ]));
    }
    assert_eq!(oci_tar_digest(&k), oci_tar_digest(&b));
}

#[test]
fn image_digest_matches_buildx() {
    let user = User::new(Engine::Modern);
    let ctx = parity_context();
    let digest = |cmd: std::process::Command, tag: &str| -> String {
        let mut cmd = cmd;
        let out = ok(cmd
            .args([
                "-q",
                "--build-arg",
                "SOURCE_DATE_EPOCH=0",
                "-t",
                tag,
                ctx.path().to_str().unwrap(),
            ])
            // Provenance records the build's own invocation and differs on every run.
            .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1"));
        stdout(&out).trim().to_string()
    };
    let (kt, bt) = (unique("parity-kiln"), unique("parity-buildx"));
    let k = digest(user.kiln(&["build"]), &kt);
    let b = digest(user.buildx(&["build"]), &bt);
    assert!(k.starts_with("sha256:"), "{k}");
    assert_eq!(k, b);
    let _ = run(user.docker(&["rmi", "-f", &kt, &bt]));
}

/// The blob file names under an OCI layout directory, sorted.
fn layout_blobs(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `-o type=oci,tar=false`: BuildKit writes the layout through the session's content store
/// and the client records the image in `index.json`; both tools leave the same bytes.
#[test]
fn oci_layout_directory_matches_buildx() {
    let user = User::new(Engine::Modern);
    let ctx = parity_context();
    let out = tempfile::tempdir().unwrap();
    let (k, b) = (out.path().join("kiln"), out.path().join("buildx"));
    let export = |cmd: std::process::Command, dest: &std::path::Path, tags: &[&str]| {
        let mut cmd = cmd;
        cmd.args(["--progress=quiet", "--build-arg", "SOURCE_DATE_EPOCH=0"]);
        for t in tags {
            cmd.args(["-t", t]);
        }
        ok(cmd.args([
            "-o",
            &format!("type=oci,dest={},tar=false", dest.display()),
            ctx.path().to_str().unwrap(),
        ]));
    };
    for (tool, dest) in [("kiln", &k), ("buildx", &b)] {
        let cmd = || match tool {
            "kiln" => user.kiln(&["build"]),
            _ => user.buildx(&["build"]),
        };
        export(cmd(), dest, &["app:1", "127.0.0.1:5000/app:2"]);
        // A second export under another name is added beside the first.
        export(cmd(), dest, &["app:3"]);
    }
    let index = |d: &std::path::Path| std::fs::read_to_string(d.join("index.json")).unwrap();
    assert_eq!(index(&k), index(&b));
    let parsed: serde_json::Value = serde_json::from_str(&index(&k)).unwrap();
    assert_eq!(
        parsed["manifests"].as_array().unwrap().len(),
        3,
        "{parsed:#}"
    );
    assert_eq!(
        std::fs::read_to_string(k.join("oci-layout")).unwrap(),
        std::fs::read_to_string(b.join("oci-layout")).unwrap()
    );
    assert_eq!(layout_blobs(&k), layout_blobs(&b));
    assert!(!k.join("index.json.lock").exists());
}

/// `type=docker,tar=false` without `-t`: a layout of Docker media types recorded under the tag
/// `latest`, as BuildKit's client records an unnamed export.
#[test]
fn an_unnamed_docker_layout_is_recorded_as_latest() {
    let user = User::new(Engine::Modern);
    let ctx = parity_context();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("new/layout");
    ok(user.kiln(&[
        "build",
        "--progress=quiet",
        "-o",
        &format!("type=docker,dest={},tar=false", dest.display()),
        ctx.path().to_str().unwrap(),
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index:#}");
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert!(entries[0]["mediaType"]
        .as_str()
        .unwrap()
        .starts_with("application/vnd.docker."));
    let digest = entries[0]["digest"].as_str().unwrap();
    assert!(dest
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .is_file());
}
