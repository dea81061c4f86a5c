//! `index.json` of an OCI image layout directory on the client, which BuildKit fills with blobs
//! through the session's content store (a `type=local` cache export, an `oci`/`docker` export
//! with `tar=false`) and whose index the client then updates, as BuildKit's Go client does with
//! its `ociindex` package: under `index.json.lock`, a descriptor goes in under each name or tag,
//! replacing what the same name or tag pointed at.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::registry::{Descriptor, Index};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const IMAGE_NAME: &str = "io.containerd.image.name";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// What an index entry is found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexName {
    /// Only an OCI reference name (`latest`), as caches are tagged.
    Tag(String),
    /// A full image name (`docker.io/library/app:1`), kept in containerd's annotation, with its
    /// tag as the OCI reference name.
    Name(String),
}

impl IndexName {
    /// The `io.containerd.image.name` and `org.opencontainers.image.ref.name` values.
    fn annotations(&self) -> (&str, String) {
        match self {
            IndexName::Tag(t) => ("", t.clone()),
            IndexName::Name(n) => (n, reference_object(n)),
        }
    }
}

/// containerd's "object" of a reference: what follows the repository (`1` of `app:1`,
/// `@sha256:...` of `app@sha256:...`), or the whole name when there is none.
fn reference_object(name: &str) -> String {
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let tail = &name[last..];
    match tail.find([':', '@']) {
        Some(i) if tail.as_bytes()[i] == b'@' => tail[i..].to_string(),
        Some(i) => tail[i + 1..].to_string(),
        None => name.to_string(),
    }
}

/// Puts `desc` into `dir/index.json` under every one of `names` (and writes `oci-layout`),
/// holding `index.json.lock` so concurrent buildx or kiln runs don't lose each other's entries;
/// both files are replaced by renaming a complete temporary file over them. With no names the
/// descriptor is added as it is. The index is read and written as Go's image-spec types are,
/// so the file reads the same whichever of kiln and buildx wrote it last.
pub fn put(dir: &Path, desc: &Descriptor, names: &[IndexName]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("index.json.lock");
    let lock = IndexLock::acquire(&lock_path)?;
    crate::store::write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index_path = dir.join("index.json");
    let mut index: Index = match std::fs::read(&index_path) {
        Ok(data) if !data.is_empty() => serde_json::from_slice::<Option<Index>>(&data)
            .with_context(|| format!("could not unmarshal {}", index_path.display()))?
            .unwrap_or_default(),
        Ok(_) => Index::default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
        Err(e) => {
            return Err(e).with_context(|| format!("could not read {}", index_path.display()))
        }
    };
    if index.schema_version == 0 {
        index.schema_version = 2;
    }
    if index.media_type.is_empty() {
        index.media_type = INDEX_MEDIA_TYPE.into();
    }
    if names.is_empty() {
        index.manifests.push(desc.clone());
    }
    for name in names {
        insert(&mut index, desc, name);
    }
    let data = serde_json::to_vec(&index).expect("an index serializes");
    crate::store::write_atomic(&index_path, &data)?;
    drop(lock);
    Ok(())
}

/// After an `oci`/`docker` export with `tar=false`: records the image BuildKit wrote into `dir`
/// under each name it reports (`image.name`), else under the tag `latest`, as BuildKit's client
/// does.
pub fn record_image(
    dir: &Path,
    exporter_response: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let Some(json) = super::exporter::reported_descriptor(exporter_response)? else {
        bail!("BuildKit reported no image descriptor for the export");
    };
    let desc: Descriptor =
        serde_json::from_slice(&json).context("reading the exported image's descriptor")?;
    let names: Vec<IndexName> = match exporter_response.get("image.name") {
        Some(n) if !n.is_empty() => n.split(',').map(|n| IndexName::Name(n.into())).collect(),
        _ => vec![IndexName::Tag("latest".into())],
    };
    put(dir, &desc, &names)
}

/// Adds `desc` to the index under `name`, dropping the entry the same name had before.
fn insert(index: &mut Index, desc: &Descriptor, name: &IndexName) {
    let (image_name, ref_name) = name.annotations();
    let mut desc = desc.clone();
    if !image_name.is_empty() {
        desc.annotations
            .insert(IMAGE_NAME.into(), image_name.to_string());
    }
    desc.annotations.insert(REF_NAME.into(), ref_name.clone());
    let annotation =
        |m: &Descriptor, key: &str| m.annotations.get(key).cloned().unwrap_or_default();
    index
        .manifests
        .retain(|m| annotation(m, REF_NAME) != ref_name || annotation(m, IMAGE_NAME) != image_name);
    index.manifests.push(desc);
}

/// `index.json.lock`, held exclusively; removed again on release, as BuildKit's client does.
struct IndexLock {
    file: File,
    path: PathBuf,
}

impl IndexLock {
    fn acquire(path: &Path) -> Result<IndexLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("could not lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "could not lock {}: another build is writing to this directory",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("could not lock {}", path.display()))
            }
        }
        Ok(IndexLock {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for IndexLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Digest;

    fn desc(n: u8) -> Descriptor {
        Descriptor::new(INDEX_MEDIA_TYPE, Digest::sha256_of(&[n]), 42)
    }

    fn entries(dir: &Path) -> Vec<(Digest, String, String)> {
        let index: Index =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        index
            .manifests
            .into_iter()
            .map(|m| {
                let a = |k: &str| m.annotations.get(k).cloned().unwrap_or_default();
                (m.digest.clone(), a(IMAGE_NAME), a(REF_NAME))
            })
            .collect()
    }

    #[test]
    fn names_carry_the_image_name_and_its_tag_and_replace_their_old_entry() {
        let dir = tempfile::tempdir().unwrap();
        let app1 = IndexName::Name("docker.io/library/app:1".into());
        put(dir.path(), &desc(1), std::slice::from_ref(&app1)).unwrap();
        put(dir.path(), &desc(2), &[IndexName::Tag("1".into())]).unwrap();
        put(dir.path(), &desc(3), &[app1]).unwrap();
        assert_eq!(
            entries(dir.path()),
            [
                (desc(2).digest, "".into(), "1".into()),
                (desc(3).digest, "docker.io/library/app:1".into(), "1".into()),
            ]
        );
        assert!(!dir.path().join("index.json.lock").exists());
        put(dir.path(), &desc(4), &[]).unwrap();
        assert_eq!(entries(dir.path()).len(), 3);
    }

    #[test]
    fn an_existing_index_is_read_as_go_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.json");
        // `null` is an empty index; fields come out in the image-spec's order.
        std::fs::write(&index, "null").unwrap();
        put(dir.path(), &desc(1), &[IndexName::Tag("t".into())]).unwrap();
        std::fs::write(
            &index,
            r#"{"annotations":{"k":"v"},"manifests":[],"schemaVersion":2}"#,
        )
        .unwrap();
        put(dir.path(), &desc(1), &[IndexName::Tag("t".into())]).unwrap();
        let text = std::fs::read_to_string(&index).unwrap();
        assert!(
            text.starts_with(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"#
            ),
            "{text}"
        );
        assert!(text.ends_with(r#"}],"annotations":{"k":"v"}}"#), "{text}");
        // A malformed index is an error, and is left as it was.
        std::fs::write(&index, r#"{"manifests":{}}"#).unwrap();
        let err = put(dir.path(), &desc(2), &[]).unwrap_err();
        assert!(err.to_string().starts_with("could not unmarshal"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&index).unwrap(),
            r#"{"manifests":{}}"#
        );
    }

    #[test]
    fn the_directory_is_made_when_the_first_index_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("new/layout");
        put(&layout, &desc(1), &[]).unwrap();
        assert!(layout.join("oci-layout").is_file());
    }

    #[test]
    fn reference_objects_as_containerd_reads_them() {
        assert_eq!(reference_object("docker.io/library/app:1"), "1");
        assert_eq!(reference_object("127.0.0.1:5000/app:v2"), "v2");
        assert_eq!(reference_object("r.io/app@sha256:ab"), "@sha256:ab");
        assert_eq!(reference_object("r.io/app:1@sha256:ab"), "1@sha256:ab");
        assert_eq!(reference_object("app"), "app");
    }

    #[test]
    fn an_index_held_by_another_writer_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let _held = IndexLock::acquire(&dir.path().join("index.json.lock")).unwrap();
        let err = put(dir.path(), &desc(1), &[]).unwrap_err();
        assert!(err.to_string().contains("another build"), "{err}");
    }
}
