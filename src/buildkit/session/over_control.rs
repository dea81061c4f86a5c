//! The session carried inside `Control/Session`, for drivers with no side door for it.
//!
//! BuildKit's `Control/Session` is a bidirectional stream of `BytesMessage`s that carries one
//! HTTP/2 connection on which the daemon is the client. The session's announcement (uuid, name,
//! shared key, served methods) travels as the call's gRPC metadata, with lower-case keys. This
//! module opens that call and turns it into a byte stream; serving it is the caller's business.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use kiln_drivers::{BoxIo, Driver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::Endpoint;

/// Largest chunk sent in one `BytesMessage` (buildkit reads in 32 KiB buffers but accepts more).
const CHUNK: usize = 64 * 1024;

/// Opens `Control/Session` on a fresh connection from `driver` and returns the byte stream it
/// carries, plus the task that pumps bytes between the two (abort it to end the session).
pub async fn open(
    driver: &dyn Driver,
    headers: &[(String, String)],
) -> Result<(BoxIo, JoinHandle<()>)> {
    let io = driver.dial().await?;
    // One connection for this one call: the session lives and dies with it.
    let slot = Arc::new(Mutex::new(Some(io)));
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let io = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            io.map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the session's connection is gone"))
        }
    });
    let channel = Endpoint::from_static("http://buildkit.invalid")
        .connect_with_connector(connector)
        .await
        .map_err(|e| anyhow::anyhow!(crate::buildkit::client::flatten_error(&e)))?;

    let (to_daemon, outgoing) = mpsc::channel::<BytesMessage>(16);
    let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
    for (k, v) in headers {
        let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .with_context(|| format!("session header {k:?}"))?;
        let value = AsciiMetadataValue::try_from(v.as_str())
            .with_context(|| format!("session header {k:?} value {v:?}"))?;
        request.metadata_mut().append(key, value);
    }
    let mut control = ControlClient::new(channel)
        .max_decoding_message_size(crate::buildkit::client::MAX_MESSAGE)
        .max_encoding_message_size(crate::buildkit::client::MAX_MESSAGE);
    let call = tokio::spawn(async move { control.session(request).await });

    // Our end of the byte stream is served as HTTP/2; the other end is pumped through the call.
    let (ours, theirs) = tokio::io::duplex(1024 * 1024);
    let (mut from_us, mut to_us) = tokio::io::split(theirs);
    let pump = tokio::spawn(async move {
        let upstream = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from_us.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let msg = BytesMessage {
                            data: buf[..n].to_vec(),
                        };
                        if to_daemon.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        let downstream = async {
            let mut incoming = match call.await {
                Ok(Ok(resp)) => resp.into_inner(),
                Ok(Err(status)) => {
                    tracing::debug!("Control/Session refused: {}", status.message());
                    return;
                }
                Err(_) => return,
            };
            while let Some(Ok(msg)) = incoming.next().await {
                if to_us.write_all(&msg.data).await.is_err() {
                    break;
                }
            }
            let _ = to_us.shutdown().await;
        };
        // Either direction ending ends the session.
        tokio::select! {
            _ = upstream => {}
            _ = downstream => {}
        }
    });
    Ok((Box::pin(ours), pump))
}
