//! `--metadata-file` carries the build's provenance as buildx 0.29.1 writes it: the same build
//! made by kiln and by the reference buildx on Engine 28 gives the same keys and the same
//! provenance (run-specific values such as invocation IDs and timestamps aside), for each
//! `BUILDX_METADATA_PROVENANCE` mode; Engine 20.10's BuildKit keeps no history, so neither tool
//! writes provenance there.

mod common;

use common::*;
use serde_json::Value;

const PROVENANCE: &str = "buildx.build.provenance";

/// A context with a base image, a build argument and a step, so materials and parameters say
/// something.
fn context() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-ctx-")
        .tempdir()
        .unwrap();
    write_tree(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM busybox:latest\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\n",
        )],
    );
    dir
}

/// Builds `ctx` with kiln and with buildx (same flags, same `BUILDX_METADATA_PROVENANCE`) and
/// returns both metadata files.
fn both_metadata(
    user: &User,
    ctx: &std::path::Path,
    mode: Option<&str>,
    extra: &[&str],
) -> (Value, Value) {
    let out = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (tool, mut cmd) in [
        ("kiln", user.kiln(&["build"])),
        ("buildx", user.buildx(&["build"])),
    ] {
        let meta = out.path().join(format!("{tool}.json"));
        match mode {
            Some(m) => cmd.env("BUILDX_METADATA_PROVENANCE", m),
            None => cmd.env_remove("BUILDX_METADATA_PROVENANCE"),
        };
        ok(cmd
            .args(["--progress=quiet", "--build-arg", "GREETING=hello"])
            .args(extra)
            .args([
                "--metadata-file",
                meta.to_str().unwrap(),
                ctx.to_str().unwrap(),
            ]));
        files.push(serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap());
    }
    let bx = files.pop().unwrap();
    (files.pop().unwrap(), bx)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

/// Compares two provenance predicates: the same keys at the top, the build's inputs exactly,
/// and (with `max`) the same shape of `buildConfig` and `metadata`.
fn assert_same_provenance(k: &Value, bx: &Value, what: &str) {
    assert_eq!(keys(k), keys(bx), "{what}: kiln {k:#}\nbuildx {bx:#}");
    for field in ["builder", "buildType", "materials"] {
        assert_eq!(k[field], bx[field], "{what}: {field}");
    }
    for field in ["configSource", "parameters", "environment"] {
        assert_eq!(
            k["invocation"][field], bx["invocation"][field],
            "{what}: invocation.{field}"
        );
    }
    assert_eq!(keys(&k["invocation"]), keys(&bx["invocation"]), "{what}");
    if bx.get("buildConfig").is_some() {
        assert_eq!(keys(&k["buildConfig"]), keys(&bx["buildConfig"]), "{what}");
        let steps = |v: &Value| v["buildConfig"]["llbDefinition"].as_array().unwrap().len();
        assert_eq!(steps(k), steps(bx), "{what}: llbDefinition steps");
    }
    if bx.get("metadata").is_some() {
        let (km, bm) = (&k["metadata"], &bx["metadata"]);
        assert_eq!(keys(km), keys(bm), "{what}: metadata");
        assert_eq!(km["completeness"], bm["completeness"], "{what}");
        assert_eq!(km["reproducible"], bm["reproducible"], "{what}");
        let bk = "https://mobyproject.org/buildkit@v1#metadata";
        assert_eq!(keys(&km[bk]), keys(&bm[bk]), "{what}: {bk}");
        assert!(km["buildInvocationID"].is_string(), "{what}");
    }
}

#[test]
fn metadata_provenance_matches_buildx_in_each_mode_engine28() {
    let user = User::new(Engine::Modern);
    let ctx = context();
    for mode in [None, Some("min"), Some("max"), Some("disabled")] {
        let what = format!("BUILDX_METADATA_PROVENANCE={mode:?}");
        let (k, bx) = both_metadata(&user, ctx.path(), mode, &[]);
        assert_eq!(keys(&k), keys(&bx), "{what}: kiln {k:#}\nbuildx {bx:#}");
        if mode == Some("disabled") {
            assert!(k.get(PROVENANCE).is_none(), "{what}: {k:#}");
            continue;
        }
        let (kp, bp) = (&k[PROVENANCE], &bx[PROVENANCE]);
        assert!(kp.is_object(), "{what}: provenance is decoded JSON: {k:#}");
        assert_same_provenance(kp, bp, &what);
        assert_eq!(kp["buildType"], "https://mobyproject.org/buildkit@v1");
        assert_eq!(
            kp["invocation"]["parameters"]["args"]["build-arg:GREETING"],
            "hello"
        );
        let full = mode == Some("max");
        assert_eq!(kp.get("buildConfig").is_some(), full, "{what}: {kp:#}");
        assert_eq!(kp.get("metadata").is_some(), full, "{what}: {kp:#}");
    }
}

#[test]
fn metadata_provenance_from_slsa_v1_history_is_written_as_v02_engine28() {
    // BUILDKIT_HISTORY_PROVENANCE_V1 makes BuildKit record SLSA v1; buildx converts it back.
    let user = User::new(Engine::Modern);
    let ctx = context();
    let (k, bx) = both_metadata(
        &user,
        ctx.path(),
        Some("max"),
        &["--build-arg", "BUILDKIT_HISTORY_PROVENANCE_V1=1"],
    );
    assert_eq!(keys(&k), keys(&bx));
    assert_same_provenance(&k[PROVENANCE], &bx[PROVENANCE], "SLSA v1 record");
    assert_eq!(
        k[PROVENANCE]["buildType"],
        "https://mobyproject.org/buildkit@v1"
    );
}

#[test]
fn metadata_provenance_per_platform_matches_buildx_engine28() {
    let user = User::new(Engine::Modern);
    let ctx = context();
    // Without an exporter the record holds one result per platform: one key each.
    let (k, bx) = both_metadata(
        &user,
        ctx.path(),
        None,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=cacheonly",
        ],
    );
    assert_eq!(keys(&k), keys(&bx), "kiln {k:#}\nbuildx {bx:#}");
    for p in ["linux/amd64", "linux/arm64"] {
        let key = format!("{PROVENANCE}/{p}");
        assert!(k[&key].is_object(), "{key}: {k:#}");
        assert_same_provenance(&k[&key], &bx[&key], &key);
        assert_eq!(
            k[&key]["invocation"]["environment"]["platform"],
            "linux/amd64"
        );
    }
    // With an exporter the record's single result holds the image, and buildx (reading that
    // result only) writes no provenance at all: kiln does the same.
    let (k, bx) = both_metadata(
        &user,
        ctx.path(),
        None,
        &["--platform", "linux/amd64,linux/arm64"],
    );
    assert_eq!(keys(&k), keys(&bx), "kiln {k:#}\nbuildx {bx:#}");
    assert!(!keys(&k).iter().any(|k| k.starts_with(PROVENANCE)), "{k:#}");
}

#[test]
fn metadata_has_no_provenance_on_engine20() {
    let user = User::new(Engine::Old);
    let ctx = context();
    let (k, bx) = both_metadata(&user, ctx.path(), None, &[]);
    assert_eq!(keys(&k), keys(&bx), "kiln {k:#}\nbuildx {bx:#}");
    assert!(k.get(PROVENANCE).is_none(), "{k:#}");
    assert!(k["buildx.build.ref"].is_string());
}
