//! Attestations and annotations reach the exporter: checked in the OCI layout kiln exports, and
//! refused clearly where the node's image store can't hold them (Engine 20.10).

mod common;

use common::*;

#[test]
fn provenance_and_annotations_in_the_oci_export() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[("Dockerfile", "FROM busybox\nRUN echo a > /a\n")],
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("img.tar");
    ok(user.kiln(&[
        "build",
        "--progress=quiet",
        "--provenance",
        "mode=max",
        "--annotation",
        "index,manifest:org.example.both=yes",
        "--annotation",
        "org.example.plain=p",
        "-o",
        &format!("type=oci,dest={}", tar.display()),
        ctx.path().to_str().unwrap(),
    ]));
    let oci = OciLayout::unpack(&tar, out.path());
    let index = oci.top();
    assert_eq!(index["annotations"]["org.example.both"], "yes", "{index:#}");
    let manifests = index["manifests"].as_array().unwrap();
    let image = manifests
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"].is_null())
        .unwrap();
    let image = oci.json(image["digest"].as_str().unwrap());
    assert_eq!(image["annotations"]["org.example.both"], "yes");
    assert_eq!(image["annotations"]["org.example.plain"], "p");
    let att = manifests
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .expect("an attestation manifest");
    let att = oci.json(att["digest"].as_str().unwrap());
    let predicate = &att["layers"][0]["annotations"]["in-toto.io/predicate-type"];
    assert!(
        predicate
            .as_str()
            .unwrap()
            .starts_with("https://slsa.dev/provenance/"),
        "{att:#}"
    );
    // mode=max records the build's steps, which minimal provenance leaves out.
    let statement =
        String::from_utf8(oci.blob(att["layers"][0]["digest"].as_str().unwrap())).unwrap();
    assert!(
        statement.contains("buildConfig"),
        "mode=max provenance lacks buildConfig"
    );
}

#[test]
fn provenance_can_be_turned_off() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[("Dockerfile", "FROM busybox\nRUN echo b > /b\n")],
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("img.tar");
    ok(user.kiln(&[
        "build",
        "--progress=quiet",
        "--provenance=false",
        "-o",
        &format!("type=oci,dest={}", tar.display()),
        ctx.path().to_str().unwrap(),
    ]));
    let listing = stdout(&ok(std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("index.json")));
    let layout: serde_json::Value = serde_json::from_str(&listing).unwrap();
    // Without attestations the export is a single image manifest, not an index.
    assert_eq!(
        layout["manifests"][0]["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{layout:#}"
    );
}

#[test]
fn old_engine_refuses_attestations_and_index_annotations() {
    let user = User::new(Engine::Old);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let p = ctx.path().to_str().unwrap();
    let err = fails(user.kiln(&["build", "--provenance", "mode=max", p]));
    assert!(
        err.contains("Attestation is not supported for the docker driver"),
        "{err}"
    );
    let err = fails(user.kiln(&["build", "--annotation", "index:a=b", p]));
    assert!(
        err.contains("index annotations not supported for single platform export"),
        "{err}"
    );
    // A plain manifest annotation is fine there.
    ok(user.kiln(&["build", "-q", "--annotation", "a=b", p]));
}

#[test]
fn malformed_attest_and_annotation_flags() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let p = ctx.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--attest", "mode=max"],
            "attestation type not specified",
        ),
        (vec!["--annotation", "novalue"], "expected key=value"),
        (vec!["--annotation", "bogus:k=v"], "unknown annotation type"),
    ] {
        let mut cmd = user.kiln(&["build"]);
        cmd.args(&args).arg(p);
        let err = fails(cmd);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
