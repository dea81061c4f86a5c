//! `--sbom` end to end without Docker Hub: kiln builds and pushes a tiny SBOM generator (busybox
//! and a shell script following BuildKit's scanner protocol) to the test registry, then builds an
//! image with `--sbom generator=...` and finds the generator's SPDX document, which names a file
//! only the build result holds, in the attestation manifest of the OCI export. Engine 20.10
//! refuses attestations clearly.

mod common;

use common::*;

/// The scanner: reads the marker file from the scanned rootfs (`BUILDKIT_SCAN_SOURCE`) and
/// writes one SPDX in-toto statement listing it to
/// `$BUILDKIT_SCAN_DESTINATION/$(basename $BUILDKIT_SCAN_SOURCE).spdx.json`.
const SCAN_SH: &str = r#"#!/bin/sh
set -eu
: "${BUILDKIT_SCAN_SOURCE:?}" "${BUILDKIT_SCAN_DESTINATION:?}"
f="$BUILDKIT_SCAN_SOURCE/kiln-marker"
if [ ! -f "$f" ]; then
  echo "no kiln-marker in $BUILDKIT_SCAN_SOURCE" >&2
  exit 1
fi
marker=$(cat "$f")
sum=$(sha1sum "$f" | cut -d' ' -f1)
out="$BUILDKIT_SCAN_DESTINATION/$(basename "$BUILDKIT_SCAN_SOURCE").spdx.json"
cat > "$out" <<EOF
{
  "_type": "https://in-toto.io/Statement/v0.1",
  "predicateType": "https://spdx.dev/Document",
  "subject": [],
  "predicate": {
    "spdxVersion": "SPDX-2.3",
    "dataLicense": "CC0-1.0",
    "SPDXID": "SPDXRef-DOCUMENT",
    "name": "kiln-scan-$marker",
    "documentNamespace": "https://kiln.invalid/sbom/$marker",
    "creationInfo": {
      "created": "2024-01-01T00:00:00Z",
      "creators": ["Tool: kiln-test-scanner"]
    },
    "files": [
      {
        "fileName": "/kiln-marker",
        "SPDXID": "SPDXRef-File-kiln-marker",
        "checksums": [{"algorithm": "SHA1", "checksumValue": "$sum"}]
      }
    ]
  }
}
EOF
"#;

/// Builds the generator image with kiln and pushes it to the test registry; returns its name.
fn push_generator(user: &User) -> String {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY scan.sh /scan.sh\nENTRYPOINT [\"/bin/sh\", \"/scan.sh\"]\n",
            ),
            ("scan.sh", SCAN_SH),
        ],
    );
    let image = format!(
        "{}/{}:v1",
        env("KILN_TEST_REGISTRY"),
        unique("kiln/sbom-generator")
    );
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--push",
        "-t",
        &image,
        ctx.path().to_str().unwrap(),
    ]));
    image
}

#[test]
fn sbom_from_a_custom_generator_in_the_oci_export() {
    let user = User::new(Engine::Modern);
    let generator = push_generator(&user);

    let marker = unique("kiln-sbom-marker");
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {marker} > /kiln-marker\n"),
        )],
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("img.tar");
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--sbom",
        &format!("generator={generator}"),
        "-o",
        &format!("type=oci,dest={}", tar.display()),
        ctx.path().to_str().unwrap(),
    ]));
    let oci = OciLayout::unpack(&tar, out.path());
    let index = oci.top();
    let manifests = index["manifests"].as_array().unwrap();
    let image = manifests
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"].is_null())
        .expect("an image manifest");
    let att_desc = manifests
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .unwrap_or_else(|| panic!("no attestation manifest in {index:#}"));
    assert_eq!(
        att_desc["annotations"]["vnd.docker.reference.digest"], image["digest"],
        "{index:#}"
    );
    let att = oci.json(att_desc["digest"].as_str().unwrap());
    let spdx = att["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["annotations"]["in-toto.io/predicate-type"] == "https://spdx.dev/Document")
        .unwrap_or_else(|| panic!("no SPDX layer in {att:#}"));

    let statement: serde_json::Value =
        serde_json::from_slice(&oci.blob(spdx["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        statement["predicateType"], "https://spdx.dev/Document",
        "{statement:#}"
    );
    // The generator saw the build result: the document is named after the marker file's content.
    let doc = &statement["predicate"];
    assert_eq!(doc["name"], format!("kiln-scan-{marker}"), "{statement:#}");
    // And parsed the SPDX document: the file the generator listed is attributed to its layer.
    let file = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == "/kiln-marker")
        .unwrap_or_else(|| panic!("/kiln-marker not listed in {statement:#}"));
    assert!(
        file["comment"]
            .as_str()
            .is_some_and(|c| c.starts_with("layerID: sha256:")),
        "{statement:#}"
    );
}

#[test]
fn old_engine_refuses_sbom() {
    let user = User::new(Engine::Old);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let p = ctx.path().to_str().unwrap();
    for flags in [&["--sbom=true"][..], &["--attest", "type=sbom"][..]] {
        let mut cmd = user.kiln(&["build", "--progress=plain"]);
        cmd.args(flags).arg(p);
        let err = fails(cmd);
        assert!(
            err.starts_with(
                "ERROR: failed to build: Attestation is not supported for the docker driver."
            ),
            "{flags:?}: {err}"
        );
        // Refused before anything reaches the Engine: no build step ran.
        assert!(!err.contains("#1 "), "{flags:?}: {err}");
    }
}
