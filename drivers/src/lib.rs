//! Drivers turn a builder node into a live connection to BuildKit.
//!
//! One trait, [`Driver`], answers the fixed set of questions every driver must answer
//! (bootstrap, status, version, stop, remove, dial, features). Everything after [`Driver::dial`]
//! is driver-agnostic: the caller gets a byte stream that speaks BuildKit's gRPC (HTTP/2 with
//! prior knowledge). This crate knows how to *reach* BuildKit, not how to build with it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub mod containerd;
pub mod docker;
pub mod docker_api;
pub mod remote;
pub mod tls;

/// A bidirectional byte stream to a daemon.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`], what `dial` hands back.
pub type BoxIo = Pin<Box<dyn Io>>;

/// Errors a driver reports, worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("unknown driver {0:?} (supported: docker, remote, containerd)")]
    UnknownDriver(String),
    #[error("invalid driver option {0:?}: {1}")]
    InvalidOption(String, String),
    #[error("cannot reach the Docker daemon at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("cannot reach BuildKit at {endpoint}: {reason}")]
    BuildKitUnreachable { endpoint: String, reason: String },
    #[error("the Docker daemon at {endpoint} has no BuildKit: {reason}")]
    NoBuildKit { endpoint: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// The kinds of driver kiln knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Docker,
    Remote,
    Containerd,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Docker => "docker",
            DriverKind::Remote => "remote",
            DriverKind::Containerd => "containerd",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DriverKind {
    type Err = DriverError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker" => Ok(DriverKind::Docker),
            "remote" => Ok(DriverKind::Remote),
            "containerd" => Ok(DriverKind::Containerd),
            other => Err(DriverError::UnknownDriver(other.to_string())),
        }
    }
}

/// What a node looks like from the outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    Running,
    Inactive(String),
    Stopped,
}

impl NodeStatus {
    /// The word buildx shows in its STATUS column.
    pub fn word(&self) -> &'static str {
        match self {
            NodeStatus::Running => "running",
            NodeStatus::Inactive(_) => "inactive",
            NodeStatus::Stopped => "stopped",
        }
    }
}

/// What a node can do. Found by asking the node (its workers' labels), never from versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub oci_exporter: bool,
    pub docker_exporter: bool,
    pub cache_export: bool,
    pub multi_platform: bool,
    pub direct_push: bool,
    /// Results land in the user's image store without an explicit `--load`.
    pub default_load: bool,
    /// The daemon's own image store is reachable through the `moby` exporter.
    pub moby_exporter: bool,
}

/// An image store a build's result can be loaded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStore {
    /// The Docker Engine of the user's current Docker context (`DOCKER_HOST`).
    Docker,
    /// One namespace of a containerd, reached at its gRPC socket.
    Containerd { address: PathBuf, namespace: String },
}

/// A registry login handed to a daemon that pushes on kiln's behalf. Never printed.
#[derive(Clone, Default)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
    pub server: String,
}

impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Everything a driver needs to construct a node's connection.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub name: String,
    pub endpoint: String,
    pub driver_opts: BTreeMap<String, String>,
}

/// The questions every driver answers.
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug {
    fn kind(&self) -> DriverKind;
    /// Brings the node up (no-op for drivers whose daemon is managed elsewhere).
    async fn bootstrap(&self) -> Result<(), DriverError>;
    async fn status(&self) -> NodeStatus;
    /// A version string for when BuildKit's own `Info` call is not implemented.
    async fn version(&self) -> Result<String, DriverError>;
    async fn stop(&self) -> Result<(), DriverError>;
    async fn remove(&self) -> Result<(), DriverError>;
    /// A fresh stream speaking BuildKit's gRPC (HTTP/2, prior knowledge).
    async fn dial(&self) -> Result<BoxIo, DriverError>;
    /// A stream on which the daemon will speak HTTP/2 as the *client* to the session served by
    /// kiln, or `None` when the session must ride on `Control/Session` instead.
    async fn dial_session(
        &self,
        headers: &[(String, String)],
    ) -> Result<Option<BoxIo>, DriverError>;
    /// What this node can do, given the labels its workers report.
    fn features(&self, worker_labels: &[BTreeMap<String, String>]) -> Features;
    /// Whether the node's BuildKit is an endpoint someone else runs, so that not reaching it
    /// (or no answer from it) makes the node `inactive` rather than an error.
    fn dials_an_endpoint(&self) -> bool {
        false
    }
    /// Where results land when the user names no output and `features().default_load` is set,
    /// for nodes whose exporters cannot put them there themselves (no `moby_exporter`).
    fn default_image_store(&self) -> ImageStore {
        ImageStore::Docker
    }
    /// Pushes `name` from the daemon's own image store and returns the pushed manifest's
    /// digest, for nodes whose exporter stores images but cannot push them itself
    /// (`moby_exporter` without `direct_push`).
    async fn push_from_store(
        &self,
        name: &str,
        _login: Option<RegistryLogin>,
    ) -> Result<Option<String>, DriverError> {
        Err(DriverError::Other(format!(
            "cannot push {name}: the {} driver has no image store to push from",
            self.kind()
        )))
    }
}

/// Builds the driver for one node.
pub fn new_driver(kind: DriverKind, node: &NodeConfig) -> Result<Box<dyn Driver>, DriverError> {
    match kind {
        DriverKind::Docker => Ok(Box::new(docker::DockerDriver::new(node)?)),
        DriverKind::Remote => Ok(Box::new(remote::RemoteDriver::new(node)?)),
        DriverKind::Containerd => Ok(Box::new(containerd::ContainerdDriver::new(node)?)),
    }
}

/// Checks driver options without constructing a driver (used by `create`).
pub fn validate_driver_opts(
    kind: DriverKind,
    opts: &BTreeMap<String, String>,
) -> Result<(), DriverError> {
    match kind {
        DriverKind::Docker => docker::validate_opts(opts),
        DriverKind::Remote => remote::validate_opts(opts),
        DriverKind::Containerd => containerd::validate_opts(opts),
    }
}

/// Driver options as `--driver-opt` pairs give them, for the drivers' unit tests.
#[cfg(test)]
fn opts_of(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
