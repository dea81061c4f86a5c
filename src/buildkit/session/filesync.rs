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

/// DiffCopy calls served by this process, by directory: how many times BuildKit pulled each
/// local directory (`--debug` logs them; bake's end-to-end test counts uploads with it).
static DIFFCOPY_CALLS: std::sync::Mutex<Vec<DiffCopyCount>> = std::sync::Mutex::new(Vec::new());

/// One directory's DiffCopy calls: the session dir name, the path, and whether the call asked
/// for the whole directory or only some paths (`followpaths`: Dockerfile, `.dockerignore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffCopyCount {
    pub name: String,
    pub path: std::path::PathBuf,
    pub whole: bool,
    pub calls: u64,
}

/// What [`DIFFCOPY_CALLS`] holds now.
pub fn diffcopy_counts() -> Vec<DiffCopyCount> {
    DIFFCOPY_CALLS.lock().map(|c| c.clone()).unwrap_or_default()
}

fn count_diffcopy(name: &str, path: &std::path::Path, whole: bool) -> u64 {
    let Ok(mut counts) = DIFFCOPY_CALLS.lock() else {
        return 0;
    };
    match counts
        .iter_mut()
        .find(|c| c.name == name && c.path == path && c.whole == whole)
    {
        Some(c) => {
            c.calls += 1;
            c.calls
        }
        None => {
            counts.push(DiffCopyCount {
                name: name.to_string(),
                path: path.to_path_buf(),
                whole,
                calls: 1,
            });
            1
        }
    }
}

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
        let whole = filter.follow_paths.is_empty();
        let calls = count_diffcopy(&name, &root, whole);
        tracing::debug!(dir = %name, ?filter, "sending local directory");
        tracing::debug!(
            "filesync diffcopy: dir={name} path={} whole={whole} calls={calls}",
            root.display()
        );
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
