//! The session's content stores: BuildKit reads and writes OCI layouts on the client through
//! containerd's `containerd.services.content.v1.Content` service.
//!
//! The store a call means travels in the `buildkit-attachable-store-id` metadata. Two kinds share
//! this one service:
//!
//! - `oci:<store id>`: an `oci-layout://` named context, served **read-only**. Only `Info` and
//!   `Read` are answered; every call that would change the store (`Write`, `Update`, `Delete`,
//!   `Abort`) is refused, and nothing here ever creates, locks or modifies a file in such a layout
//!   (containerd's own local store would create `ingest/`; kiln opens blobs read-only and nothing
//!   else).
//! - `local:<dir>`: a `type=local` cache directory. Imports read it like the above; a store a
//!   `--cache-to` exports into is **writable**: `Write` streams each blob into a temporary file
//!   under the layout's `ingest/`, checks its size and digest, and renames it into
//!   `blobs/<alg>/<hex>`, one message at a time (constant memory whatever the blob's size).
//!   `index.json` is not this service's business: [`crate::build`] updates it after the solve.
//!
//! The messages are containerd's, declared once in [`crate::containerd::api`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::{Grpc, NamedService, ServerStreamingService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::SessionContent;
use crate::containerd::api::{
    ContentInfo, InfoRequest, InfoResponse, ReadContentRequest, ReadContentResponse, WriteAction,
    WriteContentRequest, WriteContentResponse,
};

const SERVICE: &str = "containerd.services.content.v1.Content";

/// The metadata key naming the store a content call is for.
const STORE_ID_HEADER: &str = "buildkit-attachable-store-id";

/// Every method of containerd's content service, as a gRPC server registering it announces
/// them (buildx announces all of them); `Info` and `Read` answer for every store, `Write` for
/// writable ones only.
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

/// The largest write message accepted: containerd's clients send at most half of their 16 MiB
/// message limit per `Write` message.
const MAX_WRITE_MESSAGE: usize = 16 << 20;

/// The largest `data` a `Read` response carries; blobs stream in chunks of this size, a few
/// chunks in flight at a time, so memory stays constant whatever the blob's size.
const READ_CHUNK: usize = 1 << 20;

/// The store id BuildKit's `oci`/`docker` exporters write a `tar=false` layout through.
pub const EXPORT_STORE: &str = "export";

/// One OCI layout directory the session serves through the content store, and whether BuildKit
/// may add blobs to it (a `type=local` cache export) or only read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutStore {
    pub dir: PathBuf,
    pub writable: bool,
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
type WriteStream = Pin<Box<dyn Stream<Item = Result<WriteContentResponse, Status>> + Send>>;

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
        // gRPC metadata travels as HTTP headers: whether the addressed store takes writes is
        // known before the body is read.
        let writable = req
            .headers()
            .get(STORE_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| store_by_id(&content, id))
            .is_some_and(|s| s.writable);
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
                "Write" if writable => {
                    let mut grpc = Grpc::new(
                        ProstCodec::<WriteContentResponse, WriteContentRequest>::default(),
                    )
                    .max_decoding_message_size(MAX_WRITE_MESSAGE);
                    grpc.streaming(WriteCall { content }, req).await
                }
                "Write" | "Update" | "Delete" | "Abort" if !writable => Status::permission_denied(
                    "kiln serves oci-layout contexts read-only: the layout is never written",
                )
                .into_http(),
                // A write lives as long as its stream: there is nothing to look up or abort later.
                "Status" | "Abort" => Status::not_found(
                    "no such write in progress: kiln's writes end with their stream",
                )
                .into_http(),
                _ => Status::unimplemented(format!("{SERVICE}/{method} is not served by kiln"))
                    .into_http(),
            };
            Ok(resp)
        })
    }
}

/// The store a store id names: `local:<dir>` a cache directory, `export` a `tar=false` image
/// export, anything else (`oci:<id>`) an `oci-layout://` context, always read-only.
fn store_by_id(content: &SessionContent, id: &str) -> Option<LayoutStore> {
    if id.starts_with("local:") || id == EXPORT_STORE {
        return content.local_caches.get(id).cloned();
    }
    let key = id.strip_prefix("oci:").unwrap_or(id);
    content.oci_stores.get(key).map(|dir| LayoutStore {
        dir: dir.clone(),
        writable: false,
    })
}

/// The layout directory a call addresses, from its store id metadata.
fn layout_for(
    content: &SessionContent,
    md: &tonic::metadata::MetadataMap,
) -> Result<LayoutStore, Status> {
    let id = md
        .get(STORE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("request lacks metadata {STORE_ID_HEADER:?}"))
        })?;
    store_by_id(content, id).ok_or_else(|| Status::not_found(format!("unknown store {id}")))
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
            let layout = layout_for(&content, request.metadata())?.dir;
            let digest = request.get_ref().digest.clone();
            tracing::debug!(%digest, layout = %layout.display(), "content info");
            let path = blob_path(&layout, &digest)?;
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
                info: Some(ContentInfo {
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
            let layout = layout_for(&content, request.metadata())?.dir;
            let req = request.into_inner();
            let path = blob_path(&layout, &req.digest)?;
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

struct WriteCall {
    content: Arc<SessionContent>,
}

impl StreamingService<WriteContentRequest> for WriteCall {
    type Response = WriteContentResponse;
    type ResponseStream = WriteStream;
    type Future = BoxFuture<Result<Response<WriteStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<WriteContentRequest>>) -> Self::Future {
        let content = self.content.clone();
        Box::pin(async move {
            let store = layout_for(&content, request.metadata())?;
            if !store.writable {
                return Err(Status::permission_denied(
                    "kiln serves oci-layout contexts read-only: the layout is never written",
                ));
            }
            let inbound = request.into_inner();
            // One response in flight: the next message is read only once the previous one is
            // on disk, so HTTP/2 flow control holds the sender back instead of kiln's memory.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                if let Err(status) = serve_write(&store.dir, inbound, &tx).await {
                    let _ = tx.send(Err(status)).await;
                }
            });
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as WriteStream
            ))
        })
    }
}

/// One `Write` stream, as containerd's content server runs it: the first message names the
/// write (`ref`), `STAT` reports progress, `WRITE` appends at the current offset (offset 0
/// starts over), `COMMIT` verifies size and digest and moves the blob into place. A blob the
/// layout already holds is `AlreadyExists`, which BuildKit takes as done.
async fn serve_write(
    layout: &Path,
    mut inbound: Streaming<WriteContentRequest>,
    tx: &tokio::sync::mpsc::Sender<Result<WriteContentResponse, Status>>,
) -> Result<(), Status> {
    let Some(mut req) = inbound.message().await? else {
        return Ok(());
    };
    if req.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "first message must have a reference",
        ));
    }
    tracing::debug!(r#ref = %req.r#ref, expected = %req.expected, total = req.total, layout = %layout.display(), "content write");
    let mut total = req.total;
    let mut expected = String::new();
    let mut ingest = Ingest::create(layout).await?;
    loop {
        let action = WriteAction::try_from(req.action).map_err(|_| {
            Status::invalid_argument(format!("unknown write action {}", req.action))
        })?;
        let mut msg = WriteContentResponse {
            action: req.action,
            offset: ingest.offset,
            ..Default::default()
        };
        if !req.expected.is_empty() {
            expected = req.expected.clone();
            if blob_path(layout, &expected)?.is_file() {
                return Err(Status::already_exists(format!(
                    "blob with expected digest {expected} exists"
                )));
            }
        }
        if req.total > 0 {
            total = req.total;
        }
        match action {
            WriteAction::Stat => {
                msg.digest = ingest.digest();
                msg.started_at = Some(ingest.started_at.into());
                msg.updated_at = Some(ingest.updated_at.into());
                msg.total = total;
            }
            WriteAction::Write | WriteAction::Commit => {
                if req.offset > 0 && req.offset != ingest.offset {
                    return Err(Status::out_of_range(format!(
                        "write @{} must occur at current offset {}",
                        req.offset, ingest.offset
                    )));
                }
                if req.offset == 0 && ingest.offset > 0 {
                    ingest.restart().await?;
                    msg.offset = 0;
                }
                if !req.data.is_empty() {
                    ingest.append(&req.data).await?;
                    msg.offset = ingest.offset;
                }
                if action == WriteAction::Commit {
                    ingest.commit(layout, total, &expected).await?;
                }
                msg.digest = ingest.digest();
            }
        }
        if tx.send(Ok(msg)).await.is_err() || action == WriteAction::Commit {
            return Ok(());
        }
        match inbound.message().await? {
            Some(next) => req = next,
            None => return Ok(()),
        }
    }
}

/// A blob being written: a temporary file under the layout's `ingest/` and the digest of what it
/// holds so far. Dropped before its commit, the file goes.
struct Ingest {
    path: PathBuf,
    file: tokio::fs::File,
    hasher: sha2::Sha256,
    offset: i64,
    started_at: std::time::SystemTime,
    updated_at: std::time::SystemTime,
    committed: bool,
}

impl Ingest {
    async fn create(layout: &Path) -> Result<Ingest, Status> {
        let dir = layout.join("ingest");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Status::internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!("kiln-{}", crate::buildkit::new_id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| Status::internal(format!("creating {}: {e}", path.display())))?;
        let now = std::time::SystemTime::now();
        Ok(Ingest {
            path,
            file,
            hasher: sha2::Sha256::new(),
            offset: 0,
            started_at: now,
            updated_at: now,
            committed: false,
        })
    }

    /// The digest of the bytes written so far.
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    async fn append(&mut self, data: &[u8]) -> Result<(), Status> {
        self.file
            .write_all(data)
            .await
            .map_err(|e| Status::internal(format!("writing {}: {e}", self.path.display())))?;
        self.hasher.update(data);
        self.offset += data.len() as i64;
        self.updated_at = std::time::SystemTime::now();
        Ok(())
    }

    /// Drops what was written, for a writer starting over at offset 0.
    async fn restart(&mut self) -> Result<(), Status> {
        let err = |e: std::io::Error| {
            Status::internal(format!("truncating {}: {e}", self.path.display()))
        };
        self.file.set_len(0).await.map_err(err)?;
        self.file.rewind().await.map_err(err)?;
        self.hasher = sha2::Sha256::new();
        self.offset = 0;
        Ok(())
    }

    /// Checks the blob against what the writer declared and moves it to `blobs/<alg>/<hex>`.
    async fn commit(&mut self, layout: &Path, total: i64, expected: &str) -> Result<(), Status> {
        if total > 0 && self.offset != total {
            return Err(Status::failed_precondition(format!(
                "unexpected commit size {}, expected {total}",
                self.offset
            )));
        }
        let actual = self.digest();
        if !expected.is_empty() && actual != expected {
            return Err(Status::failed_precondition(format!(
                "unexpected commit digest {actual}, expected {expected}"
            )));
        }
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Status::internal(format!("{what} {}: {e}", p.display()))
        };
        self.file
            .sync_all()
            .await
            .map_err(|e| io("writing", &self.path, e))?;
        let target = blob_path(layout, &actual)?;
        if target.is_file() {
            return Err(Status::already_exists(format!(
                "content {actual}: already exists"
            )));
        }
        let parent = target.parent().expect("blob paths have a parent");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io("creating", parent, e))?;
        tokio::fs::rename(&self.path, &target)
            .await
            .map_err(|e| io("moving a blob to", &target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
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

    fn sha256(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
    }

    fn ingest_entries(layout: &Path) -> usize {
        std::fs::read_dir(layout.join("ingest")).unwrap().count()
    }

    #[tokio::test]
    async fn a_committed_blob_lands_under_its_digest() {
        let layout = tempfile::tempdir().unwrap();
        let mut w = Ingest::create(layout.path()).await.unwrap();
        w.append(b"stale").await.unwrap();
        // A writer starting over at offset 0 drops what it sent before.
        w.restart().await.unwrap();
        w.append(b"hello ").await.unwrap();
        w.append(b"world").await.unwrap();
        let digest = sha256(b"hello world");
        assert_eq!(w.digest(), digest);
        w.commit(layout.path(), 11, &digest).await.unwrap();
        drop(w);
        let blob = blob_path(layout.path(), &digest).unwrap();
        assert_eq!(std::fs::read(blob).unwrap(), b"hello world");
        assert_eq!(ingest_entries(layout.path()), 0);

        // The same content again is AlreadyExists, which BuildKit takes as done.
        let mut again = Ingest::create(layout.path()).await.unwrap();
        again.append(b"hello world").await.unwrap();
        let err = again.commit(layout.path(), 0, "").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
        drop(again);
        assert_eq!(ingest_entries(layout.path()), 0);
    }

    #[tokio::test]
    async fn a_wrong_size_or_digest_is_never_committed() {
        let layout = tempfile::tempdir().unwrap();
        let mut w = Ingest::create(layout.path()).await.unwrap();
        w.append(b"abc").await.unwrap();
        let err = w.commit(layout.path(), 4, "").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let err = w
            .commit(layout.path(), 3, &sha256(b"abd"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        drop(w);
        assert!(!layout.path().join("blobs").exists());
        // An abandoned write leaves nothing behind.
        assert_eq!(ingest_entries(layout.path()), 0);
    }

    #[test]
    fn oci_contexts_are_read_only_and_cache_dirs_writable_by_id() {
        let content = SessionContent {
            oci_stores: HashMap::from([("ctx1".to_string(), PathBuf::from("/layout"))]),
            local_caches: HashMap::from([(
                "local:/cache".to_string(),
                LayoutStore {
                    dir: PathBuf::from("/cache"),
                    writable: true,
                },
            )]),
            ..Default::default()
        };
        let oci = store_by_id(&content, "oci:ctx1").unwrap();
        assert_eq!(
            (oci.dir.as_path(), oci.writable),
            (Path::new("/layout"), false)
        );
        assert!(store_by_id(&content, "local:/cache").unwrap().writable);
        // A cache id never reaches an oci-layout context, nor the other way round.
        assert!(store_by_id(&content, "local:ctx1").is_none());
        assert!(store_by_id(&content, "oci:local:/cache").is_none());
    }

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
}
