//! `type=local` build caches: a cache exported into (`dest=DIR`) or imported from (`src=DIR`)
//! an OCI layout directory on the client, handled as BuildKit's Go client handles them.
//!
//! BuildKit moves the blobs itself, through the session's content store under the store id
//! `local:<dir>` ([`crate::buildkit::session`]). This module decides which directories the
//! session serves and whether they take writes, resolves an import's tag (default `latest`) to
//! its cache manifest digest before the solve, and records the exported cache manifest in the
//! directory's `index.json` after it. It never talks to BuildKit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1::{CacheOptions, CacheOptionsEntry};
use serde_json::Value;

use super::cache::CacheSpec;
use super::layout_index::{self, IndexName, IMAGE_NAME, REF_NAME};
use crate::buildkit::session::LayoutStore;

/// The exporter response key holding the exported cache manifest's descriptor (JSON).
const MANIFEST_DESC_KEY: &str = "cache.manifest";

fn is_local(spec: &CacheSpec) -> bool {
    spec.kind == "local"
}

/// The tag an entry reads or writes in `index.json`; an explicit empty `tag=` stays empty, as
/// BuildKit's client keeps it.
fn tag_of(spec: &CacheSpec) -> &str {
    spec.attrs.get("tag").map_or("latest", String::as_str)
}

/// Creates the directories local cache exports write into.
pub fn create_export_dirs(exports: &[CacheSpec]) -> Result<()> {
    for spec in exports.iter().filter(|s| is_local(s)) {
        let Some(dir) = spec.attrs.get("dest").filter(|d| !d.is_empty()) else {
            bail!("local cache exporter requires dest");
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating cache directory {dir}"))?;
    }
    Ok(())
}

/// The imports the solve asks for: a local import gets the `digest` its tag names in the
/// directory's `index.json`; one whose directory or index can't be read is left out with a
/// warning, as buildx does (a first build has no cache to import yet).
pub fn resolve_imports(imports: &[CacheSpec]) -> Result<Vec<CacheSpec>> {
    let mut out = Vec::with_capacity(imports.len());
    for spec in imports {
        if !is_local(spec) || spec.attrs.get("digest").is_some_and(|d| !d.is_empty()) {
            out.push(spec.clone());
            continue;
        }
        let Some(src) = spec.attrs.get("src").filter(|d| !d.is_empty()) else {
            bail!("local cache importer requires src");
        };
        let index = match read_index(Path::new(src)) {
            Ok(index) => index,
            Err(e) => {
                eprintln!("WARNING: local cache import at {src} not found due to err: {e}");
                continue;
            }
        };
        let Some(digest) = digest_for_tag(&index, tag_of(spec)) else {
            bail!("local cache importer requires either explicit digest, \"latest\" tag or custom tag on index.json");
        };
        let mut spec = spec.clone();
        spec.attrs.insert("digest".into(), digest);
        out.push(spec);
    }
    Ok(out)
}

/// The content stores the session serves for the solve's local caches, by store id: export
/// directories take writes, import-only directories are read.
pub fn session_stores(cache: &CacheOptions) -> HashMap<String, LayoutStore> {
    let mut stores = HashMap::new();
    let entries =
        (cache.exports.iter().map(|e| (e, true))).chain(cache.imports.iter().map(|e| (e, false)));
    for (entry, writable) in entries {
        let key = if writable { "dest" } else { "src" };
        let Some(dir) = local_dir(entry, key) else {
            continue;
        };
        stores
            .entry(format!("local:{dir}"))
            .and_modify(|s: &mut LayoutStore| s.writable |= writable)
            .or_insert_with(|| LayoutStore {
                dir: PathBuf::from(dir),
                writable,
            });
    }
    stores
}

/// After a successful solve: records the cache manifest BuildKit reports in each local export
/// directory's `index.json`, under the entry's tag (default `latest`), replacing the manifest
/// that tag named before.
pub fn update_indexes(
    cache: &CacheOptions,
    exporter_response: &BTreeMap<String, String>,
) -> Result<()> {
    let Some(desc) = exporter_response
        .get(MANIFEST_DESC_KEY)
        .filter(|d| !d.is_empty())
    else {
        return Ok(());
    };
    let desc: crate::registry::Descriptor = serde_json::from_str(desc)
        .with_context(|| format!("BuildKit reported an invalid cache manifest: {desc}"))?;
    for entry in &cache.exports {
        let Some(dir) = local_dir(entry, "dest").map(Path::new) else {
            continue;
        };
        let tag = entry.attrs.get("tag").map_or("latest", String::as_str);
        layout_index::put(dir, &desc, &[IndexName::Tag(tag.to_string())])
            .with_context(|| format!("updating the cache index in {}", dir.display()))?;
    }
    Ok(())
}

/// The directory a solve's `type=local` cache entry names in `key` (`src` or `dest`).
fn local_dir<'a>(entry: &'a CacheOptionsEntry, key: &str) -> Option<&'a str> {
    (entry.r#type == "local")
        .then(|| entry.attrs.get(key).map(String::as_str))
        .flatten()
        .filter(|d| !d.is_empty())
}

/// Reads `index.json` without locking or writing anything: an import directory may be
/// read-only.
fn read_index(dir: &Path) -> Result<Value> {
    let path = dir.join("index.json");
    let data = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "could not read {}: open {}: {}",
            path.display(),
            path.display(),
            io_reason(&e)
        )
    })?;
    serde_json::from_slice(&data).with_context(|| format!("could not unmarshal {}", path.display()))
}

/// An I/O error worded as Go words it (`no such file or directory`), without Rust's suffix.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The digest of the manifest `tag` names: the containerd image name first, then the OCI ref
/// name, as BuildKit's `ociindex` looks them up.
fn digest_for_tag(index: &Value, tag: &str) -> Option<String> {
    let manifests = index.get("manifests")?.as_array()?;
    let named = |key: &str| {
        manifests.iter().find(|m| {
            m.get("annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                == Some(tag)
        })
    };
    named(IMAGE_NAME)
        .or_else(|| named(REF_NAME))
        .and_then(|m| m.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flag: &str) -> CacheSpec {
        CacheSpec::parse_flag(flag).unwrap().remove(0)
    }

    const DESC: &str = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":42}"#;

    /// The solve's cache options for these flags, as `plan_cache` builds them.
    fn options(exports: &[&str], imports: &[&str]) -> CacheOptions {
        let entry = |f: &&str| {
            let s = spec(f);
            CacheOptionsEntry {
                r#type: s.kind,
                attrs: s.attrs.into_iter().collect(),
            }
        };
        CacheOptions {
            exports: exports.iter().map(entry).collect(),
            imports: imports.iter().map(entry).collect(),
            ..Default::default()
        }
    }

    /// A sha256 digest of 64 copies of `hex`.
    fn sha(hex: &str) -> String {
        format!("sha256:{}", hex.repeat(64))
    }

    fn response(desc: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(MANIFEST_DESC_KEY.to_string(), desc.to_string())])
    }

    #[test]
    fn export_writes_a_layout_and_retags() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let flag = format!("type=local,dest={d},mode=max");
        create_export_dirs(&[spec(&flag)]).unwrap();
        let exports = options(&[&flag], &[]);
        update_indexes(&exports, &response(DESC)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("index.json")).unwrap(),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":42,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}"#
        );
        assert!(!dir.path().join("index.json.lock").exists());

        // A second export under the same tag replaces the first; another tag is kept beside it.
        let other = options(&[&format!("type=local,dest={d},tag=v2")], &[]);
        update_indexes(&other, &response(&DESC.replace("aaaa", "cccc"))).unwrap();
        update_indexes(&exports, &response(&DESC.replace("aaaa", "bbbb"))).unwrap();
        let index = read_index(dir.path()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(digest_for_tag(&index, "latest").unwrap(), sha("b"));
        assert_eq!(digest_for_tag(&index, "v2").unwrap(), sha("c"));

        let resolved = resolve_imports(&[spec(&format!("type=local,src={d},tag=v2"))]).unwrap();
        assert_eq!(resolved[0].attrs["digest"], sha("c"));
    }

    #[test]
    fn no_cache_manifest_leaves_the_directory_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let exports = options(&[&format!("type=local,dest={d}")], &[]);
        update_indexes(&exports, &BTreeMap::new()).unwrap();
        assert!(!dir.path().join("index.json").exists());
    }

    #[test]
    fn imports_resolve_tags_or_drop_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let imports = [
            spec(&format!("type=local,src={}", missing.display())),
            spec("type=registry,ref=r/x:cache"),
            spec("type=local,src=/nowhere,digest=sha256:dddd"),
        ];
        let resolved = resolve_imports(&imports).unwrap();
        assert_eq!(resolved.len(), 2);
        assert_eq!(resolved[0].kind, "registry");
        assert_eq!(resolved[1].attrs["digest"], "sha256:dddd");
        // Reading never writes: no lock file, no directory created.
        assert!(!missing.exists());

        // An index without the tag is an error, as in BuildKit's client.
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        let d = dir.path().to_str().unwrap();
        let err = resolve_imports(&[spec(&format!("type=local,src={d}"))]).unwrap_err();
        assert!(err.to_string().contains("requires either explicit digest"));
    }

    #[test]
    fn image_name_wins_over_ref_name() {
        let index: Value = serde_json::from_str(
            r#"{"manifests":[
                {"digest":"sha256:1","annotations":{"org.opencontainers.image.ref.name":"t"}},
                {"digest":"sha256:2","annotations":{"io.containerd.image.name":"t"}}]}"#,
        )
        .unwrap();
        assert_eq!(digest_for_tag(&index, "t").unwrap(), "sha256:2");
        assert!(digest_for_tag(&index, "u").is_none());
    }

    #[test]
    fn stores_are_writable_where_exported() {
        let stores = session_stores(&options(
            &["type=local,dest=/c/out", "type=registry,ref=r/x"],
            &["type=local,src=/c/in", "type=local,src=/c/out"],
        ));
        assert_eq!(stores.len(), 2);
        assert!(stores["local:/c/out"].writable);
        assert!(!stores["local:/c/in"].writable);
        assert_eq!(stores["local:/c/in"].dir, PathBuf::from("/c/in"));
    }
}
