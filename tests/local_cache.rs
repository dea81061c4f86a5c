//! `type=local` caches: `--cache-to type=local,dest=DIR` leaves an OCI layout in DIR whose
//! `index.json` names the cache manifest; after the engine's own records of the build are pruned,
//! `--cache-from type=local,src=DIR` brings the steps back CACHED. Importing from a directory
//! that does not exist is a warning, as with buildx; Engine 20.10 has no cache export.

mod common;

use std::path::Path;

use common::*;

fn cached_steps(stderr: &str, marker: &str) -> bool {
    let mut lines = stderr.lines().skip_while(|l| !l.contains(marker));
    lines.next().is_some() && lines.take(3).any(|l| l.ends_with("CACHED"))
}

fn read_json(path: &Path) -> serde_json::Value {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    let (alg, hex) = digest.split_once(':').expect("a digest");
    layout.join("blobs").join(alg).join(hex)
}

#[test]
fn local_cache_round_trip() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("cache");
    let marker = unique("local-cache-step");
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {marker} > /m\nRUN echo second > /s\n"),
        )],
    );
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--cache-to",
        &format!("type=local,dest={},mode=max", dir.display()),
        ctx.path().to_str().unwrap(),
    ]));

    // A valid OCI layout: the marker file, an index naming the cache manifest under `latest`,
    // and every blob the manifest names, intact.
    assert_eq!(
        read_json(&dir.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&dir.join("index.json"));
    assert_eq!(index["schemaVersion"], 2, "{index}");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    let desc = &manifests[0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"], "latest",
        "{index}"
    );
    let manifest_digest = desc["digest"].as_str().unwrap();
    let manifest_path = blob(&dir, manifest_digest);
    let manifest_bytes = std::fs::read(&manifest_path).unwrap();
    assert_eq!(manifest_bytes.len() as u64, desc["size"].as_u64().unwrap());
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let mut named: Vec<serde_json::Value> = manifest["layers"]
        .as_array()
        .or(manifest["manifests"].as_array())
        .cloned()
        .unwrap_or_default();
    if manifest["config"].is_object() {
        named.push(manifest["config"].clone());
    }
    assert!(named.len() >= 2, "{manifest}");
    for d in &named {
        let digest = d["digest"].as_str().unwrap();
        let data = std::fs::read(blob(&dir, digest)).unwrap_or_else(|e| panic!("{digest}: {e}"));
        use sha2::Digest as _;
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data))),
            digest
        );
    }
    // Nothing half-written is left behind.
    let ingest = dir.join("ingest");
    assert!(
        !ingest.exists() || std::fs::read_dir(&ingest).unwrap().next().is_none(),
        "ingest/ not empty"
    );
    assert!(!dir.join("index.json.lock").exists());

    // A fresh engine state for this build's steps (see tests/cache.rs): CACHED below can only
    // come from the local cache.
    ok(user.kiln(&[
        "prune",
        "-af",
        "--filter",
        &format!("description~={marker}"),
    ]));
    let out = ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--cache-from",
        &format!("type=local,src={}", dir.display()),
        ctx.path().to_str().unwrap(),
    ]));
    let err = stderr(&out);
    assert!(err.contains("importing cache manifest"), "{err}");
    assert!(cached_steps(&err, &format!("RUN echo {marker}")), "{err}");
}

#[test]
fn missing_local_cache_is_a_warning() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let missing = ctx.path().join("no-such-cache");
    let out = ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--cache-from",
        &format!("type=local,src={}", missing.display()),
        ctx.path().to_str().unwrap(),
    ]));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "WARNING: local cache import at {} not found",
            missing.display()
        )),
        "{err}"
    );
    // Importing never creates or writes anything.
    assert!(!missing.exists());
}

#[test]
fn old_engine_refuses_local_cache_export() {
    let user = User::new(Engine::Old);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let dest = ctx.path().join("cache");
    let err = fails(user.kiln(&[
        "build",
        "--cache-to",
        &format!("type=local,dest={}", dest.display()),
        ctx.path().to_str().unwrap(),
    ]));
    assert!(
        err.contains("Cache export is not supported for the docker driver"),
        "{err}"
    );
    assert!(!dest.exists());
}
