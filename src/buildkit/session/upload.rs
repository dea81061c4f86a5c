//! Upload: BuildKit pulls a stream kiln announced as `http://buildkit-session/<id>` (a tarball
//! build context on stdin). The stream is read in chunks as BuildKit asks for it, never held
//! whole in memory.

use std::collections::HashMap;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::moby::upload::v1::upload_server::{Upload, UploadServer};
use bollard_buildkit_proto::moby::upload::v1::BytesMessage;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// One stream waiting to be pulled, by id. Each can be pulled once.
#[derive(Clone, Default)]
pub struct Uploads {
    inner: Arc<Mutex<HashMap<String, Box<dyn Read + Send>>>>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uploads")
    }
}

impl Uploads {
    /// Registers a stream and returns the URL the frontend should be given.
    pub fn add(&self, reader: Box<dyn Read + Send>) -> String {
        let id = crate::buildkit::new_id();
        self.inner
            .lock()
            .expect("uploads lock")
            .insert(id.clone(), reader);
        format!("http://buildkit-session/{id}")
    }

    fn take(&self, id: &str) -> Option<Box<dyn Read + Send>> {
        self.inner.lock().expect("uploads lock").remove(id)
    }
}

pub struct UploadService {
    uploads: Uploads,
}

pub fn server(uploads: Uploads) -> UploadServer<UploadService> {
    UploadServer::new(UploadService { uploads })
}

/// Chunks stay well under gRPC's default 4 MiB message limit.
const CHUNK: usize = 1024 * 1024;

#[tonic::async_trait]
impl Upload for UploadService {
    type PullStream = Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send>>;

    async fn pull(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let path = super::metadata_values(request.metadata(), "urlpath")
            .into_iter()
            .next()
            .unwrap_or_default();
        let id = path.rsplit('/').next().unwrap_or_default().to_string();
        let mut reader = self
            .uploads
            .take(&id)
            .ok_or_else(|| Status::not_found(format!("no http response from session for {id}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || loop {
            let mut buf = vec![0u8; CHUNK];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(BytesMessage { data: buf })).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(format!(
                        "reading the build context from stdin: {e}"
                    ))));
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
