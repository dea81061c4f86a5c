//! Named contexts (`--build-context NAME=VALUE`) on Engine 28: a local directory, an image, an
//! http file and a git repository on loopback, and an OCI layout read through the session's
//! content store without a single write into the layout directory.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// Builds `dockerfile` with `args` and a local exporter; returns the exported `/out`.
fn build_out(user: &User, dockerfile: &str, args: &[&str]) -> String {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", dockerfile)]);
    let dest = ctx.path().join("result");
    let mut cmd = user.kiln(&["build", "--progress=plain"]);
    cmd.args(args)
        .args(["-o", dest.to_str().unwrap(), ctx.path().to_str().unwrap()]);
    ok(cmd);
    std::fs::read_to_string(dest.join("out")).unwrap()
}

/// A stage named `run` from the context `base` writes `/out` with `cmd`; the result holds only it.
fn dockerfile_from(base: &str, cmd: &str) -> String {
    format!("FROM {base} AS run\nRUN {cmd}\nFROM scratch\nCOPY --from=run /out /out\n")
}

#[test]
fn local_directory_context_for_copy_from() {
    let user = User::new(Engine::Modern);
    let extra = tempfile::tempdir().unwrap();
    write_tree(extra.path(), &[("sub/file.txt", "from a named context\n")]);
    let out = build_out(
        &user,
        "FROM scratch\nCOPY --from=extra /sub/file.txt /out\n",
        &[
            "--build-context",
            &format!("extra={}", extra.path().display()),
        ],
    );
    assert_eq!(out, "from a named context\n");
}

#[test]
fn a_named_context_called_context_does_not_replace_the_main_one() {
    let user = User::new(Engine::Modern);
    let other = tempfile::tempdir().unwrap();
    write_tree(other.path(), &[("file.txt", "the named one\n")]);
    let out = build_out(
        &user,
        "FROM scratch\nCOPY --from=context /file.txt /out\n",
        &[
            "--build-context",
            &format!("context={}", other.path().display()),
        ],
    );
    assert_eq!(out, "the named one\n");
}

#[test]
fn docker_image_context_replaces_a_base() {
    let user = User::new(Engine::Modern);
    let out = build_out(
        &user,
        &dockerfile_from("base", "busybox | head -1 > /out"),
        &[
            "--build-context",
            &format!("base=docker-image://{}", env("KILN_TEST_BUSYBOX_IMAGE")),
        ],
    );
    assert!(out.starts_with("BusyBox"), "{out}");
}

/// A git repository served over http: BuildKit fetches it itself. (A plain http file as a named
/// context fails on Engine 28 with "invalid argument" for the reference buildx 0.29.1 exactly
/// as for kiln, so it is not exercised here.)
#[test]
fn git_repository_context_over_http() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let repo = dir.path().join("repo");
    write_tree(&repo, &[("data", "from git\n")]);
    let git = |args: &[&str], cwd: &Path| {
        ok(std::process::Command::new("git")
            .args(["-c", "user.name=kiln", "-c", "user.email=kiln@localhost"])
            .args(args)
            .current_dir(cwd));
    };
    git(&["init", "-q", "-b", "main"], &repo);
    git(&["add", "."], &repo);
    git(&["commit", "-qm", "named context"], &repo);
    // A bare clone served over plain http with git's dumb protocol.
    git(
        &["clone", "-q", "--bare", repo.to_str().unwrap(), "src.git"],
        &served,
    );
    git(&["update-server-info"], &served.join("src.git"));
    let server = LoopbackServer::serve(&served);

    let out = build_out(
        &user,
        "FROM scratch\nCOPY --from=src /data /out\n",
        &[
            "--build-context",
            &format!("src=http://127.0.0.1:{}/src.git#main", server.port),
        ],
    );
    assert_eq!(out, "from git\n");
}

/// Every path under `root` with its kind, size, mode and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (bool, u64, u32, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let m = std::fs::symlink_metadata(entry.path()).unwrap();
            if m.is_dir() {
                todo.push(entry.path());
            }
            out.insert(
                entry.path().strip_prefix(root).unwrap().to_path_buf(),
                (m.is_dir(), m.len(), m.mode(), m.mtime(), m.mtime_nsec()),
            );
        }
    }
    out
}

/// A read-only bind mount of a directory; unmounted on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(src: &Path, at: &Path) -> ReadOnlyMount {
        std::fs::create_dir_all(at).unwrap();
        ok(std::process::Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(at));
        let m = ReadOnlyMount(at.to_path_buf());
        ok(std::process::Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(at));
        m
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A copy of the busybox OCI layout, made read-only twice over: `chmod -R a-w` (what a non-root
/// user would meet), and, since these tests run as root and root ignores modes, a read-only bind
/// mount (any write is `EROFS` even for root). The snapshot before and after proves nothing
/// changed, appeared (`ingest/`, `index.json.lock`) or was touched, whoever tried.
fn read_only_layout() -> (tempfile::TempDir, ReadOnlyMount, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    ok(std::process::Command::new("cp")
        .arg("-a")
        .arg(env("KILN_TEST_BUSYBOX_OCI_LAYOUT"))
        .arg(&copy));
    ok(std::process::Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&copy));
    let at = dir.path().join("layout");
    let mount = ReadOnlyMount::new(&copy, &at);
    assert!(
        std::fs::create_dir(at.join("probe")).is_err(),
        "the layout should be read-only"
    );
    (dir, mount, at)
}

#[test]
fn oci_layout_context_is_read_without_writing() {
    let user = User::new(Engine::Modern);
    let (_dir, _mount, layout) = read_only_layout();
    let before = snapshot(&layout);

    // The default tag (`latest`, the multi-platform index), a platform tag, and a digest.
    let index_digest = env("KILN_TEST_BUSYBOX_INDEX_DIGEST");
    for (i, reference) in [
        format!("oci-layout://{}", layout.display()),
        format!("oci-layout://{}:amd64", layout.display()),
        format!("oci-layout://{}@{index_digest}", layout.display()),
    ]
    .iter()
    .enumerate()
    {
        let out = build_out(
            &user,
            &dockerfile_from(
                "img",
                &format!("busybox | head -1 > /out; echo {i} >> /out"),
            ),
            &["--no-cache", "--build-context", &format!("img={reference}")],
        );
        assert!(out.starts_with("BusyBox"), "{reference}: {out}");
    }

    let after = snapshot(&layout);
    assert_eq!(before, after, "the layout directory changed");
    assert!(!after
        .keys()
        .any(|p| p.starts_with("ingest") || p.to_string_lossy().ends_with(".lock")));
}

/// Writes `blob` into the layout's `blobs/sha256/` and returns its descriptor.
fn add_blob(layout: &Path, media_type: &str, blob: &[u8]) -> serde_json::Value {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(blob));
    std::fs::write(layout.join("blobs/sha256").join(&hex), blob).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": blob.len()})
}

/// An OCI layout of one image holding `/big`, tagged `v1`, written here rather than by the
/// engine so that the engine has never seen its blobs.
fn layout_with_file(layout: &Path, big: &[u8]) {
    let staging = tempfile::tempdir().unwrap();
    std::fs::write(staging.path().join("big"), big).unwrap();
    let layer_tar = staging.path().join("layer.tar");
    ok(std::process::Command::new("tar")
        .arg("-cf")
        .arg(&layer_tar)
        .arg("-C")
        .arg(staging.path())
        .arg("big"));
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = add_blob(
        layout,
        "application/vnd.oci.image.layer.v1.tar",
        &std::fs::read(&layer_tar).unwrap(),
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    });
    let config = add_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    });
    let mut manifest = add_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "v1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// A layout holding a layer the engine has never seen, larger than one gRPC message: BuildKit must
/// read every byte of it through the content store, in many chunks.
#[test]
fn oci_layout_with_a_new_large_layer() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    // Incompressible and unique to this run, so nothing in the engine's store matches it.
    let big: Vec<u8> = {
        use sha2::Digest as _;
        let seed = unique("kiln-big");
        (0..(6u32 << 20) / 32)
            .flat_map(|i| sha2::Sha256::digest(format!("{seed}-{i}")).to_vec())
            .collect()
    };
    let copy = dir.path().join("copy");
    layout_with_file(&copy, &big);
    ok(std::process::Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&copy));
    let layout = dir.path().join("layout");
    let _mount = ReadOnlyMount::new(&copy, &layout);
    let before = snapshot(&layout);

    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY --from=img /big /big\n")],
    );
    let dest = dir.path().join("result");
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--build-context",
        &format!("img=oci-layout://{}:v1", layout.display()),
        "-o",
        dest.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read(dest.join("big")).unwrap() == big,
        "the layer's file differs"
    );
    assert_eq!(before, snapshot(&layout), "the layout directory changed");
}

#[test]
fn oci_layout_tag_missing_from_the_index_is_one_clear_line() {
    let user = User::new(Engine::Modern);
    let (_dir, _mount, layout) = read_only_layout();
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM img\n")]);
    let err = fails(user.kiln(&[
        "build",
        "--build-context",
        &format!("img=oci-layout://{}:no-such-tag", layout.display()),
        ctx.path().to_str().unwrap(),
    ]));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("\"no-such-tag\" not found"), "{err}");
    assert!(err.contains(&layout.display().to_string()), "{err}");
}

#[test]
fn bad_build_context_syntax_is_one_line() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM scratch\n")]);
    for (value, expected) in [
        (
            "novalue",
            "invalid context value: novalue, expected key=value",
        ),
        ("Not A Name=/tmp", "invalid context name Not A Name"),
    ] {
        let err = fails(user.kiln(&[
            "build",
            "--build-context",
            value,
            ctx.path().to_str().unwrap(),
        ]));
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn missing_local_named_context_is_one_line() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM scratch\n")]);
    let missing = ctx.path().join("absent");
    let err = fails(user.kiln(&[
        "build",
        "--build-context",
        &format!("extra={}", missing.display()),
        ctx.path().to_str().unwrap(),
    ]));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("failed to get build context extra"), "{err}");
}
