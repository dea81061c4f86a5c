//! A small containerd client: the calls kiln needs to put a build result into a containerd
//! image store, spoken directly over containerd's gRPC socket.
//!
//! Owns connecting (unix socket, bounded timeout), the `containerd-namespace` and
//! `containerd-lease` headers, and one method per containerd call used (version, leases, content
//! info/update/write, images create/update). What to write, and in which order, is
//! [`import`]'s business; reading the OCI layout tarball is [`layout`]'s.

pub mod api;
pub mod import;
pub mod layout;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::buildkit::client::flatten_error;

pub use api::Descriptor;
pub use import::import_oci_tar;

/// How long connecting to containerd's socket, and its first answer, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an import's lease outlives a kiln that dies mid-import before containerd expires it.
const LEASE_EXPIRY: Duration = Duration::from_secs(60 * 60);
/// Bytes per `Content/Write` message: well under containerd's 16 MiB message limit.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Errors from talking to containerd, worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot reach containerd at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("containerd refused {call}: {message}")]
    Call { call: String, message: String },
    #[error("reading the image to import: {0}")]
    Read(#[from] std::io::Error),
}

/// A connection to one namespace of one containerd.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    address: PathBuf,
    namespace: String,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn call_error(call: &str, status: Status) -> ContainerdError {
    ContainerdError::Call {
        call: call.to_string(),
        message: status.message().to_string(),
    }
}

type Codec<Req, Resp> = tonic_prost::ProstCodec<Req, Resp>;

impl Containerd {
    /// Connects to the socket at `address` and checks that containerd answers there.
    pub async fn connect(address: &Path, namespace: &str) -> Result<Self, ContainerdError> {
        let unreachable = |reason: String| ContainerdError::Unreachable {
            address: address.display().to_string(),
            reason,
        };
        let path = address.to_path_buf();
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        });
        // The URI is never resolved: the connector above ignores it.
        let channel = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Endpoint::from_static("http://containerd.invalid").connect_with_connector(connector),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| unreachable(flatten_error(&e)))?;
        let client = Containerd {
            channel,
            address: address.to_path_buf(),
            namespace: namespace.to_string(),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, client.version())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(client)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request carrying the namespace and, when given, the lease the call works under.
    fn request<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        if let Ok(v) = MetadataValue::try_from(self.namespace.as_str()) {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        if let Some(v) = lease.and_then(|l| MetadataValue::try_from(l).ok()) {
            req.metadata_mut().insert("containerd-lease", v);
        }
        req
    }

    async fn unary<Req, Resp>(&self, path: &'static str, req: Request<Req>) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(flatten_error(&e)))?;
        let path = http::uri::PathAndQuery::from_static(path);
        let resp = grpc.unary(req, path, Codec::<Req, Resp>::default()).await?;
        Ok(resp.into_inner())
    }

    /// containerd's version string (the health check).
    pub async fn version(&self) -> Result<String, ContainerdError> {
        let resp: api::VersionResponse = self
            .unary(
                "/containerd.services.version.v1.Version/Version",
                self.request((), None),
            )
            .await
            .map_err(|s| call_error("Version", s))?;
        Ok(resp.version)
    }

    /// Creates a lease that keeps what is written under it from garbage collection; containerd
    /// drops it by itself after [`LEASE_EXPIRY`] should kiln never delete it.
    pub async fn create_lease(&self) -> Result<String, ContainerdError> {
        let id = format!("kiln-import-{}", crate::buildkit::new_id());
        let expire = SystemTime::now() + LEASE_EXPIRY;
        let labels = HashMap::from([("containerd.io/gc.expire".to_string(), rfc3339(expire))]);
        let resp: api::CreateLeaseResponse = self
            .unary(
                "/containerd.services.leases.v1.Leases/Create",
                self.request(api::CreateLeaseRequest { id, labels }, None),
            )
            .await
            .map_err(|s| call_error("Leases.Create", s))?;
        resp.lease
            .map(|l| l.id)
            .ok_or_else(|| ContainerdError::Call {
                call: "Leases.Create".into(),
                message: "no lease in the answer".into(),
            })
    }

    pub async fn delete_lease(&self, id: &str) -> Result<(), ContainerdError> {
        let req = api::DeleteLeaseRequest {
            id: id.to_string(),
            sync: false,
        };
        self.unary::<_, ()>(
            "/containerd.services.leases.v1.Leases/Delete",
            self.request(req, None),
        )
        .await
        .map_err(|s| call_error("Leases.Delete", s))
    }

    /// Holds a blob that is already in the store under `lease` until the image references it.
    pub async fn lease_content(&self, lease: &str, digest: &str) -> Result<(), ContainerdError> {
        let req = api::AddResourceRequest {
            id: lease.to_string(),
            resource: Some(api::LeaseResource {
                id: digest.to_string(),
                r#type: "content".into(),
            }),
        };
        self.unary::<_, ()>(
            "/containerd.services.leases.v1.Leases/AddResource",
            self.request(req, None),
        )
        .await
        .map_err(|s| call_error("Leases.AddResource", s))
    }

    /// The labels of a blob in this namespace, or `None` when the namespace lacks it.
    pub async fn content_labels(
        &self,
        digest: &str,
    ) -> Result<Option<HashMap<String, String>>, ContainerdError> {
        let req = api::InfoRequest {
            digest: digest.to_string(),
        };
        match self
            .unary::<_, api::InfoResponse>(
                "/containerd.services.content.v1.Content/Info",
                self.request(req, None),
            )
            .await
        {
            Ok(resp) => Ok(Some(resp.info.map(|i| i.labels).unwrap_or_default())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(call_error("Content.Info", s)),
        }
    }

    /// Sets `labels` on a blob already in the store, leaving its other labels alone.
    pub async fn add_content_labels(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let req = api::UpdateContentRequest {
            info: Some(api::ContentInfo {
                digest: digest.to_string(),
                labels: labels.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
            }),
        };
        self.unary::<_, api::UpdateContentResponse>(
            "/containerd.services.content.v1.Content/Update",
            self.request(req, None),
        )
        .await
        .map(|_| ())
        .map_err(|s| call_error("Content.Update", s))
    }

    /// Streams `size` bytes from `data` into the content store as blob `digest` under `lease`,
    /// committed with `labels`. containerd checks the digest and size on commit; a blob another
    /// writer committed meanwhile counts as written.
    pub async fn write_content(
        &self,
        lease: &str,
        digest: &str,
        size: u64,
        labels: HashMap<String, String>,
        mut data: impl AsyncRead + Unpin,
    ) -> Result<(), ContainerdError> {
        let call = format!("Content.Write of {digest}");
        let failed = |s: Status| call_error(&call, s);
        let total = i64::try_from(size).map_err(|_| ContainerdError::Call {
            call: call.clone(),
            message: "blob too large".into(),
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel::<api::WriteContentRequest>(2);
        // A ref of our own per blob: concurrent imports never wait on each other's ingest.
        let ingest_ref = format!("{lease}-{digest}");
        tx.send(api::WriteContentRequest {
            action: api::WriteAction::Stat as i32,
            r#ref: ingest_ref,
            total,
            expected: digest.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|_| ContainerdError::Call {
            call: call.clone(),
            message: "stream closed".into(),
        })?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| failed(Status::unavailable(flatten_error(&e))))?;
        let req = self.request(tokio_stream::wrappers::ReceiverStream::new(rx), Some(lease));
        let opened = grpc
            .streaming(
                req,
                http::uri::PathAndQuery::from_static(
                    "/containerd.services.content.v1.Content/Write",
                ),
                Codec::<api::WriteContentRequest, api::WriteContentResponse>::default(),
            )
            .await;
        let mut answers = match opened {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(failed(s)),
        };
        // Every request gets exactly one answer, in order.
        let mut next = async |req: Option<api::WriteContentRequest>| {
            if let Some(req) = req {
                if tx.send(req).await.is_err() {
                    // The stream ended early: the answer below says why.
                }
            }
            match answers.message().await {
                Ok(Some(a)) => Ok(Some(a)),
                Ok(None) => Err(Status::unknown("containerd closed the write stream")),
                Err(s) if s.code() == Code::AlreadyExists => Ok(None),
                Err(s) => Err(s),
            }
        };
        let Some(stat) = next(None).await.map_err(failed)? else {
            return Ok(());
        };
        // containerd answers a non-zero offset when it has the bytes already: a blob another
        // namespace holds (shared content) stands at its full size. Only the rest is sent.
        if !(0..=total).contains(&stat.offset) {
            return Err(ContainerdError::Call {
                call,
                message: format!("ingest at offset {} of {size} bytes", stat.offset),
            });
        }
        let mut offset: i64 = stat.offset;
        let skipped =
            tokio::io::copy(&mut (&mut data).take(offset as u64), &mut tokio::io::sink()).await?;
        if skipped != offset as u64 {
            return Err(ContainerdError::Read(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{digest} ends after {skipped} of {size} bytes"),
            )));
        }
        let mut buf = vec![0u8; WRITE_CHUNK];
        while offset < total {
            let want = WRITE_CHUNK.min((total - offset) as usize);
            let n = data.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(ContainerdError::Read(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{digest} ends after {offset} of {size} bytes"),
                )));
            }
            let req = api::WriteContentRequest {
                action: api::WriteAction::Write as i32,
                offset,
                data: bytes::Bytes::copy_from_slice(&buf[..n]),
                ..Default::default()
            };
            let Some(ans) = next(Some(req)).await.map_err(failed)? else {
                return Ok(());
            };
            if ans.offset != offset + n as i64 {
                return Err(ContainerdError::Call {
                    call,
                    message: format!(
                        "short write: containerd is at offset {} instead of {}",
                        ans.offset,
                        offset + n as i64
                    ),
                });
            }
            offset = ans.offset;
        }
        let commit = api::WriteContentRequest {
            action: api::WriteAction::Commit as i32,
            total,
            offset,
            expected: digest.to_string(),
            labels,
            ..Default::default()
        };
        next(Some(commit)).await.map_err(failed)?;
        Ok(())
    }

    /// Points the image record `name` at `target`, creating the record if there is none.
    pub async fn set_image(
        &self,
        lease: &str,
        name: &str,
        target: &Descriptor,
    ) -> Result<(), ContainerdError> {
        let image = api::Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(target.clone()),
        };
        let created = self
            .unary::<_, api::ImageResponse>(
                "/containerd.services.images.v1.Images/Create",
                self.request(
                    api::CreateImageRequest {
                        image: Some(image.clone()),
                    },
                    Some(lease),
                ),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                let req = api::UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into()],
                    }),
                };
                self.unary::<_, api::ImageResponse>(
                    "/containerd.services.images.v1.Images/Update",
                    self.request(req, Some(lease)),
                )
                .await
                .map(|_| ())
                .map_err(|s| call_error(&format!("Images.Update of {name}"), s))
            }
            Err(s) => Err(call_error(&format!("Images.Create of {name}"), s)),
        }
    }
}

/// A UTC time as RFC 3339 (what containerd's `gc.expire` label holds).
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::store::Timestamp(secs as i64).rfc3339()
}

/// Today's UTC date as `YYYY-MM-DD`.
pub(crate) fn utc_date(t: SystemTime) -> String {
    rfc3339(t)[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_in_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_date(leap), "2000-02-29");
    }

    #[tokio::test]
    async fn missing_socket_is_unreachable() {
        let e = Containerd::connect(Path::new("/nonexistent/containerd.sock"), "default")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot reach containerd at /nonexistent/containerd.sock"),
            "{msg}"
        );
    }
}
