//! `imagetools inspect`: what buildx prints for an image in a registry: the summary (name,
//! media type, digest, and the manifest list with platforms), the raw bytes, or a `--format`
//! template over the manifest, image configs, provenance and SBOM attestations.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::gojson;
use super::tabwriter::align;
use super::template::Template;
use crate::registry::oci::{self, ImageManifest};
use crate::registry::{Client, Descriptor, Digest, Index, Reference, Repository};

/// What `inspect` prints.
#[derive(Debug, Clone)]
pub enum Output {
    /// The manifest or index exactly as stored (`--raw`).
    Raw,
    /// buildx's default summary.
    Summary,
    /// A `--format` template.
    Template(Template),
}

/// Renders `reference` (typed by the user as `name`) for `output`.
pub async fn inspect(
    client: &Client,
    name: &str,
    reference: &Reference,
    output: &Output,
) -> Result<Vec<u8>> {
    let reference = reference.tag_or_default();
    let fetched = client.get_manifest(&reference).await?;
    let descriptor = Descriptor::new(
        fetched.media_type.clone(),
        fetched.digest.clone(),
        fetched.bytes.len() as i64,
    );
    match output {
        Output::Raw => Ok(fetched.bytes.to_vec()),
        Output::Summary => summary(&reference, &descriptor, &fetched.bytes),
        Output::Template(t) if t.is_manifest_summary() => {
            summary(&reference, &descriptor, &fetched.bytes)
        }
        Output::Template(t) => {
            let root =
                template_input(client, name, &reference, &descriptor, &fetched.bytes, t).await?;
            Ok(t.render(&root)?.into_bytes())
        }
    }
}

fn summary(reference: &Reference, descriptor: &Descriptor, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = align(&format!(
        "Name:\t{reference}\nMediaType:\t{}\nDigest:\t{}\n",
        descriptor.media_type, descriptor.digest
    ));
    if oci::is_index(&descriptor.media_type) {
        let index: Index = serde_json::from_slice(bytes).context("parsing the index")?;
        out.push_str(&align("\t\nManifests:\t\n"));
        out.push_str(&manifest_list(reference, &index));
    }
    Ok(out.into_bytes())
}

/// The `Manifests:` block; annotations are aligned on their own, as buildx flushes before them.
fn manifest_list(reference: &Reference, index: &Index) -> String {
    const PFX: &str = "  ";
    let mut out = String::new();
    let mut block = String::new();
    for (i, m) in index.manifests.iter().enumerate() {
        if i != 0 {
            block.push_str("\t\n");
        }
        block.push_str(&format!(
            "{PFX}Name:\t{}\n",
            reference.with_digest(m.digest.clone())
        ));
        block.push_str(&format!("{PFX}MediaType:\t{}\n", m.media_type));
        let Some(p) = &m.platform else { continue };
        block.push_str(&format!("{PFX}Platform:\t{}\n", p.format()));
        if !p.os_version.is_empty() {
            block.push_str(&format!("{PFX}OSVersion:\t{}\n", p.os_version));
        }
        if !p.os_features.is_empty() {
            block.push_str(&format!("{PFX}OSFeatures:\t{}\n", p.os_features.join(", ")));
        }
        if !m.urls.is_empty() {
            block.push_str(&format!("{PFX}URLs:\t{}\n", m.urls.join(", ")));
        }
        if !m.annotations.is_empty() {
            block.push_str(&format!("{PFX}Annotations:\t\n"));
            out.push_str(&align(&block));
            block.clear();
            let mut annotations = String::new();
            for (k, v) in &m.annotations {
                annotations.push_str(&format!("{PFX}{PFX}{k}:\t{v}\n"));
            }
            out.push_str(&align(&annotations));
        }
    }
    out.push_str(&align(&block));
    out
}

/// What one platform's image brings to a template.
#[derive(Default)]
struct Asset {
    config: Option<Value>,
    provenance: Option<Value>,
    sbom: Option<Value>,
}

/// Everything reachable from the inspected image, keyed by platform (`linux/arm64`).
#[derive(Default)]
struct Loaded {
    /// platform -> image manifest digest.
    images: BTreeMap<String, (Digest, ImageManifest)>,
    /// image digest -> its attestation manifests.
    attestations: BTreeMap<Digest, Vec<ImageManifest>>,
}

async fn template_input(
    client: &Client,
    name: &str,
    reference: &Reference,
    descriptor: &Descriptor,
    bytes: &Bytes,
    template: &Template,
) -> Result<Value> {
    let manifest = if oci::is_index(&descriptor.media_type) {
        let index: Index = serde_json::from_slice(bytes).context("parsing the index")?;
        let mut m = serde_json::Map::new();
        m.insert("schemaVersion".into(), json!(index.schema_version));
        if !index.media_type.is_empty() {
            m.insert("mediaType".into(), json!(index.media_type));
        }
        m.insert("digest".into(), json!(descriptor.digest));
        m.insert("size".into(), json!(descriptor.size));
        m.insert("manifests".into(), serde_json::to_value(&index.manifests)?);
        if !index.annotations.is_empty() {
            m.insert(
                "annotations".into(),
                serde_json::to_value(&index.annotations)?,
            );
        }
        Value::Object(m)
    } else if oci::is_image_manifest(&descriptor.media_type) {
        serde_json::to_value(descriptor)?
    } else {
        Value::Null
    };

    let repo = &reference.repository;
    let mut loaded = Loaded::default();
    load(
        client,
        repo,
        descriptor.clone(),
        Some(bytes.clone()),
        &mut loaded,
    )
    .await?;
    let mut assets: BTreeMap<String, Asset> = BTreeMap::new();
    for (platform, (digest, m)) in &loaded.images {
        let mut asset = Asset::default();
        if template.uses("Image") {
            let config = client.get_small_blob(repo, &m.config.digest).await?;
            asset.config = Some(go_image(&config)?);
        }
        let attestations = loaded
            .attestations
            .get(digest)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if template.uses("Provenance") {
            asset.provenance = provenance(client, repo, attestations).await?;
        }
        if template.uses("SBOM") {
            asset.sbom = sbom(client, repo, attestations).await?;
        }
        assets.insert(platform.clone(), asset);
    }

    let mut root = serde_json::Map::new();
    root.insert("Name".into(), json!(name));
    root.insert("Manifest".into(), manifest);
    root.insert(
        super::template::MULTI_KEY.into(),
        Value::Bool(assets.len() > 1),
    );
    if assets.len() > 1 {
        let collect = |f: fn(&Asset) -> Option<Value>| -> Value {
            Value::Object(
                assets
                    .iter()
                    .filter_map(|(p, a)| f(a).map(|v| (p.clone(), v)))
                    .collect(),
            )
        };
        root.insert("Image".into(), collect(|a| a.config.clone()));
        root.insert("Provenance".into(), collect(|a| a.provenance.clone()));
        root.insert("SBOM".into(), collect(|a| a.sbom.clone()));
    } else {
        let only = assets.values().next();
        root.insert(
            "Image".into(),
            only.and_then(|a| a.config.clone()).unwrap_or(Value::Null),
        );
        root.insert(
            "Provenance".into(),
            only.and_then(|a| a.provenance.clone())
                .unwrap_or_else(|| json!({})),
        );
        root.insert(
            "SBOM".into(),
            only.and_then(|a| a.sbom.clone())
                .unwrap_or_else(|| json!({})),
        );
    }
    Ok(Value::Object(root))
}

/// Walks an index or manifest: images by platform, attestations by the image they describe.
fn load<'a>(
    client: &'a Client,
    repo: &'a Repository,
    desc: Descriptor,
    bytes: Option<Bytes>,
    loaded: &'a mut Loaded,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let bytes = match bytes {
            Some(b) => b,
            None => {
                let r = Reference::from_repository(repo.clone()).with_digest(desc.digest.clone());
                client.get_manifest(&r).await?.bytes
            }
        };
        if oci::is_index(&desc.media_type) {
            let index: Index = serde_json::from_slice(&bytes).context("parsing the index")?;
            let children =
                futures::future::try_join_all(index.manifests.iter().map(|d| async move {
                    let r = Reference::from_repository(repo.clone()).with_digest(d.digest.clone());
                    Ok::<_, anyhow::Error>((d.clone(), client.get_manifest(&r).await?.bytes))
                }))
                .await?;
            for (d, b) in children {
                load(client, repo, d, Some(b), loaded).await?;
            }
        } else if oci::is_image_manifest(&desc.media_type) {
            let m: ImageManifest = serde_json::from_slice(&bytes).context("parsing a manifest")?;
            if let Some(subject) = desc.attestation_subject() {
                let subject: Digest = subject
                    .parse()
                    .with_context(|| format!("attestation {}", desc.digest))?;
                loaded.attestations.entry(subject).or_default().push(m);
            } else {
                let platform = match &desc.platform {
                    Some(p) => p.normalized(),
                    None => super::create::config_platform(client, repo, &bytes).await?,
                };
                loaded
                    .images
                    .insert(platform.format(), (desc.digest.clone(), m));
            }
        }
        Ok(())
    })
}

const INTOTO: &str = "application/vnd.in-toto+json";
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

fn is_intoto(media_type: &str) -> bool {
    media_type == INTOTO
        || (media_type.starts_with("application/vnd.in-toto.") && media_type.ends_with("+dsse"))
}

/// The predicates of the in-toto layers whose predicate type `wanted` accepts.
async fn predicates(
    client: &Client,
    repo: &Repository,
    attestations: &[ImageManifest],
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for m in attestations {
        let mut found = Vec::new();
        for layer in &m.layers {
            let kind = layer
                .annotations
                .get(PREDICATE_TYPE)
                .map(String::as_str)
                .unwrap_or("");
            if !is_intoto(&layer.media_type) || !wanted(kind) {
                continue;
            }
            let mut data = client.get_small_blob(repo, &layer.digest).await?.to_vec();
            if layer.media_type != INTOTO {
                #[derive(Deserialize)]
                struct Envelope {
                    payload: String,
                }
                let env: Envelope =
                    serde_json::from_slice(&data).context("parsing a DSSE envelope")?;
                data = base64::engine::general_purpose::STANDARD
                    .decode(env.payload)
                    .context("decoding a DSSE payload")?;
            }
            #[derive(Deserialize)]
            struct Statement {
                #[serde(default)]
                predicate: Value,
            }
            let st: Statement =
                serde_json::from_slice(&data).context("parsing an in-toto statement")?;
            found.push(gojson::sort_keys(st.predicate));
        }
        out.push(found);
    }
    Ok(out)
}

/// buildx's provenance stub: `{"SLSA": predicate}` from the last attestation that has one.
async fn provenance(
    client: &Client,
    repo: &Repository,
    attestations: &[ImageManifest],
) -> Result<Option<Value>> {
    let found = predicates(client, repo, attestations, |t| {
        t.starts_with("https://slsa.dev/provenance/")
    })
    .await?;
    Ok(found
        .into_iter()
        .filter_map(|per_manifest| per_manifest.into_iter().next())
        .next_back()
        .map(|p| json!({ "SLSA": p })))
}

/// buildx's SBOM stub: the first SPDX document and any further ones.
async fn sbom(
    client: &Client,
    repo: &Repository,
    attestations: &[ImageManifest],
) -> Result<Option<Value>> {
    let found = predicates(client, repo, attestations, |t| {
        t == "https://spdx.dev/Document"
    })
    .await?;
    let mut all = found.into_iter().flatten();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    let mut stub = serde_json::Map::new();
    if !first.is_null() {
        stub.insert("SPDX".into(), first);
    }
    let more: Vec<Value> = all.collect();
    if !more.is_empty() {
        stub.insert("AdditionalSPDXs".into(), Value::Array(more));
    }
    Ok(Some(Value::Object(stub)))
}

/// An image config as Go's image-spec `Image` struct re-marshals it: known fields only, in
/// struct order, maps sorted.
fn go_image(config: &[u8]) -> Result<Value> {
    let image: GoImage = serde_json::from_slice(config).context("parsing the image config")?;
    Ok(serde_json::to_value(image)?)
}

// Every field below is read as its zero value when missing (`#[serde(default)]`), most are left
// out when empty, as Go's `omitempty` does, and lists and maps may be `null` (`nullable`).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct GoImage {
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "go_time")]
    created: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    author: String,
    architecture: String,
    os: String,
    #[serde(rename = "os.version", skip_serializing_if = "String::is_empty")]
    os_version: String,
    #[serde(
        rename = "os.features",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    os_features: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    variant: String,
    #[serde(deserialize_with = "nullable")]
    config: GoImageConfig,
    #[serde(deserialize_with = "nullable")]
    rootfs: GoRootFs,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    history: Vec<GoHistory>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct GoImageConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    exposed_ports: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    cmd: Vec<String>,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    volumes: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "String::is_empty")]
    working_dir: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    stop_signal: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    args_escaped: bool,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct GoRootFs {
    #[serde(rename = "type")]
    kind: String,
    /// Go writes a missing list as `null`.
    diff_ids: Option<Vec<String>>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct GoHistory {
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "go_time")]
    created: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    created_by: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    author: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    comment: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    empty_layer: bool,
}

/// Go's `struct{}`: always `{}`.
#[derive(Default)]
struct Empty;

impl Serialize for Empty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Empty)
    }
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn go_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|t| rfc3339_nano(&t)))
}

/// A timestamp as Go's `time.Time` writes it back: fraction without trailing zeros, UTC as `Z`.
fn rfc3339_nano(t: &str) -> String {
    let (body, zone) = if let Some(b) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        (b, "Z")
    } else if t.len() > 6 && matches!(t.as_bytes()[t.len() - 6], b'+' | b'-') {
        let (b, z) = t.split_at(t.len() - 6);
        (
            b,
            if z == "+00:00" || z == "-00:00" {
                "Z"
            } else {
                z
            },
        )
    } else {
        return t.to_string();
    };
    let body = match body.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => body.to_string(),
    };
    format!("{body}{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn summary_matches_buildx_layout() {
        let r: Reference = "127.0.0.1:5000/busybox:latest".parse().unwrap();
        let mut amd = Descriptor::new(oci::OCI_MANIFEST, d(1), 1);
        amd.platform = Some(crate::registry::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        });
        let index = Index {
            schema_version: 2,
            media_type: oci::OCI_INDEX.into(),
            artifact_type: String::new(),
            manifests: vec![amd.clone(), amd],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&index).unwrap();
        let top = Descriptor::new(oci::OCI_INDEX, d(9), bytes.len() as i64);
        let text = String::from_utf8(summary(&r, &top, &bytes).unwrap()).unwrap();
        let expected = format!(
            "Name:      127.0.0.1:5000/busybox:latest\n\
             MediaType: application/vnd.oci.image.index.v1+json\n\
             Digest:    {}\n           \nManifests: \n  \
             Name:      127.0.0.1:5000/busybox:latest@{}\n  \
             MediaType: application/vnd.oci.image.manifest.v1+json\n  \
             Platform:  linux/amd64\n             \n  \
             Name:      127.0.0.1:5000/busybox:latest@{}\n  \
             MediaType: application/vnd.oci.image.manifest.v1+json\n  \
             Platform:  linux/amd64\n",
            d(9),
            d(1),
            d(1)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn image_configs_are_rewritten_like_go() {
        let v = go_image(br#"{"architecture":"amd64","os":"linux","extra":1,"config":{"Env":["A=1"],"Labels":{"b":"2","a":"1"}},"rootfs":{"type":"layers","diff_ids":["sha256:x"]},"created":"2024-01-02T03:04:05.120000000+00:00"}"#).unwrap();
        assert_eq!(
            gojson::marshal_indent(&v).replace([' ', '\n'], ""),
            r#"{"created":"2024-01-02T03:04:05.12Z","architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Labels":{"a":"1","b":"2"}},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#
        );
        let v = go_image(br#"{"architecture":"arm64","os":"linux"}"#).unwrap();
        assert_eq!(
            gojson::marshal_indent(&v).replace([' ', '\n'], ""),
            r#"{"architecture":"arm64","os":"linux","config":{},"rootfs":{"type":"","diff_ids":null}}"#
        );
        // Go's field names, in struct order; `null` lists read as empty and are left out.
        let config = r#"{"User":"u","ExposedPorts":{"80/tcp":{}},"Env":null,"Entrypoint":["e"],"Cmd":["c"],"Volumes":{"/v":{}},"WorkingDir":"/w","Labels":{"l":"1"},"StopSignal":"SIGTERM","ArgsEscaped":true}"#;
        let v = go_image(
            format!(r#"{{"os.features":null,"os":"linux","config":{config}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            gojson::marshal_indent(&v["config"]).replace([' ', '\n'], ""),
            config.replace(r#""Env":null,"#, "")
        );
    }
}
