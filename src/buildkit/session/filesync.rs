//! FileSync: BuildKit pulls local directories (build context, Dockerfile dir) from kiln.

use std::pin::Pin;
use std::sync::Arc;

use bollard_buildkit_proto::fsutil::types::Packet;
use bollard_buildkit_proto::moby::filesync::packet::file_sync_server::{FileSync, FileSyncServer};
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{metadata_values, SessionContent};
use crate::buildkit::fsutil::{send_dir, FilterOpts};

pub struct FileSyncService {
    content: Arc<SessionContent>,
}

pub fn server(content: Arc<SessionContent>) -> FileSyncServer<FileSyncService> {
    FileSyncServer::new(FileSyncService { content })
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = PacketStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let md = request.metadata();
        let name = metadata_values(md, "dir-name")
            .into_iter()
            .next()
            .unwrap_or_default();
        let root = self
            .content
            .dirs
            .get(&name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no access allowed to dir {name:?}")))?;
        let filter = FilterOpts {
            include_patterns: metadata_values(md, "include-patterns"),
            exclude_patterns: metadata_values(md, "exclude-patterns"),
            follow_paths: metadata_values(md, "followpaths"),
        };
        tracing::debug!(dir = %name, ?filter, "sending local directory");
        let incoming = request.into_inner();
        // Small bound: the sender must wait for the network rather than buffer file contents.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let err_tx = tx.clone();
            if let Err(e) = send_dir(root, filter, incoming, tx).await {
                let _ = err_tx.send(Err(Status::internal(format!("{e:#}")))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type TarStreamStream = PacketStream;

    async fn tar_stream(
        &self,
        _: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented(
            "kiln sends directories with DiffCopy",
        ))
    }
}
