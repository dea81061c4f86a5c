//! A `Control` client over whatever stream a driver dials.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use hyper_util::rt::TokioIo;
use kiln_drivers::Driver;
use tonic::transport::{Channel, Endpoint};

/// What a node's worker reports about itself.
#[derive(Debug, Clone, Default)]
pub struct WorkerInfo {
    pub id: String,
    pub platforms: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub gc_policy: Vec<GcPolicy>,
}

/// A BuildKit garbage-collection rule as a worker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPolicy {
    pub all: bool,
    pub filters: Vec<String>,
    /// Nanoseconds, as BuildKit sends it.
    pub keep_duration: i64,
    pub reserved_space: i64,
    pub max_used_space: i64,
    pub min_free_space: i64,
}

/// A connected `Control` client.
#[derive(Clone)]
pub struct BuildkitClient {
    control: ControlClient<Channel>,
    channel: Channel,
}

/// Largest gRPC message accepted from BuildKit (status batches of big builds exceed tonic's 4 MiB).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How long the first calls after connecting (`ListWorkers`, `Info`) may wait for an answer: a
/// daemon that accepts connections but never speaks fails here instead of hanging the build.
pub const FIRST_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `call` bounded by [`FIRST_CALL_TIMEOUT`]. Callers say which call it was in their context
/// (`listing the workers of builder "x": ...`).
async fn answered<T>(call: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(FIRST_CALL_TIMEOUT, call)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from BuildKit within {}s: it accepts connections but does not reply",
                FIRST_CALL_TIMEOUT.as_secs()
            )
        })
}

impl BuildkitClient {
    /// Connects through `driver.dial()`; every reconnect dials again.
    pub async fn connect(driver: Arc<dyn Driver>) -> Result<Self> {
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let driver = driver.clone();
            async move { driver.dial().await.map(TokioIo::new) }
        });
        // The URI is never resolved: the connector above ignores it.
        let channel = Endpoint::from_static("http://buildkit.invalid")
            .connect_with_connector(connector)
            .await
            .map_err(|e| anyhow::anyhow!(flatten_error(&e)))?;
        Ok(BuildkitClient {
            control: ControlClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            channel,
        })
    }

    pub fn control(&self) -> ControlClient<Channel> {
        self.control.clone()
    }

    /// The gRPC channel itself, for the other services the daemon serves on the same
    /// connection (e.g. containerd's content store that holds build history blobs).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut control = self.control();
        let resp = answered(control.list_workers(control::ListWorkersRequest::default()))
            .await?
            .context("listing BuildKit workers")?
            .into_inner();
        Ok(resp
            .record
            .into_iter()
            .map(|w| WorkerInfo {
                id: w.id,
                platforms: w
                    .platforms
                    .iter()
                    .map(|p| {
                        let mut s = format!("{}/{}", p.os, p.architecture);
                        if !p.variant.is_empty() {
                            s.push('/');
                            s.push_str(&p.variant);
                        }
                        s
                    })
                    .collect(),
                labels: w.labels.into_iter().collect(),
                gc_policy: w
                    .gc_policy
                    .iter()
                    .map(|p| GcPolicy {
                        all: p.all,
                        filters: p.filters.clone(),
                        keep_duration: p.keep_duration,
                        reserved_space: p.reserved_space,
                        max_used_space: p.max_used_space,
                        min_free_space: p.min_free_space,
                    })
                    .collect(),
            })
            .collect())
    }

    /// BuildKit's version, or `None` when the daemon predates the `Info` call.
    pub async fn buildkit_version(&self) -> Result<Option<String>> {
        let mut control = self.control();
        match answered(control.info(control::InfoRequest::default())).await? {
            Ok(r) => Ok(r.into_inner().buildkit_version.map(|v| v.version)),
            Err(s) if s.code() == tonic::Code::Unimplemented => Ok(None),
            Err(s) => Err(anyhow::anyhow!(s.message().to_string()))
                .context("asking BuildKit for its version"),
        }
    }
}

/// Joins an error and its sources into one line, the way users read them. tonic's own wrapper
/// words ("transport error") say nothing to a user when a source follows and are left out, so
/// a failed dial reads `cannot reach BuildKit at tcp://HOST:PORT: connection refused`.
pub fn flatten_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(s) = cur {
        let msg = s.to_string();
        let wrapper = TRANSPORT_WRAPPERS.contains(&msg.as_str()) && s.source().is_some();
        if !wrapper && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// What tonic prints for an error that only wraps its source.
const TRANSPORT_WRAPPERS: &[&str] = &["transport error"];

#[cfg(test)]
mod tests {
    use super::*;

    /// What a build prints when the driver cannot dial: the driver's own sentence, with no
    /// "transport error" of tonic's in front of it.
    #[tokio::test]
    async fn a_failed_dial_reads_as_the_drivers_error() {
        let connector = tower::service_fn(|_uri: http::Uri| async {
            Err::<TokioIo<tokio::net::TcpStream>, _>(
                kiln_drivers::DriverError::BuildKitUnreachable {
                    endpoint: "tcp://127.0.0.1:1".into(),
                    reason: "connection refused".into(),
                },
            )
        });
        let e = Endpoint::from_static("http://buildkit.invalid")
            .connect_with_connector(connector)
            .await
            .unwrap_err();
        assert_eq!(
            flatten_error(&e),
            "cannot reach BuildKit at tcp://127.0.0.1:1: connection refused"
        );
    }
}
