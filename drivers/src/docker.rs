//! The `docker` driver: the Docker Engine's embedded BuildKit, reached over the Docker API.
//!
//! BuildKit's gRPC rides on `POST /grpc` upgraded to h2c; the session rides on `POST /session`
//! upgraded to h2c, where the daemon is the HTTP/2 client. What the node can do is read from the
//! labels of its workers: the containerd snapshotter label means the containerd image store, and
//! with it OCI/Docker exporters, cache export and multi-platform images.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::docker_api::{DockerConnection, DockerEndpoint};
use crate::tls::TlsFiles;
use crate::{
    BoxIo, Driver, DriverError, DriverKind, Features, NodeConfig, NodeStatus, RegistryLogin,
};

/// The worker label the Engine sets when it uses the containerd image store.
const SNAPSHOTTER_LABEL: &str = "org.mobyproject.buildkit.worker.snapshotter";

#[derive(Debug)]
pub struct DockerDriver {
    endpoint: DockerConnection,
}

/// The docker driver takes no options: the daemon is configured through `daemon.json`.
pub fn validate_opts(opts: &BTreeMap<String, String>) -> Result<(), DriverError> {
    match opts.keys().next() {
        Some(k) => Err(DriverError::InvalidOption(
            k.clone(),
            "the docker driver takes no driver options".into(),
        )),
        None => Ok(()),
    }
}

impl DockerDriver {
    pub fn new(node: &NodeConfig) -> Result<Self, DriverError> {
        Self::with_tls(node, None)
    }

    /// A node whose Engine is reached over TLS when `tls` is given and the endpoint is TCP (the
    /// Docker context's or `DOCKER_TLS_VERIFY`'s material, resolved by the caller).
    pub fn with_tls(node: &NodeConfig, tls: Option<&TlsFiles>) -> Result<Self, DriverError> {
        validate_opts(&node.driver_opts)?;
        Ok(DockerDriver {
            endpoint: DockerConnection::new(DockerEndpoint::parse(&node.endpoint)?, tls)?,
        })
    }

    pub fn endpoint(&self) -> &DockerEndpoint {
        self.endpoint.endpoint()
    }

    pub fn connection(&self) -> &DockerConnection {
        &self.endpoint
    }
}

#[async_trait]
impl Driver for DockerDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Docker
    }

    async fn bootstrap(&self) -> Result<(), DriverError> {
        // The Engine runs its BuildKit already; bootstrapping is proving we can reach it.
        self.version().await.map(|_| ())
    }

    async fn status(&self) -> NodeStatus {
        match self.version().await {
            Ok(_) => NodeStatus::Running,
            Err(e) => NodeStatus::Inactive(e.to_string()),
        }
    }

    async fn version(&self) -> Result<String, DriverError> {
        let api = self.endpoint.api()?;
        let v = tokio::time::timeout(std::time::Duration::from_secs(10), api.version())
            .await
            .map_err(|_| DriverError::Unreachable {
                endpoint: self.endpoint().as_url(),
                reason: "no answer within 10s".into(),
            })?
            .map_err(|e| DriverError::Unreachable {
                endpoint: self.endpoint().as_url(),
                reason: crate::docker_api::plain_to_tls_hint(&api_message(&e)),
            })?;
        let v = v.version.unwrap_or_default();
        Ok(buildkit_version_for_engine(&v))
    }

    async fn stop(&self) -> Result<(), DriverError> {
        // The Engine's BuildKit lives and dies with the Engine; nothing to stop.
        Ok(())
    }

    async fn remove(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn dial(&self) -> Result<BoxIo, DriverError> {
        self.endpoint.hijack("/grpc", "h2c", &[]).await
    }

    async fn dial_session(
        &self,
        headers: &[(String, String)],
    ) -> Result<Option<BoxIo>, DriverError> {
        self.endpoint
            .hijack("/session", "h2c", headers)
            .await
            .map(Some)
    }

    fn features(&self, worker_labels: &[BTreeMap<String, String>]) -> Features {
        let containerd_store = worker_labels
            .iter()
            .any(|l| l.contains_key(SNAPSHOTTER_LABEL));
        Features {
            oci_exporter: containerd_store,
            docker_exporter: containerd_store,
            cache_export: containerd_store,
            multi_platform: containerd_store,
            direct_push: containerd_store,
            default_load: true,
            moby_exporter: true,
        }
    }

    async fn push_from_store(
        &self,
        name: &str,
        login: Option<RegistryLogin>,
    ) -> Result<Option<String>, DriverError> {
        use futures::StreamExt;
        let api = self.endpoint.api()?;
        let (repo, tag) = split_tag(name);
        let creds = login.map(|l| bollard::auth::DockerCredentials {
            username: Some(l.username),
            password: Some(l.password),
            serveraddress: Some(l.server),
            ..Default::default()
        });
        let options = bollard::query_parameters::PushImageOptionsBuilder::new()
            .tag(tag)
            .build();
        let mut progress = api.push_image(repo, Some(options), creds);
        while let Some(item) = progress.next().await {
            item.map_err(|e| DriverError::Other(format!("pushing {name}: {}", api_message(&e))))?;
        }
        // The Engine reports the pushed manifest among the image's repository digests.
        let image = api
            .inspect_image(name)
            .await
            .map_err(|e| DriverError::Other(format!("inspecting {name}: {}", api_message(&e))))?;
        Ok(image
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .find_map(|d| {
                let (r, digest) = d.split_once('@')?;
                (r == repo).then(|| digest.to_string())
            }))
    }
}

/// `repo[:tag]` split at the tag's colon (not a registry port's); no tag means `latest`.
fn split_tag(name: &str) -> (&str, &str) {
    let name = name.split('@').next().unwrap_or(name);
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "latest"),
    }
}

/// The Engine's own words for an API error, without bollard's wrapping.
fn api_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// The BuildKit version an Engine embeds, for engines whose BuildKit has no `Info` call.
/// Only the release lines that predate `Info` matter; newer engines answer `Info` themselves.
pub fn buildkit_version_for_engine(engine: &str) -> String {
    let v = engine.trim_end_matches("-moby");
    let mut parts = v.split(['.', '-', '+']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    match (major, minor) {
        (20, 10) => "v0.8+unknown".to_string(),
        (22, 6) => "v0.10.3".to_string(),
        (23, _) => "v0.10+unknown".to_string(),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_old_engines_to_buildkit_versions() {
        assert_eq!(
            buildkit_version_for_engine("20.10.24+dfsg1"),
            "v0.8+unknown"
        );
        assert_eq!(buildkit_version_for_engine("28.5.2"), "28.5.2");
    }

    #[test]
    fn splits_tags_not_ports() {
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b", "v1")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b", "latest")
        );
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
    }

    #[test]
    fn rejects_driver_options() {
        let mut o = BTreeMap::new();
        o.insert("image".to_string(), "x".to_string());
        assert!(validate_opts(&o).is_err());
    }

    #[test]
    fn containerd_store_unlocks_exporters() {
        let d = DockerDriver::new(&NodeConfig {
            endpoint: "unix:///x".into(),
            ..Default::default()
        })
        .unwrap();
        let mut l = BTreeMap::new();
        l.insert(SNAPSHOTTER_LABEL.to_string(), "overlayfs".to_string());
        assert!(d.features(&[l]).oci_exporter);
        assert!(!d.features(&[BTreeMap::new()]).oci_exporter);
    }
}
