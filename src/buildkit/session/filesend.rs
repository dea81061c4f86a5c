//! FileSend: BuildKit pushes export results (`local`, `tar`, `oci`, `docker`) to kiln.
//!
//! A directory export arrives as fsutil packets; a single-file export (tarballs) arrives as a
//! stream of `BytesMessage` chunks on the same method. The exporter index in the call's
//! metadata says which destination is meant.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard_buildkit_proto::fsutil::types::Packet;
use bollard_buildkit_proto::moby::filesync::v1::BytesMessage;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::raw::RawCodec;
use super::{metadata_values, SessionContent};
use crate::buildkit::fsutil::receive_dir;

/// A tarball handed on chunk by chunk as BuildKit sends it (a `--load` into Docker), to whoever
/// holds the receiver [`ExportStream::new`] returned; nothing is written to disk.
#[derive(Clone)]
pub struct ExportStream {
    sender: Arc<std::sync::Mutex<Option<ChunkSender>>>,
    /// Why the receiver stopped reading, for the error BuildKit is told.
    stopped: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

/// The receiving end: chunks, or the error BuildKit's stream broke with.
pub type ExportReceiver = tokio::sync::mpsc::Receiver<Result<Bytes, String>>;
type ChunkSender = tokio::sync::mpsc::Sender<Result<Bytes, String>>;

impl ExportStream {
    pub fn new() -> (ExportStream, ExportReceiver) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let stream = ExportStream {
            sender: Arc::new(std::sync::Mutex::new(Some(tx))),
            stopped: Arc::new(tokio::sync::watch::Sender::new(None)),
        };
        (stream, rx)
    }

    /// Says why the receiver gave up; BuildKit's export then fails with this reason.
    pub fn stop(&self, reason: &str) {
        self.stopped.send_replace(Some(reason.to_string()));
    }

    fn take_sender(&self) -> Option<ChunkSender> {
        self.sender.lock().expect("not poisoned").take()
    }

    /// Why the receiver stopped. It drops its end before it can say (the reader goes down with
    /// the request that failed), so this waits a little for the reason.
    async fn stopped_reason(&self) -> String {
        let mut reason = self.stopped.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            reason.wait_for(Option::is_some),
        )
        .await;
        let said = reason.borrow().clone();
        said.unwrap_or_else(|| "the receiver stopped reading".into())
    }
}

impl PartialEq for ExportStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.sender, &other.sender)
    }
}

impl Eq for ExportStream {}

impl std::fmt::Debug for ExportStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportStream")
    }
}

/// Where one exporter's result lands on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// A directory tree (`type=local`).
    Dir(PathBuf),
    /// One file (a tarball), written atomically.
    File(PathBuf),
    /// A tarball on kiln's standard output (`dest=-`).
    Stdout,
    /// A tarball handed on as it arrives.
    Stream(ExportStream),
}

const METHOD: &str = "/moby.filesync.v1.FileSend/DiffCopy";

#[derive(Clone)]
pub struct FileSendServer {
    content: Arc<SessionContent>,
}

pub fn server(content: Arc<SessionContent>) -> FileSendServer {
    FileSendServer { content }
}

impl NamedService for FileSendServer {
    const NAME: &'static str = "moby.filesync.v1.FileSend";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type RawStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl<B> tower::Service<http::Request<B>> for FileSendServer
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
        let handler = DiffCopy {
            content: self.content.clone(),
        };
        if req.uri().path() != METHOD {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec)
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024);
            Ok(grpc.streaming(handler, req).await)
        })
    }
}

struct DiffCopy {
    content: Arc<SessionContent>,
}

impl StreamingService<Bytes> for DiffCopy {
    type Response = Bytes;
    type ResponseStream = RawStream;
    type Future = BoxFuture<Result<Response<RawStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let content = self.content.clone();
        Box::pin(async move {
            let id: u32 = metadata_values(request.metadata(), "buildkit-attachable-exporter-id")
                .first()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let target = content
                .exports
                .get(&id)
                .cloned()
                .ok_or_else(|| Status::not_found(format!("exporter {id} not found")))?;
            let incoming = request.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Status>>(16);
            match target {
                ExportTarget::Dir(dest) => {
                    let packets = incoming.map(|m| {
                        m.and_then(|b| {
                            Packet::decode(b).map_err(|e| Status::invalid_argument(e.to_string()))
                        })
                    });
                    let (ptx, mut prx) = tokio::sync::mpsc::channel::<Result<Packet, Status>>(16);
                    let fwd = tx.clone();
                    tokio::spawn(async move {
                        while let Some(p) = prx.recv().await {
                            let _ = fwd.send(p.map(|p| Bytes::from(p.encode_to_vec()))).await;
                        }
                    });
                    tokio::spawn(async move {
                        if let Err(e) = receive_dir(dest, Box::pin(packets), ptx).await {
                            let _ = tx.send(Err(Status::internal(format!("{e:#}")))).await;
                        }
                    });
                }
                ExportTarget::File(path) => {
                    tokio::spawn(async move {
                        if let Err(e) = write_file(&path, incoming).await {
                            let _ = tx.send(Err(e)).await;
                        }
                    });
                }
                ExportTarget::Stream(stream) => {
                    let sink = stream.take_sender().ok_or_else(|| {
                        Status::already_exists(format!("exporter {id} was already received"))
                    })?;
                    tokio::spawn(async move {
                        if let Err(e) = forward(&stream, sink, incoming).await {
                            let _ = tx.send(Err(e)).await;
                        }
                    });
                }
                ExportTarget::Stdout => {
                    tokio::spawn(async move {
                        if let Err(e) = write_to(tokio::io::stdout(), incoming).await {
                            let _ = tx.send(Err(e)).await;
                        }
                    });
                }
            }
            Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as RawStream))
        })
    }
}

/// Writes a streamed file next to its destination and renames it into place once complete, so an
/// interrupted export never leaves a truncated tarball under the user's name.
async fn write_file(path: &std::path::Path, incoming: Streaming<Bytes>) -> Result<(), Status> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Status::internal(format!("creating {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(
        ".{}.kiln-partial",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| Status::internal(format!("creating {}: {e}", tmp.display())))?;
    let res = write_to(file, incoming).await;
    match res {
        Ok(()) => tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| Status::internal(format!("writing {}: {e}", path.display()))),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Hands each chunk to the stream's receiver; a broken incoming stream is passed on as an
/// error, a receiver that stopped fails the export with its reason.
async fn forward(
    stream: &ExportStream,
    sink: ChunkSender,
    mut incoming: Streaming<Bytes>,
) -> Result<(), Status> {
    while let Some(msg) = incoming.next().await {
        let chunk = msg.and_then(|m| {
            BytesMessage::decode(m)
                .map_err(|e| Status::invalid_argument(format!("bad export chunk: {e}")))
        });
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = sink.send(Err(e.message().to_string())).await;
                return Err(e);
            }
        };
        if sink.send(Ok(Bytes::from(chunk.data))).await.is_err() {
            return Err(Status::aborted(stream.stopped_reason().await));
        }
    }
    Ok(())
}

async fn write_to<W: tokio::io::AsyncWrite + Unpin>(
    mut w: W,
    mut incoming: Streaming<Bytes>,
) -> Result<(), Status> {
    while let Some(msg) = incoming.next().await {
        let msg = BytesMessage::decode(msg?)
            .map_err(|e| Status::invalid_argument(format!("bad export chunk: {e}")))?;
        w.write_all(&msg.data)
            .await
            .map_err(|e| Status::internal(format!("writing export: {e}")))?;
    }
    w.flush()
        .await
        .map_err(|e| Status::internal(format!("writing export: {e}")))?;
    Ok(())
}
