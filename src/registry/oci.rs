//! The OCI / Docker manifest types the registry client and imagetools read and write, with the
//! JSON field order and omission rules of the Go image-spec structs, so a document kiln writes
//! hashes the same as the one buildx writes from the same inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Everything kiln accepts from a manifest endpoint, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, *;q=0.8";

/// The annotation an attestation manifest carries to name the image it describes.
pub const REFERENCE_DIGEST_ANNOTATIONS: [&str; 2] =
    ["com.docker.reference.digest", "vnd.docker.reference.digest"];

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST_SCHEMA1 || media_type == DOCKER_MANIFEST_SCHEMA1_SIGNED
}

/// Layers a registry must not be asked to hold (Windows base layers fetched from their URLs).
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

/// The media type of a manifest document that did not say, as containerd guesses it.
pub fn detect_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        #[serde(default)]
        config: Option<serde_json::Value>,
        #[serde(rename = "fsLayers", default)]
        fs_layers: Option<Vec<serde_json::Value>>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    Some(if !p.media_type.is_empty() {
        p.media_type
    } else if p.config.is_some() {
        DOCKER_MANIFEST.into()
    } else if p.fs_layers.is_some_and(|l| !l.is_empty()) {
        DOCKER_MANIFEST_SCHEMA1.into()
    } else {
        DOCKER_MANIFEST_LIST.into()
    })
}

/// An OCI content descriptor (image-spec `Descriptor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    #[serde(default)]
    pub size: i64,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub urls: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Embedded content, base64 as in the JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub artifact_type: String,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: i64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            data: None,
            platform: None,
            artifact_type: String::new(),
        }
    }

    /// The image this attestation manifest describes, when it is one.
    pub fn attestation_subject(&self) -> Option<&str> {
        REFERENCE_DIGEST_ANNOTATIONS
            .iter()
            .find_map(|k| self.annotations.get(*k).map(String::as_str))
    }
}

/// An OCI platform (image-spec `Platform`), as it appears in descriptors: not normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// `os/arch[/variant]`, as containerd's `platforms.Format` writes it (no normalising; empty
    /// parts are left out, and a platform without OS is `unknown`).
    pub fn format(&self) -> String {
        if self.os.is_empty() {
            return "unknown".into();
        }
        [&self.os, &self.architecture, &self.variant]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The normalised platform an image config (its JSON) declares.
    pub fn of_image_config(config: &[u8]) -> Result<Platform, serde_json::Error> {
        let p: Platform = serde_json::from_slice(config)?;
        Ok(Platform {
            architecture: p.architecture,
            os: p.os,
            variant: p.variant,
            ..Default::default()
        }
        .normalized())
    }

    /// The normalised form (`linux/arm64/v8` is `linux/arm64`), what platform filters compare.
    pub fn normalized(&self) -> Platform {
        let spec = if self.variant.is_empty() {
            format!("{}/{}", self.os, self.architecture)
        } else {
            format!("{}/{}/{}", self.os, self.architecture, self.variant)
        };
        match spec.parse::<crate::platform::Platform>() {
            Ok(p) => Platform {
                architecture: p.arch,
                os: p.os,
                variant: p.variant.unwrap_or_default(),
                ..self.clone()
            },
            Err(_) => self.clone(),
        }
    }
}

/// An image index or Docker manifest list (image-spec `Index`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: i64,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub artifact_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image manifest the copy needs: what blobs it points at.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    #[serde(default, deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// The blobs a registry must hold before it accepts this manifest.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(
            self.layers
                .iter()
                .filter(|l| !is_non_distributable(&l.media_type)),
        )
    }
}

/// Go's `json` reads `null` as the zero value; serde would fail on it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_detected_like_containerd() {
        assert_eq!(
            detect_media_type(br#"{"mediaType":"x","config":{}}"#).as_deref(),
            Some("x")
        );
        assert_eq!(
            detect_media_type(br#"{"config":{}}"#).as_deref(),
            Some(DOCKER_MANIFEST)
        );
        assert_eq!(
            detect_media_type(br#"{"manifests":[]}"#).as_deref(),
            Some(DOCKER_MANIFEST_LIST)
        );
    }

    #[test]
    fn platforms_format_and_normalise() {
        let p = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: "v8".into(),
            ..Default::default()
        };
        assert_eq!(p.format(), "linux/arm64/v8");
        assert_eq!(p.normalized().format(), "linux/arm64");
        assert_eq!(Platform::default().format(), "unknown");
    }
}
