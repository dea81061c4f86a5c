//! A read-only content store: BuildKit reads `oci-layout://` named contexts from the client
//! through containerd's `containerd.services.content.v1.Content` service on the session.
//!
//! The store a call means travels in the `buildkit-attachable-store-id` metadata as
//! `oci:<store id>`; each id maps to one OCI layout directory. Only `Info` and `Read` are served:
//! every call that would change a store (`Write`, `Update`, `Delete`, `Abort`) is refused, and
//! nothing here ever creates, locks or modifies a file in the layout (containerd's own local
//! store would create `ingest/`; kiln opens blobs read-only and nothing else).
//!
//! The few containerd messages kiln needs are declared here with their field numbers from
//! containerd's `api/services/content/v1/content.proto`, rather than pulling in a crate that runs
//! `protoc` at build time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::SessionContent;

const SERVICE: &str = "containerd.services.content.v1.Content";

/// The metadata key naming the store a content call is for.
const STORE_ID_HEADER: &str = "buildkit-attachable-store-id";

/// Every method of containerd's content service, as a gRPC server registering it announces
/// them (buildx announces all of them); only `Info` and `Read` do anything here.
pub const METHODS: &[&str] = &[
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Update",
    "/containerd.services.content.v1.Content/List",
    "/containerd.services.content.v1.Content/Delete",
    "/containerd.services.content.v1.Content/Read",
    "/containerd.services.content.v1.Content/Status",
    "/containerd.services.content.v1.Content/ListStatuses",
    "/containerd.services.content.v1.Content/Write",
    "/containerd.services.content.v1.Content/Abort",
];

/// The largest `data` a `Read` response carries; blobs stream in chunks of this size, a few
/// chunks in flight at a time, so memory stays constant whatever the blob's size.
const READ_CHUNK: usize = 1 << 20;

/// `containerd.services.content.v1.Info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub size: i64,
    #[prost(message, optional, tag = "3")]
    pub created_at: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "4")]
    pub updated_at: Option<prost_types::Timestamp>,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
}

/// `containerd.services.content.v1.InfoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
}

/// `containerd.services.content.v1.InfoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub info: Option<Info>,
}

/// `containerd.services.content.v1.ReadContentRequest`: `size` 0 (or past the end) reads to
/// the end of the blob.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadContentRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub offset: i64,
    #[prost(int64, tag = "3")]
    pub size: i64,
}

/// `containerd.services.content.v1.ReadContentResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadContentResponse {
    #[prost(int64, tag = "1")]
    pub offset: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// Serves the session's OCI layouts.
#[derive(Clone)]
pub struct ContentServer {
    content: Arc<SessionContent>,
}

pub fn server(content: Arc<SessionContent>) -> ContentServer {
    ContentServer { content }
}

impl NamedService for ContentServer {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadContentResponse, Status>> + Send>>;

impl<B> tower::Service<http::Request<B>> for ContentServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let content = self.content.clone();
        let method = req
            .uri()
            .path()
            .strip_prefix(&format!("/{SERVICE}/"))
            .unwrap_or_default()
            .to_string();
        Box::pin(async move {
            let resp = match method.as_str() {
                "Info" => {
                    let mut grpc = Grpc::new(ProstCodec::<InfoResponse, InfoRequest>::default());
                    grpc.unary(InfoCall { content }, req).await
                }
                "Read" => {
                    let mut grpc =
                        Grpc::new(ProstCodec::<ReadContentResponse, ReadContentRequest>::default());
                    grpc.server_streaming(ReadCall { content }, req).await
                }
                "Write" | "Update" | "Delete" | "Abort" => Status::permission_denied(
                    "kiln serves oci-layout contexts read-only: the layout is never written",
                )
                .into_http(),
                "Status" => {
                    Status::not_found("no writes in progress: the store is read-only").into_http()
                }
                _ => Status::unimplemented(format!("{SERVICE}/{method} is not served by kiln"))
                    .into_http(),
            };
            Ok(resp)
        })
    }
}

/// The layout directory a call addresses, from its store id metadata.
fn layout_for<'a>(
    content: &'a SessionContent,
    md: &tonic::metadata::MetadataMap,
) -> Result<&'a Path, Status> {
    let id = md
        .get(STORE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("request lacks metadata {STORE_ID_HEADER:?}"))
        })?;
    let key = id.strip_prefix("oci:").unwrap_or(id);
    content
        .oci_stores
        .get(key)
        .map(PathBuf::as_path)
        .ok_or_else(|| Status::not_found(format!("unknown store {id}")))
}

/// The blob file for `digest` in the layout; the digest is checked so it cannot name anything
/// outside `blobs/`.
pub fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, Status> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| Status::invalid_argument(format!("{digest}: invalid digest")))?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(Status::invalid_argument(format!(
                "{digest}: unsupported digest algorithm"
            )))
        }
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Status::invalid_argument(format!(
            "{digest}: invalid digest"
        )));
    }
    Ok(layout.join("blobs").join(alg).join(hex))
}

async fn blob_metadata(path: &Path, digest: &str) -> Result<std::fs::Metadata, Status> {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() => Ok(m),
        Ok(_) => Err(Status::not_found(format!(
            "content digest {digest}: not found"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Status::not_found(format!(
            "content digest {digest}: not found"
        ))),
        Err(e) => Err(Status::internal(format!("reading {}: {e}", path.display()))),
    }
}

struct InfoCall {
    content: Arc<SessionContent>,
}

impl UnaryService<InfoRequest> for InfoCall {
    type Response = InfoResponse;
    type Future = BoxFuture<Result<Response<InfoResponse>, Status>>;

    fn call(&mut self, request: Request<InfoRequest>) -> Self::Future {
        let content = self.content.clone();
        Box::pin(async move {
            let layout = layout_for(&content, request.metadata())?;
            let digest = request.get_ref().digest.clone();
            tracing::debug!(%digest, layout = %layout.display(), "content info");
            let path = blob_path(layout, &digest)?;
            let meta = blob_metadata(&path, &digest).await?;
            // As containerd's local store reports them: created is the modification time,
            // updated the access time.
            let created = meta.modified().ok().map(prost_types::Timestamp::from);
            let updated = meta
                .accessed()
                .ok()
                .map(prost_types::Timestamp::from)
                .or(created);
            Ok(Response::new(InfoResponse {
                info: Some(Info {
                    digest,
                    size: meta.len() as i64,
                    created_at: created,
                    updated_at: updated,
                    labels: HashMap::new(),
                }),
            }))
        })
    }
}

struct ReadCall {
    content: Arc<SessionContent>,
}

impl ServerStreamingService<ReadContentRequest> for ReadCall {
    type Response = ReadContentResponse;
    type ResponseStream = ReadStream;
    type Future = BoxFuture<Result<Response<ReadStream>, Status>>;

    fn call(&mut self, request: Request<ReadContentRequest>) -> Self::Future {
        let content = self.content.clone();
        Box::pin(async move {
            let layout = layout_for(&content, request.metadata())?;
            let req = request.into_inner();
            let path = blob_path(layout, &req.digest)?;
            let total = blob_metadata(&path, &req.digest).await?.len() as i64;
            let (offset, len) = read_range(total, req.offset, req.size)?;
            tracing::debug!(digest = %req.digest, offset, len, "content read");
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Status::internal(format!("opening {}: {e}", path.display())))?;
            file.seek(std::io::SeekFrom::Start(offset as u64))
                .await
                .map_err(|e| Status::internal(format!("reading {}: {e}", path.display())))?;
            // A small bound: the reader waits for the network instead of buffering the blob.
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let mut at = offset;
                let end = offset + len;
                while at < end {
                    let want = ((end - at) as usize).min(READ_CHUNK);
                    let mut data = vec![0u8; want];
                    let n = match file.read(&mut data).await {
                        Ok(0) => {
                            let _ = tx
                                .send(Err(Status::data_loss(format!(
                                    "{}: blob ended early",
                                    path.display()
                                ))))
                                .await;
                            return;
                        }
                        Ok(n) => n,
                        Err(e) => {
                            let _ = tx
                                .send(Err(Status::internal(format!(
                                    "reading {}: {e}",
                                    path.display()
                                ))))
                                .await;
                            return;
                        }
                    };
                    data.truncate(n);
                    let msg = ReadContentResponse { offset: at, data };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    at += n as i64;
                }
            });
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as ReadStream
            ))
        })
    }
}

/// The byte range a read request covers, as containerd's content server reads it: a negative
/// offset is 0, an offset past the end is an error, and a size of 0 (or one running past the
/// end) reads to the end.
fn read_range(total: i64, offset: i64, size: i64) -> Result<(i64, i64), Status> {
    let offset = offset.max(0);
    if offset > total {
        return Err(Status::out_of_range(format!(
            "read past object length {total} bytes"
        )));
    }
    let size = if size <= 0 || offset.saturating_add(size) > total {
        total - offset
    } else {
        size
    };
    Ok((offset, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ranges_follow_containerd() {
        assert_eq!(read_range(10, 0, 0).unwrap(), (0, 10));
        assert_eq!(read_range(10, 4, 3).unwrap(), (4, 3));
        assert_eq!(read_range(10, 4, 100).unwrap(), (4, 6));
        assert_eq!(read_range(10, -5, 2).unwrap(), (0, 2));
        assert_eq!(read_range(10, 10, 0).unwrap(), (10, 0));
        assert!(read_range(10, 11, 0).is_err());
    }

    #[test]
    fn digests_cannot_escape_the_blobs_directory() {
        let root = Path::new("/layout");
        let hex = "a".repeat(64);
        assert_eq!(
            blob_path(root, &format!("sha256:{hex}")).unwrap(),
            root.join("blobs/sha256").join(&hex)
        );
        for bad in [
            "sha256:../../index.json".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("md5:{hex}"),
            "sha256".to_string(),
            format!("sha256:{hex}/x"),
        ] {
            assert!(blob_path(root, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_use_containerds_field_numbers() {
        use prost::Message;
        // ReadContentRequest{digest: "d", offset: 1, size: 2} as containerd's Go code encodes it.
        let req = ReadContentRequest {
            digest: "d".into(),
            offset: 1,
            size: 2,
        };
        assert_eq!(
            req.encode_to_vec(),
            vec![0x0a, 0x01, b'd', 0x10, 0x01, 0x18, 0x02]
        );
        let resp = ReadContentResponse {
            offset: 3,
            data: b"xy".to_vec(),
        };
        assert_eq!(
            resp.encode_to_vec(),
            vec![0x08, 0x03, 0x12, 0x02, b'x', b'y']
        );
    }
}
