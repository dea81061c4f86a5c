//! `index.json` of an OCI image layout directory on the client, which BuildKit fills with blobs
//! through the session's content store (a `type=local` cache export, an `oci`/`docker` export
//! with `tar=false`) and whose index the client then updates, as BuildKit's Go client does with
//! its `ociindex` package: under `index.json.lock`, a descriptor goes in under each name or tag,
//! replacing what the same name or tag pointed at.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

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
/// descriptor is added as it is.
pub fn put(dir: &Path, desc: &Value, names: &[IndexName]) -> Result<()> {
    let lock_path = dir.join("index.json.lock");
    let lock = IndexLock::acquire(&lock_path)?;
    crate::store::write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index_path = dir.join("index.json");
    let mut index = match std::fs::read(&index_path) {
        Ok(data) if !data.is_empty() => serde_json::from_slice(&data)
            .with_context(|| format!("could not unmarshal {}", index_path.display()))?,
        Ok(_) => Value::Object(Map::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Map::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("could not read {}", index_path.display()))
        }
    };
    if names.is_empty() {
        insert(&mut index, desc, None)?;
    }
    for name in names {
        insert(&mut index, desc, Some(name))?;
    }
    let data = serde_json::to_vec(&index).expect("JSON values serialize");
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
    let desc: Value =
        serde_json::from_slice(&json).context("reading the exported image's descriptor")?;
    let names: Vec<IndexName> = match exporter_response.get("image.name") {
        Some(n) if !n.is_empty() => n.split(',').map(|n| IndexName::Name(n.into())).collect(),
        _ => vec![IndexName::Tag("latest".into())],
    };
    put(dir, &desc, &names)
}

/// Adds `desc` to the index under `name`, dropping the entry the same name had before, and
/// fills the index's schema version and media type when missing.
fn insert(index: &mut Value, desc: &Value, name: Option<&IndexName>) -> Result<()> {
    let Value::Object(obj) = index else {
        bail!("index.json is not a JSON object");
    };
    if obj
        .get("schemaVersion")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0
    {
        obj.insert("schemaVersion".into(), 2.into());
    }
    if obj
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        obj.insert("mediaType".into(), INDEX_MEDIA_TYPE.into());
    }
    let mut desc = desc.clone();
    let Value::Object(d) = &mut desc else {
        bail!("the descriptor to record is not a JSON object");
    };
    let mut manifests: Vec<Value> = match obj.remove("manifests") {
        Some(Value::Array(m)) => m,
        _ => Vec::new(),
    };
    if let Some(name) = name {
        let (image_name, ref_name) = name.annotations();
        let annotations = d
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if !image_name.is_empty() {
            annotations[IMAGE_NAME] = image_name.into();
        }
        annotations[REF_NAME] = ref_name.clone().into();
        let annotation = |m: &Value, key: &str| {
            m.get("annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        manifests.retain(|m| {
            annotation(m, REF_NAME) != ref_name || annotation(m, IMAGE_NAME) != image_name
        });
    }
    manifests.push(desc);
    // Go writes a map's keys sorted: so does this, and index.json reads the same whichever
    // client wrote it last.
    for m in &mut manifests {
        if let Some(Value::Object(a)) = m.get_mut("annotations") {
            let mut sorted: Vec<(String, Value)> = std::mem::take(a).into_iter().collect();
            sorted.sort_by(|x, y| x.0.cmp(&y.0));
            a.extend(sorted);
        }
    }
    obj.insert("manifests".into(), Value::Array(manifests));
    Ok(())
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

    const DESC: &str = r#"{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:aaaa","size":42}"#;

    fn desc(digest: &str) -> Value {
        serde_json::from_str(&DESC.replace("aaaa", digest)).unwrap()
    }

    fn entries(dir: &Path) -> Vec<(String, String, String)> {
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let a = |k: &str| m["annotations"][k].as_str().unwrap_or("").to_string();
                (
                    m["digest"].as_str().unwrap().to_string(),
                    a(IMAGE_NAME),
                    a(REF_NAME),
                )
            })
            .collect()
    }

    #[test]
    fn names_carry_the_image_name_and_its_tag_and_replace_their_old_entry() {
        let dir = tempfile::tempdir().unwrap();
        let app1 = IndexName::Name("docker.io/library/app:1".into());
        put(dir.path(), &desc("aaaa"), std::slice::from_ref(&app1)).unwrap();
        put(dir.path(), &desc("bbbb"), &[IndexName::Tag("1".into())]).unwrap();
        put(dir.path(), &desc("cccc"), &[app1]).unwrap();
        assert_eq!(
            entries(dir.path()),
            [
                ("sha256:bbbb".into(), "".into(), "1".into()),
                (
                    "sha256:cccc".into(),
                    "docker.io/library/app:1".into(),
                    "1".into()
                ),
            ]
        );
        assert!(!dir.path().join("index.json.lock").exists());
        put(dir.path(), &desc("dddd"), &[]).unwrap();
        assert_eq!(entries(dir.path()).len(), 3);
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
        let err = put(dir.path(), &desc("aaaa"), &[]).unwrap_err();
        assert!(err.to_string().contains("another build"), "{err}");
    }
}
