//! `imagetools create`: merge manifests and indexes from source images into one image index
//! (or Docker manifest list) and push it under tags, as buildx's `imagetools create` does. The
//! multi-node build fan-out uses the same [`create`] to merge per-platform images.
//!
//! Pushing copies what each tag's repository lacks: manifests by digest, blobs mounted from the
//! source repository when both live in the same registry (a blob the target already has is never
//! uploaded again), and uploaded only when the registry cannot mount.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};

use super::gojson;
use crate::build::attest::{Annotation, AnnotationLevel};
use crate::registry::oci::{self, ImageManifest};
use crate::registry::{Client, Descriptor, Digest, Index, Mount, Platform, Reference, Repository};

/// How many blobs are checked / mounted / copied at once per push.
const BLOB_CONCURRENCY: usize = 8;

/// One input: an image by reference, optionally with a descriptor that pins its digest and
/// overrides its media type, annotations or platform (what `-f FILE` and JSON sources give).
#[derive(Debug, Clone)]
pub struct Source {
    pub reference: Reference,
    pub descriptor: Option<Descriptor>,
}

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub sources: Vec<Source>,
    pub tags: Vec<Reference>,
    pub annotations: Vec<Annotation>,
    /// With one image-manifest source: write an index around it (true) or push a copy (false).
    pub prefer_index: bool,
    /// Compute the result without pushing anything.
    pub dry_run: bool,
}

/// The index (or carbon-copied manifest) that was pushed, or would be with `dry_run`.
#[derive(Debug, Clone)]
pub struct Created {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// Blob bytes uploaded while pushing (0 when every blob was present or mounted).
    pub uploaded_blob_bytes: u64,
}

/// What one `SOURCE` argument (or `-f` file) names before its repository is known.
enum SourceArg {
    Reference(Reference),
    Digest(Digest),
    Descriptor(Descriptor),
}

/// Turns `imagetools create` arguments into sources, as buildx reads them: a reference, a bare
/// digest, or descriptor JSON; digests and descriptors live in the one repository the tags and
/// references name.
pub fn sources_from_args(args: &[String], tags: &[Reference]) -> Result<Vec<Source>> {
    if args.is_empty() {
        bail!("no sources specified");
    }
    let mut parsed = Vec::new();
    for arg in args {
        let source = parse_source(arg).with_context(|| {
            format!(
                "failed to parse source {arg:?}, valid sources are digests, references and descriptors"
            )
        })?;
        parsed.push(source);
    }
    let mut repos: Vec<&Repository> = tags.iter().map(|t| &t.repository).collect();
    for p in &parsed {
        if let SourceArg::Reference(r) = p {
            repos.push(&r.repository);
        }
    }
    repos.sort();
    repos.dedup();
    let default_repo = match repos.as_slice() {
        [] => bail!("no repositories specified, please set a reference in tag or source"),
        [one] => Some((*one).clone()),
        _ => None,
    };
    parsed
        .into_iter()
        .zip(args)
        .map(|(p, arg)| {
            let repo = || {
                default_repo.clone().with_context(|| {
                    format!("multiple repositories specified, cannot infer repository for {arg:?}")
                })
            };
            Ok(match p {
                SourceArg::Reference(r) => Source {
                    reference: r,
                    descriptor: None,
                },
                SourceArg::Digest(d) => Source {
                    reference: Reference::from_repository(repo()?).with_digest(d),
                    descriptor: None,
                },
                SourceArg::Descriptor(d) => Source {
                    reference: Reference::from_repository(repo()?),
                    descriptor: Some(d),
                },
            })
        })
        .collect()
}

fn parse_source(arg: &str) -> Result<SourceArg> {
    let trimmed = arg.trim();
    match trimmed.parse::<Digest>() {
        Ok(d) => return Ok(SourceArg::Digest(d)),
        Err(e) if trimmed.starts_with("sha256") => return Err(e.into()),
        Err(_) => {}
    }
    match arg.parse::<Reference>() {
        Ok(r) => Ok(SourceArg::Reference(r)),
        Err(e) if !trimmed.starts_with('{') => Err(e.into()),
        Err(_) => Ok(SourceArg::Descriptor(
            serde_json::from_str(trimmed).context("invalid descriptor JSON")?,
        )),
    }
}

/// A source after resolving: its descriptor (platform filled in for images) and its content.
#[derive(Debug, Clone)]
struct Resolved {
    reference: Reference,
    descriptor: Descriptor,
    bytes: Bytes,
}

/// A manifest or index that is not in a registry (a build's local result), to merge with
/// [`merge_documents`].
#[derive(Debug, Clone)]
pub struct Document {
    /// How errors name it.
    pub name: String,
    /// Its descriptor; an image manifest's must carry its platform.
    pub descriptor: Descriptor,
    pub bytes: Bytes,
}

/// What [`combine`] merges: fetched sources and local documents alike.
trait Mergeable {
    fn name(&self) -> String;
    fn descriptor(&self) -> &Descriptor;
    fn bytes(&self) -> &[u8];
}

impl Mergeable for Resolved {
    fn name(&self) -> String {
        self.reference.to_string()
    }
    fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Mergeable for Document {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Merges local documents into one index exactly as [`create`] merges registry sources
/// (`--prefer-index`), returning the index's descriptor and bytes.
pub fn merge_documents(
    docs: &[Document],
    annotations: &[Annotation],
) -> Result<(Descriptor, Vec<u8>)> {
    let combined = combine(docs, annotations, true)?;
    Ok((combined.descriptor, combined.bytes))
}

/// The merged document and, for each manifest it points at, the source it comes from.
#[derive(Debug, Clone, PartialEq)]
struct Combined {
    bytes: Vec<u8>,
    descriptor: Descriptor,
    parts: Vec<(Descriptor, usize)>,
}

/// What pushing to one tag is doing, for a progress display (buildx's `pushing TAG` step).
#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    Started,
    /// A line for the step's log (`copying DIGEST from SOURCE to TAG`).
    Log(String),
    Done,
    Failed(String),
}

pub async fn create(client: &Client, req: &CreateRequest) -> Result<Created> {
    create_for_platforms(client, req, &[], &|_, _| {}).await
}

/// [`create`], keeping only the manifests for `platforms` (and their attestations) when any are
/// given, as `imagetools create --platform` does, and telling `report` how each tag's push goes.
pub async fn create_for_platforms(
    client: &Client,
    req: &CreateRequest,
    platforms: &[crate::platform::Platform],
    report: &(dyn Fn(&Reference, PushEvent) + Sync),
) -> Result<Created> {
    if req.sources.is_empty() {
        bail!("no sources specified");
    }
    if !req.dry_run && req.tags.is_empty() {
        bail!("can't push with no tags specified, please set --tag or --dry-run");
    }
    let resolved: Vec<Resolved> =
        futures::future::try_join_all(req.sources.iter().map(|s| resolve(client, s))).await?;
    let combined = combine(&resolved, &req.annotations, req.prefer_index)?;
    let combined = filter_platforms(combined, platforms)?;
    let mut created = Created {
        digest: combined.descriptor.digest.clone(),
        media_type: combined.descriptor.media_type.clone(),
        bytes: combined.bytes.clone(),
        uploaded_blob_bytes: 0,
    };
    if req.dry_run {
        return Ok(created);
    }
    let before = client.uploaded_blob_bytes();
    let known: HashMap<Digest, Bytes> = resolved
        .iter()
        .map(|r| (r.descriptor.digest.clone(), r.bytes.clone()))
        .collect();
    let parts: Vec<(Descriptor, &Reference)> = combined
        .parts
        .iter()
        .map(|(d, i)| (d.clone(), &resolved[*i].reference))
        .collect();
    let mut copied: HashSet<Repository> = HashSet::new();
    for tag in &req.tags {
        report(tag, PushEvent::Started);
        for (d, from) in &parts {
            report(
                tag,
                PushEvent::Log(format!("copying {} from {from} to {tag}", d.digest)),
            );
        }
        let pushed = push_tag(client, tag, &combined, &parts, &known, &mut copied, report).await;
        match &pushed {
            Ok(()) => report(tag, PushEvent::Done),
            Err(e) => report(tag, PushEvent::Failed(format!("{e:#}"))),
        }
        pushed.with_context(|| format!("pushing {tag}"))?;
    }
    created.uploaded_blob_bytes = client.uploaded_blob_bytes() - before;
    Ok(created)
}

/// Makes `tag`'s repository hold every part (once per repository), then puts the document
/// under the tag.
async fn push_tag(
    client: &Client,
    tag: &Reference,
    combined: &Combined,
    parts: &[(Descriptor, &Reference)],
    known: &HashMap<Digest, Bytes>,
    copied: &mut HashSet<Repository>,
    report: &(dyn Fn(&Reference, PushEvent) + Sync),
) -> Result<()> {
    let target = &tag.repository;
    if copied.insert(target.clone()) {
        copy_into(client, target, parts, known).await?;
    }
    report(
        tag,
        PushEvent::Log(format!("pushing {} to {tag}", combined.descriptor.digest)),
    );
    // `-t repo@sha256:...` pushes by digest only, and only the digest the merge produced.
    let key = match (&tag.tag, &tag.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) if *d == combined.descriptor.digest => d.to_string(),
        (None, Some(d)) => bail!(
            "the merged image's digest is {}, not {d}",
            combined.descriptor.digest
        ),
        (None, None) => "latest".into(),
    };
    client
        .put_manifest(
            target,
            &key,
            &combined.descriptor.media_type,
            Bytes::from(combined.bytes.clone()),
        )
        .await?;
    Ok(())
}

/// Fetches a source's manifest or index; image sources get their platform (from the descriptor,
/// else from the image config, normalised).
async fn resolve(client: &Client, src: &Source) -> Result<Resolved> {
    let reference = match &src.descriptor {
        Some(d) => src.reference.with_digest(d.digest.clone()),
        None => src.reference.clone(),
    };
    let shown = reference.to_string();
    let fetched = client
        .get_manifest(&reference)
        .await
        .with_context(|| format!("source {shown}"))?;
    let mut desc = Descriptor::new(
        fetched.media_type.clone(),
        fetched.digest.clone(),
        fetched.bytes.len() as i64,
    );
    if let Some(given) = &src.descriptor {
        // A size of 0 or less is "unknown" (buildx checks only a non-zero one).
        if given.size > 0 && given.size != desc.size {
            bail!(
                "source {shown}: invalid size mismatch for {}, {} != {}",
                desc.digest,
                given.size,
                desc.size
            );
        }
        // A negative size marks a descriptor that only points at a digest (the build fan-out
        // makes those for daemons that report no descriptor): what the registry says the
        // content is wins over its guessed media type.
        if !given.media_type.is_empty() && given.size >= 0 {
            desc.media_type = given.media_type.clone();
        }
        if !given.annotations.is_empty() {
            desc.annotations = given.annotations.clone();
        }
        if given.platform.is_some() {
            desc.platform = given.platform.clone();
        }
    }
    if oci::is_schema1(&desc.media_type) {
        bail!("source {shown}: schema1 manifests are not allowed in manifest lists");
    }
    if oci::is_image_manifest(&desc.media_type) {
        let mut p = desc.platform.clone().unwrap_or_default();
        if p.os.is_empty() || p.architecture.is_empty() {
            let from_config = config_platform(client, &reference.repository, &fetched.bytes)
                .await
                .with_context(|| format!("source {shown}: reading the image's platform"))?;
            if p.architecture.is_empty() {
                p.architecture = from_config.architecture;
                if p.variant.is_empty() {
                    p.variant = from_config.variant;
                }
            }
            if p.os.is_empty() {
                p.os = from_config.os;
            }
        }
        desc.platform = Some(p);
    }
    Ok(Resolved {
        reference,
        descriptor: desc,
        bytes: fetched.bytes,
    })
}

/// The normalised platform an image's config declares.
pub(super) async fn config_platform(
    client: &Client,
    repo: &Repository,
    manifest: &[u8],
) -> Result<Platform> {
    let m: ImageManifest = serde_json::from_slice(manifest).context("parsing the manifest")?;
    let config = client.get_small_blob(repo, &m.config.digest).await?;
    Platform::of_image_config(&config).context("parsing the image config")
}

/// buildx's `Combine`: one source and no annotations passes through (an index as it is; an
/// image too unless `prefer_index`); otherwise every image and every manifest of every index
/// goes into one index, merged by digest, a Docker manifest list when all are Docker types.
fn combine<S: Mergeable>(
    sources: &[S],
    annotations: &[Annotation],
    prefer_index: bool,
) -> Result<Combined> {
    if sources.len() == 1 && annotations.is_empty() {
        let src = &sources[0];
        if oci::is_index(&src.descriptor().media_type) {
            let index: Index = serde_json::from_slice(src.bytes())
                .with_context(|| format!("source {}: parsing the index", src.name()))?;
            return Ok(Combined {
                bytes: src.bytes().to_vec(),
                descriptor: src.descriptor().clone(),
                parts: index.manifests.into_iter().map(|d| (d, 0)).collect(),
            });
        }
        if !prefer_index {
            return Ok(Combined {
                bytes: src.bytes().to_vec(),
                descriptor: src.descriptor().clone(),
                parts: vec![(src.descriptor().clone(), 0)],
            });
        }
    }

    let mut descs: Vec<Descriptor> = Vec::new();
    let mut position: HashMap<Digest, usize> = HashMap::new();
    let mut source_of: HashMap<Digest, usize> = HashMap::new();
    let mut add = |d: Descriptor, src: usize, descs: &mut Vec<Descriptor>| {
        source_of.insert(d.digest.clone(), src);
        match position.get(&d.digest) {
            Some(&i) => {
                let old = &mut descs[i];
                if old.media_type.is_empty() {
                    old.media_type = d.media_type;
                }
                if d.platform.is_some() {
                    old.platform = d.platform;
                }
                old.annotations.extend(d.annotations);
            }
            None => {
                position.insert(d.digest.clone(), descs.len());
                descs.push(d);
            }
        }
    };
    for (i, src) in sources.iter().enumerate() {
        if oci::is_index(&src.descriptor().media_type) {
            let index: Index = serde_json::from_slice(src.bytes())
                .with_context(|| format!("source {}: parsing the index", src.name()))?;
            for d in index.manifests {
                add(d, i, &mut descs);
            }
        } else {
            add(src.descriptor().clone(), i, &mut descs);
        }
    }

    let media_type = if descs
        .iter()
        .all(|d| d.media_type.starts_with("application/vnd.docker."))
    {
        oci::DOCKER_MANIFEST_LIST
    } else {
        oci::OCI_INDEX
    };
    let mut index_annotations = BTreeMap::new();
    if media_type == oci::OCI_INDEX {
        for a in annotations {
            match a.level {
                AnnotationLevel::Index => {
                    index_annotations.insert(a.key.clone(), a.value.clone());
                }
                AnnotationLevel::ManifestDescriptor => {
                    let wanted = a.platform.as_ref().map(|p| p.to_string());
                    for d in &mut descs {
                        let matches = match &wanted {
                            None => true,
                            Some(w) => d.platform.as_ref().is_some_and(|p| &p.format() == w),
                        };
                        if matches {
                            d.annotations.insert(a.key.clone(), a.value.clone());
                        }
                    }
                }
                AnnotationLevel::Manifest => {
                    bail!("\"manifest\" annotations are not supported yet")
                }
                AnnotationLevel::Default => bail!("\"\" annotations are not supported yet"),
                AnnotationLevel::IndexDescriptor => {
                    bail!("\"index-descriptor\" annotations are invalid while creating an image")
                }
            }
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: media_type.into(),
        artifact_type: String::new(),
        manifests: descs,
        subject: None,
        annotations: index_annotations,
    };
    let bytes = gojson::marshal_indent(&serde_json::to_value(&index)?).into_bytes();
    let descriptor = Descriptor::new(media_type, Digest::sha256_of(&bytes), bytes.len() as i64);
    let parts = index
        .manifests
        .into_iter()
        .map(|d| {
            let src = source_of.get(&d.digest).copied().unwrap_or(0);
            (d, src)
        })
        .collect();
    Ok(Combined {
        bytes,
        descriptor,
        parts,
    })
}

/// buildx's `filterPlatforms`: an image must match one of `platforms`; an index keeps the
/// manifests that match, those without a platform, and attestations of kept images (and is
/// rewritten only when something was dropped).
fn filter_platforms(
    combined: Combined,
    platforms: &[crate::platform::Platform],
) -> Result<Combined> {
    if platforms.is_empty() {
        return Ok(combined);
    }
    let matches = |p: &Platform| {
        let p = p.normalized().format();
        platforms.iter().any(|w| w.to_string() == p)
    };
    if !oci::is_index(&combined.descriptor.media_type) {
        let Some(p) = &combined.descriptor.platform else {
            bail!("cannot filter platforms from a manifest without platform information");
        };
        if !matches(p) {
            bail!(
                "input platform {} does not match any of the provided platforms",
                p.format()
            );
        }
        return Ok(combined);
    }
    let mut index: Index =
        serde_json::from_slice(&combined.bytes).context("failed to parse index")?;
    let kept_images: HashSet<&Digest> = index
        .manifests
        .iter()
        .filter(|m| m.platform.as_ref().is_none_or(&matches))
        .map(|m| &m.digest)
        .collect();
    let keep: Vec<bool> = index
        .manifests
        .iter()
        .map(|m| {
            let attests_kept = m
                .annotations
                .get("vnd.docker.reference.type")
                .map(String::as_str)
                == Some("attestation-manifest")
                && m.annotations
                    .get("vnd.docker.reference.digest")
                    .and_then(|d| d.parse::<Digest>().ok())
                    .is_some_and(|d| {
                        index
                            .manifests
                            .iter()
                            .any(|s| s.digest == d && s.platform.as_ref().is_none_or(&matches))
                    });
            attests_kept || kept_images.contains(&m.digest)
        })
        .collect();
    if keep.iter().all(|k| *k) {
        return Ok(combined);
    }
    if !keep.iter().any(|k| *k) {
        bail!("none of the manifests match the provided platforms");
    }
    let mut kept = keep.iter();
    index.manifests.retain(|_| *kept.next().unwrap_or(&false));
    let digests: HashSet<Digest> = index.manifests.iter().map(|m| m.digest.clone()).collect();
    let bytes = gojson::marshal_indent(&serde_json::to_value(&index)?).into_bytes();
    let mut descriptor = Descriptor::new(
        combined.descriptor.media_type.clone(),
        Digest::sha256_of(&bytes),
        bytes.len() as i64,
    );
    descriptor.annotations = combined.descriptor.annotations.clone();
    Ok(Combined {
        bytes,
        descriptor,
        parts: combined
            .parts
            .into_iter()
            .filter(|(d, _)| digests.contains(&d.digest))
            .collect(),
    })
}

/// A manifest the target lacks, with what it needs.
struct Missing {
    descriptor: Descriptor,
    bytes: Bytes,
    is_index: bool,
    /// Blobs (config, layers) with the repository to take them from.
    blobs: Vec<(Descriptor, Repository)>,
}

/// Copies the manifests in `parts` (and everything they point at) into `target`: find what is
/// missing, make the blobs present, then put the manifests, children before their indexes.
async fn copy_into(
    client: &Client,
    target: &Repository,
    parts: &[(Descriptor, &Reference)],
    known: &HashMap<Digest, Bytes>,
) -> Result<()> {
    let found = futures::future::try_join_all(parts.iter().map(|(d, src)| {
        let from = src.repository.clone();
        missing(client, target, d.clone(), from, known)
    }))
    .await?;
    let mut manifests: Vec<Missing> = Vec::new();
    let mut seen = HashSet::new();
    for m in found.into_iter().flatten() {
        if seen.insert(m.descriptor.digest.clone()) {
            manifests.push(m);
        }
    }
    let mut blobs: Vec<(Descriptor, Repository)> = Vec::new();
    let mut seen_blobs = HashSet::new();
    for m in &manifests {
        for (b, from) in &m.blobs {
            if seen_blobs.insert(b.digest.clone()) {
                blobs.push((b.clone(), from.clone()));
            }
        }
    }
    futures::stream::iter(
        blobs
            .iter()
            .map(|(b, from)| ensure_blob(client, target, b, from)),
    )
    .buffer_unordered(BLOB_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    futures::future::try_join_all(
        manifests
            .iter()
            .filter(|m| !m.is_index)
            .map(|m| put_missing(client, target, m)),
    )
    .await?;
    // Nested indexes were listed after their children.
    for m in manifests.iter().filter(|m| m.is_index) {
        put_missing(client, target, m).await?;
    }
    Ok(())
}

async fn put_missing(client: &Client, target: &Repository, m: &Missing) -> Result<()> {
    client
        .put_manifest(
            target,
            m.descriptor.digest.as_str(),
            &m.descriptor.media_type,
            m.bytes.clone(),
        )
        .await?;
    Ok(())
}

/// The manifests under `desc` that `target` lacks, children first.
fn missing<'a>(
    client: &'a Client,
    target: &'a Repository,
    desc: Descriptor,
    from: Repository,
    known: &'a HashMap<Digest, Bytes>,
) -> BoxFuture<'a, Result<Vec<Missing>>> {
    Box::pin(async move {
        if client.manifest_exists(target, &desc.digest).await? {
            return Ok(Vec::new());
        }
        let bytes = match known.get(&desc.digest) {
            Some(b) => b.clone(),
            None => {
                let r = Reference::from_repository(from.clone()).with_digest(desc.digest.clone());
                client.get_manifest(&r).await?.bytes
            }
        };
        let media_type = if desc.media_type.is_empty() {
            oci::detect_media_type(&bytes).unwrap_or_default()
        } else {
            desc.media_type.clone()
        };
        let mut out = Vec::new();
        if oci::is_index(&media_type) {
            let index: Index = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing index {}", desc.digest))?;
            let children = futures::future::try_join_all(
                index
                    .manifests
                    .into_iter()
                    .map(|d| missing(client, target, d, from.clone(), known)),
            )
            .await?;
            out.extend(children.into_iter().flatten());
            out.push(Missing {
                descriptor: Descriptor { media_type, ..desc },
                bytes,
                is_index: true,
                blobs: Vec::new(),
            });
        } else {
            let m: ImageManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing manifest {}", desc.digest))?;
            let blobs = m.blobs().map(|b| (b.clone(), from.clone())).collect();
            out.push(Missing {
                descriptor: Descriptor { media_type, ..desc },
                bytes,
                is_index: false,
                blobs,
            });
        }
        Ok(out)
    })
}

/// Makes blob `blob` present in `target`: nothing when it is, a mount from `from` when the
/// registry allows it, else a copy streamed from `from` (never more bytes than its descriptor
/// says, never the whole blob in memory).
async fn ensure_blob(
    client: &Client,
    target: &Repository,
    blob: &Descriptor,
    from: &Repository,
) -> Result<()> {
    let digest = &blob.digest;
    if client.blob_exists(target, digest).await? {
        return Ok(());
    }
    let session = if from.registry == target.registry {
        match client.mount_blob(target, digest, from).await? {
            Mount::Mounted => return Ok(()),
            Mount::Upload(session) => Some(session),
        }
    } else {
        None
    };
    // A negative size is "unknown" (descriptors from daemons too old to report one).
    let size = u64::try_from(blob.size).ok();
    client
        .copy_blob(from, target, digest, size, session)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn image(n: u8, media_type: &str, arch: &str) -> Resolved {
        let mut d = Descriptor::new(media_type, digest(n), 100 + n as i64);
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            ..Default::default()
        });
        Resolved {
            reference: format!("127.0.0.1:5000/a@{}", digest(n)).parse().unwrap(),
            descriptor: d,
            bytes: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn sources_take_the_one_repository_named() {
        let tags: Vec<Reference> = vec!["127.0.0.1:5000/app:merged".parse().unwrap()];
        let d = digest(1);
        let json = format!(
            r#"{{"mediaType":"{}","digest":"{d}","size":3}}"#,
            oci::OCI_MANIFEST
        );
        let s = sources_from_args(&[d.to_string(), json], &tags).unwrap();
        assert_eq!(
            s[0].reference.to_string(),
            format!("127.0.0.1:5000/app@{d}")
        );
        assert_eq!(s[1].reference.to_string(), "127.0.0.1:5000/app");
        assert_eq!(s[1].descriptor.as_ref().unwrap().size, 3);
        let two = sources_from_args(&["127.0.0.1:5000/other:x".into(), d.to_string()], &tags);
        assert!(two
            .unwrap_err()
            .to_string()
            .contains("cannot infer repository"));
        assert!(sources_from_args(&[d.to_string()], &[]).is_err());
        let bad = sources_from_args(&["Not A Ref".into()], &tags).unwrap_err();
        assert!(
            format!("{bad:#}").contains("failed to parse source \"Not A Ref\""),
            "{bad:#}"
        );
    }

    #[test]
    fn two_oci_images_make_an_oci_index() {
        let c = combine(
            &[
                image(1, oci::OCI_MANIFEST, "amd64"),
                image(2, oci::OCI_MANIFEST, "arm64"),
            ],
            &[],
            true,
        )
        .unwrap();
        assert_eq!(c.descriptor.media_type, oci::OCI_INDEX);
        let text = String::from_utf8(c.bytes.clone()).unwrap();
        assert!(text.starts_with("{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n  \"manifests\": [\n"), "{text}");
        assert!(text.contains("\"platform\": {\n        \"architecture\": \"arm64\",\n        \"os\": \"linux\"\n      }"), "{text}");
        assert_eq!(c.descriptor.digest, Digest::sha256_of(&c.bytes));
        assert_eq!(c.parts.iter().map(|p| p.1).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn docker_images_make_a_manifest_list_and_duplicates_merge() {
        let a = image(1, oci::DOCKER_MANIFEST, "amd64");
        let c = combine(
            &[a.clone(), a, image(2, oci::DOCKER_MANIFEST, "arm64")],
            &[],
            true,
        )
        .unwrap();
        assert_eq!(c.descriptor.media_type, oci::DOCKER_MANIFEST_LIST);
        assert_eq!(c.parts.len(), 2);
    }

    #[test]
    fn one_image_is_copied_unless_an_index_is_preferred() {
        let c = combine(&[image(1, oci::OCI_MANIFEST, "amd64")], &[], false).unwrap();
        assert_eq!(c.bytes, b"{}");
        assert_eq!(c.descriptor.media_type, oci::OCI_MANIFEST);
        let c = combine(&[image(1, oci::OCI_MANIFEST, "amd64")], &[], true).unwrap();
        assert_eq!(c.descriptor.media_type, oci::OCI_INDEX);
    }

    #[test]
    fn platform_filters_keep_attestations_of_kept_images() {
        let mut att = image(3, oci::OCI_MANIFEST, "unknown");
        att.descriptor.platform.as_mut().unwrap().os = "unknown".into();
        att.descriptor.annotations = BTreeMap::from([
            (
                "vnd.docker.reference.type".into(),
                "attestation-manifest".into(),
            ),
            ("vnd.docker.reference.digest".into(), digest(2).to_string()),
        ]);
        let sources = [
            image(1, oci::OCI_MANIFEST, "amd64"),
            image(2, oci::OCI_MANIFEST, "arm64"),
            att,
        ];
        let all = combine(&sources, &[], true).unwrap();
        let arm: Vec<crate::platform::Platform> = vec!["linux/arm64".parse().unwrap()];
        let c = filter_platforms(all.clone(), &arm).unwrap();
        let index: Index = serde_json::from_slice(&c.bytes).unwrap();
        let kept: Vec<_> = index.manifests.iter().map(|m| m.digest.clone()).collect();
        assert_eq!(kept, vec![digest(2), digest(3)]);
        assert_eq!(c.parts.len(), 2);
        assert_eq!(c.descriptor.digest, Digest::sha256_of(&c.bytes));
        assert_eq!(filter_platforms(all.clone(), &[]).unwrap(), all);
        let s390x = vec!["linux/s390x".parse().unwrap()];
        assert!(filter_platforms(all, &s390x).is_err());
    }

    #[test]
    fn annotations_go_where_their_type_says() {
        let ann = |s: &str| Annotation::parse(s).unwrap();
        let mut all = ann("index:org.opencontainers.image.title=t");
        all.extend(ann("manifest-descriptor[linux/arm64]:k=v"));
        let c = combine(
            &[
                image(1, oci::OCI_MANIFEST, "amd64"),
                image(2, oci::OCI_MANIFEST, "arm64"),
            ],
            &all,
            true,
        )
        .unwrap();
        let index: Index = serde_json::from_slice(&c.bytes).unwrap();
        assert_eq!(index.annotations["org.opencontainers.image.title"], "t");
        assert!(index.manifests[0].annotations.is_empty());
        assert_eq!(index.manifests[1].annotations["k"], "v");
        let err = combine(&[image(1, oci::OCI_MANIFEST, "amd64")], &ann("k=v"), true).unwrap_err();
        assert_eq!(err.to_string(), "\"\" annotations are not supported yet");
        let err = combine(
            &[image(1, oci::OCI_MANIFEST, "amd64")],
            &ann("index-descriptor:k=v"),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid while creating an image"));
    }
}
