//! Loading a build's result into an image store the node's exporters cannot reach themselves:
//! the Docker Engine of the user's context (`--load` on a builder that is not that Engine) or a
//! containerd namespace (`--load=containerd://SOCKET?namespace=NS`, the `containerd` driver).
//!
//! The result is exported through the session to a client-side temporary file, then imported
//! after the solve: into Docker with `POST /images/load`, into containerd with kiln's own
//! importer. Deciding *that* a load happens is `plan_exports`' business; this module owns the
//! `--load` value, the temporary file and the import.
//!
//! A build split across nodes exports one OCI layout per node; [`merge_layouts`] makes one image
//! of them (one index over every node's manifests, as the registry merge of a pushed multi-node
//! build makes), so the image store gets every platform under its names, not the last node's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use futures::StreamExt;
use kiln_drivers::ImageStore;

use crate::build::attest::Annotation;
use crate::buildkit::session::{ExportReceiver, ExportStream, ExportTarget};
use crate::containerd::layout::{LayoutTar, LayoutWriter};
use crate::imagetools;
use crate::progress;
use crate::registry::oci::{self, ImageManifest};
use crate::registry::{Descriptor, Platform};

/// The namespace `--load=containerd://SOCKET` loads into when none is given (`ctr`'s default).
pub const DEFAULT_NAMESPACE: &str = kiln_drivers::containerd::DEFAULT_NAMESPACE;

/// Parses `--load`'s value: a boolean as Go's `strconv.ParseBool` reads it (plain `--load` is
/// `true`, the Docker Engine of the current context; `false` loads nothing), or
/// `containerd://SOCKET_PATH[?namespace=NS]`, a containerd namespace.
pub fn parse_load(value: &str) -> Result<Option<ImageStore>> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => return Ok(Some(ImageStore::Docker)),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => return Ok(None),
        _ => {}
    }
    let Some(rest) = value.strip_prefix("containerd://") else {
        bail!("invalid value {value:?}: expected true, false or containerd://SOCKET_PATH?namespace=NS");
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        bail!("invalid value {value:?}: the containerd socket must be an absolute path (containerd:///run/containerd/containerd.sock)");
    }
    let mut namespace = DEFAULT_NAMESPACE.to_string();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("namespace", ns)) => {
                kiln_drivers::containerd::validate_namespace(ns)
                    .map_err(|why| anyhow::anyhow!("invalid value {value:?}: {why}"))?;
                namespace = ns.to_string();
            }
            _ => bail!("invalid value {value:?}: unknown parameter {pair:?} (only namespace=NS)"),
        }
    }
    Ok(Some(ImageStore::Containerd {
        address: PathBuf::from(path),
        namespace,
    }))
}

/// Checks what can be checked before building: a containerd socket must exist.
pub fn check_reachable(store: &ImageStore) -> Result<()> {
    if let ImageStore::Containerd { address, .. } = store {
        if !address.exists() {
            bail!("no containerd socket at {}", address.display());
        }
    }
    Ok(())
}

/// Where a planned load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadDest {
    Store(ImageStore),
    /// Wherever the node's driver says its results belong (`Driver::default_image_store`).
    NodeDefault,
}

/// One result the node cannot store itself, exported through the session and imported by kiln.
#[derive(Debug, Clone)]
pub(crate) struct LoadStep {
    pub dest: LoadDest,
    /// `-t` names, for images whose tarball carries none.
    pub names: Vec<String>,
    /// The Docker context a Docker load goes to (`-o type=docker,context=NAME`); the current
    /// one when `None`.
    pub docker_context: Option<String>,
    via: Via,
}

/// How the exported tarball reaches the image store.
#[derive(Debug, Clone)]
enum Via {
    /// A temporary file, imported after the solve: containerd's importer and the merge of a
    /// multi-node build read it in place.
    File {
        path: PathBuf,
        _dir: Arc<tempfile::TempDir>,
    },
    /// Into Docker's `POST /images/load` while BuildKit exports (as buildx loads): no
    /// temporary copy. The load starts with the first chunk; its outcome is awaited after the
    /// solve.
    Stream {
        target: ExportStream,
        loading: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<Result<()>>>>>,
    },
}

impl LoadStep {
    /// A load through a temporary file.
    pub fn new(dest: LoadDest, names: &[String]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-load-")
            .tempdir()
            .context("creating a temporary directory for the image to load")?;
        Ok(LoadStep {
            dest,
            names: names.to_vec(),
            docker_context: None,
            via: Via::File {
                path: dir.path().join("image.tar"),
                _dir: Arc::new(dir),
            },
        })
    }

    /// A load streamed into the user's Docker Engine as BuildKit exports. The loader waits
    /// for the first chunk, so a build that never exports never calls Docker.
    pub fn streamed_into_docker(names: &[String], docker_context: Option<String>) -> Self {
        let (target, chunks) = ExportStream::new();
        // Planning also runs outside a runtime (unit tests); nothing is exported there.
        let loading = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(stream_into_docker(
                target.clone(),
                chunks,
                docker_context.clone(),
            ))
        });
        LoadStep {
            dest: LoadDest::Store(ImageStore::Docker),
            names: names.to_vec(),
            docker_context,
            via: Via::Stream {
                target,
                loading: Arc::new(std::sync::Mutex::new(loading)),
            },
        }
    }

    /// This step as a load through a temporary file (what merging needs), unchanged if it is.
    pub fn through_a_file(self) -> Result<Self> {
        match self.via {
            Via::File { .. } => Ok(self),
            Via::Stream { .. } => Ok(LoadStep {
                docker_context: self.docker_context.clone(),
                ..LoadStep::new(self.dest, &self.names)?
            }),
        }
    }

    /// Where the session puts what the exporter sends.
    pub fn export_target(&self) -> ExportTarget {
        match &self.via {
            Via::File { path, .. } => ExportTarget::File(path.clone()),
            Via::Stream { target, .. } => ExportTarget::Stream(target.clone()),
        }
    }

    /// The temporary file the tarball lands in, for loads through one.
    pub fn file(&self) -> Option<&Path> {
        match &self.via {
            Via::File { path, .. } => Some(path),
            Via::Stream { .. } => None,
        }
    }

    /// The image store this step imports into; `driver` is the node's, for `NodeDefault`.
    pub fn store(&self, driver: &dyn kiln_drivers::Driver) -> ImageStore {
        match &self.dest {
            LoadDest::Store(s) => s.clone(),
            LoadDest::NodeDefault => driver.default_image_store(),
        }
    }

    /// The exporter that writes the tarball: `oci` keeps manifest lists and is what containerd
    /// imports; `docker` is what an Engine without the containerd image store loads.
    pub fn exporter_type(&self, platforms: usize) -> &'static str {
        match &self.dest {
            LoadDest::Store(ImageStore::Containerd { .. }) => "oci",
            _ if platforms > 1 => "oci",
            _ => "docker",
        }
    }

    /// Imports the tarball, as one step in the build's display.
    pub async fn run(
        &self,
        driver: &dyn kiln_drivers::Driver,
        steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
    ) -> Result<()> {
        let store = self.store(driver);
        let title = match &store {
            ImageStore::Docker => "importing to docker".to_string(),
            ImageStore::Containerd { namespace, .. } => {
                format!("importing to containerd namespace {namespace}")
            }
        };
        let step = progress::OwnStep::start(steps, &title).await;
        let imported = match (&self.via, &store) {
            (Via::Stream { loading, .. }, _) => {
                let loading = loading.lock().expect("not poisoned").take();
                match loading {
                    Some(task) => task
                        .await
                        .unwrap_or_else(|e| Err(anyhow::anyhow!("loading into Docker: {e}"))),
                    None => Err(anyhow::anyhow!("the image was already loaded")),
                }
            }
            (Via::File { path, .. }, ImageStore::Docker) => {
                load_file_into_docker(path, self.docker_context.as_deref()).await
            }
            (Via::File { path, .. }, ImageStore::Containerd { address, namespace }) => {
                import_into_containerd(address, namespace, path, &self.names).await
            }
        };
        match imported {
            Ok(()) => {
                step.done(steps).await;
                Ok(())
            }
            Err(e) => {
                step.failed(steps, &format!("{e:#}")).await;
                Err(e)
            }
        }
    }
}

/// One node's exported layout, for [`merge_layouts`].
#[derive(Debug, Clone)]
pub(crate) struct LayoutPart {
    /// The node, as errors name it.
    pub node: String,
    pub file: PathBuf,
}

/// Merges the OCI layout tarballs the nodes of one build exported into one layout at `out`: an
/// index over every node's manifests, merged as `imagetools create` merges (with the build's
/// index annotations), every blob once, and the names the first part carries. Returns the
/// index's digest.
pub(crate) fn merge_layouts(
    parts: &[LayoutPart],
    out: impl std::io::Write,
    annotations: &[Annotation],
) -> Result<String> {
    let layouts: Vec<LayoutTar> = parts
        .iter()
        .map(|p| LayoutTar::open(&p.file).with_context(|| format!("node {}'s result", p.node)))
        .collect::<Result<_>>()?;
    let mut docs = Vec::new();
    let mut names: Vec<serde_json::Value> = Vec::new();
    for (part, layout) in parts.iter().zip(&layouts) {
        let in_node = || format!("node {}'s result", part.node);
        let entries = layout.index_entries().with_context(in_node)?;
        let doc = top_document(layout, entries.first(), &part.node).with_context(in_node)?;
        if names.is_empty() {
            names = entries;
        }
        docs.push(doc);
    }
    let (index, index_bytes) = imagetools::merge_documents(&docs, annotations)?;

    let mut w = LayoutWriter::new(out, "the merged image")?;
    for (layout, doc) in layouts.iter().zip(&docs) {
        let top = &doc.descriptor;
        let tops = layout.top_descriptors()?;
        for blob in layout.blobs(&tops)? {
            // A node's own index is replaced by the merged one.
            if blob.digest == top.digest.as_str() && oci::is_index(&top.media_type) {
                continue;
            }
            w.copy_blob(layout, &blob.digest)?;
        }
    }
    w.add_blob(index.digest.as_str(), &index_bytes)?;
    // One index.json entry per name, as the exporter wrote them (their annotations name the
    // image), now pointing at the merged index.
    let mut entries = Vec::new();
    for named in names {
        let mut entry = index.clone();
        entry.annotations = named
            .get("annotations")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .context("reading the names in index.json")?
            .unwrap_or_default();
        entries.push(entry);
    }
    if entries.is_empty() {
        entries.push(index.clone());
    }
    let index_json = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": entries,
    }))?;
    w.finish(&index_json)?;
    Ok(index.digest.to_string())
}

/// The bytes written to it, sent on as chunks (a merged image streamed into `docker load`);
/// a receiver that went away is a broken pipe.
pub(crate) struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    const CHUNK: usize = 256 * 1024;

    pub fn new(tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>) -> ChunkWriter {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Merges the nodes' layouts straight into `docker load` of Docker context `context`, with no
/// merged copy on disk. Returns the merged index's digest.
pub(crate) async fn merge_into_docker(
    parts: Vec<LayoutPart>,
    annotations: Vec<Annotation>,
    context: Option<&str>,
) -> Result<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let merging = tokio::task::spawn_blocking(move || {
        merge_layouts(&parts, ChunkWriter::new(tx), &annotations)
    });
    let loading = load_into_docker(tokio_stream::wrappers::ReceiverStream::new(rx), context);
    let (merged, loaded) = tokio::join!(merging, loading);
    // A merge that failed cut the load short: its error is the one that says why.
    let digest = merged.context("merging the nodes' results")??;
    loaded?;
    Ok(digest)
}

/// A layout's top document (`top`, the first entry of its `index.json`), named after `node`;
/// an image manifest gets its platform from its config, so it can be merged.
fn top_document(
    layout: &LayoutTar,
    top: Option<&serde_json::Value>,
    node: &str,
) -> Result<imagetools::Document> {
    let top = top.context("index.json lists no image")?;
    let mut descriptor: Descriptor =
        serde_json::from_value(top.clone()).context("reading index.json's descriptor")?;
    descriptor.annotations.clear();
    let bytes = layout.small_blob(descriptor.digest.as_str())?;
    if oci::is_image_manifest(&descriptor.media_type) && descriptor.platform.is_none() {
        let m: ImageManifest = serde_json::from_slice(&bytes).context("parsing the manifest")?;
        let config = layout.small_blob(m.config.digest.as_str())?;
        descriptor.platform =
            Some(Platform::of_image_config(&config).context("parsing the image config")?);
    }
    Ok(imagetools::Document {
        name: format!("node {node}"),
        descriptor,
        bytes: bytes.into(),
    })
}

async fn import_into_containerd(
    address: &Path,
    namespace: &str,
    file: &Path,
    names: &[String],
) -> Result<()> {
    let client = crate::containerd::Containerd::connect(address, namespace).await?;
    let report = crate::containerd::import_oci_tar(&client, file, names).await?;
    for (name, digest) in &report.images {
        tracing::debug!(
            "containerd {namespace}: {name} -> {digest} ({} blobs written, {} present)",
            report.written,
            report.present
        );
    }
    Ok(())
}

/// The Engine of Docker context `name`, else of the current one (`DOCKER_HOST` first), and its
/// address for errors.
fn user_docker(name: Option<&str>) -> Result<(bollard::Docker, String)> {
    let context = match name {
        Some(n) => n.to_string(),
        None => crate::dockercfg::current_context_name()?,
    };
    let context = crate::dockercfg::context_by_name(&context)?
        .with_context(|| format!("Docker context {context:?} not found"))?;
    let endpoint = kiln_drivers::docker_api::DockerEndpoint::parse(&context.host)?;
    let docker =
        kiln_drivers::docker_api::DockerConnection::new(endpoint, context.tls.as_ref())?.api()?;
    Ok((docker, context.host))
}

/// What the user's Docker Engines can load, each asked at most once per command and only when
/// a result is loaded into it.
#[derive(Debug, Default)]
pub(crate) struct DockerEngine {
    /// By Docker context (`None`: the current one).
    oci_importer: tokio::sync::Mutex<std::collections::HashMap<Option<String>, bool>>,
}

impl DockerEngine {
    /// Whether the Engine of `context` keeps images in containerd, so that `docker load`
    /// takes OCI layouts whole (indexes, attestations): what buildx calls its OCI importer,
    /// read from the storage driver status `GET /info` reports.
    pub async fn oci_importer(&self, context: Option<&str>) -> Result<bool> {
        let mut known = self.oci_importer.lock().await;
        let key = context.map(str::to_string);
        if let Some(v) = known.get(&key) {
            return Ok(*v);
        }
        let (docker, host) = user_docker(context)?;
        let info = docker.info().await.map_err(|e| {
            anyhow::anyhow!("asking the Docker Engine at {host} what it can load: {e}")
        })?;
        let v = has_containerd_store(info.driver_status.as_deref().unwrap_or_default());
        known.insert(key, v);
        Ok(v)
    }
}

/// buildx's test for the containerd image store: a `driver-type` of containerd's snapshotter.
fn has_containerd_store(driver_status: &[Vec<String>]) -> bool {
    driver_status.iter().any(|pair| {
        matches!(pair.as_slice(), [k, v] if k == "driver-type" && v == "io.containerd.snapshotter.v1")
    })
}

/// `docker load` of the tarball file into the Engine of Docker context `context`.
async fn load_file_into_docker(file: &Path, context: Option<&str>) -> Result<()> {
    let tar = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    load_into_docker(tokio_util::io::ReaderStream::new(tar), context).await
}

/// `docker load` of the tarball BuildKit is exporting, chunk by chunk. A failure is also told
/// to the export, so the build's error says why the load stopped.
async fn stream_into_docker(
    target: ExportStream,
    mut chunks: ExportReceiver,
    context: Option<String>,
) -> Result<()> {
    let Some(first) = chunks.recv().await else {
        bail!("BuildKit sent no image to load");
    };
    let first = first.map_err(|e| anyhow::anyhow!("receiving the image to load: {e}"))?;
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        tokio_stream::wrappers::ReceiverStream::new(chunks)
            .map(|c| c.map_err(std::io::Error::other)),
    );
    let loaded = load_into_docker(body, context.as_deref()).await;
    if let Err(e) = &loaded {
        target.stop(&format!("{e:#}"));
    }
    loaded
}

/// `docker load` of a tarball stream into the Engine of Docker context `context`.
async fn load_into_docker<E>(
    body: impl futures::Stream<Item = std::result::Result<bytes::Bytes, E>> + Send + 'static,
    context: Option<&str>,
) -> Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let (docker, host) = user_docker(context)?;
    let options = bollard::query_parameters::ImportImageOptionsBuilder::new()
        .quiet(true)
        .build();
    let mut answers = docker.import_image_stream(options, body, None);
    while let Some(answer) = answers.next().await {
        let info = answer.map_err(|e| anyhow::anyhow!("loading into Docker at {host}: {e}"))?;
        if let Some(line) = info
            .stream
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            tracing::debug!("docker load: {line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::registry::{Digest, Index};

    /// A node's OCI layout for one platform, as BuildKit writes it with `multi-platform`: an
    /// index over one manifest (config + one layer), named `app:1` in index.json.
    fn node_layout(dir: &Path, arch: &str, shared_layer: &[u8]) -> PathBuf {
        let blob = |data: &[u8]| (Digest::sha256_of(data).to_string(), data.len());
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
        let (config_digest, config_size) = blob(config.as_bytes());
        let (layer_digest, layer_size) = blob(shared_layer);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#,
            oci::OCI_MANIFEST
        );
        let (manifest_digest, manifest_size) = blob(manifest.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{manifest_digest}","size":{manifest_size},"platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#,
            oci::OCI_INDEX,
            oci::OCI_MANIFEST
        );
        let (index_digest, index_size) = blob(index.as_bytes());
        let path = dir.join(format!("{arch}.tar"));
        let mut w =
            LayoutWriter::new(std::fs::File::create(&path).unwrap(), "a node layout").unwrap();
        w.add_blob(&layer_digest, shared_layer).unwrap();
        w.add_blob(&config_digest, config.as_bytes()).unwrap();
        w.add_blob(&manifest_digest, manifest.as_bytes()).unwrap();
        w.add_blob(&index_digest, index.as_bytes()).unwrap();
        let top = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{index_digest}","size":{index_size},"annotations":{{"io.containerd.image.name":"docker.io/library/app:1","org.opencontainers.image.ref.name":"1"}}}}]}}"#,
            oci::OCI_INDEX
        );
        w.finish(top.as_bytes()).unwrap();
        path
    }

    #[test]
    fn merges_node_layouts_into_one_index_keeping_names_and_every_blob_once() {
        let dir = tempfile::tempdir().unwrap();
        let layer = vec![7u8; 3000];
        let parts = [("amd", "amd64"), ("arm", "arm64")].map(|(node, arch)| LayoutPart {
            node: node.into(),
            file: node_layout(dir.path(), arch, &layer),
        });
        let out = dir.path().join("merged.tar");
        let digest = merge_layouts(&parts, std::fs::File::create(&out).unwrap(), &[]).unwrap();

        let merged = LayoutTar::open(&out).unwrap();
        let tops = merged.top_descriptors().unwrap();
        assert_eq!(tops.len(), 1);
        assert_eq!(tops[0].digest, digest);
        assert_eq!(
            tops[0].annotations["io.containerd.image.name"],
            "docker.io/library/app:1"
        );
        let index: Index = serde_json::from_slice(&merged.small_blob(&digest).unwrap()).unwrap();
        let archs: Vec<&str> = index
            .manifests
            .iter()
            .map(|m| m.platform.as_ref().unwrap().architecture.as_str())
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);
        // 2 configs + 2 manifests + the shared layer once + the merged index; the nodes' own
        // indexes are not carried.
        let blobs = merged.blobs(&tops).unwrap();
        assert_eq!(blobs.len(), 6);
        for b in &blobs {
            let data = merged.small_blob(&b.digest).unwrap();
            assert_eq!(Digest::sha256_of(&data).to_string(), b.digest);
        }
        let names = merged.file_names();
        assert_eq!(names.len(), 2 + 6, "{names:?}");
    }

    #[test]
    fn chunks_carry_every_byte_and_a_gone_reader_is_a_broken_pipe() {
        use std::io::Write as _;
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let data: Vec<u8> = (0..700_000u32).map(|i| i as u8).collect();
        let mut w = ChunkWriter::new(tx);
        w.write_all(&data).unwrap();
        w.flush().unwrap();
        drop(w);
        let mut got = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, data);

        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx);
        w.write_all(b"x").unwrap();
        let err = w.flush().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_part_that_is_not_a_layout_names_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let good = node_layout(dir.path(), "amd64", b"x");
        let bad = dir.path().join("bad.tar");
        std::fs::write(&bad, b"not a tarball").unwrap();
        let parts = [
            LayoutPart {
                node: "amd".into(),
                file: good,
            },
            LayoutPart {
                node: "arm".into(),
                file: bad,
            },
        ];
        let err = merge_layouts(&parts, std::io::sink(), &[]).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("node arm's result"),
            "{err:#}"
        );
    }

    #[test]
    fn the_containerd_store_is_read_from_the_driver_status() {
        let status = |pairs: &[(&str, &str)]| -> Vec<Vec<String>> {
            pairs
                .iter()
                .map(|(k, v)| vec![k.to_string(), v.to_string()])
                .collect()
        };
        assert!(has_containerd_store(&status(&[(
            "driver-type",
            "io.containerd.snapshotter.v1"
        )])));
        assert!(!has_containerd_store(&status(&[
            ("Backing Filesystem", "extfs"),
            ("Supports d_type", "true")
        ])));
        assert!(!has_containerd_store(&[]));
    }

    #[test]
    fn parses_load_values() {
        for yes in ["true", "1", "T", "True"] {
            assert_eq!(parse_load(yes).unwrap(), Some(ImageStore::Docker));
        }
        for no in ["false", "0", "F", "FALSE"] {
            assert_eq!(parse_load(no).unwrap(), None);
        }
        assert_eq!(
            parse_load("containerd:///run/containerd/containerd.sock?namespace=builds").unwrap(),
            Some(ImageStore::Containerd {
                address: "/run/containerd/containerd.sock".into(),
                namespace: "builds".into()
            })
        );
        assert_eq!(
            parse_load("containerd:///c.sock").unwrap(),
            Some(ImageStore::Containerd {
                address: "/c.sock".into(),
                namespace: "default".into()
            })
        );
        for bad in [
            "",
            "yes",
            "docker",
            "containerd://",
            "containerd://rel.sock",
            "containerd:///c.sock?ns=x",
            "containerd:///c.sock?namespace=a/b",
        ] {
            let e = parse_load(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    fn plan(
        load: Option<ImageStore>,
        platforms: &str,
        features: kiln_drivers::Features,
    ) -> super::super::ExportPlan {
        let opts = super::super::BuildOptions {
            load,
            tags: vec!["app".into()],
            platforms: crate::platform::parse_explicit_list(&[platforms]).unwrap(),
            ..Default::default()
        };
        super::super::plan_exports(&opts, &features, "remote").unwrap()
    }

    fn own_buildkit() -> kiln_drivers::Features {
        kiln_drivers::Features {
            oci_exporter: true,
            docker_exporter: true,
            multi_platform: true,
            ..Default::default()
        }
    }

    #[test]
    fn plans_client_side_loads_where_the_node_cannot_store_images() {
        // --load from a remote builder: a docker tarball for one platform, oci for two, streamed
        // into Docker as it arrives.
        let p = plan(Some(ImageStore::Docker), "linux/amd64", own_buildkit());
        assert_eq!(p.exporters[0].r#type, "docker");
        assert_eq!(p.loads[0].dest, LoadDest::Store(ImageStore::Docker));
        assert!(matches!(p.targets[&0], ExportTarget::Stream(_)));
        assert_eq!(p.targets[&0], p.loads[0].export_target());
        assert!(p.loads[0].file().is_none());
        let through_a_file = p.loads[0].clone().through_a_file().unwrap();
        assert!(through_a_file.file().is_some());
        let p = plan(
            Some(ImageStore::Docker),
            "linux/amd64,linux/arm64",
            own_buildkit(),
        );
        assert_eq!(p.exporters[0].r#type, "oci");
        assert_eq!(p.exporters[0].attrs["name"], "app");

        // The docker driver's Engine stores the image itself.
        let engine = kiln_drivers::Features {
            moby_exporter: true,
            ..own_buildkit()
        };
        let p = plan(Some(ImageStore::Docker), "linux/amd64", engine);
        assert_eq!(p.exporters[0].r#type, "moby");
        assert!(p.loads.is_empty() && p.targets.is_empty());

        // No output on a node with a default image store.
        let p = plan(
            None,
            "linux/amd64",
            kiln_drivers::Features {
                default_load: true,
                ..own_buildkit()
            },
        );
        assert_eq!(p.loads[0].dest, LoadDest::NodeDefault);
        let p = plan(None, "linux/amd64", own_buildkit());
        assert!(p.exporters.is_empty());
    }

    #[test]
    fn containerd_load_is_an_oci_export_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::Containerd {
            address: dir.path().to_path_buf(),
            namespace: "n".into(),
        };
        let engine = kiln_drivers::Features {
            moby_exporter: true,
            ..own_buildkit()
        };
        let p = plan(Some(store.clone()), "linux/amd64", engine);
        assert_eq!(p.exporters.len(), 1);
        assert_eq!(p.exporters[0].r#type, "oci");
        assert_eq!(p.loads[0].dest, LoadDest::Store(store));
        let missing = ImageStore::Containerd {
            address: "/nonexistent/containerd.sock".into(),
            namespace: "n".into(),
        };
        let opts = super::super::BuildOptions {
            load: Some(missing),
            ..Default::default()
        };
        let e = super::super::plan_exports(&opts, &own_buildkit(), "remote").unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "--load: no containerd socket at /nonexistent/containerd.sock"
        );
    }

    #[test]
    fn containerd_loads_export_oci() {
        let c = ImageStore::Containerd {
            address: "/c.sock".into(),
            namespace: "n".into(),
        };
        let step = LoadStep::new(LoadDest::Store(c), &[]).unwrap();
        assert_eq!(step.exporter_type(1), "oci");
        let step = LoadStep::new(LoadDest::Store(ImageStore::Docker), &[]).unwrap();
        assert_eq!(step.exporter_type(1), "docker");
        assert_eq!(step.exporter_type(2), "oci");
        assert!(step.file().unwrap().parent().unwrap().is_dir());
    }
}
