//! Image exporter attributes reach Engine 28's exporter and the registry gets what they say:
//! `--push`, `-o type=registry`, `-o type=image,push=true,name=...` with `compression`,
//! `compression-level`, `force-compression`, `oci-mediatypes`, `name-canonical`. Each pushed
//! manifest is fetched from the registry and compared with what the reference buildx pushes for
//! the same flags; `push-by-digest` gets buildx's error on the docker driver.
//!
//! What Engine 28's exporter does with them (the same for buildx and kiln):
//! - `compression` converts only layers that have no blob of that compression yet (the new
//!   ones); with `force-compression=true` every layer is converted.
//! - `compression-level` applies when a layer is compressed, so only to fresh blobs.
//! - `oci-mediatypes=false` is overridden by attestations (the default provenance): the result
//!   is an OCI index either way; without attestations it is a Docker v2 manifest.
//! - `name-canonical=true` also stores `NAME@DIGEST` in the Engine's image store.

mod common;

use common::*;
use serde_json::Value;

const ACCEPT: &str = "Accept: application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A context whose last layer is new on every call (so compression applies to it).
fn context() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-ctx-")
        .tempdir()
        .unwrap();
    write_tree(
        dir.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox:latest\nRUN echo {} > /fresh\n",
                unique("layer")
            ),
        )],
    );
    dir
}

fn registry_get(path: &str, accept: &str) -> Value {
    let url = format!("http://{}/v2/{path}", env("KILN_TEST_REGISTRY"));
    let out = ok(std::process::Command::new("curl").args(["-sf", "-H", accept, &url]));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// What the registry holds under `repo:tag`, as comparable text: the top media type, and for
/// the linux/amd64 image its manifest, config and layer media types.
#[derive(Debug, PartialEq)]
struct Pushed {
    top: String,
    manifest: String,
    config: String,
    layers: Vec<String>,
    /// Layer sizes (not compared between tools: timestamps change them slightly).
    sizes: Vec<u64>,
}

fn pushed(repo: &str, tag: &str) -> Pushed {
    let top = registry_get(&format!("{repo}/manifests/{tag}"), ACCEPT);
    let top_type = top["mediaType"].as_str().unwrap().to_string();
    let image = match top["manifests"].as_array() {
        Some(list) => {
            let d = list
                .iter()
                .find(|d| d["platform"]["architecture"] == "amd64")
                .unwrap_or_else(|| panic!("no amd64 image in {top:#}"));
            registry_get(
                &format!("{repo}/manifests/{}", d["digest"].as_str().unwrap()),
                &format!("Accept: {}", d["mediaType"].as_str().unwrap()),
            )
        }
        None => top,
    };
    let layers = image["layers"].as_array().unwrap();
    Pushed {
        top: top_type,
        manifest: image["mediaType"].as_str().unwrap().to_string(),
        config: image["config"]["mediaType"].as_str().unwrap().to_string(),
        layers: layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_string())
            .collect(),
        sizes: layers.iter().map(|l| l["size"].as_u64().unwrap()).collect(),
    }
}

/// Builds with kiln and with buildx, each pushing to its own repository; `{name}` in the
/// arguments is replaced by that tool's image name. Returns kiln's and buildx's results.
fn push_both(user: &User, args: &[&str]) -> (Pushed, Pushed) {
    let ctx = context();
    let repo = unique("kiln/attrs");
    let mut out = Vec::new();
    for tool in ["kiln", "buildx"] {
        let name = format!("{}/{repo}-{tool}:v1", env("KILN_TEST_REGISTRY"));
        let args: Vec<String> = args.iter().map(|a| a.replace("{name}", &name)).collect();
        let mut cmd = if tool == "kiln" {
            user.kiln(&["build", "--progress=quiet"])
        } else {
            user.buildx(&["build", "--progress=quiet"])
        };
        ok(cmd.args(&args).arg(ctx.path()));
        out.push(pushed(&format!("{repo}-{tool}"), "v1"));
    }
    let bx = out.pop().unwrap();
    (out.pop().unwrap(), bx)
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[test]
fn push_and_type_registry_push_an_oci_index_like_buildx_engine28() {
    let user = User::new(Engine::Modern);
    for args in [
        &["--push", "-t", "{name}"][..],
        &["-o", "type=registry,name={name}"][..],
        &["-o", "type=image,push=true,name={name}"][..],
    ] {
        let (k, bx) = push_both(&user, args);
        assert_eq!(k.top, OCI_INDEX, "{args:?}");
        assert_eq!(k.manifest, OCI_MANIFEST, "{args:?}");
        assert!(
            k.layers
                .iter()
                .all(|l| l == "application/vnd.oci.image.layer.v1.tar+gzip"),
            "{args:?}: {k:?}"
        );
        assert_eq!(
            (k.top, k.manifest, k.layers),
            (bx.top, bx.manifest, bx.layers)
        );
    }
}

#[test]
fn forced_compression_converts_every_layer_engine28() {
    let user = User::new(Engine::Modern);
    for (compression, layer) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("uncompressed", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let out = format!(
            "type=image,push=true,name={{name}},compression={compression},force-compression=true"
        );
        let (k, bx) = push_both(&user, &["-o", &out]);
        assert!(k.layers.len() >= 2, "{k:?}");
        assert!(k.layers.iter().all(|l| l == layer), "{compression}: {k:?}");
        assert_eq!(k.layers, bx.layers, "{compression}");
        assert_eq!(k.manifest, bx.manifest, "{compression}");
    }
}

#[test]
fn compression_without_force_converts_new_layers_only_engine28() {
    let user = User::new(Engine::Modern);
    for (compression, layer) in [
        ("zstd", "application/vnd.docker.image.rootfs.diff.tar.zstd"),
        (
            "uncompressed",
            "application/vnd.docker.image.rootfs.diff.tar",
        ),
    ] {
        let out = format!("type=image,push=true,name={{name}},compression={compression}");
        let (k, bx) = push_both(&user, &["--provenance=false", "-o", &out]);
        assert_eq!(k.manifest, DOCKER_MANIFEST, "{k:?}");
        // The base image's layer keeps the gzip blob it was pulled as.
        assert_eq!(
            k.layers.first().unwrap(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(k.layers.last().unwrap(), layer, "{compression}: {k:?}");
        assert_eq!(
            k,
            Pushed {
                sizes: k.sizes.clone(),
                ..bx
            }
        );
    }
}

#[test]
fn compression_level_reaches_the_exporter_engine28() {
    let user = User::new(Engine::Modern);
    let out = "type=image,push=true,name={name},compression=gzip,compression-level=0,force-compression=true";
    let (k, bx) = push_both(&user, &["--provenance=false", "-o", out]);
    // Level 0 stores the fresh layer (a 2 KiB tar) without compressing it.
    let fresh = *k.sizes.last().unwrap();
    assert!(
        fresh > 2048,
        "compression-level=0 should store the layer: {k:?}"
    );
    assert_eq!(
        fresh,
        *bx.sizes.last().unwrap(),
        "kiln {k:?}\nbuildx {bx:?}"
    );
    let (k, _) = push_both(
        &user,
        &[
            "--provenance=false",
            "-o",
            "type=image,push=true,name={name},compression=gzip,compression-level=9,force-compression=true",
        ],
    );
    assert!(*k.sizes.last().unwrap() < 1024, "{k:?}");
}

#[test]
fn oci_mediatypes_choose_the_manifest_format_engine28() {
    let user = User::new(Engine::Modern);
    let (k, bx) = push_both(
        &user,
        &[
            "--provenance=false",
            "-o",
            "type=image,push=true,name={name},oci-mediatypes=false",
        ],
    );
    assert_eq!(k.top, DOCKER_MANIFEST);
    assert_eq!(k.config, "application/vnd.docker.container.image.v1+json");
    assert!(
        k.layers
            .iter()
            .all(|l| l == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{k:?}"
    );
    assert_eq!(
        k,
        Pushed {
            sizes: k.sizes.clone(),
            ..bx
        }
    );

    let (k, bx) = push_both(
        &user,
        &[
            "--provenance=false",
            "-o",
            "type=image,push=true,name={name},oci-mediatypes=true",
        ],
    );
    assert_eq!(k.top, OCI_MANIFEST);
    assert_eq!(k.config, "application/vnd.oci.image.config.v1+json");
    assert_eq!(
        k,
        Pushed {
            sizes: k.sizes.clone(),
            ..bx
        }
    );

    // Attestations need an index: BuildKit turns OCI media types on whatever was asked.
    let (k, bx) = push_both(
        &user,
        &[
            "-o",
            "type=image,push=true,name={name},oci-mediatypes=false",
        ],
    );
    assert_eq!(k.top, OCI_INDEX);
    assert_eq!(k.top, bx.top);
}

#[test]
fn name_canonical_stores_the_digest_name_engine28() {
    let user = User::new(Engine::Modern);
    let ctx = context();
    let name = format!(
        "{}/{}:v1",
        env("KILN_TEST_REGISTRY"),
        unique("kiln/canonical")
    );
    let meta = ctx.path().join("meta.json");
    ok(user.kiln(&[
        "build",
        "--progress=quiet",
        "-o",
        &format!("type=image,push=true,name={name},name-canonical=true"),
        "--metadata-file",
        meta.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]));
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let digest = m["containerimage.digest"].as_str().unwrap();
    assert_eq!(
        m["image.name"],
        name.as_str(),
        "as buildx reports it: {m:#}"
    );
    let images = stdout(&ok(std::process::Command::new(env("KILN_TEST_CTR_28"))
        .args([
            "-a",
            &env("KILN_TEST_CONTAINERD28_ADDRESS"),
            "-n",
            "moby",
            "images",
            "ls",
            "-q",
        ])));
    let canonical = format!("{name}@{digest}");
    assert!(
        images.lines().any(|l| l == canonical),
        "{canonical} not in the Engine's images"
    );
    // The registry serves the pushed manifest by that digest.
    let repo = name.split_once('/').unwrap().1.rsplit_once(':').unwrap().0;
    let by_digest = registry_get(&format!("{repo}/manifests/{digest}"), ACCEPT);
    assert!(by_digest["mediaType"].is_string());
}

#[test]
fn push_by_digest_is_buildxs_error_on_the_docker_driver_engine28() {
    let user = User::new(Engine::Modern);
    let ctx = context();
    let name = format!("{}/{}", env("KILN_TEST_REGISTRY"), unique("kiln/bydigest"));
    let out = format!("type=image,push=true,name={name},push-by-digest=true");
    let msg = "push-by-digest is currently not implemented for docker driver, please create a new builder instance";
    let err = fails(user.kiln(&["build", "-o", &out, ctx.path().to_str().unwrap()]));
    assert!(err.contains(msg), "{err}");
    let bx = fails(user.buildx(&["build", "-o", &out, ctx.path().to_str().unwrap()]));
    assert!(bx.contains(msg), "{bx}");
}
