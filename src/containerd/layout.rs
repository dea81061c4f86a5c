//! OCI image layout tarballs (what BuildKit's `oci` and `docker` exporters write). Reading works
//! in place: one pass over the tar headers finds where every file's bytes are, then blobs are
//! read straight from the file, so no layer is ever held in memory. Writing ([`LayoutWriter`])
//! copies blobs from other layouts the same way, for merging the parts of a multi-node build.
//!
//! Owns the tar format (ustar, PAX and GNU long names) and the layout's JSON (index.json,
//! indexes, manifests). Nothing here talks to a daemon.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

/// The largest index or manifest kiln reads into memory; real ones are a few KiB.
const MAX_JSON: u64 = 8 * 1024 * 1024;

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// An OCI content descriptor, as the layout's JSON spells it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OciDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl OciDescriptor {
    fn is_index(&self) -> bool {
        self.media_type == MEDIA_OCI_INDEX || self.media_type == MEDIA_DOCKER_LIST
    }

    fn is_manifest(&self) -> bool {
        self.media_type == MEDIA_OCI_MANIFEST || self.media_type == MEDIA_DOCKER_MANIFEST
    }
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct ManifestJson {
    config: OciDescriptor,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

/// One blob to put into a content store, with the garbage-collection labels that tie its
/// children to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub labels: HashMap<String, String>,
}

/// Where one file's bytes sit inside the tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    size: u64,
}

/// An OCI layout tarball on disk, its files located.
#[derive(Debug)]
pub struct LayoutTar {
    path: PathBuf,
    files: HashMap<String, Span>,
}

impl LayoutTar {
    /// Reads the tar headers of `path` (skipping over file contents).
    pub fn open(path: &Path) -> Result<LayoutTar> {
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let files = index_tar(&mut f).with_context(|| format!("reading {}", path.display()))?;
        Ok(LayoutTar {
            path: path.to_path_buf(),
            files,
        })
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let span = self
            .files
            .get(name)
            .with_context(|| format!("{} has no {name}", self.path.display()))?;
        if span.size > MAX_JSON {
            bail!("{name} in {} is too large to be JSON", self.path.display());
        }
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(span.offset))?;
        let mut buf = vec![0u8; span.size as usize];
        f.read_exact(&mut buf)
            .with_context(|| format!("reading {name} from {}", self.path.display()))?;
        Ok(buf)
    }

    fn blob_name(digest: &str) -> Result<String> {
        let (alg, hex) = digest
            .split_once(':')
            .with_context(|| format!("invalid digest {digest:?}"))?;
        if alg.is_empty()
            || hex.is_empty()
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
            || !alg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'+')
        {
            bail!("invalid digest {digest:?}");
        }
        Ok(format!("blobs/{alg}/{hex}"))
    }

    /// The names of the files in the tarball.
    #[cfg(test)]
    pub(crate) fn file_names(&self) -> Vec<&str> {
        self.files.keys().map(String::as_str).collect()
    }

    /// A blob small enough to be JSON: an index, a manifest or a config.
    pub fn small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.read_small(&Self::blob_name(digest)?)
    }

    /// The top descriptors' entries of `index.json` as written, every field kept.
    pub fn index_entries(&self) -> Result<Vec<serde_json::Value>> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            manifests: Vec<serde_json::Value>,
        }
        Ok(self.json::<Raw>("index.json")?.manifests)
    }

    fn span_of(&self, digest: &str) -> Result<Span> {
        let name = Self::blob_name(digest)?;
        self.files.get(&name).copied().with_context(|| {
            format!(
                "{} lacks blob {digest}, which the image refers to",
                self.path.display()
            )
        })
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T> {
        let data = self.read_small(name)?;
        serde_json::from_slice(&data).with_context(|| format!("parsing {name}"))
    }

    /// The descriptors `index.json` lists, names in their annotations.
    pub fn top_descriptors(&self) -> Result<Vec<OciDescriptor>> {
        let index: IndexJson = self.json("index.json")?;
        if index.manifests.is_empty() {
            bail!("index.json in {} lists no image", self.path.display());
        }
        Ok(index.manifests)
    }

    /// Every blob reachable from `tops`, each once, children before the blobs that refer to
    /// them, parents labelled as containerd labels them.
    pub fn blobs(&self, tops: &[OciDescriptor]) -> Result<Vec<Blob>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for d in tops {
            self.walk(d, &mut seen, &mut out)?;
        }
        Ok(out)
    }

    fn walk(
        &self,
        d: &OciDescriptor,
        seen: &mut HashSet<String>,
        out: &mut Vec<Blob>,
    ) -> Result<()> {
        if !seen.insert(d.digest.clone()) {
            return Ok(());
        }
        let mut labels = HashMap::new();
        if d.is_index() {
            let index: IndexJson = self.json(&Self::blob_name(&d.digest)?)?;
            for (i, m) in index.manifests.iter().enumerate() {
                labels.insert(
                    format!("containerd.io/gc.ref.content.m.{i}"),
                    m.digest.clone(),
                );
                self.walk(m, seen, out)?;
            }
        } else if d.is_manifest() {
            let m: ManifestJson = self.json(&Self::blob_name(&d.digest)?)?;
            labels.insert(
                "containerd.io/gc.ref.content.config".into(),
                m.config.digest.clone(),
            );
            self.walk(&m.config, seen, out)?;
            for (i, l) in m.layers.iter().enumerate() {
                labels.insert(
                    format!("containerd.io/gc.ref.content.l.{i}"),
                    l.digest.clone(),
                );
                self.walk(l, seen, out)?;
            }
        }
        out.push(Blob {
            digest: d.digest.clone(),
            size: d.size,
            labels,
        });
        Ok(())
    }

    /// The bytes of blob `digest`, read from the tarball as they are consumed.
    pub async fn blob_reader(&self, digest: &str) -> Result<impl AsyncRead + Unpin + use<>> {
        let span = self.span_of(digest)?;
        let mut f = tokio::fs::File::open(&self.path).await?;
        f.seek(SeekFrom::Start(span.offset)).await?;
        Ok(f.take(span.size))
    }
}

/// Writes an OCI image layout tarball: `oci-layout` first, blobs as they are added (each once),
/// `index.json` last, into a temporary file the caller owns or a stream (nothing is renamed
/// here).
pub struct LayoutWriter<W: Write> {
    out: W,
    /// What errors call the tarball.
    name: String,
    blobs: HashSet<String>,
}

impl<W: Write> LayoutWriter<W> {
    /// A layout written to `out`; `name` is what errors call it.
    pub fn new(out: W, name: &str) -> Result<Self> {
        let mut w = LayoutWriter {
            out,
            name: name.to_string(),
            blobs: HashSet::new(),
        };
        w.entry("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        for dir in ["blobs/", "blobs/sha256/"] {
            w.write(&tar_header(dir, 0, b'5')?)?;
        }
        Ok(w)
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .with_context(|| format!("writing {}", self.name))
    }

    /// Pads the entry that ended with `size` bytes to the next 512-byte block.
    fn pad(&mut self, size: u64) -> Result<()> {
        let rest = (512 - size % 512) % 512;
        self.write(&[0u8; 512][..rest as usize])
    }

    fn entry(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.write(&tar_header(name, data.len() as u64, b'0')?)?;
        self.write(data)?;
        self.pad(data.len() as u64)
    }

    /// Adds a blob held in memory (a new index); a digest already added is skipped.
    pub fn add_blob(&mut self, digest: &str, data: &[u8]) -> Result<()> {
        if self.blobs.insert(digest.to_string()) {
            self.entry(&LayoutTar::blob_name(digest)?, data)?;
        }
        Ok(())
    }

    /// Copies blob `digest` from another layout tarball without holding it in memory; a digest
    /// already added is skipped.
    pub fn copy_blob(&mut self, from: &LayoutTar, digest: &str) -> Result<()> {
        if self.blobs.contains(digest) {
            return Ok(());
        }
        let span = from.span_of(digest)?;
        let mut src = std::fs::File::open(&from.path)
            .with_context(|| format!("opening {}", from.path.display()))?;
        src.seek(SeekFrom::Start(span.offset))?;
        self.write(&tar_header(
            &LayoutTar::blob_name(digest)?,
            span.size,
            b'0',
        )?)?;
        let copied = std::io::copy(&mut (&mut src).take(span.size), &mut self.out)
            .with_context(|| format!("copying {digest} into {}", self.name))?;
        if copied != span.size {
            bail!("{} ended inside blob {digest}", from.path.display());
        }
        self.pad(span.size)?;
        self.blobs.insert(digest.to_string());
        Ok(())
    }

    /// Writes `index.json` and the end-of-archive blocks, and flushes (a temporary file is
    /// read right after: no `fsync`).
    pub fn finish(mut self, index_json: &[u8]) -> Result<()> {
        self.entry("index.json", index_json)?;
        self.write(&[0u8; 1024])?;
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }
}

/// A ustar header for an entry named `name` (at most 100 bytes: layout names are shorter) of
/// `size` bytes; sizes past octal's 8 GiB use GNU's base-256, which every reader of layouts
/// takes.
fn tar_header(name: &str, size: u64, kind: u8) -> Result<[u8; 512]> {
    if name.len() > 100 {
        bail!("tar entry name {name:?} is longer than 100 bytes");
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mode = if kind == b'5' {
        "0000755\0"
    } else {
        "0000644\0"
    };
    h[100..108].copy_from_slice(mode.as_bytes());
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77777777777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is summed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// Locates every regular file in a tar stream: name (without a leading `./`) to data span.
fn index_tar(r: &mut (impl Read + Seek)) -> Result<HashMap<String, Span>> {
    let mut files = HashMap::new();
    let mut pos: u64 = 0;
    let mut next_name: Option<String> = None;
    let mut next_size: Option<u64> = None;
    loop {
        let mut h = [0u8; 512];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            // Some writers leave out the two zero blocks at the end.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        pos += 512;
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let size = match next_size.take() {
            Some(s) => s,
            None => header_number(&h[124..136]).context("invalid size in a tar header")?,
        };
        let kind = h[156];
        let data_at = pos;
        let padded = size.div_ceil(512) * 512;
        match kind {
            // PAX extended header: its records apply to the next entry.
            b'x' | b'L' => {
                if size > MAX_JSON {
                    bail!("tar extended header too large");
                }
                let mut data = vec![0u8; size as usize];
                r.read_exact(&mut data)?;
                r.seek(SeekFrom::Current((padded - size) as i64))?;
                if kind == b'L' {
                    next_name = Some(c_string(&data));
                } else {
                    for (k, v) in pax_records(&data) {
                        match k.as_str() {
                            "path" => next_name = Some(v),
                            "size" => next_size = v.parse().ok(),
                            _ => {}
                        }
                    }
                }
                pos += padded;
                continue;
            }
            _ => {}
        }
        let name = next_name.take().unwrap_or_else(|| {
            let name = c_string(&h[0..100]);
            let prefix = if &h[257..262] == b"ustar" {
                c_string(&h[345..500])
            } else {
                String::new()
            };
            if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            }
        });
        if kind == b'0' || kind == 0 || kind == b'7' {
            let name = name.trim_start_matches("./").to_string();
            files.insert(
                name,
                Span {
                    offset: data_at,
                    size,
                },
            );
        }
        r.seek(SeekFrom::Current(padded as i64))?;
        pos += padded;
    }
    Ok(files)
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A numeric header field: octal text, or GNU's base-256 for large values.
fn header_number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text = c_string(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// `LEN key=value\n` records of a PAX header.
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|c| *c == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= sp + 1 || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|c| *c == b'=') {
            out.push((
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            ));
        }
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn push(tar: &mut Vec<u8>, name: &str, data: &[u8], kind: u8) {
        tar.extend_from_slice(&tar_header(name, data.len() as u64, kind).unwrap());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }

    fn digest(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    /// A two-platform OCI layout tarball: index -> 2 manifests -> config + 1 layer each.
    pub(crate) fn sample_layout() -> (Vec<u8>, String) {
        let mut tar = Vec::new();
        let mut manifests = Vec::new();
        push(
            &mut tar,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
            b'0',
        );
        for arch in ["amd64", "arm64"] {
            let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
            let layer = format!("layer for {arch}").repeat(100);
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
                digest(config.as_bytes()),
                config.len(),
                digest(layer.as_bytes()),
                layer.len()
            );
            for blob in [&config, &layer, &manifest] {
                let d = digest(blob.as_bytes());
                push(
                    &mut tar,
                    &format!("blobs/sha256/{}", &d[7..]),
                    blob.as_bytes(),
                    b'0',
                );
            }
            manifests.push(format!(
                r#"{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{}","size":{}}}"#,
                digest(manifest.as_bytes()),
                manifest.len()
            ));
        }
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_INDEX}","manifests":[{}]}}"#,
            manifests.join(",")
        );
        let index_digest = digest(index.as_bytes());
        // A long name through PAX, as Go writes names past 100 bytes.
        let long = format!("blobs/sha256/{}", &index_digest[7..]);
        let pax = format!("path={long}\n");
        let record = format!("{} {pax}", pax.len() + 3);
        push(&mut tar, "PaxHeaders/x", record.as_bytes(), b'x');
        push(&mut tar, "ignored-short-name", index.as_bytes(), b'0');
        let top = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MEDIA_OCI_INDEX}","digest":"{index_digest}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/app:1","org.opencontainers.image.ref.name":"1"}}}}]}}"#,
            index.len()
        );
        push(&mut tar, "index.json", top.as_bytes(), b'0');
        tar.extend_from_slice(&[0u8; 1024]);
        (tar, index_digest)
    }

    #[test]
    fn walks_an_index_and_labels_parents() {
        let (tar, index_digest) = sample_layout();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.tar");
        std::fs::write(&path, &tar).unwrap();
        let layout = LayoutTar::open(&path).unwrap();
        let tops = layout.top_descriptors().unwrap();
        assert_eq!(tops.len(), 1);
        assert_eq!(tops[0].digest, index_digest);
        let blobs = layout.blobs(&tops).unwrap();
        // 2 x (config, layer, manifest) + the index, the index last.
        assert_eq!(blobs.len(), 7);
        let index = blobs.last().unwrap();
        assert_eq!(index.digest, index_digest);
        assert_eq!(index.labels.len(), 2);
        assert!(index
            .labels
            .contains_key("containerd.io/gc.ref.content.m.1"));
        let manifest = &blobs[2];
        assert_eq!(manifest.labels.len(), 2);
        assert_eq!(
            manifest.labels["containerd.io/gc.ref.content.config"],
            blobs[0].digest
        );
        assert_eq!(
            manifest.labels["containerd.io/gc.ref.content.l.0"],
            blobs[1].digest
        );
        assert!(blobs[1].labels.is_empty());
    }

    #[tokio::test]
    async fn reads_blobs_in_place() {
        let (tar, _) = sample_layout();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.tar");
        std::fs::write(&path, &tar).unwrap();
        let layout = LayoutTar::open(&path).unwrap();
        let blobs = layout.blobs(&layout.top_descriptors().unwrap()).unwrap();
        for b in &blobs {
            let mut data = Vec::new();
            layout
                .blob_reader(&b.digest)
                .await
                .unwrap()
                .read_to_end(&mut data)
                .await
                .unwrap();
            assert_eq!(data.len() as u64, b.size);
            assert_eq!(digest(&data), b.digest);
        }
        assert!(layout.blob_reader("sha256:00").await.is_err());
        assert!(layout.blob_reader("../../etc/passwd").await.is_err());
    }

    #[test]
    fn parses_header_numbers() {
        assert_eq!(header_number(b"00000001750\0"), Some(1000));
        assert_eq!(header_number(b"           \0"), Some(0));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        big[10] = 1;
        assert_eq!(header_number(&big), Some(261));
    }
}
