//! A read-only client of containerd's content service (`containerd.services.content.v1.Content`),
//! which BuildKit serves on the same gRPC connection as `Control`. Build history keeps its blobs
//! there: the status stream (logs), the OpenTelemetry trace, provenance, results, and the full
//! error of a failed build.
//!
//! Only `Info` and `Read` are used (messages from [`crate::containerd::api`]); kiln never writes
//! to the daemon's store.

use anyhow::{anyhow, bail, Context, Result};
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use crate::containerd::api::{InfoRequest, InfoResponse, ReadContentRequest, ReadContentResponse};

const INFO: &str = "/containerd.services.content.v1.Content/Info";
const READ: &str = "/containerd.services.content.v1.Content/Read";

/// Largest blob kiln reads into memory (traces of big builds run to a few MiB).
const MAX_BLOB: i64 = 512 * 1024 * 1024;

/// The daemon's content store, read through its gRPC connection.
#[derive(Clone)]
pub struct ContentStore {
    channel: Channel,
}

impl ContentStore {
    pub fn new(channel: Channel) -> ContentStore {
        ContentStore { channel }
    }

    /// The blob's size, or `None` when the store does not hold it.
    pub async fn info(&self, digest: &str) -> Result<Option<i64>> {
        let mut grpc = Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| anyhow!("content service not ready: {e}"))?;
        let req = InfoRequest {
            digest: digest.to_string(),
        };
        let resp = grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(INFO),
                ProstCodec::<InfoRequest, InfoResponse>::default(),
            )
            .await;
        match resp {
            Ok(r) => Ok(Some(r.into_inner().info.map(|i| i.size).unwrap_or(0))),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) if s.code() == tonic::Code::Unimplemented => bail!(NoContentService),
            Err(s) => {
                Err(anyhow!("{}", s.message())).with_context(|| format!("content info {digest}"))
            }
        }
    }

    /// The whole blob.
    pub async fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let mut grpc = Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| anyhow!("content service not ready: {e}"))?;
        let req = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = match grpc
            .server_streaming(
                tonic::Request::new(req),
                PathAndQuery::from_static(READ),
                ProstCodec::<ReadContentRequest, ReadContentResponse>::default(),
            )
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => bail!(NoContentService),
            Err(s) => {
                return Err(anyhow!("{}", s.message()))
                    .with_context(|| format!("reading blob {digest}"))
            }
        };
        let mut out = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| anyhow!("{}", s.message()))
            .with_context(|| format!("reading blob {digest}"))?
        {
            if chunk.offset != out.len() as i64 {
                bail!(
                    "reading blob {digest}: chunk at offset {} after {} bytes",
                    chunk.offset,
                    out.len()
                );
            }
            out.extend_from_slice(&chunk.data);
            if out.len() as i64 > MAX_BLOB {
                bail!("blob {digest} is larger than {MAX_BLOB} bytes");
            }
        }
        Ok(out)
    }
}

/// The daemon does not serve containerd's content service on its BuildKit connection.
#[derive(Debug, thiserror::Error)]
#[error(
    "the node's BuildKit does not serve its content store (containerd.services.content.v1.Content)"
)]
pub struct NoContentService;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn read_request_uses_containerds_field_numbers() {
        let req = ReadContentRequest {
            digest: "sha256:ab".into(),
            offset: 1,
            size: 2,
        };
        // field 1 (string), field 2 (varint 1), field 3 (varint 2)
        assert_eq!(
            req.encode_to_vec(),
            [&[0x0a, 9][..], b"sha256:ab", &[0x10, 1, 0x18, 2]].concat()
        );
    }
}
