//! Importing an OCI layout tarball into a containerd namespace, as `ctr images import` does:
//! under a lease, every blob goes into the content store with the garbage-collection labels
//! that tie it to its parent, then one image record per name points at the top descriptor (an
//! index stays whole), then the lease goes.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::layout::{LayoutTar, OciDescriptor};
use super::{Containerd, Descriptor};

/// The annotation BuildKit and containerd put the full image name in.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's reference-name annotation: a full name for some writers, only the tag for others.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Image records created or updated, with the digest each points at.
    pub images: Vec<(String, String)>,
    /// Blobs written; the rest were in the namespace already.
    pub written: usize,
    pub present: usize,
}

/// Imports the OCI layout tarball at `tar` into `client`'s namespace. Image names come from the
/// layout's annotations, else from `names` (normalised as Docker does), else a digest name
/// (`import-DATE@DIGEST`, as `ctr images import --digests` makes).
pub async fn import_oci_tar(
    client: &Containerd,
    tar: &Path,
    names: &[String],
) -> Result<ImportReport> {
    let tar_path = tar.to_path_buf();
    let (layout, tops, blobs) = tokio::task::spawn_blocking(move || -> Result<_> {
        let layout = LayoutTar::open(&tar_path)?;
        let tops = layout.top_descriptors()?;
        let blobs = layout.blobs(&tops)?;
        Ok((layout, tops, blobs))
    })
    .await
    .context("reading the image to import")??;
    let images = image_names(&tops, names)?;

    let lease = client.create_lease().await?;
    // Interrupted (Ctrl-C drops this future), the lease is still deleted before kiln exits.
    let pending = {
        let (client, lease) = (client.clone(), lease.clone());
        crate::interrupt::register(move || {
            Box::pin(async move {
                let _ = client.delete_lease(&lease).await;
            })
        })
    };
    let stored = async {
        let mut report = ImportReport {
            images: Vec::new(),
            written: 0,
            present: 0,
        };
        for blob in &blobs {
            match client.content_labels(&blob.digest).await? {
                Some(have) => {
                    client.lease_content(&lease, &blob.digest).await?;
                    let missing: HashMap<String, String> = blob
                        .labels
                        .iter()
                        .filter(|(k, v)| have.get(*k) != Some(*v))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !missing.is_empty() {
                        client.add_content_labels(&blob.digest, &missing).await?;
                    }
                    report.present += 1;
                }
                None => {
                    let data = layout.blob_reader(&blob.digest).await?;
                    client
                        .write_content(&lease, &blob.digest, blob.size, blob.labels.clone(), data)
                        .await?;
                    report.written += 1;
                }
            }
        }
        for (name, top) in &images {
            let target = Descriptor {
                media_type: top.media_type.clone(),
                digest: top.digest.clone(),
                size: top.size as i64,
                annotations: HashMap::new(),
            };
            client.set_image(&lease, name, &target).await?;
            report.images.push((name.clone(), top.digest.clone()));
        }
        anyhow::Ok(report)
    }
    .await;
    let released = client.delete_lease(&lease).await;
    pending.done();
    let report = stored.with_context(|| {
        format!(
            "importing into containerd namespace {:?}",
            client.namespace()
        )
    })?;
    if let Err(e) = released {
        // Everything is referenced by an image by now; the lease expires by itself.
        tracing::warn!("{e}");
    }
    Ok(report)
}

/// Which image record points at which top descriptor.
fn image_names(
    tops: &[OciDescriptor],
    fallback: &[String],
) -> Result<Vec<(String, OciDescriptor)>> {
    let mut out = Vec::new();
    for top in tops {
        let name = top
            .annotations
            .get(ANNOTATION_IMAGE_NAME)
            .or_else(|| {
                top.annotations
                    .get(ANNOTATION_REF_NAME)
                    .filter(|n| n.contains(['/', ':', '@']))
            })
            .filter(|n| !n.is_empty());
        if let Some(name) = name {
            out.push((normalize_name(name)?, top.clone()));
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let top = &tops[0];
    if fallback.is_empty() {
        let date = super::utc_date(std::time::SystemTime::now());
        return Ok(vec![(format!("import-{date}@{}", top.digest), top.clone())]);
    }
    fallback
        .iter()
        .map(|n| Ok((normalize_name(n)?, top.clone())))
        .collect()
}

/// An image name as Docker normalises it: `alpine` is `docker.io/library/alpine:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("invalid image name {name:?}");
    }
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    let (domain, path) = match rest.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, path.to_string())
        }
        _ => ("docker.io", rest.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if path.is_empty() || path.split('/').any(str::is_empty) {
        bail!("invalid image name {name:?}");
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    let tagged = last.contains(':');
    let mut out = format!("{domain}/{path}");
    if !tagged && digest.is_none() {
        out.push_str(":latest");
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        for (input, want) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3", "docker.io/library/alpine:3"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/library/x:latest", "docker.io/library/x:latest"),
            ("index.docker.io/x", "docker.io/library/x:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1"),
            ("reg:5000/app", "reg:5000/app:latest"),
            (
                "app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "docker.io/library/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ] {
            assert_eq!(normalize_name(input).unwrap(), want, "{input}");
        }
        assert!(normalize_name("").is_err());
        assert!(normalize_name("a//b").is_err());
    }

    fn top(annotations: &[(&str, &str)]) -> OciDescriptor {
        OciDescriptor {
            media_type: super::super::layout::MEDIA_OCI_INDEX.into(),
            digest: "sha256:abc".into(),
            size: 1,
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn names_come_from_annotations_then_tags_then_the_digest() {
        let tops = vec![top(&[
            (ANNOTATION_IMAGE_NAME, "docker.io/library/a:1"),
            (ANNOTATION_REF_NAME, "1"),
        ])];
        let names = image_names(&tops, &["ignored".into()]).unwrap();
        assert_eq!(names[0].0, "docker.io/library/a:1");
        let tops = vec![top(&[(ANNOTATION_REF_NAME, "1")])];
        let names = image_names(&tops, &["b".into(), "c:2".into()]).unwrap();
        let names: Vec<_> = names.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["docker.io/library/b:latest", "docker.io/library/c:2"]
        );
        let names = image_names(&tops, &[]).unwrap();
        assert!(names[0].0.starts_with("import-"), "{}", names[0].0);
        assert!(names[0].0.ends_with("@sha256:abc"), "{}", names[0].0);
    }
}
